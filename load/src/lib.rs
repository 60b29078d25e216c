//! statelab's load generator: many virtual shoppers, each with its own cookies, against one of the
//! three services, with a replica killed at a chosen moment, and a report of what the design did.
//!
//! Layout, each layer using only the ones above it:
//! - [`wire`]: the requests and answers as bytes; [`client`]: one user's keep-alive HTTP/1
//!   connection from its own source address, cookie jar, and failures classified as connect /
//!   timeout / I/O / 4xx / 5xx ([`client::ErrorKind`]).
//! - [`stats`]: recording ([`stats::record`]: intended-start latency, service time, per-second
//!   tallies, per replica) and the pure figures built on it ([`stats::analysis`]: percentiles,
//!   the per-second series, the pre-kill band and recovery, the failure window after a kill and
//!   the 2xx latency on either side of it).
//! - [`workflow`]: the shop session (login → cart adds → cart → checkout → logout) and the
//!   session-loss checks (401 after login; a cart that differs from what the user put in), and
//!   the acknowledged writes (adds and logins answered 200) a later answer shows lost.
//! - [`fault`]: the scheduled kill and restart and the scale steps, through `scripts/lab`, as a
//!   user would do them; each scale step begins a scale epoch, so the sessions can tell what it
//!   moved ([`stats::moves`]); a Redis node's kill is followed by polling the lab for the new
//!   primary.
//! - [`config`]: the `run` command's flags checked against each other into a [`config::RunConfig`]
//!   (or a [`config::ConfigError`]), and the names a run records (model, workflow, strategy).
//! - [`scaling`]: what each scale event did (first request of a new replica, shares before and
//!   after, sessions moved and lost, time to even load), from the run's record.
//! - [`report`]: the JSON record (`run.json`, `report.json`), assembled by
//!   [`report::RunReport::build`], and the terminal tables; [`html`]: the self-contained HTML
//!   report, its inline SVG charts drawn by `html::svg`.
//! - [`run`]: the open and closed workload models, progress line, deadline and Ctrl-C; hands
//!   what it recorded to [`report::RunReport::build`].
//!
//! - [`skew`]: Zipf laws for heavy users (`--skew`) and crowded source addresses
//!   (`--sources-skew`).
//! - [`capacity`]: `statelab-load capacity`: the highest rate meeting an SLO at each replica
//!   count, every part's CPU, the bottleneck named, and the Universal Scalability Law fitted.
//!
//! The binary `statelab-load` (`src/main.rs`) parses the command line and calls into these.
#![forbid(unsafe_code)]

pub mod capacity;
pub mod chat;
pub mod client;
pub mod compare;
pub mod config;
pub mod evidence;
pub mod fault;
pub mod files;
pub mod html;
pub mod output;
pub mod report;
pub mod run;
pub mod scaling;
pub mod skew;
pub mod stats;
pub mod wire;
pub mod workflow;

//! statelab's load generator: many virtual shoppers, each with its own cookies, against one of the
//! three services, with a replica killed at a chosen moment, and a report of what the design did.
//!
//! Layout:
//! - [`client`]: one user's keep-alive HTTP/1 connection from its own source address, cookie jar,
//!   and failures classified as connect / timeout / I/O / 4xx / 5xx; [`wire`]: the requests and
//!   answers as bytes.
//! - [`workflow`]: the shop session (login → cart adds → cart → checkout → logout) and the
//!   session-loss checks (401 after login; a cart that differs from what the user put in).
//! - [`stats`]: recording (intended-start latency, service time, per-second series, per
//!   replica) and the pure figures built on it: percentiles, the pre-kill band and recovery.
//! - [`fault`]: the scheduled kill and restart, through `scripts/lab`, as a user would do it.
//! - [`run`]: the open and closed workload models, progress line, deadline and Ctrl-C.
//! - [`report`]: the JSON record (`run.json`, `report.json`) and the terminal tables;
//!   [`html`]: the self-contained HTML report with inline SVG charts.
//!
//! The binary `statelab-load` (`src/main.rs`) parses the command line and calls into these.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod fault;
pub mod html;
pub mod report;
pub mod run;
pub mod stats;
pub mod wire;
pub mod workflow;

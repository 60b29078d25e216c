//! The shared core of statelab's three session services.
//!
//! statelab runs one HTTP API three times, and the three binaries differ in exactly one place:
//! where a session lives between requests. Everything else — the HTTP server, routing, input
//! validation, errors, metrics, configuration and start-up — is here, once:
//!
//! - [`session`]: the session model, the cart rules, and the [`SessionStore`] trait: the one seam.
//! - [`store`]: the three implementations of that seam — process memory ([`store::MemoryStore`]),
//!   a signed JWT the client carries ([`store::JwtStore`]) and Redis ([`store::RedisStore`]).
//! - [`api`]: the routes; turns requests into store calls and store results into JSON.
//! - [`error`]: the one error type the routes return, mapped to a status and a JSON body.
//! - [`server`]: the accept loop with graceful shutdown; the caller owns listener and trigger.
//! - [`metrics`]: the Prometheus registry shared by the routes and the stores.
//! - [`config`]: typed command-line/environment configuration, parsed once at start.
//! - [`work`]: the CPU work done per request (`--work-us`), calibrated on the machine.
//! - [`launch`]: what each binary's `main` calls: tracing, runtime, bind, serve until a signal.
#![forbid(unsafe_code)]

pub mod api;
pub mod chat;
pub mod config;
pub mod error;
pub mod files;
pub mod launch;
pub mod metrics;
pub mod server;
pub mod session;
pub mod store;
pub mod work;

pub use api::App;
pub use session::{SessionStore, StoreError, StoreFigures};

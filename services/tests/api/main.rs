//! Integration tests for the three services, in one test binary.
//!
//! - `contract`: the API contract, written once and run against every design.
//! - `stateful`, `stateless`, `externalized`: what only one design does (the session cap, JWT
//!   forgery, Redis outages).
//! - `binaries`: the real executables: configuration errors, SIGTERM.
//!
//! `helpers` starts a service in-process on an ephemeral port (and, for the externalized one,
//! a real `redis-server` on a free port of its own) and drives it over real HTTP.

mod binaries;
mod cluster;
mod contract;
mod externalized;
mod helpers;
mod sentinel;
mod stateful;
mod stateless;

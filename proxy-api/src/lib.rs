//! The statelab proxy's public formats, in a crate of their own so that whatever writes or reads
//! them (the proxy itself, the lab supervisor, the load generator, the tests) shares one typed
//! definition without pulling in pingora.
//!
//! - [`strategy`]: the routing strategies' names ([`Strategy`]).
//! - [`config`]: the TOML configuration file as written on disk ([`ConfigFile`]): every field with
//!   the default the proxy applies. The proxy validates it into its own runtime configuration; the
//!   lab generates it for the native and the Docker lab.
//! - [`status`]: the answer of `GET /admin/status` ([`StatusView`]), serialised by the proxy and
//!   deserialised by its clients.
#![forbid(unsafe_code)]

pub mod config;
pub mod status;
pub mod strategy;

pub use config::{ConfigFile, HealthSection, PoolSection, RetrySection, ServerSection};
pub use status::{Failure, PoolView, ReplicaState, ReplicaView, StatusView};
pub use strategy::{Strategy, UnknownStrategy};

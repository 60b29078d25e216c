//! The formats that cross a process boundary in statelab, in a crate of their own so that whatever
//! writes or reads them (the services, the proxy, the lab supervisor, the load generator, the
//! tests) shares one typed definition without pulling in pingora, Redis or hyper.
//!
//! - [`api`]: the services' request and answer bodies ([`Login`], [`AddItem`], [`Me`],
//!   [`CartView`]) and the error body every part answers with ([`ErrorBody`]).
//! - [`design`]: the three session designs' names ([`Design`]).
//! - [`strategy`]: the routing strategies' names ([`Strategy`]).
//! - [`config`]: the proxy's TOML configuration file as written on disk ([`ConfigFile`]): every
//!   field with the default the proxy applies. The proxy validates it into its own runtime
//!   configuration; the lab generates it for the native and the Docker lab.
//! - [`status`]: the answer of the proxy's `GET /admin/status` ([`StatusView`]), serialised by the
//!   proxy and deserialised by its clients.
//! - [`health`]: a service's `GET /health?detail=1` ([`HealthDetail`]), written by the services
//!   and read by the proxy's health checker.
//! - [`lab`]: the lab's layout and limits, and its verbs' `--json` answers.
//! - [`procfs`]: CPU time as `/proc` gives it, per process and for the host.
//! - [`AdminToken`]: the proxy's admin bearer token, which no `Debug` output shows.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod design;
pub mod health;
pub mod lab;
pub mod procfs;
pub mod status;
pub mod strategy;
mod token;

pub use api::{
    is_room_name, AddItem, AvatarStored, CartLine, CartView, ChatMessage, ChatSend, Checkout,
    ErrorBody, ImageType, Login, Me, CHAT_HISTORY, MAX_AVATAR_BYTES, MAX_CHAT_ID, MAX_CHAT_TEXT,
    MAX_ROOM_LEN,
};
pub use config::{ConfigFile, HealthSection, PoolSection, RetrySection, ServerSection};
pub use design::{Design, UnknownDesign};
pub use health::{HealthDetail, Reported, StoreFigures};
pub use status::{Failure, PoolView, ReplicaState, ReplicaView, StatusView};
pub use strategy::{
    BadBalanceFactor, BalanceFactor, PoolRouting, Routed, Strategy, UnknownStrategy,
};
pub use token::AdminToken;

//! `GET /admin/status`: the proxy's view of its pools, as one typed value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BalanceFactor, Strategy};

/// The longest drain a removal may ask for (`DELETE /admin/replicas/{name}?drain=SECONDS`).
pub const MAX_DRAIN_SECS: u64 = 600;

/// The whole answer of `GET /admin/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub pools: Vec<PoolView>,
}

/// One pool: its routing and its replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolView {
    pub name: String,
    pub prefix: String,
    pub strategy: Strategy,
    /// Bounded loads, when on (they apply to `ip-hash` and `cookie`).
    #[serde(default)]
    pub balance_factor: Option<BalanceFactor>,
    /// Requests the balance factor sent past their first choice since the proxy started.
    #[serde(default)]
    pub bounded_moves: u64,
    /// At least one replica can take new requests.
    pub available: bool,
    pub replicas: Vec<ReplicaView>,
    /// The DNS name the pool follows, when it has no fixed replica list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryView>,
}

/// A pool that follows a DNS name (`discover = "HOST:PORT"`): its last resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryView {
    /// `HOST:PORT`, as configured.
    pub target: String,
    pub interval_ms: u64,
    /// The addresses of the last answer that had any, in order.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// When that answer came, in milliseconds since the proxy started; `None` before the first.
    #[serde(default)]
    pub resolved_ms: Option<u64>,
    /// Why the latest resolution failed (the pool kept its members); `None` once one works.
    #[serde(default)]
    pub error: Option<String>,
    /// Resolutions that failed since the proxy started.
    #[serde(default)]
    pub failures: u64,
    /// Addresses of the last answer that are not members, and why: no name yet (not answering),
    /// a name another address of the answer has, or a change the pool refused.
    #[serde(default)]
    pub left_out: BTreeMap<String, String>,
}

/// One replica as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub name: String,
    pub address: String,
    /// The one-word summary of the flags below.
    pub state: ReplicaState,
    pub healthy: bool,
    pub enabled: bool,
    pub draining: bool,
    /// Passively ejected after a failed connection, until the deadline or a passing check.
    pub ejected: bool,
    pub in_flight: i64,
    /// Upgraded connections (WebSockets) open through the proxy to this replica; each also
    /// counts in `in_flight` while it lasts.
    #[serde(default)]
    pub sockets: u64,
    pub total_requests: u64,
    pub last_failure: Option<Failure>,
}

/// Where a replica stands, in one word (the dashboard's `data-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Added at runtime, not yet past `rise` passing health checks: no traffic yet.
    Joining,
    /// In rotation.
    Up,
    /// Failing its health checks.
    Down,
    /// Passively ejected after a failed request, until the deadline or a passing check.
    Ejected,
    /// Takes no new clients; clients pinned to it stay.
    Draining,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Joining => "joining",
            ReplicaState::Up => "up",
            ReplicaState::Down => "down",
            ReplicaState::Ejected => "ejected",
            ReplicaState::Draining => "draining",
        }
    }
}

/// When and why a replica last failed (a health check or a proxied connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub at_unix_ms: u64,
    pub reason: String,
}

impl StatusView {
    pub fn pool(&self, name: &str) -> Option<&PoolView> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn replica(&self, name: &str) -> Option<&ReplicaView> {
        self.pools
            .iter()
            .flat_map(|p| &p.replicas)
            .find(|r| r.name == name)
    }
}

impl ReplicaView {
    /// Takes requests: healthy, not joining and not ejected. (Draining replicas still serve
    /// pinned clients.)
    pub fn serving(&self) -> bool {
        self.healthy && !self.ejected && self.state != ReplicaState::Joining
    }
}

//! `GET /admin/status`: the proxy's view of its pools, as one typed value.

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

//! Routing strategies as types.
//!
//! [`Strategy`] is the name a pool is configured with and can be switched to at runtime. Behind
//! each name is a type implementing [`Route`] (read the request's key, pick, pin):
//! - [`RoundRobin`] wraps pingora's `RoundRobin` selection;
//! - [`IpHash`] wraps pingora's `Consistent` (Ketama) ring, so adding a replica moves only
//!   about 1/(N+1) of the clients;
//! - [`Cookie`] is sticky: [`CookieAffinity`] names replicas by opaque tokens and pins clients
//!   that present one; new clients are placed by round-robin and pinned where they land;
//! - [`LeastRequests`] draws two replicas and takes the one with fewer requests in flight;
//! - [`BoundedLoad`] wraps ip-hash or cookie when the pool has a balance factor: their order,
//!   with replicas over the load bound passed over for new clients.
//!
//! [`Routes`] holds one of each per pool. Strategies never decide health: they offer replicas in
//! their own order through one selection walk (`walk`) and ask the caller's `accept` closure, so
//! a down, ejected or draining replica is skipped without rebuilding anything. Replicas are named
//! by [`ReplicaId`]; a request's tried replicas are a [`Tried`] set, which caps a pool at
//! [`MAX_REPLICAS_PER_POOL`].

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use http::HeaderValue;
use ipnet::IpNet;
use pingora::http::RequestHeader;

mod bounded;
mod client_key;
mod cookie;
mod ip_hash;
mod ip_modulo;
mod least_requests;
mod picker;
mod round_robin;
#[cfg(test)]
mod tests;

pub use bounded::{Bounded, BoundedLoad};
pub use client_key::{client_key, key_bytes};
pub use cookie::{Cookie, CookieAffinity};
pub use ip_hash::IpHash;
pub use ip_modulo::IpModulo;
pub use least_requests::LeastRequests;
pub use picker::Picker;
pub use round_robin::RoundRobin;

pub use statelab_formats::{BalanceFactor, Strategy, UnknownStrategy};

/// Compact form of a [`Strategy`] for storing in an atomic.
pub(crate) fn strategy_to_u8(s: Strategy) -> u8 {
    match s {
        Strategy::Cookie => 0,
        Strategy::IpHash => 1,
        Strategy::IpModulo => 2,
        Strategy::RoundRobin => 3,
        Strategy::LeastRequests => 4,
    }
}

pub(crate) fn strategy_from_u8(v: u8) -> Strategy {
    match v {
        0 => Strategy::Cookie,
        1 => Strategy::IpHash,
        2 => Strategy::IpModulo,
        4 => Strategy::LeastRequests,
        _ => Strategy::RoundRobin,
    }
}

/// A replica's place in its pool: what selection, the tried set and the in-flight guard name it
/// by. It indexes the pool's replica list and is stored in pingora's `Backend::ext`, so a selection
/// result maps back to the replica without a lookup by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId(usize);

impl ReplicaId {
    pub fn new(index: usize) -> Self {
        ReplicaId(index)
    }

    pub fn index(self) -> usize {
        self.0
    }
}

/// Requests in flight per replica, in pool order: the counters the proxy's in-flight guards keep,
/// read by the strategies that place by load. A replica without a counter reads as idle.
#[derive(Debug, Clone, Default)]
pub struct Loads(Arc<[Arc<AtomicI64>]>);

impl Loads {
    pub fn new(counters: Vec<Arc<AtomicI64>>) -> Self {
        Loads(counters.into())
    }

    pub fn get(&self, id: ReplicaId) -> u64 {
        self.0
            .get(id.0)
            .map_or(0, |c| c.load(Ordering::Relaxed).max(0) as u64)
    }
}

/// The most replicas one pool may have; the configuration and the admin API refuse more.
pub use statelab_formats::config::MAX_REPLICAS_PER_POOL;
// [`Tried`] is one 64-bit word, a bit per replica, so that a request's retry bookkeeping costs no
// allocation.
const _: () = assert!(MAX_REPLICAS_PER_POOL <= u64::BITS as usize);

/// The replicas one request has tried already and must not be sent to again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    pub fn insert(&mut self, r: ReplicaId) {
        self.0 |= Self::bit(r);
    }

    pub fn contains(self, r: ReplicaId) -> bool {
        self.0 & Self::bit(r) != 0
    }

    /// Every replica of an `n`-replica pool is in the set.
    fn covers(self, n: usize) -> bool {
        let all = if n >= MAX_REPLICAS_PER_POOL {
            u64::MAX
        } else {
            (1u64 << n) - 1
        };
        self.0 & all == all
    }

    fn bit(r: ReplicaId) -> u64 {
        // Ids beyond the cap cannot exist (the configuration refuses such pools); were one to,
        // it would share the last bit rather than overflow.
        1u64 << r.0.min(MAX_REPLICAS_PER_POOL - 1)
    }
}

/// Which kind of request a replica is asked to take: a client pinned to it may still use a
/// draining replica, a new client may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Pinned,
    New,
}

/// What a request is placed by, read once when it arrives: the replica its affinity cookie names
/// (cookie strategy) or its client address as hash key (ip-hash). Kept inline: no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteKey {
    pub pinned: Option<ReplicaId>,
    hash: [u8; 16],
    hash_len: u8,
}

impl RouteKey {
    /// The key of a client pinned to `r` (what a valid affinity cookie yields).
    pub fn pinned_to(r: ReplicaId) -> Self {
        RouteKey {
            pinned: Some(r),
            ..RouteKey::default()
        }
    }

    fn hash_key(&self) -> &[u8] {
        &self.hash[..usize::from(self.hash_len)]
    }

    fn for_client(ip: &IpAddr) -> Self {
        let mut key = RouteKey::default();
        key.hash_len = key_bytes(ip, &mut key.hash) as u8;
        key
    }
}

/// Who sent a request, as far as the proxy can tell.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted: &'a [IpNet],
}

/// A routing strategy: reads what it places a request by, picks its replica, and pins the client
/// to it when the strategy is sticky. The proxy's filters call these three and nothing
/// strategy-specific.
pub trait Route: Send + Sync + fmt::Debug {
    /// What this strategy places the request by; nothing by default (round-robin,
    /// least-requests).
    fn key(&self, _req: &RequestHeader, _client: Client<'_>) -> RouteKey {
        RouteKey::default()
    }

    /// The first replica, in this strategy's order for `key`, that `accept` takes. Every replica
    /// is offered at most once, and every one is offered before `None` (see `walk`).
    fn pick(
        &self,
        key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId>;

    /// A `Set-Cookie` value pinning the client to `chosen`, when this strategy pins and the
    /// client is not pinned there already.
    fn pin(&self, _key: &RouteKey, _chosen: ReplicaId) -> Option<&HeaderValue> {
        None
    }
}

/// A membership's strategies, built once per membership; the pool's current [`Strategy`] says
/// which one routes.
#[derive(Debug)]
pub struct Routes {
    cookie: Cookie,
    ip_hash: IpHash,
    ip_modulo: IpModulo,
    round_robin: RoundRobin,
    least_requests: LeastRequests,
}

impl Routes {
    /// The strategies over replicas named `names`, in pool order, whose requests in flight
    /// `loads` reads.
    pub fn new(secret: &[u8], pool: &str, names: &[String], loads: Loads) -> Self {
        Routes {
            cookie: Cookie::new(
                CookieAffinity::new(secret, pool, names),
                RoundRobin::new(names),
            ),
            ip_hash: IpHash::new(names),
            ip_modulo: IpModulo::new(names.len()),
            round_robin: RoundRobin::new(names),
            least_requests: LeastRequests::new(names, loads),
        }
    }

    pub fn get(&self, strategy: Strategy) -> &dyn Route {
        match strategy {
            Strategy::Cookie => &self.cookie,
            Strategy::IpHash => &self.ip_hash,
            Strategy::IpModulo => &self.ip_modulo,
            Strategy::RoundRobin => &self.round_robin,
            Strategy::LeastRequests => &self.least_requests,
        }
    }

    /// The affinity cookie's name for this pool.
    pub fn cookie_name(&self) -> &str {
        self.cookie.cookie_name()
    }
}

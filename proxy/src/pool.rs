//! Pools of replicas and their live state.
//!
//! A [`Pool`] owns its replicas and one picker per strategy, so switching strategy at runtime is a
//! single atomic store. Replica state is atomics written by three parties: the active health
//! checker (`healthy`), the proxy's passive ejection (`ejected_until`) and the admin API
//! (`draining`). Requests only read them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use pingora::upstreams::peer::HttpPeer;

use crate::config::{Config, PoolConfig, RetryConfig};
use crate::metrics::{Metrics, Origin};
use crate::strategy::{
    strategy_from_u8, strategy_to_u8, Admission, ReplicaId, Route, RouteKey, Routes, Strategy,
    Tried,
};
pub use statelab_proxy_api::{Failure, PoolView, ReplicaView, StatusView};

/// One upstream server and what the proxy knows about it.
#[derive(Debug)]
pub struct Replica {
    pub name: String,
    pub addr: SocketAddr,
    /// Prebuilt peer cloned per request (keeps pingora's connection-pool key stable).
    pub(crate) peer: HttpPeer,
    healthy: AtomicBool,
    draining: AtomicBool,
    /// Milliseconds since [`Pools::epoch`]; 0 = not ejected.
    ejected_until: AtomicU64,
    /// Requests on their way to or from this replica; see [`InFlight`].
    in_flight: Arc<AtomicI64>,
    pub(crate) total: AtomicU64,
    last_failure: Mutex<Option<Failure>>,
    pub(crate) latency: prometheus::Histogram,
    /// `requests_total{status="200"}` of this replica, resolved once.
    pub(crate) ok_requests: prometheus::IntCounter,
    health_gauge: prometheus::IntGauge,
}

/// One request counted as in flight on a replica from the moment it is sent there until the guard
/// is dropped: when the request ends, however it ends, or when a retry moves it elsewhere. No path
/// can forget the decrement.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicI64>);

impl InFlight {
    pub fn new(replica: &Replica) -> InFlight {
        replica.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&replica.in_flight))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Replica {
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed).max(0)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn is_ejected(&self, now_ms: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now_ms < until
    }

    /// May serve a client already pinned to it (draining replicas still do).
    pub(crate) fn serves_pinned(&self, now_ms: u64) -> bool {
        self.is_healthy() && !self.is_ejected(now_ms)
    }

    /// May take new clients.
    pub(crate) fn takes_new(&self, now_ms: u64) -> bool {
        self.serves_pinned(now_ms) && !self.is_draining()
    }

    /// Result of an active health check after rise/fall smoothing.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.health_gauge.set(i64::from(healthy));
        if healthy {
            // A replica that passes its checks again is trusted again at once.
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn eject(&self, until_ms: u64) {
        self.ejected_until.store(until_ms.max(1), Ordering::Relaxed);
    }

    pub(crate) fn record_failure(&self, reason: String) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Ok(mut slot) = self.last_failure.lock() {
            *slot = Some(Failure { at_unix_ms, reason });
        }
    }

    fn last_failure(&self) -> Option<Failure> {
        self.last_failure.lock().ok().and_then(|f| f.clone())
    }
}

/// A named group of interchangeable replicas behind one path prefix.
pub struct Pool {
    pub name: String,
    pub prefix: String,
    pub replicas: Vec<Replica>,
    pub trusted_proxies: Vec<IpNet>,
    strategy: AtomicU8,
    routes: Routes,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("strategy", &self.strategy())
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl Pool {
    fn new(cfg: &PoolConfig, secret: &[u8], retry: &RetryConfig, metrics: &Metrics) -> Self {
        let replicas = cfg
            .replicas
            .iter()
            .map(|(name, addr)| {
                let mut peer = HttpPeer::new(*addr, false, String::new());
                peer.options.connection_timeout = Some(retry.connect_timeout);
                peer.options.total_connection_timeout = Some(retry.connect_timeout);
                // Without these a replica that accepts and never answers holds the request forever.
                peer.options.read_timeout = Some(retry.read_timeout);
                peer.options.write_timeout = Some(retry.read_timeout);
                peer.options.idle_timeout = None;
                let health_gauge = metrics
                    .replica_healthy
                    .with_label_values(&[&cfg.name, name]);
                health_gauge.set(1);
                Replica {
                    name: name.clone(),
                    addr: *addr,
                    peer,
                    healthy: AtomicBool::new(true),
                    draining: AtomicBool::new(false),
                    ejected_until: AtomicU64::new(0),
                    in_flight: Arc::new(AtomicI64::new(0)),
                    total: AtomicU64::new(0),
                    last_failure: Mutex::new(None),
                    latency: metrics
                        .upstream_latency
                        .with_label_values(&[&cfg.name, name]),
                    ok_requests: metrics.requests.with_label_values(&[
                        &cfg.name,
                        name,
                        "200",
                        Origin::Replica.as_str(),
                    ]),
                    health_gauge,
                }
            })
            .collect();
        Pool {
            name: cfg.name.clone(),
            prefix: cfg.prefix.clone(),
            replicas,
            trusted_proxies: cfg.trusted_proxies.clone(),
            strategy: AtomicU8::new(strategy_to_u8(cfg.strategy)),
            routes: Routes::new(secret, &cfg.name, &cfg.replicas),
        }
    }

    pub fn strategy(&self) -> Strategy {
        strategy_from_u8(self.strategy.load(Ordering::Relaxed))
    }

    pub fn set_strategy(&self, s: Strategy) {
        self.strategy.store(strategy_to_u8(s), Ordering::Relaxed);
    }

    /// The strategy type behind a name, for this pool.
    pub fn route(&self, strategy: Strategy) -> &dyn Route {
        self.routes.get(strategy)
    }

    pub fn replica(&self, id: ReplicaId) -> Option<&Replica> {
        self.replicas.get(id.index())
    }

    /// Picks the replica for a request by `strategy`, skipping those it tried already and any that
    /// cannot take it now: a pinned client may still use a draining replica, a new one may not.
    pub(crate) fn choose(
        &self,
        strategy: Strategy,
        key: &RouteKey,
        tried: Tried,
        now_ms: u64,
    ) -> Option<ReplicaId> {
        self.routes.get(strategy).pick(key, &mut |id, how| {
            !tried.contains(id)
                && self.replica(id).is_some_and(|r| match how {
                    Admission::Pinned => r.serves_pinned(now_ms),
                    Admission::New => r.takes_new(now_ms),
                })
        })
    }

    /// Whether at least one replica could take a request right now.
    pub(crate) fn any_available(&self, now_ms: u64) -> bool {
        self.replicas.iter().any(|r| r.takes_new(now_ms))
    }
}

/// All pools, the route table and the clock used for ejection deadlines.
#[derive(Debug)]
pub struct Pools {
    pub pools: Vec<Pool>,
    epoch: Instant,
    pub eject_ms: u64,
}

impl Pools {
    pub fn new(config: &Config, metrics: &Metrics) -> Arc<Self> {
        let secret: Vec<u8> = match &config.server.affinity_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let mut buf = [0u8; 32];
                if getrandom::fill(&mut buf).is_err() {
                    // Fall back to the clock: tokens stay opaque, only less unpredictable.
                    let nanos = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    buf[..16].copy_from_slice(&nanos.to_le_bytes());
                }
                buf.to_vec()
            }
        };
        let pools = config
            .pools
            .iter()
            .map(|p| Pool::new(p, &secret, &config.retry, metrics))
            .collect();
        Arc::new(Pools {
            pools,
            epoch: Instant::now(),
            eject_ms: config.retry.eject.as_millis() as u64,
        })
    }

    /// Milliseconds since start; the unit of ejection deadlines.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The pool whose prefix starts `path` (`/stateful` or `/stateful/...`, not `/statefulx`).
    pub fn route(&self, path: &str) -> Option<usize> {
        self.pools.iter().position(|p| {
            path.strip_prefix(p.prefix.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')
            })
        })
    }

    pub fn pool_by_name(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn replica_by_name(&self, name: &str) -> Option<(&Pool, &Replica)> {
        self.pools
            .iter()
            .find_map(|p| p.replicas.iter().find(|r| r.name == name).map(|r| (p, r)))
    }

    /// Marks a replica draining (no new clients) or enabled again.
    pub fn set_draining(&self, name: &str, draining: bool) -> bool {
        match self.replica_by_name(name) {
            Some((_, r)) => {
                r.draining.store(draining, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Snapshot for `GET /admin/status`.
    pub fn status(&self) -> StatusView {
        let now = self.now_ms();
        StatusView {
            pools: self
                .pools
                .iter()
                .map(|p| PoolView {
                    name: p.name.clone(),
                    prefix: p.prefix.clone(),
                    strategy: p.strategy(),
                    available: p.any_available(now),
                    replicas: p
                        .replicas
                        .iter()
                        .map(|r| ReplicaView {
                            name: r.name.clone(),
                            address: r.addr.to_string(),
                            healthy: r.is_healthy(),
                            enabled: !r.is_draining(),
                            draining: r.is_draining(),
                            ejected: r.is_ejected(now),
                            in_flight: r.in_flight(),
                            total_requests: r.total.load(Ordering::Relaxed),
                            last_failure: r.last_failure(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Arc<Pools> {
        let config = Config::from_toml_str("").expect("the default config");
        Pools::new(&config, &Metrics::new())
    }

    #[test]
    fn routes_by_whole_segment_prefix() {
        let p = pools();
        assert_eq!(p.route("/stateful/me"), Some(0));
        assert_eq!(p.route("/stateful"), Some(0));
        assert_eq!(p.route("/stateful?x=1"), Some(0));
        assert_eq!(p.route("/stateless/a/b"), Some(1));
        assert_eq!(p.route("/externalized/"), Some(2));
        assert_eq!(p.route("/statefulx"), None);
        assert_eq!(p.route("/"), None);
        assert_eq!(p.route("/other/stateful"), None);
    }

    #[test]
    fn unavailable_replicas_are_skipped_and_none_left_is_none() {
        let p = pools();
        let pool = &p.pools[1];
        let now = p.now_ms();
        pool.replicas[0].set_healthy(false);
        assert!(p.set_draining("stateless-2", true));
        pool.replicas[2].eject(now + 60_000);
        let none = RouteKey::default();
        assert_eq!(
            pool.choose(Strategy::RoundRobin, &none, Tried::default(), now),
            None
        );
        assert!(!pool.any_available(now));
        // Draining still serves pinned clients; ejected does not.
        assert!(pool.replicas[1].serves_pinned(now));
        assert!(!pool.replicas[2].serves_pinned(now));
        // A passing health check lifts the ejection.
        pool.replicas[2].set_healthy(true);
        let third = Some(ReplicaId::new(2));
        for s in Strategy::ALL {
            assert_eq!(pool.choose(s, &none, Tried::default(), now), third, "{s}");
        }
        let mut tried = Tried::default();
        tried.insert(ReplicaId::new(2));
        assert_eq!(pool.choose(Strategy::RoundRobin, &none, tried, now), None);
        assert!(!p.set_draining("nope", true));
    }

    #[test]
    fn a_draining_replica_keeps_its_pinned_clients_only() {
        let p = pools();
        let pool = &p.pools[0];
        let now = p.now_ms();
        let second = ReplicaId::new(1);
        assert!(p.set_draining("stateful-2", true));
        let pinned = RouteKey::pinned_to(second);
        assert_eq!(
            pool.choose(Strategy::Cookie, &pinned, Tried::default(), now),
            Some(second)
        );
        for _ in 0..10 {
            let new = pool.choose(
                Strategy::Cookie,
                &RouteKey::default(),
                Tried::default(),
                now,
            );
            assert!(new.is_some() && new != Some(second), "{new:?}");
        }
    }

    #[test]
    fn in_flight_counts_until_the_guard_is_dropped() {
        let p = pools();
        let replica = &p.pools[0].replicas[0];
        let first = InFlight::new(replica);
        let second = InFlight::new(replica);
        assert_eq!(replica.in_flight(), 2);
        drop(first);
        assert_eq!(replica.in_flight(), 1);
        drop(second);
        assert_eq!(replica.in_flight(), 0);
    }
}

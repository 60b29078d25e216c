//! Pools of replicas and their live state.
//!
//! A [`Pool`]'s membership is an immutable [`Members`] snapshot (its replicas and one strategy
//! object per strategy) behind an atomic pointer: a request loads the snapshot once and keeps that
//! consistent view to its end, while the admin API adds or removes a replica by building the next
//! snapshot and swapping it in. Switching strategy or balance factor is a single atomic store. Replica state is
//! atomics written by three parties: the active health checker (`healthy`), the proxy's passive
//! ejection (`ejected_until`) and the admin API (`draining`). Requests only read them, and a
//! replica's state lives in the replica (shared between snapshots), so a membership change resets
//! nobody's health or counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use pingora::upstreams::peer::HttpPeer;

use crate::config::{replica_addr, Config, PoolConfig, RetryConfig};
use crate::metrics::{Metrics, Origin};
use crate::sockets::{Hangup, OpenSocket, Sockets};
use crate::strategy::{
    strategy_from_u8, strategy_to_u8, Admission, BalanceFactor, BoundedLoad, Loads, ReplicaId,
    Route, RouteKey, Routes, Strategy, Tried, MAX_REPLICAS_PER_POOL,
};
use statelab_formats::Reported;
pub use statelab_formats::{Failure, PoolView, ReplicaState, ReplicaView, StatusView};

/// One upstream server and what the proxy knows about it.
#[derive(Debug)]
pub struct Replica {
    pub name: String,
    pub addr: SocketAddr,
    /// Prebuilt peer cloned per request (keeps pingora's connection-pool key stable).
    pub(crate) peer: HttpPeer,
    healthy: AtomicBool,
    /// Added at runtime and not yet past `rise` passing checks: takes no traffic.
    joining: AtomicBool,
    draining: AtomicBool,
    /// An admin call is removing it: it does not count towards the pool's last replica.
    removing: AtomicBool,
    /// When this replica was last chosen for a request (ms since [`Pools::epoch`]), for drains
    /// that wait until it is idle.
    last_chosen_ms: AtomicU64,
    /// Health-check streaks and whether a check is running (the checker skips a tick rather than
    /// run two checks of one replica at once).
    pub(crate) ok_streak: AtomicU32,
    pub(crate) fail_streak: AtomicU32,
    pub(crate) checking: AtomicBool,
    /// Milliseconds since [`Pools::epoch`]; 0 = not ejected.
    ejected_until: AtomicU64,
    /// Requests on their way to or from this replica; see [`InFlight`].
    in_flight: Arc<AtomicI64>,
    /// Upgraded connections tunnelled to this replica.
    sockets: Arc<Sockets>,
    pub(crate) total: AtomicU64,
    last_failure: Mutex<Option<Failure>>,
    /// The figures of its last passing detailed health check; `None` once a check fails.
    reported: Mutex<Option<Reported>>,
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
    /// A replica of `pool`. `healthy` is how it starts: configured replicas start in rotation,
    /// runtime additions start joining (out of rotation until `rise` checks pass).
    fn new(
        pool: &str,
        name: &str,
        addr: SocketAddr,
        retry: &RetryConfig,
        metrics: &Metrics,
        healthy: bool,
    ) -> Replica {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(retry.connect_timeout);
        peer.options.total_connection_timeout = Some(retry.connect_timeout);
        // Without these a replica that accepts and never answers holds the request forever.
        peer.options.read_timeout = Some(retry.read_timeout);
        peer.options.write_timeout = Some(retry.read_timeout);
        peer.options.idle_timeout = None;
        let health_gauge = metrics.replica_healthy.with_label_values(&[pool, name]);
        health_gauge.set(i64::from(healthy));
        Replica {
            name: name.to_string(),
            addr,
            peer,
            healthy: AtomicBool::new(healthy),
            joining: AtomicBool::new(!healthy),
            draining: AtomicBool::new(false),
            removing: AtomicBool::new(false),
            last_chosen_ms: AtomicU64::new(0),
            ok_streak: AtomicU32::new(0),
            fail_streak: AtomicU32::new(0),
            checking: AtomicBool::new(false),
            ejected_until: AtomicU64::new(0),
            in_flight: Arc::new(AtomicI64::new(0)),
            sockets: Arc::default(),
            total: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            reported: Mutex::new(None),
            latency: metrics.upstream_latency.with_label_values(&[pool, name]),
            ok_requests: metrics.requests.with_label_values(&[
                pool,
                name,
                "200",
                Origin::Replica.as_str(),
            ]),
            health_gauge,
        }
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed).max(0)
    }

    /// Counts an upgraded connection as open on this replica until the guard is dropped.
    pub fn open_socket(&self, hangup: Arc<Hangup>) -> OpenSocket {
        self.sockets.open(hangup)
    }

    /// Upgraded connections open on this replica now.
    pub fn sockets(&self) -> usize {
        self.sockets.count()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A removal is under way (an admin call, or discovery draining a vanished address).
    pub fn is_removing(&self) -> bool {
        self.removing.load(Ordering::Relaxed)
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

    pub fn is_joining(&self) -> bool {
        self.joining.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_chosen(&self, now_ms: u64) {
        self.last_chosen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The one state the status view and the dashboard show.
    pub fn state(&self, now_ms: u64) -> ReplicaState {
        if self.is_joining() {
            ReplicaState::Joining
        } else if !self.is_healthy() {
            ReplicaState::Down
        } else if self.is_ejected(now_ms) {
            ReplicaState::Ejected
        } else if self.is_draining() {
            ReplicaState::Draining
        } else {
            ReplicaState::Up
        }
    }

    /// Result of an active health check after rise/fall smoothing.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        if healthy {
            self.joining.store(false, Ordering::Relaxed);
        }
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

    pub(crate) fn last_failure(&self) -> Option<Failure> {
        self.last_failure.lock().ok().and_then(|f| f.clone())
    }

    pub(crate) fn set_reported(&self, figures: Option<Reported>) {
        if let Ok(mut slot) = self.reported.lock() {
            *slot = figures;
        }
    }

    pub(crate) fn reported(&self) -> Option<Reported> {
        self.reported.lock().ok().and_then(|f| *f)
    }
}

/// One consistent view of a pool's membership: what a request routes by from start to end.
#[derive(Debug)]
pub struct Members {
    pub replicas: Vec<Arc<Replica>>,
    routes: Routes,
    loads: Loads,
}

/// The replica picked for a request, and whether the balance factor moved it off the strategy's
/// own choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub replica: Option<ReplicaId>,
    pub moved: bool,
}

impl Members {
    fn new(replicas: Vec<Arc<Replica>>, secret: &[u8], pool: &str) -> Members {
        let names: Vec<String> = replicas.iter().map(|r| r.name.clone()).collect();
        let loads = Loads::new(replicas.iter().map(|r| Arc::clone(&r.in_flight)).collect());
        Members {
            routes: Routes::new(secret, pool, &names, loads.clone()),
            loads,
            replicas,
        }
    }

    pub fn replica(&self, id: ReplicaId) -> Option<&Arc<Replica>> {
        self.replicas.get(id.index())
    }

    /// The strategy type behind a name, for this membership.
    pub fn route(&self, strategy: Strategy) -> &dyn Route {
        self.routes.get(strategy)
    }

    /// Picks the replica for a request by `strategy`, skipping those it tried already and any that
    /// cannot take it now: a pinned client may still use a draining replica, a new one may not.
    /// With a `balance` factor, and a strategy that takes one, loads are bounded
    /// ([`BoundedLoad`]) over the replicas that take new requests.
    pub(crate) fn choose(
        &self,
        strategy: Strategy,
        balance: Option<BalanceFactor>,
        key: &RouteKey,
        tried: Tried,
        now_ms: u64,
    ) -> Choice {
        let route = self.routes.get(strategy);
        let mut accept = |id: ReplicaId, how: Admission| {
            !tried.contains(id)
                && self.replica(id).is_some_and(|r| match how {
                    Admission::Pinned => r.serves_pinned(now_ms),
                    Admission::New => r.takes_new(now_ms),
                })
        };
        match balance.filter(|_| strategy.takes_balance_factor()) {
            None => Choice {
                replica: route.pick(key, &mut accept),
                moved: false,
            },
            Some(factor) => {
                let (in_flight, eligible) = self
                    .replicas
                    .iter()
                    .filter(|r| r.takes_new(now_ms))
                    .fold((0u64, 0usize), |(sum, n), r| {
                        (sum + r.in_flight() as u64, n + 1)
                    });
                let bounded = BoundedLoad::new(factor);
                let limit = bounded.limit(in_flight, eligible);
                let b = bounded.pick(route, key, &self.loads, limit, &mut accept);
                Choice {
                    replica: b.chosen,
                    moved: b.moved,
                }
            }
        }
    }

    /// Whether at least one replica could take a request right now.
    pub(crate) fn any_available(&self, now_ms: u64) -> bool {
        self.replicas.iter().any(|r| r.takes_new(now_ms))
    }
}

/// Why a membership change was refused; each maps to an admin API status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("no pool named {0:?}")]
    NoPool(String),
    #[error("no replica named {0:?}")]
    NoReplica(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

/// How a removal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalEnd {
    /// Removed at once (no drain asked).
    Immediate,
    /// Drained until it had no request for [`Pools::DRAIN_IDLE`].
    Idle,
    /// The drain limit ran out first.
    Limit,
}

impl RemovalEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalEnd::Immediate => "immediate",
            RemovalEnd::Idle => "idle",
            RemovalEnd::Limit => "limit",
        }
    }
}

/// A named group of interchangeable replicas behind one path prefix.
pub struct Pool {
    pub name: String,
    pub prefix: String,
    pub trusted_proxies: Vec<IpNet>,
    strategy: AtomicU8,
    /// The balance factor in percent; 0 when bounded loads are off.
    balance_factor: AtomicU32,
    bounded_moves: prometheus::IntCounter,
    members: ArcSwap<Members>,
    /// Requests that came with `x-statelab-load` (a `statelab-load` run), for the dashboard.
    load_requests: AtomicU64,
    /// Serialises membership changes, so two admin calls never build from the same snapshot.
    change: Mutex<()>,
    /// The pool's last resolution, when it follows a DNS name ([`crate::discovery`]).
    discovery: Option<crate::discovery::Found>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("strategy", &self.strategy())
            .field("replicas", &self.members().replicas.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    fn new(cfg: &PoolConfig, secret: &[u8], retry: &RetryConfig, metrics: &Metrics) -> Self {
        let replicas = cfg
            .replicas
            .iter()
            .map(|(name, addr)| {
                // Replicas configured at start are trusted until their first checks say otherwise.
                Arc::new(Replica::new(&cfg.name, name, *addr, retry, metrics, true))
            })
            .collect();
        Pool {
            name: cfg.name.clone(),
            prefix: cfg.prefix.clone(),
            trusted_proxies: cfg.trusted_proxies.clone(),
            strategy: AtomicU8::new(strategy_to_u8(cfg.strategy)),
            balance_factor: AtomicU32::new(cfg.balance_factor.map_or(0, BalanceFactor::percent)),
            bounded_moves: metrics.bounded_moves.with_label_values(&[&cfg.name]),
            members: ArcSwap::from_pointee(Members::new(replicas, secret, &cfg.name)),
            load_requests: AtomicU64::new(0),
            change: Mutex::new(()),
            discovery: cfg
                .discover
                .as_ref()
                .map(|d| crate::discovery::Found::new(&d.target, d.interval)),
        }
    }

    /// The pool's last resolution, when it follows a DNS name.
    pub fn discovery(&self) -> Option<&crate::discovery::Found> {
        self.discovery.as_ref()
    }

    pub fn strategy(&self) -> Strategy {
        strategy_from_u8(self.strategy.load(Ordering::Relaxed))
    }

    pub fn set_strategy(&self, s: Strategy) {
        self.strategy.store(strategy_to_u8(s), Ordering::Relaxed);
    }

    /// The balance factor bounding ip-hash and cookie's new clients, when on.
    pub fn balance_factor(&self) -> Option<BalanceFactor> {
        BalanceFactor::new(self.balance_factor.load(Ordering::Relaxed)).ok()
    }

    pub fn set_balance_factor(&self, f: Option<BalanceFactor>) {
        self.balance_factor
            .store(f.map_or(0, BalanceFactor::percent), Ordering::Relaxed);
    }

    /// Counts one request the balance factor moved off its strategy's choice.
    pub(crate) fn count_bounded_move(&self) {
        self.bounded_moves.inc();
    }

    /// Counts one request from the load generator.
    pub(crate) fn count_load(&self) {
        self.load_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn load_requests(&self) -> u64 {
        self.load_requests.load(Ordering::Relaxed)
    }

    /// The current membership; a request holds it to its end.
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }
}

/// All pools, the route table and the clock used for ejection deadlines.
#[derive(Debug)]
pub struct Pools {
    pub pools: Vec<Pool>,
    epoch: Instant,
    pub eject_ms: u64,
    /// Keys the affinity tokens of every pool, now and after membership changes.
    secret: Vec<u8>,
    retry: RetryConfig,
    metrics: Metrics,
}

/// Whether `name` may name a replica: lowercase letters, digits and dashes, at most 63 bytes (a
/// DNS label, so it can also be a container's name).
fn valid_replica_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Pools {
    /// A draining replica counts as idle once it has had no request for this long.
    pub const DRAIN_IDLE: Duration = Duration::from_secs(2);
    /// The longest drain an admin call may ask for.
    pub const MAX_DRAIN: Duration = Duration::from_secs(statelab_formats::status::MAX_DRAIN_SECS);

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
            secret,
            retry: config.retry.clone(),
            metrics: metrics.clone(),
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

    pub fn replica_by_name(&self, name: &str) -> Option<(&Pool, Arc<Replica>)> {
        self.pools.iter().find_map(|p| {
            p.members()
                .replicas
                .iter()
                .find(|r| r.name == name)
                .map(|r| (p, Arc::clone(r)))
        })
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

    /// Adds a replica to a pool. It joins out of rotation and takes traffic once it has passed
    /// `rise` health checks. Names and addresses are unique across all pools.
    pub fn add_replica(
        &self,
        pool_name: &str,
        name: &str,
        addr: &str,
    ) -> Result<ReplicaView, MembershipError> {
        if !valid_replica_name(name) {
            return Err(MembershipError::Invalid(format!(
                "replica name {name:?} must be 1-63 lowercase letters, digits or dashes"
            )));
        }
        let addr = replica_addr(addr).map_err(MembershipError::Invalid)?;
        let pool = self
            .pool_by_name(pool_name)
            .ok_or_else(|| MembershipError::NoPool(pool_name.to_string()))?;
        let _guard = pool.change.lock().unwrap_or_else(|e| e.into_inner());
        for p in &self.pools {
            for r in &p.members().replicas {
                if r.name == name {
                    return Err(MembershipError::Conflict(format!(
                        "a replica named {name:?} is already in pool {:?}",
                        p.name
                    )));
                }
                if r.addr == addr {
                    return Err(MembershipError::Conflict(format!(
                        "{addr} is already replica {:?} of pool {:?}",
                        r.name, p.name
                    )));
                }
            }
        }
        let current = pool.members();
        if current.replicas.len() >= MAX_REPLICAS_PER_POOL {
            return Err(MembershipError::Conflict(format!(
                "pool {pool_name:?} already has {MAX_REPLICAS_PER_POOL} replicas, its limit"
            )));
        }
        let replica = self.joining(pool, name, addr);
        let mut replicas = current.replicas.clone();
        replicas.push(Arc::clone(&replica));
        pool.members
            .store(Arc::new(Members::new(replicas, &self.secret, &pool.name)));
        tracing::info!(pool = %pool.name, replica = %name, %addr, "replica added, joining");
        Ok(self.view(&replica, self.now_ms()))
    }

    /// A replica added at runtime: out of rotation until it passes `rise` health checks.
    fn joining(&self, pool: &Pool, name: &str, addr: SocketAddr) -> Arc<Replica> {
        Arc::new(Replica::new(
            &pool.name,
            name,
            addr,
            &self.retry,
            &self.metrics,
            false,
        ))
    }

    /// Moves the replica `name` of `pool_name` to `addr`, as one change: an orchestrator's
    /// replacement task (a new address under the name its slot gives it). The replica starts
    /// over there, joining until it passes its health checks; sockets to the old address are hung
    /// up, and a removal of the old address under way finds nothing left to remove.
    pub fn readdress(
        &self,
        pool_name: &str,
        name: &str,
        addr: SocketAddr,
    ) -> Result<ReplicaView, MembershipError> {
        let addr = replica_addr(&addr.to_string()).map_err(MembershipError::Invalid)?;
        let pool = self
            .pool_by_name(pool_name)
            .ok_or_else(|| MembershipError::NoPool(pool_name.to_string()))?;
        let _guard = pool.change.lock().unwrap_or_else(|e| e.into_inner());
        for p in &self.pools {
            if let Some(r) = p.members().replicas.iter().find(|r| r.addr == addr) {
                return Err(MembershipError::Conflict(format!(
                    "{addr} is already replica {:?} of pool {:?}",
                    r.name, p.name
                )));
            }
        }
        let current = pool.members();
        let old = current
            .replicas
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .ok_or_else(|| MembershipError::NoReplica(name.to_string()))?;
        let replica = self.joining(pool, name, addr);
        let replicas = current
            .replicas
            .iter()
            .map(|r| {
                if Arc::ptr_eq(r, &old) {
                    Arc::clone(&replica)
                } else {
                    Arc::clone(r)
                }
            })
            .collect();
        pool.members
            .store(Arc::new(Members::new(replicas, &self.secret, &pool.name)));
        let hung_up = old.sockets.hang_up_all();
        tracing::info!(pool = %pool.name, replica = %name, from = %old.addr, to = %addr, sockets_hung_up = hung_up, "replica moved, joining");
        Ok(self.view(&replica, self.now_ms()))
    }

    /// Removes a replica from its pool. With `drain`, it first takes no new clients while its
    /// pinned ones stay, and goes once it has been idle for [`Self::DRAIN_IDLE`] or when `drain`
    /// runs out. Requests already on their way finish: they hold the membership they started
    /// with. An open socket counts as a request on its way, so a drain waits for the sockets too;
    /// those still open when the replica goes (the drain ran out, or none was asked) are hung up,
    /// and their clients open new ones elsewhere. The last replica of a pool is never removed: a
    /// replica that another call is removing does not count, so of removals running at once the
    /// one that would empty the pool is refused before it changes anything.
    pub async fn remove_replica(
        &self,
        name: &str,
        drain: Option<Duration>,
    ) -> Result<RemovalEnd, MembershipError> {
        let (pool, replica) = self
            .replica_by_name(name)
            .ok_or_else(|| MembershipError::NoReplica(name.to_string()))?;
        let removal = {
            let _guard = pool.change.lock().unwrap_or_else(|e| e.into_inner());
            if replica.removing.load(Ordering::Relaxed) {
                return Err(MembershipError::Conflict(format!(
                    "{name:?} is already being removed"
                )));
            }
            let staying = pool
                .members()
                .replicas
                .iter()
                .filter(|r| !r.removing.load(Ordering::Relaxed))
                .count();
            if staying <= 1 {
                return Err(last_replica(name, &pool.name));
            }
            Removing::start(&replica)
        };
        let mut how = RemovalEnd::Immediate;
        if let Some(limit) = drain {
            replica.draining.store(true, Ordering::Relaxed);
            tracing::info!(pool = %pool.name, replica = %name, limit_s = limit.as_secs(), "draining before removal");
            let deadline = Instant::now() + limit.min(Self::MAX_DRAIN);
            how = loop {
                let idle_for = self
                    .now_ms()
                    .saturating_sub(replica.last_chosen_ms.load(Ordering::Relaxed));
                if replica.in_flight() == 0 && idle_for >= Self::DRAIN_IDLE.as_millis() as u64 {
                    break RemovalEnd::Idle;
                }
                if Instant::now() >= deadline {
                    break RemovalEnd::Limit;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
        }
        let _guard = pool.change.lock().unwrap_or_else(|e| e.into_inner());
        let current = pool.members();
        let replicas: Vec<Arc<Replica>> = current
            .replicas
            .iter()
            .filter(|r| !Arc::ptr_eq(r, &replica))
            .cloned()
            .collect();
        if replicas.len() == current.replicas.len() {
            // Removed by another call while this one drained.
            return Err(MembershipError::NoReplica(name.to_string()));
        }
        if replicas.is_empty() {
            return Err(last_replica(name, &pool.name));
        }
        pool.members
            .store(Arc::new(Members::new(replicas, &self.secret, &pool.name)));
        removal.done();
        self.metrics.forget_replica(&pool.name, name);
        let hung_up = replica.sockets.hang_up_all();
        tracing::info!(pool = %pool.name, replica = %name, how = how.as_str(), sockets_hung_up = hung_up, "replica removed");
        Ok(how)
    }

    fn view(&self, r: &Replica, now: u64) -> ReplicaView {
        ReplicaView {
            name: r.name.clone(),
            address: r.addr.to_string(),
            state: r.state(now),
            healthy: r.is_healthy(),
            enabled: !r.is_draining(),
            draining: r.is_draining(),
            ejected: r.is_ejected(now),
            in_flight: r.in_flight(),
            sockets: r.sockets() as u64,
            total_requests: r.total.load(Ordering::Relaxed),
            last_failure: r.last_failure(),
        }
    }

    /// Snapshot for `GET /admin/status`.
    pub fn status(&self) -> StatusView {
        let now = self.now_ms();
        StatusView {
            pools: self
                .pools
                .iter()
                .map(|p| {
                    let members = p.members();
                    PoolView {
                        name: p.name.clone(),
                        prefix: p.prefix.clone(),
                        strategy: p.strategy(),
                        balance_factor: p.balance_factor(),
                        bounded_moves: p.bounded_moves.get(),
                        available: members.any_available(now),
                        replicas: members.replicas.iter().map(|r| self.view(r, now)).collect(),
                        discovery: p.discovery().map(crate::discovery::Found::view),
                    }
                })
                .collect(),
        }
    }
}

/// A removal under way: the replica is marked `removing` while it lasts. Dropped before
/// [`Removing::done`] (the call failed or was abandoned), it puts the replica back as it was:
/// not removing, and draining only if it was before.
struct Removing<'a> {
    replica: &'a Replica,
    was_draining: bool,
    done: bool,
}

impl<'a> Removing<'a> {
    fn start(replica: &'a Replica) -> Self {
        replica.removing.store(true, Ordering::Relaxed);
        Removing {
            replica,
            was_draining: replica.is_draining(),
            done: false,
        }
    }

    fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.replica
                .draining
                .store(self.was_draining, Ordering::Relaxed);
            self.replica.removing.store(false, Ordering::Relaxed);
        }
    }
}

fn last_replica(name: &str, pool: &str) -> MembershipError {
    MembershipError::Conflict(format!(
        "{name:?} is the last replica of pool {pool:?}; a pool keeps at least one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(
        members: &Members,
        s: Strategy,
        key: &RouteKey,
        tried: Tried,
        now: u64,
    ) -> Option<ReplicaId> {
        members.choose(s, None, key, tried, now).replica
    }

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
        let pool = p.pools[1].members();
        let now = p.now_ms();
        pool.replicas[0].set_healthy(false);
        assert!(p.set_draining("stateless-2", true));
        pool.replicas[2].eject(now + 60_000);
        let none = RouteKey::default();
        assert_eq!(
            choose(&pool, Strategy::RoundRobin, &none, Tried::default(), now),
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
            assert_eq!(choose(&pool, s, &none, Tried::default(), now), third, "{s}");
        }
        let mut tried = Tried::default();
        tried.insert(ReplicaId::new(2));
        assert_eq!(choose(&pool, Strategy::RoundRobin, &none, tried, now), None);
        assert!(!p.set_draining("nope", true));
    }

    #[test]
    fn a_draining_replica_keeps_its_pinned_clients_only() {
        let p = pools();
        let pool = p.pools[0].members();
        let now = p.now_ms();
        let second = ReplicaId::new(1);
        assert!(p.set_draining("stateful-2", true));
        let pinned = RouteKey::pinned_to(second);
        assert_eq!(
            choose(&pool, Strategy::Cookie, &pinned, Tried::default(), now),
            Some(second)
        );
        for _ in 0..10 {
            let new = choose(
                &pool,
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
        let members = p.pools[0].members();
        let replica = &members.replicas[0];
        let first = InFlight::new(replica);
        let second = InFlight::new(replica);
        assert_eq!(replica.in_flight(), 2);
        drop(first);
        assert_eq!(replica.in_flight(), 1);
        drop(second);
        assert_eq!(replica.in_flight(), 0);
    }

    #[test]
    fn added_replicas_join_out_of_rotation_and_bad_changes_are_refused() {
        let p = pools();
        let view = p
            .add_replica("stateful", "stateful-4", "127.0.0.1:18004")
            .expect("a new replica");
        assert_eq!(view.state, ReplicaState::Joining);
        let members = p.pools[0].members();
        assert_eq!(members.replicas.len(), 4);
        let now = p.now_ms();
        assert!(
            !members.replicas[3].takes_new(now),
            "joining takes no traffic"
        );
        members.replicas[3].set_healthy(true);
        assert_eq!(members.replicas[3].state(now), ReplicaState::Up);
        let refused = |pool: &str, name: &str, addr: &str| {
            p.add_replica(pool, name, addr).expect_err("refused")
        };
        assert!(matches!(
            refused("nope", "x-1", "127.0.0.1:1"),
            MembershipError::NoPool(_)
        ));
        assert!(matches!(
            refused("stateful", "stateless-1", "127.0.0.1:1"),
            MembershipError::Conflict(_)
        ));
        assert!(matches!(
            refused("stateful", "stateful-9", "127.0.0.1:18012"),
            MembershipError::Conflict(_)
        ));
        for bad in ["Stateful-9", "", "a_b", &"x".repeat(64)] {
            assert!(matches!(
                refused("stateful", bad, "127.0.0.1:1"),
                MembershipError::Invalid(_)
            ));
        }
        assert!(matches!(
            refused("stateful", "stateful-9", "localhost:1"),
            MembershipError::Invalid(_)
        ));
    }

    #[tokio::test]
    async fn removal_keeps_one_replica_and_requests_keep_their_view() {
        let p = pools();
        let before = p.pools[2].members();
        assert_eq!(
            p.remove_replica("externalized-2", None).await,
            Ok(RemovalEnd::Immediate)
        );
        // A request that loaded the membership before still sees its replica.
        assert_eq!(before.replicas.len(), 3);
        assert_eq!(p.pools[2].members().replicas.len(), 2);
        assert!(p.replica_by_name("externalized-2").is_none());
        assert_eq!(
            p.remove_replica("externalized-2", None).await,
            Err(MembershipError::NoReplica("externalized-2".into()))
        );
        assert_eq!(
            p.remove_replica("externalized-1", None).await,
            Ok(RemovalEnd::Immediate)
        );
        assert!(matches!(
            p.remove_replica("externalized-3", None).await,
            Err(MembershipError::Conflict(_))
        ));
        // A drained replica goes once it has had no request for DRAIN_IDLE.
        let drained = p
            .remove_replica("stateless-1", Some(Duration::from_secs(30)))
            .await;
        assert_eq!(drained, Ok(RemovalEnd::Idle));
    }

    #[test]
    fn a_balance_factor_moves_new_clients_off_a_loaded_replica_and_counts_it() {
        let p = pools();
        let pool = &p.pools[0];
        let members = pool.members();
        let now = p.now_ms();
        let key = RouteKey::pinned_to(ReplicaId::new(0));
        let hashed = |balance| {
            members.choose(
                Strategy::IpHash,
                balance,
                &RouteKey::default(),
                Tried::default(),
                now,
            )
        };
        let plain = hashed(None).replica.expect("a replica");
        let factor = BalanceFactor::new(125).ok();
        // Idle pool: the bound changes nothing.
        assert_eq!(
            hashed(factor),
            Choice {
                replica: Some(plain),
                moved: false
            }
        );
        // Three requests in flight on the hashed replica: over 1.25 × 4 / 3, so it is passed over.
        let busy = members.replica(plain).expect("replica");
        let held: Vec<InFlight> = (0..3).map(|_| InFlight::new(busy)).collect();
        let moved = hashed(factor);
        assert!(moved.moved && moved.replica.is_some() && moved.replica != Some(plain));
        // ip-modulo and round-robin take no factor; a pinned cookie client is never moved.
        assert!(
            !members
                .choose(
                    Strategy::IpModulo,
                    factor,
                    &RouteKey::default(),
                    Tried::default(),
                    now
                )
                .moved
        );
        let pinned = members.choose(Strategy::Cookie, factor, &key, Tried::default(), now);
        assert_eq!(pinned.replica, Some(ReplicaId::new(0)));
        drop(held);
        pool.set_balance_factor(factor);
        assert_eq!(pool.balance_factor(), factor);
        pool.count_bounded_move();
        let view = p.status();
        assert_eq!(view.pools[0].balance_factor, factor);
        assert_eq!(view.pools[0].bounded_moves, 1);
        pool.set_balance_factor(None);
        assert_eq!(p.status().pools[0].balance_factor, None);
    }
}

//! Pools that follow DNS: a pool configured with `discover = "HOST:PORT"` instead of a replica
//! list takes its members from what the name resolves to, as nginx's `resolve`, HAProxy's
//! `server-template` and Envoy's `STRICT_DNS` clusters do.
//!
//! A background service per such pool resolves the name every `discover_interval_ms`, asks every
//! address of the answer its name (the `x-replica` header of its health answer), and applies the
//! difference through the pool's runtime membership, the same calls the admin API makes:
//! - an address with a name the pool lacks joins under it, out of rotation until it passes its
//!   health checks; one that does not answer yet is asked again at the next round;
//! - a name that comes back at a new address (an orchestrator's replacement task keeps its slot)
//!   is the same replica moved, not a second one: [`Pools::readdress`]; an address that answers
//!   with another name than its member's (an address given to another task) is that other
//!   replica's, and the member it had leaves;
//! - an address that left the answer drains for `discover_drain_seconds` and goes, as an admin
//!   removal with a drain does, once another replica of the answer is healthy; if it comes back
//!   before it is gone, the removal stops and it stays.
//!
//! A resolution that fails, or answers no address, changes nothing: the pool keeps the members it
//! has, the failure is logged and shows in the pool's status (`discovery.error`), and the
//! dashboard records it as an event. Resolution sits behind [`Resolve`]: the proxy uses
//! [`SystemResolver`], tests give their own answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use statelab_formats::status::DiscoveryView;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::{replica_addr, Discover, HealthConfig};
use crate::health;
use crate::pool::{Pool, Pools};

/// Where a name's addresses come from.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `target` (`HOST:PORT`) resolves to now.
    fn resolve(
        &self,
        target: &str,
    ) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send;
}

/// The system's resolver, through `tokio::net::lookup_host` (`getaddrinfo` on a blocking
/// thread): it reads `/etc/hosts` and `/etc/resolv.conf`, so in a container it asks the engine's
/// embedded DNS, which is what answers `tasks.SERVICE` in a Docker Swarm. It keeps no cache of
/// its own, so every round sees the answer as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    async fn resolve(&self, target: &str) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host(target).await?.collect())
    }
}

/// A discovering pool's last resolution, for its status.
#[derive(Debug, Default)]
pub struct Found {
    state: Mutex<DiscoveryView>,
}

impl Found {
    pub fn new(target: &str, interval: Duration) -> Found {
        Found {
            state: Mutex::new(DiscoveryView {
                target: target.to_string(),
                interval_ms: interval.as_millis() as u64,
                ..DiscoveryView::default()
            }),
        }
    }

    pub fn view(&self) -> DiscoveryView {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut DiscoveryView)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The removals a discovery has under way, by the address that left the answer: each drains in
/// a task of its own, and stops if its address comes back.
#[derive(Debug, Default)]
pub struct Removals {
    tasks: JoinSet<()>,
    by_addr: HashMap<SocketAddr, AbortHandle>,
}

impl Removals {
    /// Waits for every removal under way to end.
    pub async fn settle(&mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.by_addr.clear();
    }

    fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
        self.by_addr.retain(|_, h| !h.is_finished());
    }
}

/// The background service that keeps one pool's members equal to what its name resolves to.
#[derive(Debug)]
pub struct Discovery<R> {
    pools: Arc<Pools>,
    pool: String,
    discover: Discover,
    health: HealthConfig,
    resolver: R,
    /// The health check's request, which also asks an address its name.
    request: Arc<[u8]>,
    /// What was last logged of each address left out or held, so a state is logged once.
    noted: Mutex<HashMap<SocketAddr, String>>,
}

/// Why a member that left the answer stays for now.
const HELD: &str = "left the answer; stays until another replica of the answer is healthy";

impl<R: Resolve> Discovery<R> {
    pub fn new(
        pools: Arc<Pools>,
        pool: &str,
        discover: Discover,
        health: HealthConfig,
        resolver: R,
    ) -> Self {
        Discovery {
            pools,
            pool: pool.to_string(),
            discover,
            request: health::request(&health.path),
            health,
            resolver,
            noted: Mutex::new(HashMap::new()),
        }
    }

    /// One round: resolve, ask each address its name, apply the difference. Removals drain in
    /// `removals`, so the next round does not wait for them.
    pub async fn round(&self, removals: &mut Removals) {
        removals.reap();
        let Some(pool) = self.pools.pool_by_name(&self.pool) else {
            return;
        };
        let Some(found) = pool.discovery() else {
            return;
        };
        let now = self.pools.now_ms();
        let answer = match self.resolver.resolve(&self.discover.target).await {
            Ok(addrs) if addrs.is_empty() => Err("the name resolved to no address".to_string()),
            Ok(addrs) => Ok(addrs),
            Err(e) => Err(e.to_string()),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(why) => {
                let kept = pool.members().replicas.len();
                found.update(|v| {
                    if v.error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(pool = %self.pool, target = %self.discover.target, error = %why, kept, "discovery: resolution failed, keeping the pool as it is");
                    }
                    v.error = Some(why);
                    v.failures += 1;
                });
                return;
            }
        };
        // Each address in the one spelling the pool uses (an IPv4-mapped address as IPv4).
        let mut left_out = BTreeMap::new();
        let mut addrs = BTreeSet::new();
        for a in answer {
            match replica_addr(&a.to_string()) {
                Ok(addr) => {
                    addrs.insert(addr);
                }
                Err(why) => {
                    left_out.insert(a, why);
                }
            }
        }
        for addr in &addrs {
            if let Some(removal) = removals.by_addr.remove(addr) {
                removal.abort();
                tracing::info!(pool = %self.pool, %addr, "discovery: address back in the answer, its removal stopped");
            }
        }
        let names = self.names(&addrs).await;
        self.apply(pool, &addrs, &names, &mut left_out).await;
        let held = self.leave_gone(pool, &addrs, removals);
        self.log_changes(&left_out, &held);
        found.update(|v| {
            if v.error.take().is_some() {
                tracing::info!(pool = %self.pool, target = %self.discover.target, "discovery: the name resolves again");
            }
            v.addresses = addrs.iter().map(ToString::to_string).collect();
            v.left_out = left_out
                .into_iter()
                .map(|(a, why)| (a.to_string(), why))
                .collect();
            v.resolved_ms = Some(now);
        });
    }

    /// Each address's name, asked all at once (an address that does not answer costs the health
    /// check's timeout, not one per address in turn).
    async fn names(
        &self,
        addrs: &BTreeSet<SocketAddr>,
    ) -> BTreeMap<SocketAddr, Result<String, String>> {
        let mut asks = JoinSet::new();
        for addr in addrs {
            let (addr, request, timeout) = (*addr, Arc::clone(&self.request), self.health.timeout);
            asks.spawn(async move { (addr, health::identify(addr, &request, timeout).await) });
        }
        let mut names = BTreeMap::new();
        while let Some(done) = asks.join_next().await {
            if let Ok((addr, name)) = done {
                names.insert(addr, name);
            }
        }
        names
    }

    /// Makes each named address the member of its name: it joins, or its replica moves to it.
    /// A name claimed by the address the pool has it at, or by an earlier address of this
    /// answer, leaves the others out.
    async fn apply(
        &self,
        pool: &Pool,
        addrs: &BTreeSet<SocketAddr>,
        names: &BTreeMap<SocketAddr, Result<String, String>>,
        left_out: &mut BTreeMap<SocketAddr, String>,
    ) {
        let named = |addr: &SocketAddr| names.get(addr).and_then(|n| n.as_ref().ok());
        let mut claimed: BTreeSet<String> = pool
            .members()
            .replicas
            .iter()
            .filter(|r| named(&r.addr) == Some(&r.name))
            .map(|r| r.name.clone())
            .collect();
        for addr in addrs {
            let members = pool.members();
            let here = members.replicas.iter().find(|r| r.addr == *addr);
            let name = match names.get(addr) {
                Some(Ok(name)) => name,
                // A member that does not answer is the health checks' to judge.
                Some(Err(why)) if here.is_none() => {
                    left_out.insert(*addr, format!("no name yet: {why}"));
                    continue;
                }
                _ => continue,
            };
            if let Some(r) = here {
                if r.name == *name {
                    continue;
                }
                // The address serves another replica: the member it had is not there any more.
                tracing::info!(pool = %self.pool, %addr, was = %r.name, answers = %name, "discovery: the address answers with another name");
                if let Err(e) = self.pools.remove_replica(&r.name, None).await {
                    left_out.insert(
                        *addr,
                        format!("answers as {name}, but {} stays: {e}", r.name),
                    );
                    continue;
                }
            }
            if !claimed.insert(name.clone()) {
                left_out.insert(
                    *addr,
                    format!("{name} answers from another address of the answer"),
                );
                continue;
            }
            let moved = pool.members().replicas.iter().any(|r| r.name == *name);
            let result = if moved {
                self.pools
                    .readdress(&self.pool, name, *addr)
                    .map(|_| "moved")
            } else {
                self.pools
                    .add_replica(&self.pool, name, &addr.to_string())
                    .map(|_| "joining")
            };
            match result {
                Ok(how) => {
                    tracing::info!(pool = %self.pool, replica = %name, %addr, how, "discovery: address in the answer")
                }
                Err(e) => {
                    left_out.insert(*addr, format!("{name} cannot join: {e}"));
                }
            }
        }
    }

    /// Logs each address left out, and each member held back from leaving, once per reason:
    /// again only when its reason changes.
    fn log_changes(&self, left_out: &BTreeMap<SocketAddr, String>, held: &[(SocketAddr, String)]) {
        let now: HashMap<SocketAddr, String> = left_out
            .iter()
            .map(|(a, why)| (*a, why.clone()))
            .chain(held.iter().map(|(a, _)| (*a, HELD.to_string())))
            .collect();
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        for (addr, why) in left_out {
            if noted.get(addr) != Some(why) {
                tracing::info!(pool = %self.pool, %addr, reason = %why, "discovery: address left out");
            }
        }
        for (addr, name) in held {
            if noted.get(addr).map(String::as_str) != Some(HELD) {
                tracing::info!(pool = %self.pool, replica = %name, %addr, "discovery: {HELD}");
            }
        }
        *noted = now;
    }

    /// Drains and removes each member whose address left the answer, once another replica of
    /// the answer is healthy: a pool never gives up its last serving replica to a newcomer that
    /// has not passed its checks. Gives back the members held for that reason.
    fn leave_gone(
        &self,
        pool: &Pool,
        addrs: &BTreeSet<SocketAddr>,
        removals: &mut Removals,
    ) -> Vec<(SocketAddr, String)> {
        let mut held = Vec::new();
        let members = pool.members();
        let serving = members
            .replicas
            .iter()
            .filter(|r| addrs.contains(&r.addr) && r.is_healthy() && !r.is_removing())
            .count();
        for r in members.replicas.iter() {
            if addrs.contains(&r.addr) || r.is_removing() || removals.by_addr.contains_key(&r.addr)
            {
                continue;
            }
            if serving == 0 {
                held.push((r.addr, r.name.clone()));
                continue;
            }
            let pools = Arc::clone(&self.pools);
            let (name, addr, drain) = (r.name.clone(), r.addr, self.discover.drain);
            tracing::info!(pool = %self.pool, replica = %name, %addr, drain_s = drain.as_secs(), "discovery: address left the answer, draining");
            let removal = removals.tasks.spawn(async move {
                if let Err(e) = pools.remove_replica(&name, Some(drain)).await {
                    tracing::info!(replica = %name, %addr, error = %e, "discovery: not removed");
                }
            });
            removals.by_addr.insert(addr, removal);
        }
        held
    }
}

#[async_trait]
impl<R: Resolve> BackgroundService for Discovery<R> {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(self.discover.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Dropping it at shutdown ends the drains under way.
        let mut removals = Removals::default();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                () = self.round(&mut removals) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

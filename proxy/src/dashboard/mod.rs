//! The live dashboard: one page on the admin listener (`GET /`, with `/dashboard.css` and
//! `/dashboard.js`) and the per-second history it draws (`GET /admin/dashboard.json`).
//!
//! The request path does nothing for the dashboard but one header lookup (to count
//! `x-statelab-load` traffic). Once a second the `Sampler` reads what the proxy counts anyway
//! (the `requests_total` counters by status and origin, each replica's latency histogram, the
//! in-flight guards, the retry counters) and what the health checker last brought back from each
//! replica's `/health?detail=1`, turns the growth since the previous tick into one `Sample` per
//! replica and one `PoolSample` per pool, and compares states, drain flags, failures,
//! strategies and members with the previous tick to write the event timeline. The page polls
//! the JSON; the history is here, so a new tab shows the last minutes at once and two tabs agree.
//!
//! Bounds: [`WINDOW`] samples per replica and per pool and [`MAX_EVENTS`] events, in
//! [`ring::Ring`]s; a removed replica's ring goes with it. A replica sample is about 140 bytes,
//! so a pool of three replicas holds about 130 KB, and the most the proxy admits (64 replicas in
//! each of three pools) about 8 MB.

pub mod ring;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::core::{Collector, Metric as _};
use serde::Serialize;

use crate::metrics::{Metrics, Origin};
use crate::pool::{Failure, Pools, Replica, ReplicaState};
use crate::strategy::Strategy;
use ring::Ring;

/// Samples kept per replica and per pool: five minutes at one a second.
pub const WINDOW: usize = 300;
/// Events kept for the timeline.
pub const MAX_EVENTS: usize = 256;
/// How often the sampler runs: the dashboard's resolution.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// 401s per second on a pool that make a burst: clients presenting sessions the pool no longer
/// knows, the signature of sessions lost with a replica.
pub const BURST_401_PER_SEC: f32 = 5.0;
/// Quiet ticks after which a burst, a run of retries or a load run counts as over.
const QUIET_TICKS: u32 = 3;

/// The outcome classes a request is counted in, in the order of every `rates` array: the
/// replica's own 2xx, 401, other 4xx and 5xx, then the proxy's own 502, 503 and 504, then
/// everything else (1xx/3xx, the proxy's 400/404/500, a client gone before an answer).
pub const CLASSES: [&str; 8] = [
    "2xx",
    "401",
    "4xx",
    "5xx",
    "proxy-502",
    "proxy-503",
    "proxy-504",
    "other",
];

/// The class (index into [`CLASSES`]) of a counted status and origin.
pub fn class_of(status: &str, origin: &str) -> usize {
    let code: u16 = status.parse().unwrap_or(0);
    if origin == Origin::Proxy.as_str() {
        match code {
            502 => 4,
            503 => 5,
            504 => 6,
            _ => 7,
        }
    } else {
        match code {
            200..=299 => 0,
            401 => 1,
            400..=499 => 2,
            500..=599 => 3,
            _ => 7,
        }
    }
}

/// One second of one replica.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t_ms: u64,
    state: ReplicaState,
    /// Requests per second by [`CLASSES`].
    rates: [f32; 8],
    /// Proxy-side latency (choosing the replica to its response header), from this second's
    /// requests; `None` in a second without any.
    p50_ms: Option<f32>,
    p99_ms: Option<f32>,
    in_flight: u32,
    sessions_held: Option<u64>,
    store_sessions: Option<u64>,
    /// Mean size of the tokens presented, over the last interval that saw any.
    token_bytes: Option<u32>,
    rss_bytes: Option<u64>,
}

/// One second of one pool: what belongs to no replica.
#[derive(Debug, Clone, Copy)]
struct PoolSample {
    t_ms: u64,
    /// Requests per second carrying `x-statelab-load` (a `statelab-load` run).
    load: f32,
    /// Attempts per second repeated on another replica.
    retries: f32,
    /// 401s per second over the pool's replicas.
    r401: f32,
    /// Requests per second answered without a replica (the proxy's 503 when none is left), by
    /// [`CLASSES`].
    unrouted: [f32; 8],
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub t_ms: u64,
    /// `down`, `up`, `joined`, `ejected`, `failure`, `drain`, `enable`, `strategy`, `added`,
    /// `removed`, `retries`, `retries-end`, `burst-401`, `burst-401-end`, `load`, `load-end`.
    pub kind: &'static str,
    pub pool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    pub text: String,
}

/// An event before it gets its number and time.
#[derive(Debug)]
struct NewEvent {
    kind: &'static str,
    pool: String,
    replica: Option<String>,
    text: String,
}

/// The rings, shared by the sampler (writer) and the admin listener (reader).
#[derive(Debug)]
pub struct History {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    events: Ring<Event>,
    pools: BTreeMap<String, Ring<PoolSample>>,
    replicas: BTreeMap<String, Ring<Sample>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            state: Mutex::new(State {
                next_seq: 1,
                events: Ring::new(MAX_EVENTS),
                pools: BTreeMap::new(),
                replicas: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one tick. Replicas absent from `replicas` are no longer members: their rings go.
    fn record(
        &self,
        t_ms: u64,
        pools: Vec<(String, PoolSample)>,
        replicas: Vec<(String, Sample)>,
        events: Vec<NewEvent>,
    ) {
        let mut state = self.lock();
        for (name, sample) in pools {
            state
                .pools
                .entry(name)
                .or_insert_with(|| Ring::new(WINDOW))
                .push(sample);
        }
        let members: Vec<&String> = replicas.iter().map(|(n, _)| n).collect();
        state.replicas.retain(|name, _| members.contains(&name));
        for (name, sample) in replicas {
            state
                .replicas
                .entry(name)
                .or_insert_with(|| Ring::new(WINDOW))
                .push(sample);
        }
        for e in events {
            let seq = state.next_seq;
            state.next_seq += 1;
            state.events.push(Event {
                seq,
                t_ms,
                kind: e.kind,
                pool: e.pool,
                replica: e.replica,
                text: e.text,
            });
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Rounded to hundredths, so the JSON stays short.
fn round2(x: f64) -> f32 {
    ((x * 100.0).round() / 100.0) as f32
}

/// A run of something (401s, retries, load) with a start and an end.
#[derive(Debug, Default)]
struct Episode {
    active: bool,
    started_ms: u64,
    total: f64,
    quiet: u32,
}

#[derive(Debug, PartialEq)]
enum Edge {
    Began,
    Ended { total: f64, secs: u64 },
}

impl Episode {
    /// One tick with `count` occurrences at `rate` per second: begins at `start_at` per second,
    /// ends after [`QUIET_TICKS`] ticks below `quiet_below`.
    fn step(
        &mut self,
        count: f64,
        rate: f64,
        start_at: f64,
        quiet_below: f64,
        t_ms: u64,
    ) -> Option<Edge> {
        if !self.active {
            if rate >= start_at {
                *self = Episode {
                    active: true,
                    started_ms: t_ms,
                    total: count,
                    quiet: 0,
                };
                return Some(Edge::Began);
            }
            return None;
        }
        self.total += count;
        if rate < quiet_below {
            self.quiet += 1;
            if self.quiet >= QUIET_TICKS {
                self.active = false;
                return Some(Edge::Ended {
                    total: self.total,
                    secs: t_ms.saturating_sub(self.started_ms) / 1000,
                });
            }
        } else {
            self.quiet = 0;
        }
        None
    }
}

/// What the sampler remembers of a replica from the previous tick.
#[derive(Debug)]
struct Seen {
    pool: String,
    state: ReplicaState,
    draining: bool,
    failure_at: u64,
    /// Cumulative latency buckets and count, to take differences.
    latency: Vec<u64>,
    latency_count: u64,
    tokens: (u64, u64),
    token_bytes: Option<u32>,
}

/// What the sampler remembers of a pool.
#[derive(Debug, Default)]
struct PoolSeen {
    strategy: Option<Strategy>,
    load: u64,
    retries: u64,
    burst: Episode,
    retrying: Episode,
    loading: Episode,
}

/// Turns cumulative counters into per-second samples and state changes into events.
#[derive(Debug)]
struct Sampler {
    pools: Arc<Pools>,
    metrics: Metrics,
    /// `requests_total` by (pool, replica), summed by class.
    requests: HashMap<(String, String), [u64; 8]>,
    replicas: HashMap<String, Seen>,
    pool_seen: Vec<PoolSeen>,
    last: Option<Instant>,
}

/// `requests_total`, read once, by (pool, replica) and class.
fn cumulative_requests(metrics: &Metrics) -> HashMap<(String, String), [u64; 8]> {
    let mut out: HashMap<(String, String), [u64; 8]> = HashMap::new();
    for family in metrics.requests.collect() {
        for m in family.get_metric() {
            let (mut pool, mut replica, mut status, mut origin) = ("", "", "", "");
            for l in m.get_label() {
                match l.name() {
                    "pool" => pool = l.value(),
                    "replica" => replica = l.value(),
                    "status" => status = l.value(),
                    "origin" => origin = l.value(),
                    _ => {}
                }
            }
            let counts = out
                .entry((pool.to_string(), replica.to_string()))
                .or_default();
            counts[class_of(status, origin)] += m.get_counter().get_value() as u64;
        }
    }
    out
}

/// `retries_total` by pool.
fn cumulative_retries(metrics: &Metrics) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for family in metrics.retries.collect() {
        for m in family.get_metric() {
            if let Some(pool) = m.get_label().iter().find(|l| l.name() == "pool") {
                out.insert(pool.value().to_string(), m.get_counter().get_value() as u64);
            }
        }
    }
    out
}

/// Growth of a cumulative counter set; a counter that went down (a series removed and made
/// again) counts from zero.
fn growth(now: Option<&[u64; 8]>, before: Option<&[u64; 8]>) -> [u64; 8] {
    let mut out = [0; 8];
    if let Some(now) = now {
        for (i, v) in now.iter().enumerate() {
            let b = before.map_or(0, |b| b[i]);
            out[i] = if *v >= b { v - b } else { *v };
        }
    }
    out
}

/// The `q` quantile, in ms, of one interval's observations: `cumulative` counts per upper bound
/// (in seconds), `total` all of them (those past the last bound included). Interpolated within
/// the bucket; past the last bound it is that bound.
fn quantile_ms(bounds: &[f64], cumulative: &[u64], total: u64, q: f64) -> Option<f32> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    let mut lower = 0.0;
    for (bound, &c) in bounds.iter().zip(cumulative) {
        if c as f64 >= rank && c > below {
            let within = (rank - below as f64) / (c - below) as f64;
            return Some(round2(
                (lower + (bound - lower) * within.clamp(0.0, 1.0)) * 1000.0,
            ));
        }
        below = c;
        lower = *bound;
    }
    Some(round2(lower * 1000.0))
}

impl Sampler {
    fn new(pools: Arc<Pools>, metrics: Metrics) -> Self {
        let pool_seen = pools.pools.iter().map(|_| PoolSeen::default()).collect();
        Sampler {
            pools,
            metrics,
            requests: HashMap::new(),
            replicas: HashMap::new(),
            pool_seen,
            last: None,
        }
    }

    /// This interval's latency quantiles of a replica, remembering its cumulative histogram.
    fn latency(r: &Replica, seen: Option<&Seen>) -> (Option<f32>, Option<f32>, Vec<u64>, u64) {
        let metric = r.latency.metric();
        let h = metric.get_histogram();
        let bounds: Vec<f64> = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
        let cumulative: Vec<u64> = h
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        let count = h.get_sample_count();
        let (before, before_count) = match seen {
            Some(s) if s.latency.len() == cumulative.len() && s.latency_count <= count => {
                (s.latency.clone(), s.latency_count)
            }
            _ => (vec![0; cumulative.len()], 0),
        };
        let diff: Vec<u64> = cumulative
            .iter()
            .zip(&before)
            .map(|(c, b)| c.saturating_sub(*b))
            .collect();
        let total = count - before_count;
        (
            quantile_ms(&bounds, &diff, total, 0.5),
            quantile_ms(&bounds, &diff, total, 0.99),
            cumulative,
            count,
        )
    }

    fn tick(&mut self, history: &History) {
        let now = Instant::now();
        let first = self.last.is_none();
        let secs = self
            .last
            .map_or(SAMPLE_INTERVAL, |l| now - l)
            .as_secs_f64()
            .max(0.001);
        self.last = Some(now);
        let t_ms = unix_ms();
        let now_ms = self.pools.now_ms();
        let requests = cumulative_requests(&self.metrics);
        let retries = cumulative_retries(&self.metrics);
        let mut events = Vec::new();
        let mut samples = Vec::new();
        let mut pool_samples = Vec::new();
        let mut current: HashMap<String, Seen> = HashMap::new();
        let event = |kind, pool: &str, replica: Option<&str>, text: String| NewEvent {
            kind,
            pool: pool.to_string(),
            replica: replica.map(str::to_string),
            text,
        };

        for (pool, seen_pool) in self.pools.pools.iter().zip(self.pool_seen.iter_mut()) {
            let members = pool.members();
            let mut r401 = 0u64;
            for r in &members.replicas {
                let key = (pool.name.clone(), r.name.clone());
                let counts = growth(requests.get(&key), self.requests.get(&key));
                r401 += counts[1];
                let seen = self.replicas.remove(&r.name);
                let (p50_ms, p99_ms, latency, latency_count) = Self::latency(r, seen.as_ref());
                let reported = r.reported();
                let tokens = (
                    reported
                        .and_then(|f| f.store.token_bytes_total)
                        .unwrap_or(0),
                    reported.and_then(|f| f.store.tokens_total).unwrap_or(0),
                );
                let before = seen.as_ref().map_or((0, 0), |s| s.tokens);
                let token_bytes = if tokens.1 > before.1 && tokens.0 >= before.0 {
                    Some(((tokens.0 - before.0) / (tokens.1 - before.1)) as u32)
                } else {
                    seen.as_ref().and_then(|s| s.token_bytes)
                };
                let state = r.state(now_ms);
                let draining = r.is_draining();
                let failure = r.last_failure();
                let failure_at = failure.as_ref().map_or(0, |f| f.at_unix_ms);
                match &seen {
                    None if !first => events.push(event(
                        "added",
                        &pool.name,
                        Some(&r.name),
                        format!(
                            "{} added to pool {} at {}, {}",
                            r.name,
                            pool.name,
                            r.addr,
                            state.as_str()
                        ),
                    )),
                    None => {}
                    Some(s) => {
                        let reason = failure
                            .as_ref()
                            .filter(|f| f.at_unix_ms != 0)
                            .map(|f| f.reason.as_str());
                        let changed = state_event(&r.name, s.state, state, reason);
                        let stated = changed.is_some();
                        if let Some((kind, text)) = changed {
                            events.push(event(kind, &pool.name, Some(&r.name), text));
                        }
                        if s.draining != draining {
                            let (kind, text) = if draining {
                                (
                                    "drain",
                                    format!(
                                        "{} draining: no new clients; clients pinned to it stay",
                                        r.name
                                    ),
                                )
                            } else {
                                (
                                    "enable",
                                    format!("{} enabled: takes new clients again", r.name),
                                )
                            };
                            events.push(event(kind, &pool.name, Some(&r.name), text));
                        }
                        if !stated && failure_at != s.failure_at {
                            if let Some(reason) = reason {
                                events.push(event(
                                    "failure",
                                    &pool.name,
                                    Some(&r.name),
                                    format!("{}: {reason}", r.name),
                                ));
                            }
                        }
                    }
                }
                samples.push((
                    r.name.clone(),
                    Sample {
                        t_ms,
                        state,
                        rates: counts.map(|c| round2(c as f64 / secs)),
                        p50_ms,
                        p99_ms,
                        in_flight: u32::try_from(r.in_flight()).unwrap_or(u32::MAX),
                        sessions_held: reported.and_then(|f| f.store.sessions_held),
                        store_sessions: reported.and_then(|f| f.store.store_sessions),
                        token_bytes,
                        rss_bytes: reported.and_then(|f| f.rss_bytes),
                    },
                ));
                current.insert(
                    r.name.clone(),
                    Seen {
                        pool: pool.name.clone(),
                        state,
                        draining,
                        failure_at,
                        latency,
                        latency_count,
                        tokens,
                        token_bytes,
                    },
                );
            }

            let strategy = pool.strategy();
            if let Some(before) = seen_pool.strategy.filter(|s| *s != strategy) {
                events.push(event(
                    "strategy",
                    &pool.name,
                    None,
                    format!("pool {}: strategy {before} → {strategy}", pool.name),
                ));
            }
            seen_pool.strategy = Some(strategy);

            let unrouted_key = (pool.name.clone(), "none".to_string());
            let unrouted = growth(
                requests.get(&unrouted_key),
                self.requests.get(&unrouted_key),
            );
            let load_now = pool.load_requests();
            let load = load_now.saturating_sub(seen_pool.load);
            seen_pool.load = load_now;
            let retries_now = retries.get(&pool.name).copied().unwrap_or(0);
            let retried = retries_now.saturating_sub(seen_pool.retries);
            seen_pool.retries = retries_now;
            let r401_rate = r401 as f64 / secs;
            let retry_rate = retried as f64 / secs;
            let load_rate = load as f64 / secs;
            if !first {
                let burst = f64::from(BURST_401_PER_SEC);
                match seen_pool.burst.step(r401 as f64, r401_rate, burst, burst, t_ms) {
                    Some(Edge::Began) => events.push(event(
                        "burst-401",
                        &pool.name,
                        None,
                        format!(
                            "pool {}: burst of 401s, {r401_rate:.0}/s: clients present sessions the pool no longer knows (lost sessions)",
                            pool.name
                        ),
                    )),
                    Some(Edge::Ended { total, secs }) => events.push(event(
                        "burst-401-end",
                        &pool.name,
                        None,
                        format!("pool {}: 401 burst over: {total:.0} in {secs} s", pool.name),
                    )),
                    None => {}
                }
                match seen_pool
                    .retrying
                    .step(retried as f64, retry_rate, 0.5, 0.5, t_ms)
                {
                    Some(Edge::Began) => events.push(event(
                        "retries",
                        &pool.name,
                        None,
                        format!(
                            "pool {}: retrying on another replica, {retried} in the last second",
                            pool.name
                        ),
                    )),
                    Some(Edge::Ended { total, secs }) => events.push(event(
                        "retries-end",
                        &pool.name,
                        None,
                        format!("pool {}: retries over: {total:.0} in {secs} s", pool.name),
                    )),
                    None => {}
                }
                match seen_pool
                    .loading
                    .step(load as f64, load_rate, 0.5, 0.5, t_ms)
                {
                    Some(Edge::Began) => events.push(event(
                        "load",
                        &pool.name,
                        None,
                        format!(
                            "pool {}: statelab-load traffic, {load_rate:.0} requests/s",
                            pool.name
                        ),
                    )),
                    Some(Edge::Ended { total, secs }) => events.push(event(
                        "load-end",
                        &pool.name,
                        None,
                        format!(
                            "pool {}: statelab-load traffic over: {total:.0} requests in {secs} s",
                            pool.name
                        ),
                    )),
                    None => {}
                }
            }
            pool_samples.push((
                pool.name.clone(),
                PoolSample {
                    t_ms,
                    load: round2(load_rate),
                    retries: round2(retry_rate),
                    r401: round2(r401_rate),
                    unrouted: unrouted.map(|c| round2(c as f64 / secs)),
                },
            ));
        }
        // Whoever is left was a member at the previous tick and is not now.
        let mut gone: Vec<(String, Seen)> = self.replicas.drain().collect();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, seen) in gone {
            events.push(event(
                "removed",
                &seen.pool,
                Some(&name),
                format!("{name} removed from pool {}", seen.pool),
            ));
        }
        self.replicas = current;
        self.requests = requests;
        history.record(t_ms, pool_samples, samples, events);
    }
}

/// The timeline line for a replica's change of state, if it is one worth a line (drain and
/// enable have their own, from the drain flag).
fn state_event(
    name: &str,
    from: ReplicaState,
    to: ReplicaState,
    reason: Option<&str>,
) -> Option<(&'static str, String)> {
    use ReplicaState::*;
    let reason = reason.unwrap_or("no reason recorded");
    Some(match (from, to) {
        (a, b) if a == b => return None,
        (Up, Draining) | (Draining, Up) => return None,
        (_, Down) => ("down", format!("{name} marked down: {reason}")),
        (_, Ejected) => ("ejected", format!("{name} ejected: {reason}")),
        (Joining, _) => (
            "joined",
            format!("{name} joined: passed its health checks, in rotation"),
        ),
        (Down, _) => (
            "up",
            format!("{name} marked up: passes its health checks again"),
        ),
        (Ejected, _) => ("up", format!("{name} back in rotation after its ejection")),
        (_, Joining) => ("joining", format!("{name} joining")),
        (_, _) => return None,
    })
}

/// The background service that runs the `Sampler` every [`SAMPLE_INTERVAL`].
#[derive(Debug)]
pub struct DashboardSampler {
    pools: Arc<Pools>,
    metrics: Metrics,
    history: Arc<History>,
}

impl DashboardSampler {
    /// Samples `pools` and `metrics` into `history` once a second.
    pub fn new(pools: Arc<Pools>, metrics: Metrics, history: Arc<History>) -> Self {
        Self {
            pools,
            metrics,
            history,
        }
    }
}

#[async_trait]
impl BackgroundService for DashboardSampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut sampler = Sampler::new(Arc::clone(&self.pools), self.metrics.clone());
        let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => sampler.tick(&self.history),
                _ = shutdown.changed() => return,
            }
        }
    }
}

// ---- the JSON the page polls ----

#[derive(Serialize)]
struct View<'a> {
    now_ms: u64,
    window: usize,
    interval_ms: u64,
    classes: [&'static str; 8],
    burst_401_per_sec: f32,
    /// The newest event number: the page asks for events after it next time.
    last_seq: u64,
    pools: Vec<PoolOut<'a>>,
    events: Vec<&'a Event>,
}

#[derive(Serialize)]
struct PoolOut<'a> {
    name: &'a str,
    prefix: &'a str,
    strategy: &'static str,
    strategies: Vec<&'static str>,
    available: bool,
    series: PoolColumns,
    replicas: Vec<ReplicaOut>,
}

#[derive(Serialize, Default)]
struct PoolColumns {
    t: Vec<u64>,
    load: Vec<f32>,
    retries: Vec<f32>,
    r401: Vec<f32>,
    unrouted: Vec<[f32; 8]>,
}

#[derive(Serialize)]
struct ReplicaOut {
    name: String,
    address: String,
    state: ReplicaState,
    draining: bool,
    in_flight: i64,
    total_requests: u64,
    last_failure: Option<Failure>,
    series: ReplicaColumns,
}

#[derive(Serialize, Default)]
struct ReplicaColumns {
    t: Vec<u64>,
    state: Vec<ReplicaState>,
    rates: Vec<[f32; 8]>,
    p50_ms: Vec<Option<f32>>,
    p99_ms: Vec<Option<f32>>,
    in_flight: Vec<u32>,
    sessions_held: Vec<Option<u64>>,
    store_sessions: Vec<Option<u64>>,
    token_bytes: Vec<Option<u32>>,
    rss_bytes: Vec<Option<u64>>,
}

/// The query of `GET /admin/dashboard.json`: `since` (ms since the Unix epoch) keeps only newer
/// samples, `after` only events numbered past it; both absent is the whole history.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Since {
    pub since_ms: u64,
    pub after_seq: u64,
}

impl Since {
    pub fn parse(query: Option<&str>) -> Result<Since, String> {
        let mut out = Since::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "since" => &mut out.since_ms,
                "after" => &mut out.after_seq,
                _ => {
                    return Err(format!(
                        "unknown query parameter {key:?}; since=MS, after=SEQ"
                    ))
                }
            };
            *slot = value
                .parse()
                .map_err(|_| format!("{key}={value:?} is not a whole number"))?;
        }
        Ok(out)
    }
}

impl History {
    /// `GET /admin/dashboard.json`: the pools as they are now, with the samples and events the
    /// caller has not seen yet.
    pub fn render(&self, pools: &Pools, since: &Since) -> Vec<u8> {
        let status = pools.status();
        let state = self.lock();
        let view = View {
            now_ms: unix_ms(),
            window: WINDOW,
            interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
            classes: CLASSES,
            burst_401_per_sec: BURST_401_PER_SEC,
            last_seq: state.next_seq - 1,
            pools: status
                .pools
                .iter()
                .map(|p| PoolOut {
                    name: &p.name,
                    prefix: &p.prefix,
                    strategy: p.strategy.as_str(),
                    strategies: Strategy::ALL.iter().map(|s| s.as_str()).collect(),
                    available: p.available,
                    series: pool_columns(state.pools.get(&p.name), since.since_ms),
                    replicas: p
                        .replicas
                        .iter()
                        .map(|r| ReplicaOut {
                            name: r.name.clone(),
                            address: r.address.clone(),
                            state: r.state,
                            draining: r.draining,
                            in_flight: r.in_flight,
                            total_requests: r.total_requests,
                            last_failure: r.last_failure.clone(),
                            series: replica_columns(state.replicas.get(&r.name), since.since_ms),
                        })
                        .collect(),
                })
                .collect(),
            events: state
                .events
                .iter()
                .filter(|e| e.seq > since.after_seq)
                .collect(),
        };
        serde_json::to_vec(&view).unwrap_or_else(|_| b"{}".to_vec())
    }
}

fn pool_columns(ring: Option<&Ring<PoolSample>>, since_ms: u64) -> PoolColumns {
    let mut c = PoolColumns::default();
    for s in ring
        .into_iter()
        .flat_map(Ring::iter)
        .filter(|s| s.t_ms > since_ms)
    {
        c.t.push(s.t_ms);
        c.load.push(s.load);
        c.retries.push(s.retries);
        c.r401.push(s.r401);
        c.unrouted.push(s.unrouted);
    }
    c
}

fn replica_columns(ring: Option<&Ring<Sample>>, since_ms: u64) -> ReplicaColumns {
    let mut c = ReplicaColumns::default();
    for s in ring
        .into_iter()
        .flat_map(Ring::iter)
        .filter(|s| s.t_ms > since_ms)
    {
        c.t.push(s.t_ms);
        c.state.push(s.state);
        c.rates.push(s.rates);
        c.p50_ms.push(s.p50_ms);
        c.p99_ms.push(s.p99_ms);
        c.in_flight.push(s.in_flight);
        c.sessions_held.push(s.sessions_held);
        c.store_sessions.push(s.store_sessions);
        c.token_bytes.push(s.token_bytes);
        c.rss_bytes.push(s.rss_bytes);
    }
    c
}

// ---- the page ----

/// The page and its two files, compiled into the binary: nothing to install, nothing fetched.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../assets/dashboard.html"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard.css"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard.js"),
    ),
];

/// The page's own files by path: content type and body. They hold no data, so they are served
/// without the admin token (a browser cannot send one when it opens a page); the page asks for
/// the token and sends it with every data and control request.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, body)| (*content_type, *body))
}

/// Headers for the page's files: only this origin's scripts, styles and data, and never inside
/// another site's frame (its buttons change the proxy).
pub const PAGE_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_classes_by_origin() {
        assert_eq!(class_of("200", "replica"), 0);
        assert_eq!(class_of("204", "replica"), 0);
        assert_eq!(class_of("401", "replica"), 1);
        assert_eq!(class_of("404", "replica"), 2);
        assert_eq!(class_of("503", "replica"), 3);
        assert_eq!(class_of("502", "proxy"), 4);
        assert_eq!(class_of("503", "proxy"), 5);
        assert_eq!(class_of("504", "proxy"), 6);
        assert_eq!(class_of("404", "proxy"), 7);
        assert_eq!(class_of("000", "proxy"), 7);
        assert_eq!(class_of("garbage", "replica"), 7);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let bounds = [0.001, 0.002, 0.005];
        // 100 observations: 50 under 1 ms, 49 in (1, 2] ms, 1 past 5 ms.
        assert_eq!(quantile_ms(&bounds, &[50, 99, 99], 100, 0.5), Some(1.0));
        let p99 = quantile_ms(&bounds, &[50, 99, 99], 100, 0.99).expect("some");
        assert!((p99 - 2.0).abs() < 0.01, "{p99}");
        assert_eq!(quantile_ms(&bounds, &[0, 0, 0], 4, 0.5), Some(5.0));
        assert_eq!(quantile_ms(&bounds, &[0, 0, 0], 0, 0.5), None);
    }

    #[test]
    fn episodes_begin_at_the_threshold_and_end_after_quiet_ticks() {
        let mut e = Episode::default();
        assert_eq!(e.step(2.0, 2.0, 5.0, 5.0, 0), None);
        assert_eq!(e.step(9.0, 9.0, 5.0, 5.0, 1000), Some(Edge::Began));
        assert_eq!(e.step(4.0, 4.0, 5.0, 5.0, 2000), None);
        assert_eq!(e.step(8.0, 8.0, 5.0, 5.0, 3000), None);
        assert_eq!(e.step(0.0, 0.0, 5.0, 5.0, 4000), None);
        assert_eq!(e.step(0.0, 0.0, 5.0, 5.0, 5000), None);
        assert_eq!(
            e.step(0.0, 0.0, 5.0, 5.0, 6000),
            Some(Edge::Ended {
                total: 21.0,
                secs: 5
            })
        );
    }

    #[test]
    fn the_query_is_since_and_after_only() {
        assert_eq!(Since::parse(None), Ok(Since::default()));
        assert_eq!(
            Since::parse(Some("since=17&after=3")),
            Ok(Since {
                since_ms: 17,
                after_seq: 3
            })
        );
        assert!(Since::parse(Some("since=x")).is_err());
        assert!(Since::parse(Some("limit=1")).is_err());
    }

    #[test]
    fn state_changes_are_told_with_their_reason() {
        use ReplicaState::*;
        let down = state_event("s-1", Up, Down, Some("health check: connect: refused"));
        assert_eq!(
            down,
            Some((
                "down",
                "s-1 marked down: health check: connect: refused".to_string()
            ))
        );
        assert_eq!(state_event("s-1", Up, Draining, None), None);
        assert_eq!(state_event("s-1", Up, Up, None), None);
        assert!(matches!(
            state_event("s-1", Joining, Up, None),
            Some(("joined", _))
        ));
        assert!(matches!(
            state_event("s-1", Down, Up, None),
            Some(("up", _))
        ));
    }

    #[test]
    fn the_page_and_its_files_are_served_with_their_types() {
        assert!(asset("/")
            .is_some_and(|(t, b)| t.starts_with("text/html") && b.contains("dashboard.js")));
        assert!(asset("/dashboard.js").is_some());
        assert!(asset("/dashboard.css").is_some());
        assert!(asset("/admin/status").is_none());
    }
}

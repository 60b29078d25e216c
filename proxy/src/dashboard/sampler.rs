//! The sampler: once a second, the growth of what the proxy counts, turned into samples and
//! events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Metric as _};
use statelab_formats::Reported;

use crate::metrics::Metrics;
use crate::pool::{Pools, Replica, ReplicaState};
use crate::strategy::{BalanceFactor, Strategy};

use super::history::{History, NewEvent, PoolSample, Sample};
use super::{class_of, BURST_401_PER_SEC, QUIET_TICKS, SAMPLE_INTERVAL};

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Rounded to hundredths, so the JSON stays short.
pub(super) fn round2(x: f64) -> f32 {
    ((x * 100.0).round() / 100.0) as f32
}

/// A replica's CPU use, measured between two of its reports: the growth of the CPU time its
/// process used (`cpu_ms`) over the growth of its uptime (`uptime_ms`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Cpu {
    /// The last report's `(cpu_ms, uptime_ms)`: the next one is measured from it.
    mark: Option<(u64, u64)>,
    /// Cores used between the last two reports that differ, to thousandths.
    pub(super) cores: Option<f32>,
}

impl Cpu {
    /// The use as of the replica's latest report. The same report as the mark keeps the last
    /// figure (the health checker has not been back since); an uptime or a CPU time that went
    /// backwards is a restarted process, whose first report is only a new mark; a report
    /// without the two figures (a failed check, a replica that does not report them) has no
    /// figure and keeps the mark.
    pub(super) fn next(self, reported: Option<&Reported>) -> Cpu {
        let Some((cpu_ms, uptime_ms)) = reported.and_then(|f| f.cpu_ms.zip(f.uptime_ms)) else {
            return Cpu {
                mark: self.mark,
                cores: None,
            };
        };
        let cores = match self.mark {
            Some(mark) if mark == (cpu_ms, uptime_ms) => return self,
            Some((cpu_before, uptime_before))
                if uptime_ms > uptime_before && cpu_ms >= cpu_before =>
            {
                let cores = (cpu_ms - cpu_before) as f64 / (uptime_ms - uptime_before) as f64;
                Some(((cores * 1000.0).round() / 1000.0) as f32)
            }
            _ => None,
        };
        Cpu {
            mark: Some((cpu_ms, uptime_ms)),
            cores,
        }
    }
}

/// The CPU budget a replica reports, in cores; `None` when its control group sets none.
pub(super) fn cpu_budget(reported: Option<&Reported>) -> Option<f32> {
    reported
        .and_then(|f| f.cpu_budget_millis)
        .map(|m| m as f32 / 1000.0)
}

/// A run of something (401s, retries, load) with a start and an end.
#[derive(Debug, Default)]
pub(super) struct Episode {
    active: bool,
    started_ms: u64,
    total: f64,
    quiet: u32,
}

#[derive(Debug, PartialEq)]
pub(super) enum Edge {
    Began,
    Ended { total: f64, secs: u64 },
}

impl Episode {
    /// One tick with `count` occurrences at `rate` per second: begins at `start_at` per second,
    /// ends after [`QUIET_TICKS`] ticks below `quiet_below`.
    pub(super) fn step(
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
pub(super) struct Seen {
    pool: String,
    state: ReplicaState,
    draining: bool,
    failure_at: u64,
    /// Cumulative latency buckets and count, to take differences.
    latency: Vec<u64>,
    latency_count: u64,
    tokens: (u64, u64),
    token_bytes: Option<u32>,
    cpu: Cpu,
}

/// What the sampler remembers of a pool.
#[derive(Debug, Default)]
pub(super) struct PoolSeen {
    strategy: Option<Strategy>,
    /// The discovery error at the previous tick, for a pool that follows a DNS name.
    discovery_error: Option<String>,
    /// The balance factor at the previous tick; `None` before the first.
    balance_factor: Option<Option<BalanceFactor>>,
    load: u64,
    retries: u64,
    burst: Episode,
    retrying: Episode,
    loading: Episode,
}

/// Turns cumulative counters into per-second samples and state changes into events.
#[derive(Debug)]
pub(super) struct Sampler {
    pools: Arc<Pools>,
    metrics: Metrics,
    /// `requests_total` by (pool, replica), summed by class.
    requests: HashMap<(String, String), [u64; 8]>,
    replicas: HashMap<String, Seen>,
    pool_seen: Vec<PoolSeen>,
    last: Option<Instant>,
}

/// `requests_total`, read once, by (pool, replica) and class.
pub(super) fn cumulative_requests(metrics: &Metrics) -> HashMap<(String, String), [u64; 8]> {
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
pub(super) fn cumulative_retries(metrics: &Metrics) -> HashMap<String, u64> {
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
pub(super) fn growth(now: Option<&[u64; 8]>, before: Option<&[u64; 8]>) -> [u64; 8] {
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
pub(super) fn quantile_ms(bounds: &[f64], cumulative: &[u64], total: u64, q: f64) -> Option<f32> {
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
    pub(super) fn new(pools: Arc<Pools>, metrics: Metrics) -> Self {
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
    pub(super) fn latency(
        r: &Replica,
        seen: Option<&Seen>,
    ) -> (Option<f32>, Option<f32>, Vec<u64>, u64) {
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

    pub(super) fn tick(&mut self, history: &History) {
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
                let cpu = seen
                    .as_ref()
                    .map_or_else(Cpu::default, |s| s.cpu)
                    .next(reported.as_ref());
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
                        sockets: u32::try_from(r.sockets()).unwrap_or(u32::MAX),
                        sessions_held: reported.and_then(|f| f.store.sessions_held),
                        store_sessions: reported.and_then(|f| f.store.store_sessions),
                        token_bytes,
                        rss_bytes: reported.and_then(|f| f.rss_bytes),
                        cpu_cores: cpu.cores,
                        cpu_budget: cpu_budget(reported.as_ref()),
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
                        cpu,
                    },
                );
            }

            let strategy = pool.strategy();
            let factor = pool.balance_factor();
            if let Some(before) = seen_pool.strategy.filter(|s| *s != strategy) {
                // Against the factor of the previous tick: a change of both in one request
                // reads as the switch, then the factor's own line.
                let factor_before = seen_pool.balance_factor.unwrap_or(factor);
                events.push(event(
                    "strategy",
                    &pool.name,
                    None,
                    strategy_text(&pool.name, before, strategy, factor_before),
                ));
            }
            if let Some(before) = seen_pool.balance_factor.filter(|f| *f != factor) {
                events.push(event(
                    "balance-factor",
                    &pool.name,
                    None,
                    balance_factor_text(&pool.name, before, factor, strategy),
                ));
            }
            seen_pool.strategy = Some(strategy);
            seen_pool.balance_factor = Some(factor);
            if let Some(found) = pool.discovery() {
                let view = found.view();
                if view.error != seen_pool.discovery_error {
                    let text = match &view.error {
                        Some(why) => format!(
                            "{} did not resolve ({why}): pool {} keeps its {} replicas",
                            view.target,
                            pool.name,
                            members.replicas.len()
                        ),
                        None => format!(
                            "{} resolves again: {} address(es)",
                            view.target,
                            view.addresses.len()
                        ),
                    };
                    events.push(event("discovery", &pool.name, None, text));
                    seen_pool.discovery_error = view.error;
                }
            }

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

/// The strategies a balance factor bounds, for the timeline's words: `cookie and ip-hash`.
fn balance_strategies() -> String {
    Strategy::ALL
        .iter()
        .filter(|s| s.takes_balance_factor())
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The timeline line for a pool's strategy switch; with a balance factor set, whether the switch
/// makes it apply or stop applying.
pub(super) fn strategy_text(
    pool: &str,
    from: Strategy,
    to: Strategy,
    factor: Option<BalanceFactor>,
) -> String {
    let mut text = format!("pool {pool}: strategy {from} → {to}");
    if let Some(f) = factor {
        match (from.takes_balance_factor(), to.takes_balance_factor()) {
            (false, true) => text.push_str(&format!("; balance factor {f} applies")),
            (true, false) => text.push_str(&format!(
                "; balance factor {f} no longer applies (it bounds {} only)",
                balance_strategies()
            )),
            _ => {}
        }
    }
    text
}

/// The timeline line for a change of a pool's balance factor; a factor set on a strategy it does
/// not bound is said to have no effect until the pool is switched to one it does.
pub(super) fn balance_factor_text(
    pool: &str,
    from: Option<BalanceFactor>,
    to: Option<BalanceFactor>,
    strategy: Strategy,
) -> String {
    let mut text = format!(
        "pool {pool}: balance factor {} → {}",
        BalanceFactor::word(from),
        BalanceFactor::word(to)
    );
    if to.is_some() && !strategy.takes_balance_factor() {
        text.push_str(&format!(
            " (no effect on {strategy}: it bounds {} only)",
            balance_strategies()
        ));
    }
    text
}

/// The timeline line for a replica's change of state, if it is one worth a line (drain and
/// enable have their own, from the drain flag).
pub(super) fn state_event(
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

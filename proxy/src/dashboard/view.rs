//! `GET /admin/dashboard.json`: the history as the page polls it, column by column.

use serde::Serialize;

use crate::pool::{Failure, Pools, ReplicaState};
use crate::strategy::{BalanceFactor, Strategy};

use super::history::{History, PoolSample, Sample};
use super::ring::Ring;
use super::sampler::unix_ms;
use super::{Event, BURST_401_PER_SEC, CLASSES, SAMPLE_INTERVAL, WINDOW};

#[derive(Serialize)]
struct View<'a> {
    now_ms: u64,
    window: usize,
    interval_ms: u64,
    classes: [&'static str; 8],
    burst_401_per_sec: f32,
    /// The least and the greatest balance factor the admin API accepts, in percent.
    balance_factor_range: [u32; 2],
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
    /// Bounded loads, in percent of the pool's average load; `null` when off. It is kept while
    /// the strategy is one it does not bound, and applies again when the pool is switched back.
    balance_factor: Option<BalanceFactor>,
    /// The strategies the balance factor bounds (`ip-hash`, `cookie`).
    balance_strategies: Vec<&'static str>,
    /// Requests the balance factor sent past their strategy's first choice since the proxy
    /// started.
    bounded_moves: u64,
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
    sockets: u64,
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
    sockets: Vec<u32>,
    sessions_held: Vec<Option<u64>>,
    store_sessions: Vec<Option<u64>>,
    token_bytes: Vec<Option<u32>>,
    rss_bytes: Vec<Option<u64>>,
    cpu_cores: Vec<Option<f32>>,
    cpu_budget: Vec<Option<f32>>,
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
            balance_factor_range: [BalanceFactor::MIN, BalanceFactor::MAX],
            last_seq: state.next_seq - 1,
            pools: status
                .pools
                .iter()
                .map(|p| PoolOut {
                    name: &p.name,
                    prefix: &p.prefix,
                    strategy: p.strategy.as_str(),
                    strategies: Strategy::ALL.iter().map(|s| s.as_str()).collect(),
                    balance_factor: p.balance_factor,
                    balance_strategies: Strategy::ALL
                        .iter()
                        .filter(|s| s.takes_balance_factor())
                        .map(|s| s.as_str())
                        .collect(),
                    bounded_moves: p.bounded_moves,
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
                            sockets: r.sockets,
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
        c.sockets.push(s.sockets);
        c.sessions_held.push(s.sessions_held);
        c.store_sessions.push(s.store_sessions);
        c.token_bytes.push(s.token_bytes);
        c.rss_bytes.push(s.rss_bytes);
        c.cpu_cores.push(s.cpu_cores);
        c.cpu_budget.push(s.cpu_budget);
    }
    c
}

//! The per-second history the sampler writes and the admin listener reads: bounded rings of
//! samples per replica and per pool, and the event timeline.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::pool::ReplicaState;

use super::ring::Ring;
use super::{Event, MAX_EVENTS, WINDOW};

/// One second of one replica.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) t_ms: u64,
    pub(super) state: ReplicaState,
    /// Requests per second by [`CLASSES`].
    pub(super) rates: [f32; 8],
    /// Proxy-side latency (choosing the replica to its response header), from this second's
    /// requests; `None` in a second without any.
    pub(super) p50_ms: Option<f32>,
    pub(super) p99_ms: Option<f32>,
    pub(super) in_flight: u32,
    /// Upgraded connections (WebSockets) open to the replica.
    pub(super) sockets: u32,
    pub(super) sessions_held: Option<u64>,
    pub(super) store_sessions: Option<u64>,
    /// Mean size of the tokens presented, over the last interval that saw any.
    pub(super) token_bytes: Option<u32>,
    pub(super) rss_bytes: Option<u64>,
    /// Cores the replica's process used between the last two reports that differ.
    pub(super) cpu_cores: Option<f32>,
    /// The CPU budget of the replica's control group, in cores; `None` when unbounded.
    pub(super) cpu_budget: Option<f32>,
}

/// One second of one pool: what belongs to no replica.
#[derive(Debug, Clone, Copy)]
pub(super) struct PoolSample {
    pub(super) t_ms: u64,
    /// Requests per second carrying `x-statelab-load` (a `statelab-load` run).
    pub(super) load: f32,
    /// Attempts per second repeated on another replica.
    pub(super) retries: f32,
    /// 401s per second over the pool's replicas.
    pub(super) r401: f32,
    /// Requests per second answered without a replica (the proxy's 503 when none is left), by
    /// [`CLASSES`].
    pub(super) unrouted: [f32; 8],
}

/// An event before it gets its number and time.
#[derive(Debug)]
pub(super) struct NewEvent {
    pub(super) kind: &'static str,
    pub(super) pool: String,
    pub(super) replica: Option<String>,
    pub(super) text: String,
}

/// The rings, shared by the sampler (writer) and the admin listener (reader).
#[derive(Debug)]
pub struct History {
    pub(super) state: Mutex<State>,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) next_seq: u64,
    pub(super) events: Ring<Event>,
    pub(super) pools: BTreeMap<String, Ring<PoolSample>>,
    pub(super) replicas: BTreeMap<String, Ring<Sample>>,
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

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one tick. Replicas absent from `replicas` are no longer members: their rings go.
    pub(super) fn record(
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

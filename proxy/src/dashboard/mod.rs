//! The live dashboard: one page on the admin listener (`GET /`, with `/dashboard.css` and
//! `/dashboard.js`) and the per-second history it draws (`GET /admin/dashboard.json`).
//!
//! The request path does nothing for the dashboard but one header lookup (to count
//! `x-statelab-load` traffic). Once a second the `Sampler` reads what the proxy counts anyway
//! (the `requests_total` counters by status and origin, each replica's latency histogram, the
//! in-flight guards, the retry counters) and what the health checker last brought back from each
//! replica's `/health?detail=1`, turns the growth since the previous tick into one `Sample` per
//! replica and one `PoolSample` per pool, and compares states, drain flags, failures,
//! strategies, balance factors and members with the previous tick to write the event timeline.
//! The page polls the JSON; the history is here, so a new tab shows the last minutes at once and
//! two tabs agree.
//!
//! Bounds: [`WINDOW`] samples per replica and per pool and [`MAX_EVENTS`] events, in
//! [`ring::Ring`]s; a removed replica's ring goes with it. A replica sample is about 140 bytes,
//! so a pool of three replicas holds about 130 KB, and the most the proxy admits (64 replicas in
//! each of three pools) about 8 MB.

mod assets;
mod history;
pub mod ring;
mod sampler;
#[cfg(test)]
mod tests;
mod view;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;

use crate::metrics::{Metrics, Origin};
use crate::pool::Pools;
use sampler::Sampler;

pub use assets::{asset, PAGE_HEADERS};
pub use history::History;
pub use view::Since;

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

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub t_ms: u64,
    /// `down`, `up`, `joined`, `ejected`, `failure`, `drain`, `enable`, `strategy`,
    /// `balance-factor`, `added`, `removed`, `retries`, `retries-end`, `burst-401`,
    /// `burst-401-end`, `load`, `load-end`.
    pub kind: &'static str,
    pub pool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    pub text: String,
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

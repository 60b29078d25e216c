//! Prometheus metrics shared by the routes and the stores.
//!
//! One [`Metrics`] per process owns the registry. The routes record requests and latency here;
//! each store registers the gauge that shows its design's cost (live sessions, token bytes,
//! store errors) on the same registry, so `/metrics` shows everything in one scrape.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The `route` label values: the API's routes, and `other` for everything else. A fixed set
/// keeps label cardinality bounded whatever paths clients send.
pub const ROUTES: [&str; 12] = [
    "/login",
    "/me",
    "/cart",
    "/cart/items",
    "/checkout",
    "/logout",
    "/health",
    "/metrics",
    "/avatar",
    "/avatar/{username}",
    "/chat/{room}",
    "other",
];

/// The metrics every service exports, plus the registry stores add theirs to.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    /// Per route, in [`ROUTES`] order: its latency histogram and its status-200 counter,
    /// resolved once so the common case skips the label lookup (a hash and a lock).
    hot: Vec<(Histogram, IntCounter)>,
}

impl Metrics {
    /// Registers the shared metrics; `kind` and `replica` label the `statelab_replica_info` gauge.
    pub fn new(kind: &str, replica: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "statelab_requests_total",
                "Requests served, by route and status",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "statelab_request_duration_seconds",
                "Time from request head to response, by route",
            )
            .buckets(vec![
                0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?;
        let info = IntGaugeVec::new(
            Opts::new(
                "statelab_replica_info",
                "Which design and replica this process is",
            ),
            &["kind", "replica"],
        )?;
        info.with_label_values(&[kind, replica]).set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let hot = ROUTES
            .iter()
            .map(|r| {
                let ok = requests.with_label_values(&[r, "200"]);
                (latency.with_label_values(&[r]), ok)
            })
            .collect();
        registry.register(Box::new(info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            hot,
        })
    }

    /// Where stores register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one served request on route `ROUTES[route]`.
    pub fn observe(&self, route: usize, status: hyper::StatusCode, seconds: f64) {
        let Some((latency, ok)) = self.hot.get(route) else {
            return;
        };
        latency.observe(seconds);
        if status == hyper::StatusCode::OK {
            ok.inc();
        } else {
            self.requests
                .with_label_values(&[ROUTES[route], status.as_str()])
                .inc();
        }
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// This process's resident memory in bytes, from `/proc/self/statm` (Linux; `None` elsewhere).
/// One small file read, cheap enough for every detailed health check; pages are taken as 4 KiB,
/// the page size of every platform the lab runs on.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(4096)
}

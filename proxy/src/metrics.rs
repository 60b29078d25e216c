//! Prometheus metrics, in a registry owned by the proxy instance (not the process-global one), so
//! the admin endpoint shows exactly this proxy's series.
//!
//! Per-replica series (latency histogram, health gauge, the 200 counter) are resolved once at
//! start-up and kept on the replica, so the request path does no label hashing for them.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Who produced a response's status: the `origin` label of `statelab_proxy_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Replica,
    Proxy,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Replica => "replica",
            Origin::Proxy => "proxy",
        }
    }
}

/// The proxy's metric families.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by pool, replica (`none` when no replica was chosen), status and origin:
    /// `replica` when the status is the replica's own answer, `proxy` when the proxy answered
    /// itself (its 404 for an unknown path, 503 with no replica, 502/504 after a failed attempt),
    /// so a replica's 503 and the proxy's are told apart.
    pub requests: IntCounterVec,
    /// Time from picking a replica to its response header.
    pub upstream_latency: HistogramVec,
    /// Attempts repeated on another replica after a failure.
    pub retries: IntCounterVec,
    /// Requests a pool's balance factor sent past their strategy's first choice.
    pub bounded_moves: IntCounterVec,
    /// 1 when the replica passes its health checks.
    pub replica_healthy: IntGaugeVec,
    /// Client connections open on the public listener (at most `server.max_client_connections`).
    pub client_connections: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "statelab_proxy_requests_total",
                "Requests answered by the proxy.",
            ),
            &["pool", "replica", "status", "origin"],
        )
        .expect("static metric definition");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "statelab_proxy_upstream_latency_seconds",
                "Time from choosing a replica to receiving its response header.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
            &["pool", "replica"],
        )
        .expect("static metric definition");
        let retries = IntCounterVec::new(
            Opts::new(
                "statelab_proxy_retries_total",
                "Upstream attempts retried on another replica.",
            ),
            &["pool"],
        )
        .expect("static metric definition");
        let bounded_moves = IntCounterVec::new(
            Opts::new(
                "statelab_proxy_bounded_moves_total",
                "Requests the pool's balance factor sent past their strategy's first choice.",
            ),
            &["pool"],
        )
        .expect("static metric definition");
        let replica_healthy = IntGaugeVec::new(
            Opts::new(
                "statelab_proxy_replica_healthy",
                "1 when the replica passes its health checks.",
            ),
            &["pool", "replica"],
        )
        .expect("static metric definition");
        let client_connections = IntGauge::new(
            "statelab_proxy_client_connections",
            "Client connections open on the public listener.",
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_latency.clone()),
            Box::new(retries.clone()),
            Box::new(bounded_moves.clone()),
            Box::new(replica_healthy.clone()),
            Box::new(client_connections.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            upstream_latency,
            retries,
            bounded_moves,
            replica_healthy,
            client_connections,
        }
    }

    /// Drops a removed replica's per-replica series (latency, health, its 200 counter), so
    /// `/metrics` lists the pool's members as they are. Its other request counters stay until
    /// the proxy restarts: their label sets are not known here, and they are history, not state.
    pub fn forget_replica(&self, pool: &str, replica: &str) {
        let _ = self.upstream_latency.remove_label_values(&[pool, replica]);
        let _ = self.replica_healthy.remove_label_values(&[pool, replica]);
        let _ =
            self.requests
                .remove_label_values(&[pool, replica, "200", Origin::Replica.as_str()]);
    }

    /// The text exposition format for `GET /metrics`.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8192);
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families; an empty answer is the fallback.
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            buf.clear();
        }
        buf
    }
}

//! The run's record as data: what `run.json` and `report.json` hold, and the terminal tables.
//!
//! Every figure here was measured in the run it describes; a figure that could not be measured
//! (no kill, no pre-kill band, memory not sampled) is absent (`null`), never a default.
//! The JSON field names are a format other tools read: README.md documents them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stats::{ErrorCounts, Recovery, SecondStats};

/// One run of the generator against one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// `stateful`, `stateless` or `externalized`.
    pub service: String,
    /// The proxy's strategy for the pool during the run (`cookie`, `ip-hash`, `round-robin`), or
    /// `direct` when the generator talked to a replica itself; `null` when not known.
    pub strategy: Option<String>,
    /// A short name for the run, e.g. `stateful/cookie`.
    pub label: String,
    pub target: String,
    /// `shop` (login, cart adds, cart, checkout, logout) or `raw` (GET one path).
    pub workflow: String,
    /// `open` (sessions arrive at `rate` per second) or `closed` (`users` loop).
    pub model: String,
    pub rate: Option<f64>,
    pub users: Option<u64>,
    pub adds: Option<u32>,
    pub think_ms: Option<u64>,
    /// Distinct client source addresses used.
    pub sources: u64,
    pub duration_s: f64,
    pub started_unix_ms: u64,
    /// Stopped early by Ctrl-C: the figures cover the part that ran.
    pub interrupted: bool,
    /// The replica killed mid-run, if any.
    pub killed: Option<String>,
    pub requests: u64,
    pub ok_requests: u64,
    pub failed_requests: u64,
    pub errors: ErrorCounts,
    /// Sessions found lost: a 401 after a successful login, or a cart that differed.
    pub session_losses: u64,
    pub losses_unauthorized: u64,
    pub losses_cart_mismatch: u64,
    pub sessions_started: u64,
    pub sessions_completed: u64,
    /// Open model: arrivals that started more than `late_threshold_ms` after their time.
    pub starts_late: u64,
    /// Open model: arrivals not started because `max_sessions` were already running.
    pub starts_dropped: u64,
    pub max_start_lag_ms: f64,
    /// Requests after think time sent more than `late_threshold_ms` after the think time ended:
    /// the generator itself was behind (their latency starts when they could be sent).
    pub steps_late: u64,
    pub max_step_lag_ms: f64,
    /// 2xx answers per second over the run.
    pub throughput_rps: f64,
    /// Latency from the intended send time (coordinated-omission corrected), all answered
    /// requests and timeouts.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Service time: from the actual send.
    pub service_p50_ms: f64,
    pub service_p99_ms: f64,
    pub percentiles: Vec<PercentileRow>,
    /// Requests answered by each replica (`x-replica`) over the whole run.
    pub per_replica: BTreeMap<String, u64>,
    /// Resident memory of each of the service's replicas after the run (`scripts/lab mem`);
    /// empty when not sampled.
    pub memory_bytes: BTreeMap<String, u64>,
    pub failover: Option<Failover>,
    /// The scheduled fault's steps as they happened.
    pub events: Vec<Event>,
    /// One entry per second.
    pub timeline: Vec<SecondStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileRow {
    pub percentile: f64,
    pub latency_ms: f64,
    pub service_ms: f64,
}

/// What the kill did to the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    pub replica: String,
    /// When the kill command was started, seconds since the run's start.
    pub kill_at_s: f64,
    /// How long the kill command took (it returns once the process is gone).
    pub kill_took_s: f64,
    pub restart_at_s: Option<f64>,
    /// Seconds from the kill to the last answer the killed replica gave; 0 when it gave none
    /// after the kill.
    pub last_answer_after_kill_s: f64,
    /// Failed requests from the kill's second until the run was back inside its band (or the end
    /// of the run).
    pub failed_during_failover: u64,
    /// Sessions lost from the kill's second on.
    pub sessions_lost_after_kill: u64,
    /// Pre-kill band and the time back inside it; `null` when fewer than two whole seconds
    /// preceded the kill.
    pub recovery: Option<Recovery>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_s: f64,
    /// `kill` or `restart`.
    pub what: String,
    pub replica: String,
    /// How long the lab command took (`kill` returns once the process is gone, `start` once the
    /// replica is healthy).
    pub took_s: f64,
    pub ok: bool,
    /// The lab command's last output line (why it failed, if it did).
    pub detail: String,
}

/// `report.json` of `scripts/compare` and `statelab-load report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub title: String,
    pub generated_unix_ms: u64,
    pub runs: Vec<RunReport>,
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

pub fn read_run(path: &Path) -> anyhow::Result<RunReport> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a statelab-load run.json: {e}", path.display()))
}

/// "a 40% · b 31% · c 29%" — the share each replica served.
pub fn spread(per_replica: &BTreeMap<String, u64>) -> String {
    let total: u64 = per_replica.values().sum();
    if total == 0 {
        return "-".into();
    }
    per_replica
        .iter()
        .map(|(name, n)| format!("{name} {:.0}%", *n as f64 * 100.0 / total as f64))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{s:.1} s"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The terminal summary of one run.
pub fn summary(r: &RunReport) -> String {
    let mut out = String::new();
    let load = match (r.rate, r.users) {
        (Some(rate), _) => format!("open, {rate} arrivals/s"),
        (_, Some(users)) => format!("closed, {users} users"),
        _ => r.model.clone(),
    };
    let _ = writeln!(
        out,
        "{} — {} workflow, {load}, {:.1} s{}",
        r.label,
        r.workflow,
        r.duration_s,
        if r.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(
        out,
        "  requests {:>9}   ok {:>9}   failed {:>7}  (connect {}, timeout {}, io {}, 4xx {}, 5xx {})",
        r.requests,
        r.ok_requests,
        r.failed_requests,
        r.errors.connect,
        r.errors.timeout,
        r.errors.io,
        r.errors.status_4xx,
        r.errors.status_5xx
    );
    let _ = writeln!(
        out,
        "  sessions started {}  completed {}  lost {} (401: {}, wrong cart: {})",
        r.sessions_started,
        r.sessions_completed,
        r.session_losses,
        r.losses_unauthorized,
        r.losses_cart_mismatch
    );
    if r.model == "open" {
        let _ = writeln!(
            out,
            "  starts late {}  dropped {}  max start lag {:.1} ms",
            r.starts_late, r.starts_dropped, r.max_start_lag_ms
        );
    }
    if r.workflow == "shop" {
        let _ = writeln!(
            out,
            "  steps sent late after think time {}  max lag {:.1} ms",
            r.steps_late, r.max_step_lag_ms
        );
    }
    let _ = writeln!(
        out,
        "  throughput {:.0} ok/s   latency p50 {:.2} ms  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}   (service time p50 {:.2}, p99 {:.2})",
        r.throughput_rps,
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.p999_ms,
        r.max_ms,
        r.service_p50_ms,
        r.service_p99_ms
    );
    let _ = writeln!(out, "  per replica: {}", spread(&r.per_replica));
    if !r.memory_bytes.is_empty() {
        let mem: Vec<String> = r
            .memory_bytes
            .iter()
            .map(|(n, b)| format!("{n} {:.1} MiB", mib(*b)))
            .collect();
        let _ = writeln!(out, "  memory (RSS after the run): {}", mem.join(" · "));
    }
    for e in &r.events {
        let _ = writeln!(
            out,
            "  {:>6.2} s  {} {}: {}{}",
            e.at_s,
            e.what,
            e.replica,
            if e.ok { "done" } else { "FAILED" },
            if e.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.detail)
            }
        );
    }
    if let Some(f) = &r.failover {
        let _ = writeln!(
            out,
            "  failover: {} killed at {:.2} s; its last answer {:.2} s after; {} failed requests and {} sessions lost after the kill",
            f.replica,
            f.kill_at_s,
            f.last_answer_after_kill_s,
            f.failed_during_failover,
            f.sessions_lost_after_kill
        );
        match &f.recovery {
            Some(rec) => {
                let _ = writeln!(
                    out,
                    "  recovery: pre-kill band {:.0}-{:.0} ok/s, p99 <= {:.2} ms, <= {} failed/s; back inside after {}",
                    rec.throughput_low,
                    rec.throughput_high,
                    rec.p99_high_ms,
                    rec.failed_high,
                    rec.recovered_after_s
                        .map_or_else(|| "never (within the run)".into(), |s| format!("{s:.1} s"))
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  recovery: no pre-kill band (kill within the first 3 s)"
                );
            }
        }
    }
    out
}

/// The terminal comparison table of several runs.
pub fn comparison_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<16} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9}  spread",
        "run",
        "killed",
        "requests",
        "failed",
        "lost",
        "p50 ms",
        "p99 ms",
        "ok/s",
        "recovered",
        "last hit",
        "mem MiB"
    );
    for r in runs {
        let (recovered, last_hit) = match &r.failover {
            Some(f) => (
                opt_s(f.recovery.as_ref().and_then(|x| x.recovered_after_s)),
                format!("{:.2} s", f.last_answer_after_kill_s),
            ),
            None => ("-".into(), "-".into()),
        };
        let mem = if r.memory_bytes.is_empty() {
            "-".into()
        } else {
            format!(
                "{:.1}",
                mib(r.memory_bytes.values().sum::<u64>()) / r.memory_bytes.len() as f64
            )
        };
        let killed = r.killed.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{:<26} {:<16} {:>8} {:>7} {:>7} {:>8.2} {:>8.2} {:>8.0} {:>10} {:>9} {:>9}  {}",
            r.label,
            killed,
            r.requests,
            r.failed_requests,
            r.session_losses,
            r.p50_ms,
            r.p99_ms,
            r.throughput_rps,
            recovered,
            last_hit,
            mem,
            spread(&r.per_replica)
        );
    }
    out
}

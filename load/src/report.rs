//! The run's record as data: what `run.json` and `report.json` hold, and the terminal tables.
//!
//! Every figure here was measured in the run it describes; a figure that could not be measured
//! (no kill, no pre-kill band, memory not sampled) is absent (`null`), never a default.
//! The JSON field names are a format other tools read: docs/load.md documents them ("Report format").

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use statelab_formats::Design;

use crate::config::{Model, ModelKind, Routing, RunConfig, Work, WorkflowKind};
use crate::fault::{parse_killed, Fault, PrimaryWatch};
pub use crate::fault::{Event, FaultStep, NewPrimary};
use crate::scaling::ScaleReport;
use crate::stats::{
    self, percentile_ms, Acknowledged, ErrorCounts, FailureWindow, Measured, OkLatency, Recovery,
    SecondStats,
};

/// The percentiles of the report's table.
const PERCENTILES: [f64; 8] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];

/// One run of the generator against one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The design under load: `stateful`, `stateless` or `externalized`.
    pub service: Design,
    /// The proxy's strategy for the pool during the run (`cookie`, `ip-hash`, `round-robin`), or
    /// `direct` when the generator talked to a replica itself; `null` when not known.
    pub strategy: Option<Routing>,
    /// A short name for the run, e.g. `stateful/cookie`.
    pub label: String,
    pub target: String,
    /// `shop` (login, cart adds, cart, checkout, logout) or `raw` (GET one path).
    pub workflow: WorkflowKind,
    /// `open` (sessions arrive at `rate` per second) or `closed` (`users` loop).
    pub model: ModelKind,
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
    /// Cart adds answered 200: writes the server confirmed. `null` in a record from before they
    /// were counted (as are the two below).
    #[serde(default)]
    pub acknowledged_adds: Option<u64>,
    /// Of those, adds that a later cart (a later add's answer, `GET /cart`, the checkout) no
    /// longer showed: confirmed writes the design lost, which a session count alone does not
    /// tell apart from sessions merely cut off.
    #[serde(default)]
    pub acknowledged_adds_lost: Option<u64>,
    /// Logins answered 200 whose session was later answered 401 (the sessions of
    /// `losses_unauthorized`, counted as the confirmed write they lost).
    #[serde(default)]
    pub acknowledged_logins_lost: Option<u64>,
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
    /// The scheduled fault's and scale steps as they happened.
    pub events: Vec<Event>,
    /// What each scale event did; empty without `--scale`.
    #[serde(default)]
    pub scaling: Vec<ScaleReport>,
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
    /// The node the kill's output named (`killed NAME`): the lab resolves an alias such as
    /// `redis-primary` to a node, and `replica` keeps the name asked for. `null` when the output
    /// named none.
    #[serde(default)]
    pub killed_node: Option<String>,
    /// The Redis primaries just before the kill (`LAB primaries`); `null` for a kill of no Redis
    /// node, or when the lab could not tell.
    #[serde(default)]
    pub primaries_before_kill: Option<Vec<String>>,
    /// The first primary not among `primaries_before_kill`, and when it was first seen; `null`
    /// when none appeared within the run (or there was no such list to compare with).
    #[serde(default)]
    pub new_primary: Option<NewPrimary>,
    /// The failed requests from the kill on, to the millisecond; `null` in a record from before
    /// it was measured.
    #[serde(default)]
    pub failure_window: Option<FailureWindow>,
    /// Cart adds answered 200 from the kill's second on, and the losses found from then on of
    /// acknowledged adds and logins (see the run's fields of the same names); `null` in a record
    /// from before they were counted.
    #[serde(default)]
    pub acknowledged_adds: Option<u64>,
    #[serde(default)]
    pub acknowledged_adds_lost: Option<u64>,
    #[serde(default)]
    pub acknowledged_logins_lost: Option<u64>,
    /// Latency of the 2xx answers completed in the whole seconds before the kill's second (the
    /// per-second histograms merged, so the boundary is at second resolution); `null` when there
    /// were none.
    #[serde(default)]
    pub ok_latency_before_kill: Option<OkLatency>,
    /// Latency of the 2xx answers completed from the second after the last failure's (or, with
    /// no failure after the kill, after the kill's second) to the end of the run: the service
    /// once the failover was over, at the same second resolution; `null` when there were none.
    #[serde(default)]
    pub ok_latency_after_failures: Option<OkLatency>,
}

/// `report.json` of `scripts/compare` and `statelab-load report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub title: String,
    pub generated_unix_ms: u64,
    pub runs: Vec<RunReport>,
}

/// The generator's own account of the sessions it started: whether it kept to its schedule.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct SessionCounts {
    pub started: u64,
    pub completed: u64,
    /// Open model: arrivals started late / not started (see [`RunReport`]).
    pub starts_late: u64,
    pub starts_dropped: u64,
    pub max_start_lag_ms: f64,
}

/// Everything a run produced, before it is summed up: the record of the requests, the
/// generator's counters, the fault's events and what the lab said afterwards. Kept apart from
/// [`RunReport`] so that running the load and describing it are two functions.
#[derive(Debug)]
pub struct RunOutcome {
    pub started_unix_ms: u64,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// One entry per whole second that ran.
    pub measured: Measured,
    pub sessions: SessionCounts,
    pub memory_bytes: BTreeMap<String, u64>,
    pub events: Vec<Event>,
    /// What the lab said about its Redis primaries around a Redis kill.
    pub primaries: Option<PrimaryWatch>,
}

impl RunReport {
    /// The report of the run `cfg` asked for, from what it produced. Pure: every figure comes
    /// from `cfg` and `outcome`.
    pub fn build(cfg: &RunConfig, outcome: RunOutcome) -> RunReport {
        let RunOutcome {
            started_unix_ms,
            interrupted,
            measured,
            sessions,
            memory_bytes,
            events,
            primaries,
        } = outcome;
        let requests: u64 = measured.series.iter().map(|s| s.requests).sum();
        let ok: u64 = measured.series.iter().map(|s| s.ok).sum();
        let failed: u64 = measured.series.iter().map(|s| s.failed).sum();
        let mut errors = ErrorCounts::default();
        let mut per_replica = BTreeMap::new();
        for s in &measured.series {
            errors.merge(&s.errors);
            for (name, n) in &s.per_replica {
                *per_replica.entry(name.clone()).or_insert(0) += n;
            }
        }
        // The series has one entry per whole second measured, at least one (the run's length
        // as the figures see it, also after Ctrl-C).
        let measured_s = measured.series.len().max(1) as f64;
        let failover = cfg
            .fault
            .as_ref()
            .and_then(|fault| failover(fault, &events, &measured, primaries.as_ref()));
        let acknowledged = acknowledged(&measured, 0);
        let percentiles = PERCENTILES
            .into_iter()
            .map(|p| PercentileRow {
                percentile: p,
                latency_ms: percentile_ms(&measured.latency, p),
                service_ms: percentile_ms(&measured.service, p),
            })
            .collect();
        let (rate, users) = match cfg.model {
            Model::Open { rate, .. } => (Some(rate), None),
            Model::Closed { users } => (None, Some(users)),
        };
        let (adds, think_ms) = match &cfg.work {
            Work::Shop(w) => (Some(w.adds), Some(w.think.as_millis() as u64)),
            Work::Raw { .. } => (None, None),
        };
        let latency = |p| percentile_ms(&measured.latency, p);
        let scaling = crate::scaling::build(&events, &measured);
        RunReport {
            service: cfg.service,
            strategy: cfg.strategy,
            label: cfg.label.clone(),
            target: cfg.target_url.clone(),
            workflow: cfg.work.kind(),
            model: cfg.model.kind(),
            rate,
            users,
            adds,
            think_ms,
            sources: cfg.sources.len().max(1) as u64,
            duration_s: measured_s,
            started_unix_ms,
            interrupted,
            killed: cfg.fault.as_ref().map(|f| f.replica.clone()),
            requests,
            ok_requests: ok,
            failed_requests: failed,
            errors,
            session_losses: measured.loss_unauthorized + measured.loss_cart,
            losses_unauthorized: measured.loss_unauthorized,
            losses_cart_mismatch: measured.loss_cart,
            acknowledged_adds: Some(acknowledged.adds),
            acknowledged_adds_lost: Some(acknowledged.adds_lost),
            acknowledged_logins_lost: Some(acknowledged.logins_lost),
            sessions_started: sessions.started,
            sessions_completed: sessions.completed,
            starts_late: sessions.starts_late,
            starts_dropped: sessions.starts_dropped,
            max_start_lag_ms: sessions.max_start_lag_ms,
            steps_late: measured.steps_late,
            max_step_lag_ms: measured.max_step_lag_ms,
            throughput_rps: ok as f64 / measured_s,
            p50_ms: latency(50.0),
            p90_ms: latency(90.0),
            p99_ms: latency(99.0),
            p999_ms: latency(99.9),
            max_ms: latency(100.0),
            service_p50_ms: percentile_ms(&measured.service, 50.0),
            service_p99_ms: percentile_ms(&measured.service, 99.0),
            percentiles,
            per_replica,
            memory_bytes,
            failover,
            events,
            scaling,
            timeline: measured.series,
        }
    }
}

/// The acknowledged writes and their losses counted from second `from` on.
fn acknowledged(m: &Measured, from: usize) -> Acknowledged {
    let mut sum = Acknowledged::default();
    for s in m.detail.iter().skip(from) {
        sum.merge(&s.acknowledged);
    }
    sum
}

/// Failover figures from the kill event (its actual time), the per-second record and what the
/// lab said about its primaries.
fn failover(
    fault: &Fault,
    events: &[Event],
    m: &Measured,
    primaries: Option<&PrimaryWatch>,
) -> Option<Failover> {
    // Without a kill that happened there is no failover to describe.
    let kill = events.iter().find(|e| e.what == FaultStep::Kill && e.ok)?;
    let restart_at_s = events
        .iter()
        .find(|e| e.what == FaultStep::Restart && e.ok)
        .map(|e| e.at_s);
    let recovery = stats::recovery(&m.series, kill.at_s);
    let kill_second = (kill.at_s.floor() as usize).min(m.series.len());
    // From the kill's second until the run was back in its band (failures included in the
    // band), or to the end if it never was or there was no band.
    let until = recovery
        .as_ref()
        .and_then(|r| r.recovered_at_second)
        .map_or(m.series.len(), |at| at as usize)
        .max(kill_second);
    let after_kill = &m.series[kill_second..];
    let failed_during_failover = m.series[kill_second..until].iter().map(|s| s.failed).sum();
    let last_answer_after_kill_s = m
        .last_seen
        .get(&fault.replica)
        .map_or(0.0, |seen| (seen - kill.at_s).max(0.0));
    let window = stats::failure_window(&m.moments, kill.at_s);
    // The seconds after the failures: from the one after the last failure's, or after the
    // kill's when nothing failed.
    let after_from = window
        .last_failed_s
        .map_or(kill_second, |s| s.floor() as usize)
        + 1;
    let acknowledged = acknowledged(m, kill_second);
    Some(Failover {
        replica: fault.replica.clone(),
        kill_at_s: kill.at_s,
        kill_took_s: kill.took_s,
        restart_at_s,
        last_answer_after_kill_s,
        failed_during_failover,
        sessions_lost_after_kill: after_kill.iter().map(|s| s.session_losses).sum(),
        recovery,
        killed_node: parse_killed(&kill.detail).map(str::to_owned),
        primaries_before_kill: primaries
            .and_then(|p| p.before.as_ref())
            .map(|names| names.iter().cloned().collect()),
        new_primary: primaries.and_then(|p| p.new_primary.clone()),
        failure_window: Some(window),
        acknowledged_adds: Some(acknowledged.adds),
        acknowledged_adds_lost: Some(acknowledged.adds_lost),
        acknowledged_logins_lost: Some(acknowledged.logins_lost),
        ok_latency_before_kill: stats::ok_latency(&m.detail, 0, kill_second),
        ok_latency_after_failures: stats::ok_latency(&m.detail, after_from, m.detail.len()),
    })
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
        _ => r.model.to_string(),
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
    if let Some(text) = acknowledged_text(
        r.acknowledged_adds,
        r.acknowledged_adds_lost,
        r.acknowledged_logins_lost,
    ) {
        let _ = writeln!(out, "  acknowledged writes: {text}");
    }
    if r.model == ModelKind::Open {
        let _ = writeln!(
            out,
            "  starts late {}  dropped {}  max start lag {:.1} ms",
            r.starts_late, r.starts_dropped, r.max_start_lag_ms
        );
    }
    if r.workflow == WorkflowKind::Shop {
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
    for sc in &r.scaling {
        let _ = writeln!(out, "  {}", crate::scaling::describe(sc));
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
        failover_summary(&mut out, f);
    }
    out
}

/// "12 cart adds answered 200, 2 lost; 1 login answered 200, lost (401)"; `None` for a record
/// from before these were counted.
fn acknowledged_text(adds: Option<u64>, lost: Option<u64>, logins: Option<u64>) -> Option<String> {
    let (adds, lost, logins) = (adds?, lost?, logins?);
    Some(format!(
        "{adds} cart adds answered 200, {lost} of them lost later; {logins} logins answered 200, lost later (401)"
    ))
}

fn opt_at(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{s:.3} s"))
}

/// The failover lines a Redis kill and the failure window add to the summary.
fn failover_summary(out: &mut String, f: &Failover) {
    if f.killed_node.is_some() || f.primaries_before_kill.is_some() {
        let _ = writeln!(
            out,
            "  killed node: {}; primaries before the kill: {}; new primary: {}",
            f.killed_node.as_deref().unwrap_or("-"),
            f.primaries_before_kill
                .as_ref()
                .map_or_else(|| "unknown".into(), |p| p.join(", ")),
            new_primary_text(f),
        );
    }
    if let Some(w) = &f.failure_window {
        let _ = writeln!(
            out,
            "  failure window: first failure {}, first success after it {}, last failure {}; {} failed from the kill on",
            opt_at(w.first_failed_s),
            opt_at(w.first_ok_after_s),
            opt_at(w.last_failed_s),
            w.failed
        );
    }
    if let Some(text) = acknowledged_text(
        f.acknowledged_adds,
        f.acknowledged_adds_lost,
        f.acknowledged_logins_lost,
    ) {
        let _ = writeln!(out, "  from the kill's second on: {text}");
    }
    if f.ok_latency_before_kill.is_some() || f.ok_latency_after_failures.is_some() {
        let _ = writeln!(
            out,
            "  2xx latency before the kill {}; after the failures {}",
            ok_latency_text(f.ok_latency_before_kill.as_ref()),
            ok_latency_text(f.ok_latency_after_failures.as_ref())
        );
    }
}

/// "redis-2 at 13.42 s (3.40 s after the kill)", "none within the run", or "-" when not watched.
pub fn new_primary_text(f: &Failover) -> String {
    match (&f.new_primary, &f.primaries_before_kill) {
        (Some(p), _) => format!(
            "{} at {:.2} s ({:.2} s after the kill)",
            p.name,
            p.at_s,
            p.at_s - f.kill_at_s
        ),
        (None, Some(_)) => "none within the run".into(),
        (None, None) => "-".into(),
    }
}

/// The same, short, for a table: "redis-2 +3.4 s", "none" or "-".
fn new_primary_cell(f: &Failover) -> String {
    match (&f.new_primary, &f.primaries_before_kill) {
        (Some(p), _) => format!("{} +{:.1} s", p.name, p.at_s - f.kill_at_s),
        (None, Some(_)) => "none".into(),
        (None, None) => "-".into(),
    }
}

fn ok_latency_text(l: Option<&OkLatency>) -> String {
    l.map_or_else(
        || "-".into(),
        |l| {
            format!(
                "({}-{} s, {} ok) p50 {:.2} ms p99 {:.2} ms",
                l.from_s, l.to_s, l.ok_requests, l.p50_ms, l.p99_ms
            )
        },
    )
}

/// The terminal comparison table of several runs.
pub fn comparison_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<16} {:>8} {:>7} {:>7} {:>10} {:>8} {:>8} {:>8} {:>10} {:>9} {:>18} {:>9}  spread",
        "run",
        "killed",
        "requests",
        "failed",
        "lost",
        "acked lost",
        "p50 ms",
        "p99 ms",
        "ok/s",
        "recovered",
        "last hit",
        "new primary",
        "mem MiB"
    );
    for r in runs {
        let (recovered, last_hit, new_primary) = match &r.failover {
            Some(f) => (
                opt_s(f.recovery.as_ref().and_then(|x| x.recovered_after_s)),
                format!("{:.2} s", f.last_answer_after_kill_s),
                new_primary_cell(f),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        // Adds and logins the server confirmed, then lost.
        let acked_lost = match (r.acknowledged_adds_lost, r.acknowledged_logins_lost) {
            (Some(adds), Some(logins)) => (adds + logins).to_string(),
            _ => "-".into(),
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
            "{:<26} {:<16} {:>8} {:>7} {:>7} {:>10} {:>8.2} {:>8.2} {:>8.0} {:>10} {:>9} {:>18} {:>9}  {}",
            r.label,
            killed,
            r.requests,
            r.failed_requests,
            r.session_losses,
            acked_lost,
            r.p50_ms,
            r.p99_ms,
            r.throughput_rps,
            recovered,
            last_hit,
            new_primary,
            mem,
            spread(&r.per_replica)
        );
    }
    out
}

/// The terminal table of every scale event of several runs: what each moved, lost and how long
/// the load took to even out.
pub fn scaling_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:<24} {:>7} {:>9} {:>8} {:>7} {:>6} {:>8} {:>11}  shares after",
        "run", "scale", "took s", "1st req s", "carried", "moved", "lost", "failed", "even after"
    );
    for r in runs {
        for sc in &r.scaling {
            let event = format!(
                "{}={}{}",
                sc.pool,
                sc.replicas,
                if sc.removal.is_empty() {
                    String::new()
                } else {
                    format!(" {}", sc.removal)
                }
            );
            let first = sc
                .joined
                .iter()
                .map(|j| j.at_s - sc.asked_at_s)
                .reduce(f64::min)
                .map_or_else(|| "-".into(), |s| format!("{s:.2}"));
            let shares: Vec<String> = sc
                .share_after
                .iter()
                .map(|(n, v)| format!("{n} {:.0}%", v * 100.0))
                .collect();
            let _ = writeln!(
                out,
                "{:<30} {:<24} {:>7.2} {:>9} {:>8} {:>7} {:>6} {:>8} {:>11}  {}",
                r.label,
                event,
                sc.took_s,
                first,
                sc.sessions.carried,
                sc.sessions.moved,
                sc.sessions.moved_lost,
                sc.failed_in_window,
                sc.even_after_s
                    .map_or_else(|| "never".into(), |s| format!("{s:.1} s")),
                shares.join(" · ")
            );
        }
    }
    out
}

/// Reports to test against: the same run shape the HTML tests draw and the JSON tests write.
#[cfg(test)]
pub(crate) mod fixture {
    use statelab_formats::Strategy;

    use super::*;

    pub fn second(t: u64, ok: u64, failed: u64, p99: f64) -> SecondStats {
        let per_replica = BTreeMap::from([
            ("r-1".to_string(), ok / 2),
            ("r-2".to_string(), ok - ok / 2),
        ]);
        SecondStats {
            t,
            requests: ok + failed,
            ok,
            failed,
            errors: ErrorCounts {
                status_5xx: failed,
                ..ErrorCounts::default()
            },
            session_losses: u64::from(failed > 0),
            p50_ms: p99 / 3.0,
            p99_ms: p99,
            per_replica,
        }
    }

    pub fn run(label: &str, with_kill: bool) -> RunReport {
        let timeline: Vec<_> = (0..12)
            .map(|t| {
                if (5..7).contains(&t) {
                    second(t, 40, 30, 250.0)
                } else {
                    second(t, 100, 0, 4.0)
                }
            })
            .collect();
        let failover = with_kill.then(|| Failover {
            replica: "r-2".into(),
            kill_at_s: 5.2,
            kill_took_s: 0.3,
            restart_at_s: Some(9.0),
            last_answer_after_kill_s: 0.1,
            failed_during_failover: 60,
            sessions_lost_after_kill: 2,
            recovery: Some(Recovery {
                throughput_low: 90.0,
                throughput_high: 110.0,
                p99_high_ms: 4.4,
                failed_high: 0,
                recovered_after_s: Some(1.8),
                recovered_at_second: Some(7),
            }),
            killed_node: Some("r-2".into()),
            primaries_before_kill: None,
            new_primary: None,
            failure_window: Some(FailureWindow {
                first_failed_s: Some(5.21),
                first_ok_after_s: Some(5.25),
                last_failed_s: Some(6.9),
                failed: 60,
            }),
            acknowledged_adds: Some(300),
            acknowledged_adds_lost: Some(1),
            acknowledged_logins_lost: Some(2),
            ok_latency_before_kill: Some(OkLatency {
                from_s: 0,
                to_s: 5,
                ok_requests: 500,
                p50_ms: 1.3,
                p99_ms: 4.0,
            }),
            ok_latency_after_failures: Some(OkLatency {
                from_s: 7,
                to_s: 12,
                ok_requests: 500,
                p50_ms: 1.4,
                p99_ms: 4.1,
            }),
        });
        RunReport {
            service: Design::Stateful,
            strategy: Some(Routing::Proxy(Strategy::Cookie)),
            label: label.into(),
            target: "http://127.0.0.1:8080".into(),
            workflow: WorkflowKind::Shop,
            model: ModelKind::Open,
            rate: Some(20.0),
            users: None,
            adds: Some(3),
            think_ms: Some(0),
            sources: 1,
            duration_s: 12.0,
            started_unix_ms: 0,
            interrupted: false,
            killed: with_kill.then(|| "r-2".into()),
            requests: 1160,
            ok_requests: 1100,
            failed_requests: 60,
            errors: ErrorCounts {
                status_5xx: 60,
                ..ErrorCounts::default()
            },
            session_losses: 2,
            losses_unauthorized: 2,
            losses_cart_mismatch: 0,
            acknowledged_adds: Some(700),
            acknowledged_adds_lost: Some(1),
            acknowledged_logins_lost: Some(2),
            sessions_started: 240,
            sessions_completed: 230,
            starts_late: 0,
            starts_dropped: 0,
            max_start_lag_ms: 1.0,
            steps_late: 0,
            max_step_lag_ms: 1.0,
            throughput_rps: 91.7,
            p50_ms: 1.5,
            p90_ms: 3.0,
            p99_ms: 40.0,
            p999_ms: 250.0,
            max_ms: 300.0,
            service_p50_ms: 1.2,
            service_p99_ms: 9.0,
            percentiles: vec![PercentileRow {
                percentile: 99.9,
                latency_ms: 250.0,
                service_ms: 9.0,
            }],
            per_replica: BTreeMap::from([("r-1".to_string(), 600), ("r-2".to_string(), 500)]),
            memory_bytes: BTreeMap::from([("r-1".to_string(), 8 << 20)]),
            failover,
            events: vec![Event {
                at_s: 5.2,
                what: FaultStep::Kill,
                replica: "r-2".into(),
                took_s: 0.3,
                ok: true,
                detail: String::new(),
            }],
            scaling: Vec::new(),
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use statelab_formats::Strategy;

    use super::*;

    fn keys(v: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("a JSON object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    fn sorted<'a>(names: &[&'a str]) -> Vec<&'a str> {
        let mut names = names.to_vec();
        names.sort_unstable();
        names
    }

    /// `run.json` as written before the record was typed: readers (scripts/compare,
    /// scripts/e2e-docker, docs/load.md) rely on these names and values.
    const RUN_FIELDS: [&str; 47] = [
        "service",
        "strategy",
        "label",
        "target",
        "workflow",
        "model",
        "rate",
        "users",
        "adds",
        "think_ms",
        "sources",
        "duration_s",
        "started_unix_ms",
        "interrupted",
        "killed",
        "requests",
        "ok_requests",
        "failed_requests",
        "errors",
        "session_losses",
        "losses_unauthorized",
        "losses_cart_mismatch",
        "acknowledged_adds",
        "acknowledged_adds_lost",
        "acknowledged_logins_lost",
        "sessions_started",
        "sessions_completed",
        "starts_late",
        "starts_dropped",
        "max_start_lag_ms",
        "steps_late",
        "max_step_lag_ms",
        "throughput_rps",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "service_p50_ms",
        "service_p99_ms",
        "percentiles",
        "per_replica",
        "memory_bytes",
        "failover",
        "events",
        "scaling",
        "timeline",
    ];

    #[test]
    fn the_json_keeps_its_field_names_and_string_values() {
        let report = fixture::run("stateful/cookie", true);
        let v = serde_json::to_value(&report).expect("serialise");
        assert_eq!(keys(&v), sorted(&RUN_FIELDS));
        assert_eq!(v["strategy"], "cookie");
        assert_eq!(v["workflow"], "shop");
        assert_eq!(v["model"], "open");
        assert_eq!(v["events"][0]["what"], "kill");
        assert_eq!(
            keys(&v["events"][0]),
            sorted(&["at_s", "what", "replica", "took_s", "ok", "detail"])
        );
        assert_eq!(
            keys(&v["failover"]),
            sorted(&[
                "replica",
                "kill_at_s",
                "kill_took_s",
                "restart_at_s",
                "last_answer_after_kill_s",
                "failed_during_failover",
                "sessions_lost_after_kill",
                "recovery",
                "killed_node",
                "primaries_before_kill",
                "new_primary",
                "failure_window",
                "acknowledged_adds",
                "acknowledged_adds_lost",
                "acknowledged_logins_lost",
                "ok_latency_before_kill",
                "ok_latency_after_failures",
            ])
        );
        assert_eq!(
            keys(&v["failover"]["failure_window"]),
            sorted(&[
                "first_failed_s",
                "first_ok_after_s",
                "last_failed_s",
                "failed"
            ])
        );
        assert_eq!(
            keys(&v["failover"]["ok_latency_before_kill"]),
            sorted(&["from_s", "to_s", "ok_requests", "p50_ms", "p99_ms"])
        );
        assert_eq!(
            keys(&v["failover"]["recovery"]),
            sorted(&[
                "throughput_low",
                "throughput_high",
                "p99_high_ms",
                "failed_high",
                "recovered_after_s",
                "recovered_at_second",
            ])
        );
        assert_eq!(
            keys(&v["timeline"][0]),
            sorted(&[
                "t",
                "requests",
                "ok",
                "failed",
                "errors",
                "session_losses",
                "p50_ms",
                "p99_ms",
                "per_replica",
            ])
        );
        assert_eq!(
            keys(&v["errors"]),
            sorted(&["connect", "timeout", "io", "status_4xx", "status_5xx"])
        );
        assert_eq!(
            keys(&v["percentiles"][0]),
            sorted(&["percentile", "latency_ms", "service_ms"])
        );

        // The other values of each enum.
        let mut other = report;
        other.strategy = Some(Routing::Proxy(Strategy::RoundRobin));
        other.workflow = WorkflowKind::Raw;
        other.model = ModelKind::Closed;
        other.events[0].what = FaultStep::Restart;
        let v = serde_json::to_value(&other).expect("serialise");
        assert_eq!(
            (
                &v["strategy"],
                &v["workflow"],
                &v["model"],
                &v["events"][0]["what"]
            ),
            (
                &Value::from("round-robin"),
                &Value::from("raw"),
                &Value::from("closed"),
                &Value::from("restart")
            )
        );
        other.strategy = Some(Routing::Direct);
        let v = serde_json::to_value(&other).expect("serialise");
        assert_eq!(v["strategy"], "direct");
        other.strategy = None;
        let v = serde_json::to_value(&other).expect("serialise");
        assert_eq!(v["strategy"], Value::Null);
    }

    /// A `run.json` in the format written before the fields were typed, by hand.
    const OLD_RUN_JSON: &str = r#"{
      "service": "stateless", "strategy": "ip-hash", "label": "stateless/ip-hash",
      "target": "http://127.0.0.1:8080/stateless", "workflow": "raw", "model": "closed",
      "rate": null, "users": 20, "adds": null, "think_ms": null, "sources": 8,
      "duration_s": 2.0, "started_unix_ms": 1700000000000, "interrupted": false,
      "killed": "stateless-2", "requests": 10, "ok_requests": 9, "failed_requests": 1,
      "errors": {"connect": 1, "timeout": 0, "io": 0, "status_4xx": 0, "status_5xx": 0},
      "session_losses": 0, "losses_unauthorized": 0, "losses_cart_mismatch": 0,
      "sessions_started": 0, "sessions_completed": 0, "starts_late": 0, "starts_dropped": 0,
      "max_start_lag_ms": 0.0, "steps_late": 0, "max_step_lag_ms": 0.0, "throughput_rps": 4.5,
      "p50_ms": 1.25, "p90_ms": 2.5, "p99_ms": 3.0, "p999_ms": 3.0, "max_ms": 3.0,
      "service_p50_ms": 1.0, "service_p99_ms": 2.0,
      "percentiles": [{"percentile": 50.0, "latency_ms": 1.25, "service_ms": 1.0}],
      "per_replica": {"stateless-1": 5, "stateless-3": 4}, "memory_bytes": {},
      "failover": {"replica": "stateless-2", "kill_at_s": 1.01, "kill_took_s": 0.02,
        "restart_at_s": 1.5, "last_answer_after_kill_s": 0.0, "failed_during_failover": 1,
        "sessions_lost_after_kill": 0, "recovery": null},
      "events": [
        {"at_s": 1.01, "what": "kill", "replica": "stateless-2", "took_s": 0.02, "ok": true,
         "detail": ""},
        {"at_s": 1.5, "what": "restart", "replica": "stateless-2", "took_s": 0.3, "ok": true,
         "detail": "started"}
      ],
      "timeline": [
        {"t": 0, "requests": 5, "ok": 5, "failed": 0,
         "errors": {"connect": 0, "timeout": 0, "io": 0, "status_4xx": 0, "status_5xx": 0},
         "session_losses": 0, "p50_ms": 1.0, "p99_ms": 2.0, "per_replica": {"stateless-1": 5}},
        {"t": 1, "requests": 5, "ok": 4, "failed": 1,
         "errors": {"connect": 1, "timeout": 0, "io": 0, "status_4xx": 0, "status_5xx": 0},
         "session_losses": 0, "p50_ms": 1.5, "p99_ms": 3.0, "per_replica": {"stateless-3": 4}}
      ]
    }"#;

    #[test]
    fn an_old_run_json_reads_into_the_typed_record_and_writes_back_the_same() {
        let report: RunReport = serde_json::from_str(OLD_RUN_JSON).expect("an old run.json");
        assert_eq!(report.strategy, Some(Routing::Proxy(Strategy::IpHash)));
        assert_eq!(report.strategy.map(Routing::as_str), Some("ip-hash"));
        assert_eq!(
            (report.workflow, report.model),
            (WorkflowKind::Raw, ModelKind::Closed)
        );
        assert_eq!(report.events[1].what, FaultStep::Restart);
        let old: Value = serde_json::from_str(OLD_RUN_JSON).expect("JSON");
        // Written back the same, plus the scale events it had none of, and the figures it did
        // not measure as null.
        assert!(report.scaling.is_empty());
        assert_eq!(report.acknowledged_adds_lost, None);
        let failover = report.failover.as_ref().expect("a failover");
        assert_eq!(
            (&failover.killed_node, &failover.failure_window),
            (&None, &None)
        );
        let mut expected = old.clone();
        expected["scaling"] = Value::Array(Vec::new());
        for field in [
            "acknowledged_adds",
            "acknowledged_adds_lost",
            "acknowledged_logins_lost",
        ] {
            expected[field] = Value::Null;
            expected["failover"][field] = Value::Null;
        }
        for field in [
            "killed_node",
            "primaries_before_kill",
            "new_primary",
            "failure_window",
            "ok_latency_before_kill",
            "ok_latency_after_failures",
        ] {
            expected["failover"][field] = Value::Null;
        }
        assert_eq!(serde_json::to_value(&report).expect("serialise"), expected);

        let mut bad: Value = old;
        bad["strategy"] = Value::from("sticky");
        assert!(serde_json::from_value::<RunReport>(bad).is_err());
    }

    fn config(fault: Option<Fault>) -> RunConfig {
        RunConfig {
            service: Design::Stateful,
            strategy: Some(Routing::Proxy(Strategy::Cookie)),
            label: "stateful/cookie".into(),
            target_url: "http://127.0.0.1:8080/stateful".into(),
            target: crate::client::Target::parse("http://127.0.0.1:8080/stateful")
                .expect("valid test input"),
            model: Model::Open {
                rate: 20.0,
                max_sessions: 100,
            },
            work: Work::Shop(crate::workflow::Workflow {
                adds: 3,
                think: std::time::Duration::from_millis(100),
            }),
            duration: std::time::Duration::from_secs(4),
            timeout: std::time::Duration::from_secs(1),
            sources: Vec::new(),
            fault,
            scales: Vec::new(),
            lab: crate::fault::Lab::parse("scripts/lab").expect("valid test input"),
            sample_memory: false,
            progress: false,
        }
    }

    #[test]
    fn build_sums_the_record_and_describes_the_failover() {
        use std::time::{Duration, Instant};

        use crate::client::ErrorKind;
        use crate::stats::{Recorder, Sample};

        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(4));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for (user, done, replica, error) in [
            (1, 100, &b"stateful-1"[..], None),
            (2, 1_100, &b"stateful-2"[..], None),
            (3, 2_100, &b"stateful-2"[..], None),
            (4, 2_600, &b"stateful-1"[..], Some(ErrorKind::Status5xx)),
            (5, 3_100, &b"stateful-1"[..], None),
        ] {
            rec.record(
                user,
                &Sample {
                    intended: at(done - 10),
                    sent: at(done - 10),
                    done: at(done),
                    error,
                    replica: Some(replica),
                },
            );
        }
        let events = vec![Event {
            at_s: 2.5,
            what: FaultStep::Kill,
            replica: "stateful-2".into(),
            took_s: 0.1,
            ok: true,
            detail: String::new(),
        }];
        let outcome = RunOutcome {
            started_unix_ms: 7,
            interrupted: false,
            measured: rec.finish(4, true),
            sessions: SessionCounts {
                started: 5,
                completed: 4,
                ..SessionCounts::default()
            },
            memory_bytes: BTreeMap::new(),
            events,
            primaries: None,
        };
        let fault = crate::fault::Fault::parse("stateful-2@2.5").expect("valid test input");
        let r = RunReport::build(&config(Some(fault.clone())), outcome);
        assert_eq!((r.requests, r.ok_requests, r.failed_requests), (5, 4, 1));
        assert_eq!(r.errors.status_5xx, 1);
        assert_eq!((r.duration_s, r.throughput_rps), (4.0, 1.0));
        assert_eq!(
            (r.rate, r.users, r.adds, r.think_ms),
            (Some(20.0), None, Some(3), Some(100))
        );
        assert_eq!((r.model, r.workflow), (ModelKind::Open, WorkflowKind::Shop));
        assert_eq!((r.sessions_started, r.sessions_completed), (5, 4));
        assert_eq!(r.killed.as_deref(), Some("stateful-2"));
        assert_eq!(r.per_replica["stateful-1"], 3);
        assert_eq!(r.timeline.len(), 4);
        assert_eq!(r.percentiles.len(), PERCENTILES.len());
        assert_eq!(r.started_unix_ms, 7);
        let f = r.failover.expect("a kill happened");
        assert_eq!(f.replica, "stateful-2");
        // Its last answer came at 2.1 s, before the kill at 2.5 s.
        assert_eq!(f.last_answer_after_kill_s, 0.0);
        // From the kill's second (2) to the end: the one 5xx.
        assert_eq!(f.failed_during_failover, 1);
        assert!(
            f.recovery.is_none(),
            "no two whole pre-kill seconds after the first"
        );

        // A failed kill is no failover.
        let mut outcome_events = r.events.clone();
        outcome_events[0].ok = false;
        let r = RunReport::build(
            &config(Some(fault)),
            RunOutcome {
                started_unix_ms: 0,
                interrupted: true,
                measured: Recorder::new(t0, Duration::from_secs(1)).finish(1, false),
                sessions: SessionCounts::default(),
                memory_bytes: BTreeMap::new(),
                events: outcome_events,
                primaries: None,
            },
        );
        assert!(r.failover.is_none() && r.interrupted);
        assert_eq!((r.duration_s, r.requests, r.throughput_rps), (1.0, 0, 0.0));
    }

    #[test]
    fn build_gives_a_redis_kill_its_nodes_failure_window_and_latency_either_side() {
        use std::collections::BTreeSet;
        use std::time::{Duration, Instant};

        use crate::client::ErrorKind;
        use crate::stats::{LossKind, Recorder, Sample};

        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(8));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 2xx answers of 2 ms before the kill at 3.0 s, failures from 3.2 s to 4.5 s, one
        // success inside them at 3.6 s, then 2xx answers of 8 ms.
        let mut answers: Vec<(u64, u64, Option<ErrorKind>)> =
            (0..30).map(|i| (i * 100 + 5, 2, None)).collect();
        answers.extend([3_200, 3_300, 4_000, 4_500].map(|ms| (ms, 2, Some(ErrorKind::Io))));
        answers.push((3_600, 8, None));
        answers.extend((50..80).map(|i| (i * 100 + 5, 8, None)));
        for (user, (done, latency, error)) in answers.into_iter().enumerate() {
            rec.record(
                user as u64,
                &Sample {
                    intended: at(done - latency),
                    sent: at(done - latency),
                    done: at(done),
                    error,
                    replica: Some(b"externalized-1"),
                },
            );
        }
        for ms in [1_000, 2_000, 3_500, 5_000] {
            rec.record_acknowledged_add(1, at(ms));
        }
        rec.record_acknowledged_adds_lost(1, at(1_500), 1);
        rec.record_loss(1, at(1_500), LossKind::CartMismatch);
        rec.record_acknowledged_adds_lost(2, at(5_500), 2);
        rec.record_loss(2, at(5_500), LossKind::CartMismatch);
        rec.record_loss(3, at(5_600), LossKind::Unauthorized);
        let before: BTreeSet<String> = ["redis-1".to_string()].into();
        let outcome = RunOutcome {
            started_unix_ms: 0,
            interrupted: false,
            measured: rec.finish(8, true),
            sessions: SessionCounts::default(),
            memory_bytes: BTreeMap::new(),
            events: vec![Event {
                at_s: 3.0,
                what: FaultStep::Kill,
                replica: "redis-primary".into(),
                took_s: 0.05,
                ok: true,
                detail: "killed redis-1 (pid 4242, SIGKILL)".into(),
            }],
            primaries: Some(PrimaryWatch {
                before: Some(before),
                new_primary: Some(NewPrimary {
                    name: "redis-3".into(),
                    at_s: 4.25,
                }),
            }),
        };
        let fault = Fault::parse("redis-primary@3").expect("valid test input");
        let r = RunReport::build(&config(Some(fault)), outcome);
        assert_eq!(
            (
                r.acknowledged_adds,
                r.acknowledged_adds_lost,
                r.acknowledged_logins_lost
            ),
            (Some(4), Some(3), Some(1))
        );
        assert_eq!(r.killed.as_deref(), Some("redis-primary"));
        let f = r.failover.expect("a kill happened");
        assert_eq!(f.replica, "redis-primary");
        assert_eq!(f.killed_node.as_deref(), Some("redis-1"));
        assert_eq!(f.primaries_before_kill, Some(vec!["redis-1".to_string()]));
        assert_eq!(
            f.new_primary.as_ref().map(|p| p.name.as_str()),
            Some("redis-3")
        );
        assert_eq!(
            f.failure_window,
            Some(FailureWindow {
                first_failed_s: Some(3.2),
                first_ok_after_s: Some(3.6),
                last_failed_s: Some(4.5),
                failed: 4,
            })
        );
        // Only the losses found from the kill's second on.
        assert_eq!(
            (
                f.acknowledged_adds,
                f.acknowledged_adds_lost,
                f.acknowledged_logins_lost
            ),
            (Some(2), Some(2), Some(1))
        );
        // Before: the whole seconds before the kill's; after: from the second after the last
        // failure's (4.5 s) on, so the success at 3.6 s is in neither.
        let before = f
            .ok_latency_before_kill
            .clone()
            .expect("2xx before the kill");
        assert_eq!((before.from_s, before.to_s, before.ok_requests), (0, 3, 30));
        assert!((before.p99_ms - 2.0).abs() < 0.02, "{before:?}");
        let after = f
            .ok_latency_after_failures
            .clone()
            .expect("2xx after the failures");
        assert_eq!((after.from_s, after.to_s, after.ok_requests), (5, 8, 30));
        assert!((after.p50_ms - 8.0).abs() < 0.08, "{after:?}");
        let text = summary(&r_with(f));
        assert!(text.contains("killed node: redis-1; primaries before the kill: redis-1; new primary: redis-3 at 4.25 s (1.25 s after the kill)"), "{text}");
        assert!(text.contains("first failure 3.200 s, first success after it 3.600 s, last failure 4.500 s; 4 failed"), "{text}");
    }

    #[test]
    fn the_comparison_table_has_acknowledged_losses_and_the_new_primary() {
        let mut redis = fixture::run("externalized/round-robin", true);
        let f = redis.failover.as_mut().expect("the fixture has a kill");
        f.primaries_before_kill = Some(vec!["redis-1".into()]);
        f.new_primary = Some(NewPrimary {
            name: "redis-3".into(),
            at_s: 8.6,
        });
        let mut none = redis.clone();
        if let Some(f) = none.failover.as_mut() {
            f.new_primary = None;
        }
        let mut old: RunReport = serde_json::from_str(OLD_RUN_JSON).expect("an old run.json");
        old.label = "old".into();
        let table = comparison_table(&[redis, none, old]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        // Acknowledged writes lost: 1 add + 2 logins; the new primary 3.4 s after the kill.
        assert_eq!(rows[1][5], "3", "{table}");
        assert!(
            rows[1].windows(3).any(|w| w == ["redis-3", "+3.4", "s"]),
            "{table}"
        );
        assert!(rows[2].contains(&"none"), "{table}");
        // A record from before these were counted shows them as not measured.
        assert_eq!(rows[3][5], "-", "{table}");
    }

    fn r_with(failover: Failover) -> RunReport {
        let mut r = fixture::run("externalized/round-robin", true);
        r.failover = Some(failover);
        r
    }
}

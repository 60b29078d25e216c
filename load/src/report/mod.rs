//! The run's record as data: what `run.json` and `report.json` hold.
//!
//! Every figure here was measured in the run it describes; a figure that could not be measured
//! (no kill, no pre-kill band, memory not sampled) is absent (`null`), never a default.
//! The JSON field names are a format other tools read: docs/load.md documents them ("Report format").
//!
//! [`RunReport::build`] makes the record from a run's measurements (`build.rs`); [`summary`],
//! [`comparison_table`] and [`scaling_table`] render it for the terminal (`text.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use statelab_formats::Design;

use crate::config::{ModelKind, Routing, WorkflowKind};
use crate::fault::PrimaryWatch;
pub use crate::fault::{Event, FaultStep, NewPrimary};
use crate::scaling::ScaleReport;
use crate::stats::{ErrorCounts, FailureWindow, Measured, OkLatency, Recovery, SecondStats};

mod build;
#[cfg(test)]
pub(crate) mod fixture;
mod text;

pub use self::text::{
    chat_table, comparison_table, event_words, files_table, new_primary_text, replicas_cpu,
    scaling_table, skew_table, spread, summary,
};

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
    /// How evenly those requests were spread; `null` without a replica's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    /// The same for each second of `timeline`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub balance_per_second: Vec<Option<Balance>>,
    /// How evenly the live sessions were spread: over each replica's session-seconds (each
    /// second's `sessions_per_replica`, summed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_balance: Option<Balance>,
    /// `--skew` and `--sources-skew` (`zipf:S`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_skew: Option<String>,
    /// With `--skew`: the heaviest users' latency beside everyone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heavy: Option<HeavyUsers>,
    /// What the pool's balance factor did, when the proxy had one on for the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded: Option<Bounded>,
    /// With `--avatar`: avatars stored, read back, lost (a read answered 404 or with other
    /// bytes after the upload was acknowledged) and refused while files were unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileReport>,
    /// With `--workflow chat`: messages said, hearings owed and made (live or in a joining
    /// socket's history), fan-out latency, sockets opened and lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<crate::chat::ChatReport>,
    /// With `--cpu`: every part's mean cores over the run, and its budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<crate::capacity::bottleneck::PartUse>,
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

/// Avatars over a run (`--avatar`), and when the object store refused them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileReport {
    #[serde(flatten)]
    pub counts: crate::stats::FileCounts,
    /// The first and the last second of the run (counted from its start, the last one included)
    /// in which an avatar request was answered `503 files_unavailable`; none when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_seconds: Option<[u64; 2]>,
    /// Every stored avatar read back once after the run, by name, from its owner's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_run: Option<crate::files::AfterRun>,
}

/// `12 (25%)` of `of`, or `-` when there were none to count.
pub fn share_words(part: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{part} ({:.0}%)", part as f64 * 100.0 / of as f64)
    }
}

impl FileReport {
    /// `120 stored, 115 read back, 0 lost, 4 refused while files were unavailable, in seconds
    /// 5-10 of the run`.
    pub fn counts_words(&self) -> String {
        let c = self.counts;
        let window = match self.unavailable_seconds {
            Some([a, b]) if a == b => format!(", in second {a} of the run"),
            Some([a, b]) => format!(", in seconds {a}-{b} of the run"),
            None => String::new(),
        };
        format!(
            "{} stored, {} read back, {} lost, {} refused while files were unavailable{window}",
            c.stored, c.read, c.lost, c.unavailable
        )
    }

    /// `after the run: 12 of 96 stored avatars lost (12.5 %)`, when they were read back.
    pub fn after_run_words(&self) -> Option<String> {
        let a = self.after_run?;
        let mut words = format!(
            "after the run: {} of {} stored avatars lost ({:.1} %)",
            a.lost,
            a.asked,
            a.lost_share() * 100.0
        );
        if a.unavailable > 0 {
            words += &format!(", {} unavailable", a.unavailable);
        }
        if a.failed > 0 {
            words += &format!(", {} unanswered", a.failed);
        }
        Some(words)
    }
}

/// How evenly a count is spread over the replicas that answered: the largest share over the
/// mean, and the coefficient of variation (standard deviation over mean).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    pub replicas: u32,
    pub max_over_mean: f64,
    pub cv: f64,
}

impl Balance {
    /// The balance of `counts`, one per replica; `None` when none counted anything.
    pub fn of(counts: impl Iterator<Item = u64>) -> Option<Balance> {
        Balance::of_values(counts.map(|c| c as f64))
    }

    /// The same of any non-negative values (shares, say).
    pub fn of_values(values: impl Iterator<Item = f64>) -> Option<Balance> {
        let counts: Vec<f64> = values.collect();
        let n = counts.len() as f64;
        let total: f64 = counts.iter().sum();
        if counts.is_empty() || total <= 0.0 {
            return None;
        }
        let mean = total / n;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / n;
        Some(Balance {
            replicas: counts.len() as u32,
            max_over_mean: counts.iter().copied().fold(0.0, f64::max) / mean,
            cv: var.sqrt() / mean,
        })
    }
}

/// The replica that took the largest share of requests before a run's first scale event: its
/// name and its share before and after the event. `None` without a scale event.
pub fn hot_replica(r: &RunReport) -> Option<(String, f64, f64)> {
    let sc = r.scaling.first()?;
    let (name, before) = sc
        .share_before
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(n, s)| (n.clone(), *s))?;
    let after = sc.share_after.get(&name).copied().unwrap_or(0.0);
    Some((name, before, after))
}

/// A part's mean cores over the run and its budget, from `--cpu`.
pub fn part_cpu(r: &RunReport, name: &str) -> Option<(f64, Option<f64>)> {
    r.cpu
        .iter()
        .find(|p| p.name == name)
        .map(|p| (p.cores, p.budget))
}

/// Cores as "0.09 of 0.10" (with a budget) or "0.09".
pub fn cores_text((cores, budget): (f64, Option<f64>)) -> String {
    match budget {
        Some(b) => format!("{cores:.2} of {b:.2}"),
        None => format!("{cores:.2}"),
    }
}

/// Bounded loads during a run, from the proxy's status before and after it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounded {
    /// The pool's balance factor, in percent.
    pub balance_factor: u32,
    /// Requests the factor sent past their strategy's first choice during the run.
    pub moves: u64,
    /// Those over the run's requests.
    pub share_moved: f64,
}

/// The proxy's view of the pool around a run (`GET /admin/status`); `None` where it did not
/// answer or the run targeted a replica directly.
#[derive(Debug, Clone, Default)]
pub struct ProxyViews {
    pub before: Option<statelab_formats::PoolView>,
    pub after: Option<statelab_formats::PoolView>,
}

impl ProxyViews {
    /// The balance factor's work between the two views, over `requests`.
    pub fn bounded(&self, requests: u64) -> Option<Bounded> {
        let (before, after) = (self.before.as_ref()?, self.after.as_ref()?);
        if !before.strategy.takes_balance_factor() {
            return None;
        }
        let factor = before.balance_factor.or(after.balance_factor)?;
        let moves = after.bounded_moves.saturating_sub(before.bounded_moves);
        Some(Bounded {
            balance_factor: factor.percent(),
            moves,
            share_moved: moves as f64 / requests.max(1) as f64,
        })
    }
}

/// The heaviest users of a skewed run ([`crate::skew::HEAVY_SHARE`] of them, the first ranks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeavyUsers {
    pub users: u64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileRow {
    pub percentile: f64,
    pub latency_ms: f64,
    pub service_ms: f64,
}

/// What the kill (or the partition) did to the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    /// `kill`, or `partition`: a Redis node cut off from the other Redis nodes and the Sentinels
    /// while the replicas not in `cut_off` still reach it. The `kill_*` fields then tell of the
    /// cut, `restart_at_s` of the heal.
    #[serde(default = "kill_step")]
    pub fault: FaultStep,
    /// The parts a partition cut the node off from, as the lab's answer names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_off: Option<Vec<String>>,
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
    /// Sessions on the killed replica: from the kill's start on, each sent a request while its
    /// last answer came from that replica (`stats::KillMark`). `null` in a record from before it
    /// was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_on_killed: Option<u64>,
    /// Pre-kill band and the time back inside it; `null` when fewer than two whole seconds
    /// preceded the kill.
    pub recovery: Option<Recovery>,
    /// The part the kill's answer named (`scripts/lab kill --json`): the lab resolves an alias
    /// such as `redis-primary` to a node, and `replica` keeps the name asked for. `null` when the
    /// lab gave no answer.
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

fn kill_step() -> FaultStep {
    FaultStep::Kill
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
    pub proxy: ProxyViews,
    /// With `--cpu`: each part's mean cores over the run.
    pub cpu: Vec<crate::capacity::bottleneck::PartUse>,
    /// With `--avatar`: every stored avatar read back after the run.
    pub files_after: Option<crate::files::AfterRun>,
    /// With `--workflow chat`: what the rooms delivered.
    pub chat: Option<crate::chat::ChatReport>,
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

#[cfg(test)]
mod balance_tests {
    use super::Balance;

    #[test]
    fn balance_is_the_largest_share_over_the_mean_and_the_spread() {
        let even = Balance::of([100, 100, 100].into_iter()).expect("counts");
        assert_eq!((even.max_over_mean, even.cv), (1.0, 0.0));
        let hot = Balance::of([300, 50, 50, 0].into_iter()).expect("counts");
        assert_eq!(hot.replicas, 4);
        assert!((hot.max_over_mean - 3.0).abs() < 1e-12);
        // mean 100; deviations 200, -50, -50, -100: variance 13750, sd about 117.3.
        assert!((hot.cv - 13750f64.sqrt() / 100.0).abs() < 1e-9);
        assert_eq!(Balance::of([0, 0].into_iter()), None);
        assert_eq!(Balance::of(std::iter::empty()), None);
    }

    #[test]
    fn bounded_moves_are_the_difference_of_the_proxy_counts_over_the_requests() {
        use super::{Bounded, ProxyViews};
        use statelab_formats::{BalanceFactor, PoolView, Strategy};
        let view = |factor: Option<u32>, moves: u64| PoolView {
            name: "stateful".into(),
            prefix: "/stateful".into(),
            strategy: Strategy::IpHash,
            balance_factor: factor.and_then(|f| BalanceFactor::new(f).ok()),
            bounded_moves: moves,
            available: true,
            replicas: Vec::new(),
            discovery: None,
        };
        let views = ProxyViews {
            before: Some(view(Some(125), 40)),
            after: Some(view(Some(125), 140)),
        };
        assert_eq!(
            views.bounded(400),
            Some(Bounded {
                balance_factor: 125,
                moves: 100,
                share_moved: 0.25
            })
        );
        let off = ProxyViews {
            before: Some(view(None, 0)),
            after: Some(view(None, 0)),
        };
        assert_eq!(off.bounded(400), None);
        let mut ignored = views.clone();
        if let Some(v) = ignored.before.as_mut() {
            v.strategy = Strategy::RoundRobin;
        }
        assert_eq!(ignored.bounded(400), None, "round-robin takes no factor");
        assert_eq!(ProxyViews::default().bounded(400), None);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use statelab_formats::Strategy;

    use super::fixture::{self, OLD_RUN_JSON};
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

    /// `run.json`'s names and values, which its readers (scripts/compare,
    /// lab/tests/docker_e2e.rs, docs/load.md) rely on.
    const RUN_FIELDS: [&str; 48] = [
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
        "balance",
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
                "fault",
                "replica",
                "kill_at_s",
                "kill_took_s",
                "restart_at_s",
                "last_answer_after_kill_s",
                "failed_during_failover",
                "sessions_lost_after_kill",
                "sessions_on_killed",
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
        // A record from before partitions tells of a kill.
        expected["failover"]["fault"] = Value::from("kill");
        assert_eq!(serde_json::to_value(&report).expect("serialise"), expected);

        let mut bad: Value = old;
        bad["strategy"] = Value::from("sticky");
        assert!(serde_json::from_value::<RunReport>(bad).is_err());
    }
}

//! The record rendered for a person at a terminal: one run's summary, and the tables that set
//! several runs side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Failover, FaultStep, RunReport};
use crate::config::{ModelKind, WorkflowKind};
use crate::stats::OkLatency;

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
    if let Some(b) = &r.balance {
        let _ = writeln!(
            out,
            "  balance: max/mean {:.2}, coefficient of variation {:.2} over {} replicas",
            b.max_over_mean, b.cv, b.replicas
        );
    }
    if let Some(b) = &r.session_balance {
        let _ = writeln!(
            out,
            "  live sessions: max/mean {:.2}, coefficient of variation {:.2}",
            b.max_over_mean, b.cv
        );
    }
    if let Some(f) = &r.files {
        let _ = writeln!(out, "  avatars: {}", f.counts_words());
        if let Some(words) = f.after_run_words() {
            let _ = writeln!(out, "  avatars {words}");
        }
    }
    if let Some(c) = &r.chat {
        let _ = writeln!(out, "  chat: {}", c.words());
    }
    let replicas_cpu = replicas_cpu(r);
    if !replicas_cpu.is_empty() {
        let _ = writeln!(out, "  CPU over the run (cores): {replicas_cpu}");
    }
    if let Some(b) = &r.bounded {
        let _ = writeln!(
            out,
            "  bounded loads: balance factor {}, {} requests sent past their first choice ({:.1}%)",
            b.balance_factor,
            b.moves,
            b.share_moved * 100.0
        );
    }
    if let Some(h) = &r.heavy {
        let _ = writeln!(
            out,
            "  heaviest {} users ({}): p50 {:.1} ms, p99 {:.1} ms over {} requests (everyone: p99 {:.1} ms)",
            h.users,
            r.skew.as_deref().unwrap_or("?"),
            h.p50_ms,
            h.p99_ms,
            h.requests,
            r.p99_ms
        );
    }
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
        if f.fault == FaultStep::Partition {
            let _ = writeln!(
                out,
                "  partition: {} cut off from {} at {:.2} s{}; {} failed requests and {} sessions lost after the cut",
                f.killed_node.as_deref().unwrap_or(&f.replica),
                f.cut_off.as_deref().map_or_else(|| "-".into(), |c| c.join(", ")),
                f.kill_at_s,
                f.restart_at_s
                    .map_or_else(|| ", never healed within the run".into(), |h| format!(", healed at {h:.2} s")),
                f.failed_during_failover,
                f.sessions_lost_after_kill
            );
        } else {
            let _ = writeln!(
                out,
                "  failover: {} killed at {:.2} s; its last answer {:.2} s after; {} failed requests and {} sessions lost after the kill",
                f.replica,
                f.kill_at_s,
                f.last_answer_after_kill_s,
                f.failed_during_failover,
                f.sessions_lost_after_kill
            );
        }
        if let Some(on) = f.sessions_on_killed.filter(|n| *n > 0) {
            let _ = writeln!(out, "  sessions on the killed replica: {on}");
        }
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
    let redis_kill = f
        .killed_node
        .as_deref()
        .is_some_and(crate::fault::watches_primaries);
    let (node, fault) = match f.fault {
        FaultStep::Partition => ("node cut off", "cut"),
        _ => ("killed node", "kill"),
    };
    if redis_kill || f.primaries_before_kill.is_some() {
        let _ = writeln!(
            out,
            "  {node}: {}; primaries before the {fault}: {}; new primary: {}",
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
            "  failure window: first failure {}, first success after it {}, last failure {}; {} failed from the {fault} on",
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
        let _ = writeln!(out, "  from the {fault}'s second on: {text}");
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

/// The service's replicas' mean cores over the run, each of its budget, from `--cpu`.
pub fn replicas_cpu(r: &RunReport) -> String {
    let prefix = format!("{}-", r.service);
    r.cpu
        .iter()
        .filter(|p| p.name.starts_with(&prefix))
        .map(|p| format!("{} {}", p.name, super::cores_text((p.cores, p.budget))))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The terminal table of the skewed runs: how unevenly heavy users loaded the replicas, whether
/// growing the pool relieved the hot one, and what bounded loads moved and lost.
pub fn skew_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>9} {:>6} {:>9} {:>26} {:>13} {:>8} {:>6} {:>8} {:>10}",
        "run",
        "max/mean",
        "cv",
        "sess m/m",
        "hot replica before>after",
        "hot CPU",
        "moved %",
        "lost",
        "p99 ms",
        "heavy p99"
    );
    for r in runs.iter().filter(|r| r.skew.is_some()) {
        let b = |b: Option<&super::Balance>, f: fn(&super::Balance) -> f64| {
            b.map_or_else(|| "-".into(), |b| format!("{:.2}", f(b)))
        };
        let hot = super::hot_replica(r).map_or_else(
            || "-".into(),
            |(name, before, after)| format!("{name} {:.0}%>{:.0}%", before * 100.0, after * 100.0),
        );
        let hot_cpu = super::hot_replica(r)
            .and_then(|(name, _, _)| super::part_cpu(r, &name))
            .map_or_else(|| "-".into(), super::cores_text);
        let moved = r
            .bounded
            .map_or_else(|| "-".into(), |b| format!("{:.1}", b.share_moved * 100.0));
        let heavy = r
            .heavy
            .as_ref()
            .map_or_else(|| "-".into(), |h| format!("{:.1}", h.p99_ms));
        let _ = writeln!(
            out,
            "{:<34} {:>9} {:>6} {:>9} {:>26} {:>13} {:>8} {:>6} {:>8.1} {:>10}",
            r.label,
            b(r.balance.as_ref(), |b| b.max_over_mean),
            b(r.balance.as_ref(), |b| b.cv),
            b(r.session_balance.as_ref(), |b| b.max_over_mean),
            hot,
            hot_cpu,
            moved,
            r.session_losses,
            r.p99_ms,
            heavy
        );
    }
    out
}

/// What a run did to its lab: `kill stateful-2@5, restart@10`, `scale stateful=2 now@7`, or
/// `none`; a step on the part the one before named leaves the name out.
pub fn event_words(r: &RunReport) -> String {
    let words: Vec<String> = r
        .events
        .iter()
        .enumerate()
        .map(
            |(i, e)| match i.checked_sub(1).map(|p| &r.events[p].replica) {
                Some(before) if *before == e.replica => format!("{}@{:.0}", e.what, e.at_s),
                _ => format!("{} {}@{:.0}", e.what, e.replica, e.at_s),
            },
        )
        .collect();
    if words.is_empty() {
        "none".into()
    } else {
        words.join(", ")
    }
}

/// The terminal table of the chat runs: what the rooms delivered of what they owed, live and
/// in history, how fast, and the sockets a fault ended.
pub fn chat_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<30} {:>7} {:>7} {:>9} {:>7} {:>8} {:>9} {:>9} {:>7} {:>5}",
        "run",
        "event",
        "said",
        "owed",
        "delivery",
        "live",
        "history",
        "p50 ms",
        "p99 ms",
        "opened",
        "lost"
    );
    for r in runs {
        let Some(c) = r.chat else { continue };
        let _ = writeln!(
            out,
            "{:<40} {:<30} {:>7} {:>7} {:>8.1}% {:>7} {:>8} {:>9.2} {:>9.2} {:>7} {:>5}",
            r.label,
            event_words(r),
            c.said,
            c.owed,
            c.delivery * 100.0,
            c.heard_live,
            c.heard_in_history,
            c.fanout_p50_ms,
            c.fanout_p99_ms,
            c.sockets_opened,
            c.sockets_lost
        );
    }
    out
}

/// The terminal table of the file runs: avatars lost to visitors in the run and after it,
/// refused while the object store was away, and the sessions' own losses.
pub fn files_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<44} {:<30} {:>7} {:>6} {:>13} {:>8} {:>8} {:>16} {:>6}",
        "run",
        "event",
        "stored",
        "read",
        "lost in run",
        "refused",
        "seconds",
        "lost after run",
        "losses"
    );
    for r in runs {
        let Some(f) = r.files else { continue };
        let c = f.counts;
        let share = super::share_words;
        let _ = writeln!(
            out,
            "{:<44} {:<30} {:>7} {:>6} {:>13} {:>8} {:>8} {:>16} {:>6}",
            r.label,
            event_words(r),
            c.stored,
            c.read,
            share(c.lost, c.read),
            c.unavailable,
            f.unavailable_seconds
                .map_or_else(|| "-".into(), |[a, b]| format!("{a}-{b}")),
            f.after_run
                .map_or_else(|| "-".into(), |a| share(a.lost, a.asked)),
            r.session_losses
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{self, OLD_RUN_JSON};
    use crate::report::NewPrimary;

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
}

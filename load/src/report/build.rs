//! How a run's measurements become its [`RunReport`]: the totals, the percentiles, and what a
//! kill did ([`Failover`]).

use std::collections::BTreeMap;

use super::{Balance, Failover, HeavyUsers, PercentileRow, RunOutcome, RunReport};
use crate::config::{Model, RunConfig, Work};
use crate::fault::{Event, Fault, FaultKind, PrimaryWatch};
use crate::stats::{self, percentile_ms, Acknowledged, ErrorCounts, Measured};

/// The percentiles of the report's table.
const PERCENTILES: [f64; 8] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];

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
            proxy,
            cpu,
            files_after,
            chat,
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
        // A member of the pool at the start that answered nothing counts in the balance as a
        // zero (behind a NAT, ip-hash sends every client to one replica).
        if let Some(pool) = &proxy.before {
            for r in pool.replicas.iter().filter(|r| r.enabled) {
                per_replica.entry(r.name.clone()).or_insert(0);
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
            Work::Chat(c) => (None, Some(c.think.as_millis() as u64)),
        };
        let latency = |p| percentile_ms(&measured.latency, p);
        let heavy = match (cfg.skew, &cfg.model) {
            (Some(_), Model::Closed { users }) if !measured.heavy_latency.is_empty() => {
                Some(HeavyUsers {
                    users: crate::skew::heavy_users(*users),
                    p50_ms: percentile_ms(&measured.heavy_latency, 50.0),
                    p99_ms: percentile_ms(&measured.heavy_latency, 99.0),
                    requests: measured.heavy_latency.len(),
                })
            }
            _ => None,
        };
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
            killed: cfg.fault.as_ref().map(|f| match f.kind {
                FaultKind::Kill => f.replica.clone(),
                FaultKind::Partition { .. } => format!("{} (cut off)", f.replica),
            }),
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
            balance: Balance::of(per_replica.values().copied()),
            balance_per_second: measured
                .series
                .iter()
                .map(|s| Balance::of(s.per_replica.values().copied()))
                .collect(),
            session_balance: {
                let mut per: BTreeMap<&str, u64> = BTreeMap::new();
                for sec in &measured.series {
                    for (name, n) in &sec.sessions_per_replica {
                        *per.entry(name.as_str()).or_insert(0) += n;
                    }
                }
                Balance::of(per.into_values())
            },
            skew: cfg.skew.map(|z| z.to_string()),
            sources_skew: cfg.sources_skew.map(|z| z.to_string()),
            heavy,
            bounded: proxy.bounded(requests),
            chat,
            files: match &cfg.work {
                Work::Shop(w) if w.avatar => {
                    let mut counts = crate::stats::FileCounts::default();
                    for s in &measured.detail {
                        counts.merge(&s.files);
                    }
                    let refused = measured
                        .detail
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.files.unavailable > 0)
                        .map(|(i, _)| i as u64);
                    let first = refused.clone().next();
                    Some(super::FileReport {
                        counts,
                        unavailable_seconds: first.zip(refused.max()).map(|(a, b)| [a, b]),
                        after_run: files_after,
                    })
                }
                _ => None,
            },
            cpu,
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
    // Without a kill (or a partition) that happened there is no failover to describe.
    let kill = events.iter().find(|e| e.what.is_fault() && e.ok)?;
    let restart_at_s = events
        .iter()
        .find(|e| e.what.is_undo() && e.ok)
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
        fault: kill.what,
        cut_off: kill.cut_off.clone(),
        replica: fault.replica.clone(),
        kill_at_s: kill.at_s,
        kill_took_s: kill.took_s,
        restart_at_s,
        last_answer_after_kill_s,
        failed_during_failover,
        sessions_lost_after_kill: after_kill.iter().map(|s| s.session_losses).sum(),
        sessions_on_killed: m.on_killed,
        recovery,
        killed_node: kill.killed.clone(),
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

#[cfg(test)]
mod tests {
    use statelab_formats::{Design, Strategy};

    use super::*;
    use crate::config::{ModelKind, Routing, WorkflowKind};
    use crate::fault::FaultStep;
    use crate::fault::NewPrimary;
    use crate::report::{fixture, summary, SessionCounts};
    use crate::stats::FailureWindow;

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
                avatar: false,
                run_tag: 0,
                adds: 3,
                think: std::time::Duration::from_millis(100),
            }),
            duration: std::time::Duration::from_secs(4),
            timeout: std::time::Duration::from_secs(1),
            sources: Vec::new(),
            source_bins: Vec::new(),
            skew: None,
            sources_skew: None,
            fault,
            scales: Vec::new(),
            lab: crate::fault::Lab::parse("scripts/lab").expect("valid test input"),
            sample_memory: false,
            sample_cpu: false,
            progress: false,
            admin: None,
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
            killed: None,
            cut_off: None,
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
            proxy: Default::default(),
            cpu: Vec::new(),
            files_after: None,
            chat: None,
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
                proxy: Default::default(),
                cpu: Vec::new(),
                files_after: None,
                chat: None,
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
            proxy: Default::default(),
            cpu: Vec::new(),
            files_after: None,
            chat: None,
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
                detail: "lab: killed redis-1 (pid 4242, SIGKILL)".into(),
                killed: Some("redis-1".into()),
                cut_off: None,
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

    fn r_with(failover: Failover) -> RunReport {
        let mut r = fixture::run("externalized/round-robin", true);
        r.failover = Some(failover);
        r
    }
}

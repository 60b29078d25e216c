//! Reports to test against: the same run shape the HTML tests draw and the JSON tests write.

use std::collections::BTreeMap;

use statelab_formats::{Design, Strategy};

use super::{Event, Failover, FaultStep, PercentileRow, RunReport};
use crate::config::{ModelKind, Routing, WorkflowKind};
use crate::stats::{ErrorCounts, FailureWindow, OkLatency, Recovery, SecondStats};

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
        sessions_per_replica: BTreeMap::new(),
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
        fault: FaultStep::Kill,
        cut_off: None,
        replica: "r-2".into(),
        kill_at_s: 5.2,
        kill_took_s: 0.3,
        restart_at_s: Some(9.0),
        last_answer_after_kill_s: 0.1,
        failed_during_failover: 60,
        sessions_lost_after_kill: 2,
        sessions_on_killed: Some(5),
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
        balance: super::Balance::of([600, 500].into_iter()),
        balance_per_second: Vec::new(),
        session_balance: None,
        skew: None,
        sources_skew: None,
        heavy: None,
        bounded: None,
        files: None,
        chat: None,
        cpu: Vec::new(),
        memory_bytes: BTreeMap::from([("r-1".to_string(), 8 << 20)]),
        failover,
        events: vec![Event {
            at_s: 5.2,
            what: FaultStep::Kill,
            replica: "r-2".into(),
            took_s: 0.3,
            ok: true,
            detail: String::new(),
            killed: None,
            cut_off: None,
        }],
        scaling: Vec::new(),
        timeline,
    }
}

/// A `run.json` in the format written before the fields were typed, by hand.
pub const OLD_RUN_JSON: &str = r#"{
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

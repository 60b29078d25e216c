//! The externalized design against the Sentinel and the Cluster topologies, natively: `scripts/lab
//! up --redis sentinel --redis-wait 1` (or `--redis cluster`) on free ports, a request stream
//! through the real proxy, and the primary killed through `scripts/lab kill redis-primary`. Redis
//! must fail over by itself within a bound, every failure in the window must be an answered 5xx
//! (never a hang or a broken connection), and with `WAIT 1` no acknowledged write may be lost.

mod support;

use statelab_formats::lab::LabStatus;
use statelab_load::report::RunReport;
use statelab_test_support::{NativeLab, TempDir};
use support::run_load;

/// The documented bound on a failover in the lab: Sentinel's `down-after-milliseconds` (1 s) or
/// the cluster's `cluster-node-timeout` (2 s), the vote and the promotion (about a second more),
/// and the services' next lookup. Measured at 2-5 s; the bound leaves room for a loaded CI
/// machine.
const FAILOVER_BOUND_S: f64 = 10.0;

/// Runs the externalized workload through `lab`'s proxy for 16 s with the Redis primary killed at
/// 4 s and the killed node started again at 12 s; returns the report and the generator's output.
fn kill_primary_under_load(lab: &NativeLab) -> (RunReport, String) {
    let tmp = TempDir::new("load-store-out");
    run_load(
        lab,
        "externalized",
        &tmp.join("run"),
        &[
            "--duration",
            "16",
            "--rate",
            "30",
            "--think-ms",
            "200",
            "--adds",
            "3",
            "--kill",
            "redis-primary@4",
            "--restart",
            "@12",
        ],
    )
}

/// What every topology with failover must show: the kill and the restart ran, one of
/// `candidates` was named primary within the bound, every failure was an answer, and none came
/// after the bound.
fn assert_failed_over(report: &RunReport, text: &str, candidates: &[&str]) {
    assert!(report.requests > 500, "{text}");
    assert!(
        report.events.iter().all(|e| e.ok),
        "kill and restart ran:\n{text}"
    );
    let failover = report.failover.as_ref().expect("a failover record");
    let promoted = failover
        .new_primary
        .as_ref()
        .unwrap_or_else(|| panic!("no replica was promoted:\n{text}"));
    assert!(candidates.contains(&promoted.name.as_str()), "{promoted:?}");
    assert!(
        promoted.at_s - failover.kill_at_s < FAILOVER_BOUND_S,
        "promoted {:.1} s after the kill:\n{text}",
        promoted.at_s - failover.kill_at_s
    );
    // Every failure was an answer: the services bound each Redis call, and no request hung into
    // the generator's timeout or lost its connection.
    let e = &report.errors;
    assert_eq!((e.connect, e.timeout, e.io), (0, 0, 0), "{text}");
    let window = failover.failure_window.as_ref().expect("a failure window");
    if let Some(last) = window.last_failed_s {
        assert!(
            last - failover.kill_at_s < FAILOVER_BOUND_S,
            "requests still failed {:.1} s after the kill:\n{text}",
            last - failover.kill_at_s
        );
    }
}

/// The line `scripts/lab status` prints for `node`.
/// A node's role as `status --json` gives it (`primary`, `replica`, ...).
fn role_of(lab: &NativeLab, node: &str) -> Option<String> {
    let out = lab.command(&["--json", "status"]).output().expect("status");
    let status: LabStatus = serde_json::from_slice(&out.stdout).expect("typed status");
    status
        .part(node)
        .unwrap_or_else(|| panic!("status lists {node}: {status:?}"))
        .role
        .clone()
}

#[test]
fn sentinel_fails_over_by_itself_and_wait_1_loses_no_acknowledged_write() {
    let lab = NativeLab::up_with(
        "load-sentinel",
        &["--redis", "sentinel", "--redis-wait", "1"],
    );
    let primaries = lab.ok(&["primaries"]);
    assert_eq!(
        primaries.trim(),
        "redis-1",
        "redis-1 is the primary at start"
    );
    let (report, text) = kill_primary_under_load(&lab);
    let failover = report.failover.as_ref().expect("a failover record");
    assert_eq!(failover.killed_node.as_deref(), Some("redis-1"), "{text}");
    assert_failed_over(&report, &text, &["redis-2", "redis-3"]);

    // WAIT 1: what was acknowledged is on a replica, and the promoted replica has it.
    assert!(report.acknowledged_adds.unwrap_or(0) > 100, "{text}");
    assert_eq!(report.acknowledged_adds_lost, Some(0), "{text}");
    assert_eq!(report.acknowledged_logins_lost, Some(0), "{text}");
    assert_eq!(report.session_losses, 0, "{text}");

    // The restart brought the killed node back, as a replica of the new primary.
    assert_eq!(role_of(&lab, "redis-1").as_deref(), Some("replica"));
}

#[test]
fn cluster_fails_over_by_itself_and_reports_what_async_replication_lost() {
    let lab = NativeLab::up_with("load-cluster", &["--redis", "cluster"]);
    let before = lab.ok(&["primaries"]);
    assert_eq!(
        before.lines().count(),
        3,
        "three primaries at start:\n{before}"
    );
    let (report, text) = kill_primary_under_load(&lab);
    let failover = report.failover.as_ref().expect("a failover record");
    let killed = failover
        .killed_node
        .clone()
        .expect("the killed node's name");
    assert!(
        before.lines().any(|l| l == killed),
        "{killed} was a primary"
    );
    let replicas: Vec<String> = (1..=6)
        .map(|k| format!("redis-cluster-{k}"))
        .filter(|n| !before.lines().any(|l| l == n))
        .collect();
    let candidates: Vec<&str> = replicas.iter().map(String::as_str).collect();
    assert_failed_over(&report, &text, &candidates);
    // Without WAIT, writes acknowledged just before the kill may be lost: measured, not failed on.
    assert!(report.acknowledged_adds_lost.is_some(), "{text}");
    // The killed node rejoined by its own record, as a replica of the one that took its place.
    assert_eq!(role_of(&lab, &killed).as_deref(), Some("replica"));
}

//! The externalized design against the Sentinel topology, natively: `scripts/lab up --redis
//! sentinel --redis-wait 1` on free ports, a request stream through the real proxy, and the
//! primary killed through `scripts/lab kill redis-primary`. Sentinel must fail over by itself
//! within a bound, every failure in the window must be an answered 5xx (never a hang or a broken
//! connection), and with `WAIT 1` no acknowledged write may be lost.

use std::process::Command;

use statelab_loadgen::report::RunReport;
use statelab_test_support::{workspace_root, NativeLab, TempDir};

/// The documented bound on a Sentinel failover in the lab: `down-after-milliseconds` (1 s), the
/// vote and the promotion (about a second more), and the services' next lookup. Measured at about
/// 2-3 s; the bound leaves room for a loaded CI machine.
const FAILOVER_BOUND_S: f64 = 10.0;

#[test]
fn sentinel_fails_over_by_itself_and_wait_1_loses_no_acknowledged_write() {
    let lab = NativeLab::up_with(
        "loadgen-sentinel",
        &["--redis", "sentinel", "--redis-wait", "1"],
    );
    let primaries = lab.ok(&["primaries"]);
    assert_eq!(
        primaries.trim(),
        "redis-1",
        "redis-1 is the primary at start"
    );

    let tmp = TempDir::new("loadgen-sentinel-out");
    let out = tmp.join("run");
    let proxy = lab.port("proxy");
    let admin = lab.port("admin");
    let output = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .args(["run", "--service", "externalized", "--quiet"])
        .args([
            "--target",
            &format!("http://127.0.0.1:{proxy}/externalized"),
        ])
        .args(["--admin", &format!("http://127.0.0.1:{admin}")])
        .args([
            "--duration",
            "16",
            "--rate",
            "30",
            "--think-ms",
            "200",
            "--adds",
            "3",
        ])
        .args(["--kill", "redis-primary@4", "--restart", "@12"])
        .arg("--lab")
        .arg(workspace_root().join("scripts/lab"))
        .arg("--out")
        .arg(&out)
        .env("STATELAB_LAB_DIR", lab.dir())
        .output()
        .expect("run statelab-load");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "statelab-load failed:\n{text}");
    let json = std::fs::read_to_string(out.join("run.json")).expect("run.json written");
    let report: RunReport = serde_json::from_str(&json).expect("run.json parses");

    assert!(report.requests > 500, "{text}");
    assert!(
        report.events.iter().all(|e| e.ok),
        "kill and restart ran:\n{text}"
    );
    let failover = report.failover.as_ref().expect("a failover record");
    assert_eq!(failover.killed_node.as_deref(), Some("redis-1"), "{text}");
    let promoted = failover
        .new_primary
        .as_ref()
        .unwrap_or_else(|| panic!("no replica was promoted:\n{text}"));
    assert!(
        ["redis-2", "redis-3"].contains(&promoted.name.as_str()),
        "{promoted:?}"
    );
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

    // WAIT 1: what was acknowledged is on a replica, and the promoted replica has it.
    assert!(report.acknowledged_adds.unwrap_or(0) > 100, "{text}");
    assert_eq!(report.acknowledged_adds_lost, Some(0), "{text}");
    assert_eq!(report.acknowledged_logins_lost, Some(0), "{text}");
    assert_eq!(report.session_losses, 0, "{text}");

    // The restart brought the killed node back, as a replica of the new primary.
    let status =
        String::from_utf8_lossy(&lab.command(&["status"]).output().expect("status").stdout)
            .into_owned();
    let redis1 = status
        .lines()
        .find(|l| l.starts_with("redis-1 "))
        .unwrap_or_else(|| panic!("status lists redis-1:\n{status}"));
    assert!(redis1.trim_end().ends_with("replica"), "{status}");
}

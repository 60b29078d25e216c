//! `statelab-load capacity` against the real native lab with CPU budgets (control groups: the
//! test runs as root, as CI does): a second stateless replica buys capacity and a replica is the
//! named limit; an externalized pool behind a Redis with a tiny budget names Redis.

use std::process::Command;

use statelab_formats::lab::LabStatus;
use statelab_load::capacity::bottleneck::PartKind;
use statelab_load::capacity::report::CapacityReport;
use statelab_test_support::{lab_bin_dir, workspace_root, NativeLab, TempDir};

/// Runs a short capacity search of `service` at `replicas` on `lab`, from the start rate to the
/// largest rate of `rates`; returns its record.
fn capacity(
    lab: &NativeLab,
    out: &std::path::Path,
    service: &str,
    replicas: &str,
    rates: [&str; 2],
) -> CapacityReport {
    let proxy = lab.port("proxy");
    let admin = lab.port("admin");
    let run = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .args(["capacity", "--service", service, "--replicas", replicas])
        .args([
            "--step-secs",
            "2",
            "--warmup-secs",
            "1",
            "--bisections",
            "1",
        ])
        .args(["--start-rate", rates[0], "--max-rate", rates[1]])
        .arg("--target")
        .arg(format!("http://127.0.0.1:{proxy}/{service}"))
        .arg("--admin")
        .arg(format!("http://127.0.0.1:{admin}"))
        .arg("--lab")
        .arg(workspace_root().join("scripts/lab"))
        .arg("--out")
        .arg(out)
        .env("STATELAB_LAB_DIR", lab.dir())
        .env("STATELAB_PORTS", "free")
        .env("STATELAB_BIN_DIR", lab_bin_dir())
        .output()
        .expect("run statelab-load capacity");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "capacity failed:\n{text}");
    let json = std::fs::read_to_string(out.join("capacity.json")).expect("capacity.json");
    let html = std::fs::read_to_string(out.join("capacity.html")).expect("capacity.html");
    assert!(html.contains("Capacity against replicas"), "{html}");
    serde_json::from_str(&json).expect("typed capacity.json")
}

#[test]
fn a_second_budgeted_replica_buys_capacity_and_a_tiny_store_budget_names_redis() {
    let tmp = TempDir::new("load-capacity");
    {
        let lab = NativeLab::up_with(
            "load-capacity-replicas",
            &["--replica-cpu", "0.2", "--work-us", "1000"],
        );
        let status: LabStatus =
            serde_json::from_str(&lab.ok(&["--json", "status"])).expect("typed status");
        assert_eq!(
            status.part("stateless-1").and_then(|p| p.cpu_budget),
            Some(0.2),
            "{status:?}"
        );
        assert_eq!(status.part("proxy").and_then(|p| p.cpu_budget), None);

        let r = capacity(
            &lab,
            &tmp.join("stateless"),
            "stateless",
            "1,2",
            ["10", "2000"],
        );
        let caps: Vec<f64> = r.points.iter().filter_map(|p| p.capacity_rps()).collect();
        assert_eq!(caps.len(), 2, "{r:#?}");
        // 0.2 of a core at 1 ms a request is about 200 requests a second; two replicas, twice.
        assert!(caps[1] > 1.5 * caps[0], "{caps:?}");
        for p in &r.points {
            let best = p.best.as_ref().expect("a passing step");
            assert_eq!(best.bottleneck.kind, PartKind::Replica, "{best:#?}");
            assert!(best.bottleneck.utilisation > 0.6, "{best:#?}");
        }
        // The pool is put back to its size before the run.
        let after: LabStatus =
            serde_json::from_str(&lab.ok(&["--json", "status"])).expect("typed status");
        assert!(after.part("stateless-3").is_some_and(|p| p.up), "{after:?}");
        assert!(r.fit.is_some());
    }
    {
        let lab = NativeLab::up_with("load-capacity-store", &["--store-cpu", "0.1"]);
        let r = capacity(
            &lab,
            &tmp.join("externalized"),
            "externalized",
            "2",
            ["80", "320"],
        );
        let best = r.points[0].best.as_ref().expect("a passing step");
        assert_eq!(best.bottleneck.kind, PartKind::Store, "{best:#?}");
        assert_eq!(best.bottleneck.name, "redis");
    }
}

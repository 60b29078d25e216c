//! `statelab-load compare` against the real native lab: the four kill runs, each through the
//! lab's own command, one report for all, and the lab put back as it was found.

use std::process::Command;

use statelab_formats::lab::LabStatus;
use statelab_formats::{Design, Strategy};
use statelab_load::report::Comparison;
use statelab_test_support::{lab_bin_dir, workspace_root, NativeLab, TempDir};

#[test]
fn compare_runs_each_design_and_puts_the_lab_back() {
    let tmp = TempDir::new("load-compare");
    let lab = NativeLab::up("load-compare-lab");
    // A strategy the comparison changes, to see it put back.
    lab.ok(&["strategy", "stateless", "ip-hash"]);

    let out = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .args([
            "compare",
            "--duration",
            "9",
            "--rate",
            "10",
            "--think-ms",
            "50",
        ])
        .arg("--lab")
        .arg(workspace_root().join("scripts/lab"))
        .arg("--out")
        .arg(tmp.join("cmp"))
        .env("STATELAB_LAB_DIR", lab.dir())
        .env("STATELAB_BIN_DIR", lab_bin_dir())
        .output()
        .expect("run statelab-load compare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "compare failed:\n{text}");

    let json = std::fs::read_to_string(tmp.join("cmp/report.json")).expect("report.json");
    let report: Comparison = serde_json::from_str(&json).expect("typed report.json");
    let runs: Vec<(Design, Option<String>, Option<String>)> = report
        .runs
        .iter()
        .map(|r| {
            (
                r.service,
                r.strategy.as_ref().map(|s| s.to_string()),
                r.killed.clone(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            (
                Design::Stateful,
                Some("cookie".into()),
                Some("stateful-2".into())
            ),
            (Design::Stateful, Some("round-robin".into()), None),
            (
                Design::Stateless,
                Some("round-robin".into()),
                Some("stateless-2".into())
            ),
            (
                Design::Externalized,
                Some("round-robin".into()),
                Some("externalized-2".into())
            ),
        ],
        "{text}"
    );
    for r in &report.runs {
        assert!(r.events.iter().all(|e| e.ok), "{text}");
        assert!(
            !r.memory_bytes.is_empty(),
            "memory sampled after each run: {text}"
        );
    }
    // The designs that keep the session out of the replica lose none to its death.
    for r in &report.runs[2..] {
        assert_eq!(r.session_losses, 0, "{}: {text}", r.label);
    }
    for dir in [
        "stateful-cookie",
        "stateless-round-robin",
        "externalized-round-robin",
    ] {
        assert!(tmp.join("cmp").join(dir).join("run.json").exists(), "{dir}");
    }
    assert!(tmp.join("cmp/report.html").exists());
    assert!(
        report
            .title
            .contains("native lab, 9s kill runs at 10 sessions/s"),
        "{}",
        report.title
    );

    // Put back: every replica up (the killed ones started again), the strategies as found.
    let status: LabStatus =
        serde_json::from_str(&lab.ok(&["status", "--json"])).expect("status --json");
    assert!(status.all_up(), "{status:?}");
    let proxy = status.proxy.expect("the proxy's view");
    let strategy = |pool: &str| proxy.pool(pool).map(|p| p.strategy);
    assert_eq!(strategy("stateless"), Some(Strategy::IpHash));
    assert_eq!(strategy("stateful"), Some(Strategy::Cookie));
}

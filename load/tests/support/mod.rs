//! What the load generator's lab tests share: one load run through a native lab's proxy.

use std::path::Path;
use std::process::Command;

use statelab_load::report::RunReport;
use statelab_test_support::{workspace_root, NativeLab};

/// Runs `statelab-load run` against `service` through the lab's proxy with `args`, writing into
/// `out`; returns its report and everything it printed.
pub fn run_load(lab: &NativeLab, service: &str, out: &Path, args: &[&str]) -> (RunReport, String) {
    let proxy = lab.port("proxy");
    let admin = lab.port("admin");
    let lab_cmd = workspace_root().join("scripts/lab");
    let output = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .args(["run", "--service", service, "--quiet"])
        .args(["--target", &format!("http://127.0.0.1:{proxy}/{service}")])
        .args(["--admin", &format!("http://127.0.0.1:{admin}")])
        .args(args)
        .args(["--lab", lab_cmd.to_str().expect("utf-8 path")])
        .arg("--out")
        .arg(out)
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
    (report, text)
}

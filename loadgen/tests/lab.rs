//! The generator against the real native lab: `scripts/lab up` (real services, real proxy, real
//! redis-server) on free ports in a private lab directory, one short run per service with a
//! replica killed through `scripts/lab kill`, and the designs' difference asserted on the
//! generator's own report: the stateful service loses the killed replica's sessions, the
//! stateless and externalized ones lose none.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use statelab_loadgen::report::{Comparison, RunReport};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// The services' and proxy's binaries of this build profile (target/<profile>/), built first if
/// this test was run without them (`cargo test -p statelab-loadgen`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    let names = ["stateful", "stateless", "externalized", "statelab-proxy"];
    if !names.iter().all(|n| dir.join(n).exists()) {
        let status = Command::new(env!("CARGO"))
            .current_dir(root())
            .args([
                "build",
                "--bins",
                "-p",
                "statelab-services",
                "-p",
                "statelab-proxy",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of the lab's binaries failed");
    }
    dir
}

/// A native lab in its own directory on free ports; taken down when dropped.
struct Lab {
    dir: PathBuf,
    bins: PathBuf,
}

impl Lab {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(root().join("scripts/lab"));
        cmd.args(args)
            .env("STATELAB_LAB_DIR", &self.dir)
            .env("STATELAB_PORTS", "free")
            .env("STATELAB_BIN_DIR", &self.bins)
            .env_remove("STATELAB_PROXY_PORT")
            .env_remove("STATELAB_ADMIN_PORT")
            .env_remove("STATELAB_REDIS_PORT");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run scripts/lab");
        assert!(
            out.status.success(),
            "scripts/lab {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn port(&self, name: &str) -> u16 {
        let out = self.run(&["ports"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let (n, p) = l.split_once(' ')?;
                (n == name).then(|| p.trim().parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("scripts/lab ports names no {name}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.command(&["down", "-v"]).output();
    }
}

fn load(lab: &Lab, service: &str, out: &Path) -> RunReport {
    let proxy = lab.port("proxy");
    let admin = lab.port("admin");
    let lab_cmd = root().join("scripts/lab");
    let output = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .args(["run", "--service", service, "--quiet", "--memory"])
        .args(["--target", &format!("http://127.0.0.1:{proxy}/{service}")])
        .args(["--admin", &format!("http://127.0.0.1:{admin}")])
        .args([
            "--rate",
            "30",
            "--think-ms",
            "200",
            "--adds",
            "3",
            "--duration",
            "8",
        ])
        .args(["--kill", &format!("{service}-2@3")])
        .args(["--lab", lab_cmd.to_str().expect("utf-8 path")])
        .arg("--out")
        .arg(out)
        .env("STATELAB_LAB_DIR", &lab.dir)
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
    assert!(out.join("run.html").exists());

    // The run itself happened as planned, whatever the design.
    assert!(report.requests > 500, "{text}");
    assert_eq!(report.killed.as_deref(), Some(&*format!("{service}-2")));
    assert!(report.events.iter().all(|e| e.ok), "{text}");
    let failover = report.failover.as_ref().expect("a failover record");
    assert!((2.9..4.0).contains(&failover.kill_at_s), "{text}");
    for n in 1..=3 {
        let name = format!("{service}-{n}");
        assert!(
            report.per_replica.get(&name).copied().unwrap_or(0) > 0,
            "{name} served nothing:\n{text}"
        );
    }
    // Natively a killed replica refuses connections at once: nothing answers from it later.
    assert!(failover.last_answer_after_kill_s < 1.0, "{text}");
    assert_eq!(
        report.memory_bytes.len(),
        2,
        "the two live replicas' memory:\n{text}"
    );
    assert_eq!(
        report.strategy.as_deref(),
        Some(if service == "stateful" {
            "cookie"
        } else {
            "round-robin"
        })
    );
    report
}

#[test]
fn a_killed_replica_costs_sessions_only_where_they_live_in_it() {
    let tmp = std::env::temp_dir().join(format!("statelab-loadgen-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let lab = Lab {
        dir: tmp.join("lab"),
        bins: bin_dir(),
    };
    lab.run(&["up"]);

    let stateful = load(&lab, "stateful", &tmp.join("stateful"));
    assert!(
        stateful.session_losses > 0 && stateful.losses_unauthorized > 0,
        "killing a stateful replica must lose the sessions it held:\n{}",
        statelab_loadgen::report::summary(&stateful)
    );
    let failover = stateful.failover.as_ref().expect("failover");
    assert!(failover.sessions_lost_after_kill == stateful.session_losses);

    for service in ["stateless", "externalized"] {
        let r = load(&lab, service, &tmp.join(service));
        assert_eq!(
            r.session_losses,
            0,
            "{service} must lose no session when a replica dies:\n{}",
            statelab_loadgen::report::summary(&r)
        );
    }

    // The comparison report merges the runs into the documented format.
    let out = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .arg("report")
        .arg("--out")
        .arg(tmp.join("compare"))
        .args(["stateful", "stateless", "externalized"].map(|s| tmp.join(s).join("run.json")))
        .output()
        .expect("run statelab-load report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(tmp.join("compare/report.json")).expect("report.json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("report.json parses");
    let runs = value["runs"].as_array().expect("a runs array");
    assert_eq!(runs.len(), 3);
    for run in runs {
        for field in [
            "service",
            "strategy",
            "killed",
            "requests",
            "failed_requests",
            "session_losses",
            "p50_ms",
            "p99_ms",
            "throughput_rps",
            "per_replica",
        ] {
            assert!(run.get(field).is_some(), "runs[] lacks {field}");
        }
    }
    let parsed: Comparison = serde_json::from_str(&json).expect("typed report.json");
    assert_eq!(parsed.runs[0].service, "stateful");
    assert!(tmp.join("compare/report.html").exists());

    drop(lab);
    let _ = std::fs::remove_dir_all(&tmp);
}

//! The generator against the real native lab: `scripts/lab up` (real services, real proxy, real
//! redis-server) on free ports in a private lab directory, one short run per service with a
//! replica killed through `scripts/lab kill`, and the designs' difference asserted on the
//! generator's own report: the stateful service loses the killed replica's sessions, the
//! stateless and externalized ones lose none.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod support;

use support::run_load;

use statelab_load::client::{Client, Target};
use statelab_load::config::Routing;
use statelab_load::report::{Comparison, FaultStep, RunReport};
use statelab_test_support::{eventually_blocking, send_signal, NativeLab, Signal, TempDir};

fn load(lab: &NativeLab, service: &str, out: &Path, extra: &[&str]) -> RunReport {
    let kill = format!("{service}-2@3");
    let mut args = vec![
        "--memory",
        "--rate",
        "30",
        "--think-ms",
        "200",
        "--adds",
        "3",
        "--kill",
        &kill,
    ];
    args.extend(extra);
    let (report, text) = run_load(lab, service, out, &args);
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
    // Memory of every live replica: the killed one only if it was started again, and one more
    // for each replica a --scale added.
    let added = report
        .events
        .iter()
        .filter(|e| e.what == FaultStep::Scale)
        .count();
    let live = if extra.contains(&"--restart") { 3 } else { 2 } + added;
    assert_eq!(
        report.memory_bytes.len(),
        live,
        "every live replica's memory:\n{text}"
    );
    assert_eq!(
        report.strategy.map(Routing::as_str),
        Some(if service == "stateful" {
            "cookie"
        } else {
            "round-robin"
        })
    );
    report
}

/// Requests the proxy has sent to `pool`'s replicas so far (its admin status).
fn served(admin: u16, pool: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let target = Target::parse(&format!("http://127.0.0.1:{admin}")).expect("admin URL");
        let mut client = Client::new(target, None, Duration::from_secs(2));
        let answer = client
            .send(http::Method::GET, "/admin/status", None)
            .await
            .result
            .expect("the admin API answers");
        let status: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON status");
        status["pools"]
            .as_array()
            .expect("pools")
            .iter()
            .filter(|p| p["name"] == pool)
            .flat_map(|p| p["replicas"].as_array().expect("a pool's replicas array"))
            .map(|r| {
                r["total_requests"]
                    .as_u64()
                    .expect("a replica's total_requests count")
            })
            .sum()
    })
}

/// Ctrl-C ends a run early; the report is still written, covers what ran and says so.
fn interrupted_run(lab: &NativeLab, out: &Path) {
    let (proxy, admin) = (lab.port("proxy"), lab.port("admin"));
    let before = served(admin, "stateless");
    let mut child = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .args([
            "run",
            "--service",
            "stateless",
            "--quiet",
            "--duration",
            "120",
        ])
        .args(["--target", &format!("http://127.0.0.1:{proxy}/stateless")])
        .args(["--admin", &format!("http://127.0.0.1:{admin}")])
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start statelab-load");
    eventually_blocking("the run to send requests", Duration::from_secs(30), || {
        (served(admin, "stateless") >= before + 100).then_some(())
    });
    send_signal(child.id(), Signal::SIGINT);
    let status = eventually_blocking(
        "statelab-load to stop after Ctrl-C",
        Duration::from_secs(20),
        || child.try_wait().expect("wait"),
    );
    // 130, as a shell reports a command ended by Ctrl-C: scripts running several runs stop too.
    assert_eq!(status.code(), Some(130));
    let report: RunReport = serde_json::from_str(
        &std::fs::read_to_string(out.join("run.json")).expect("run.json after Ctrl-C"),
    )
    .expect("run.json parses");
    assert!(report.interrupted);
    assert!(
        report.duration_s < 60.0 && report.requests > 0,
        "{report:?}"
    );
    assert_eq!(report.timeline.len() as f64, report.duration_s);
}

#[test]
fn a_killed_replica_costs_sessions_only_where_they_live_in_it() {
    let tmp = TempDir::new("load-test");
    let lab = NativeLab::up("load-lab");

    let stateful = load(
        &lab,
        "stateful",
        &tmp.join("stateful"),
        &["--duration", "10", "--restart", "@5"],
    );
    assert!(
        stateful.session_losses > 0 && stateful.losses_unauthorized > 0,
        "killing a stateful replica must lose the sessions it held:\n{}",
        statelab_load::report::summary(&stateful)
    );
    let failover = stateful.failover.as_ref().expect("failover");
    assert!(failover.sessions_lost_after_kill == stateful.session_losses);
    // Started again at 5 s through `scripts/lab start`, the replica takes new clients again.
    let restart = stateful
        .events
        .iter()
        .find(|e| e.what == FaultStep::Restart)
        .unwrap_or_else(|| {
            panic!(
                "no restart event:\n{}",
                statelab_load::report::summary(&stateful)
            )
        });
    assert!(
        restart.ok && (4.9..6.0).contains(&restart.at_s),
        "{restart:?}"
    );
    let back = (restart.at_s + restart.took_s).ceil() as usize;
    assert!(
        stateful.timeline[back..]
            .iter()
            .any(|s| s.per_replica.contains_key("stateful-2")),
        "stateful-2 served nothing after its restart:\n{:?}",
        stateful.timeline
    );

    for service in ["stateless", "externalized"] {
        // The stateless pool also grows by one replica at 1 s, through `scripts/lab scale`.
        let scale = if service == "stateless" {
            vec!["--scale", "stateless=4@1"]
        } else {
            Vec::new()
        };
        let mut extra = vec!["--duration", "8"];
        extra.extend(scale);
        let r = load(&lab, service, &tmp.join(service), &extra);
        assert_eq!(
            r.session_losses,
            0,
            "{service} must lose no session when a replica dies:\n{}",
            statelab_load::report::summary(&r)
        );
        if service == "stateless" {
            let scaled = r
                .events
                .iter()
                .find(|e| e.what == FaultStep::Scale)
                .expect("a scale event");
            assert!(scaled.ok && scaled.replica == "stateless=4", "{scaled:?}");
            assert!(
                r.per_replica.get("stateless-4").is_some_and(|n| *n > 0),
                "the added replica took requests: {:?}",
                r.per_replica
            );
            // The report's account of the growth: the new replica's first request, and live
            // sessions carried across it without a loss.
            let sc = r.scaling.first().expect("a scaling record");
            assert!(
                sc.joined
                    .iter()
                    .any(|j| j.replica == "stateless-4" && j.at_s >= sc.asked_at_s),
                "{sc:?}"
            );
            assert!(
                sc.sessions.carried > 0 && sc.sessions.moved_lost == 0,
                "{sc:?}"
            );
        }
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
    assert_eq!(parsed.runs[0].service, statelab_formats::Design::Stateful);
    assert!(tmp.join("compare/report.html").exists());

    interrupted_run(&lab, &tmp.join("interrupted"));

    // The lab goes down before its directory is removed.
    drop(lab);
    drop(tmp);
}

#[test]
fn growing_an_ip_hash_stateful_pool_loses_the_sessions_it_moves() {
    let tmp = TempDir::new("load-scale");
    let lab = NativeLab::up("load-lab");
    lab.ok(&["strategy", "stateful", "ip-hash"]);
    // Sessions of about 4 s from 250 source addresses; the pool grows 3 -> 4 at 3 s.
    let (r, text) = run_load(
        &lab,
        "stateful",
        &tmp.join("grow"),
        &[
            "--rate",
            "10",
            "--think-ms",
            "200",
            "--adds",
            "20",
            "--duration",
            "9",
            "--sources",
            "250",
            "--scale",
            "stateful=4@3",
        ],
    );
    assert_eq!(r.scaling.len(), 1, "{text}");
    let sc = &r.scaling[0];
    assert!(sc.ok && sc.pool == "stateful" && sc.replicas == 4, "{sc:?}");
    assert!(
        sc.joined.iter().any(|j| j.replica == "stateful-4"),
        "the new replica answered: {sc:?}"
    );
    let c = sc.sessions;
    // ip-hash moves only the clients whose hash now falls on the new replica, and a stateful
    // session that moves finds nothing there: a moved session is lost, unless its move came with
    // its last step (a logout answers 204 with or without a session: about one step in 23).
    assert!(c.carried > 10, "{text}");
    assert!(c.moved > 0 && c.moved < c.carried, "{text}");
    assert!(
        c.moved_lost <= c.moved && c.moved_lost * 4 >= c.moved * 3,
        "{text}"
    );
    assert!(r.session_losses >= c.moved_lost, "{text}");
    // The lab knows the new member, and shrinks back.
    let status = lab.ok(&["status"]);
    assert!(status.contains("stateful-4"), "{status}");
    lab.ok(&["scale", "stateful", "3", "--now"]);
}

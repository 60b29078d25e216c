//! `statelab-load evidence --quick`: a lab of its own, the probes and the kill runs, and an
//! `evidence.json` whose claims agree with the runs and probes it carries.

use std::collections::BTreeSet;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use statelab_formats::Design;
use statelab_load::evidence::claims::{Evidence, Verdict};
use statelab_test_support::{lab_bin_dir, workspace_root, TempDir};

const IDS: [&str; 14] = [
    "crash-loses-sessions",
    "sticky-imbalance",
    "memory-per-session",
    "stateful-lowest-latency",
    "redis-hop-cost",
    "store-spof",
    "instances-disposable",
    "jwt-request-bytes",
    "jwt-not-revocable",
    "jwt-not-encrypted",
    "scale-out",
    "local-file-trap",
    "websocket-exception",
    "replicated-store-loses-nothing",
];

#[test]
fn quick_evidence_answers_every_claim_from_its_own_runs() {
    let tmp = TempDir::new("load-evidence");
    let log = tmp.join("evidence.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_statelab-load"))
        .args(["evidence", "--quick"])
        .arg("--lab")
        .arg(workspace_root().join("scripts/lab"))
        .arg("--out")
        .arg(tmp.join("ev"))
        .env("STATELAB_BIN_DIR", lab_bin_dir())
        .env_remove("STATELAB_LAB_DIR")
        .stdout(std::fs::File::create(&log).expect("a log file"))
        .stderr(std::fs::File::create(tmp.join("evidence.err")).expect("a log file"))
        .spawn()
        .expect("run statelab-load evidence");
    // About a minute; a run that hangs is stopped (Ctrl-C: it takes its lab down) and fails.
    let status = wait_or_interrupt(&mut child, Duration::from_secs(600));
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(tmp.join("evidence.err")).unwrap_or_default()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "evidence failed:\n{text}"
    );
    let json = std::fs::read_to_string(tmp.join("ev/evidence.json")).expect("evidence.json");
    let e: Evidence = serde_json::from_str(&json).expect("typed evidence.json");
    assert!(e.quick);
    let ids: Vec<&str> = e.claims.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, IDS, "every claim, in the table's order");
    assert!(
        e.probes.not_measured.is_empty(),
        "{:?}",
        e.probes.not_measured
    );

    let html = std::fs::read_to_string(tmp.join("ev/evidence.html")).expect("evidence.html");
    let sections: BTreeSet<String> = (0..e.runs.len())
        .map(|i| format!("run-{i}"))
        .chain(
            ["token", "revocation", "bytes", "memory", "redis"]
                .iter()
                .map(|p| format!("probe-{p}")),
        )
        .collect();
    for c in &e.claims {
        match c.verdict {
            // Not measured: no figure, and the reason says so.
            Verdict::NotMeasured => {
                assert!(c.figures.is_empty() && c.run.is_none(), "{c:?}");
                assert!(c.reason.contains("not measured"), "{c:?}");
            }
            _ => {
                assert!(!c.figures.is_empty(), "{c:?}");
                assert!(c.figures.iter().all(|f| f.value.is_finite()), "{c:?}");
                let run = c
                    .run
                    .as_deref()
                    .expect("a measured claim names its section");
                assert!(sections.contains(run), "{run} is not a section");
                assert!(
                    html.contains(&format!("id=\"{run}\"")),
                    "{run} not on the page"
                );
            }
        }
        assert!(
            html.contains(&statelab_load::html::escape(&c.reason)),
            "{c:?}"
        );
    }
    let claim = |id: &str| e.claims.iter().find(|c| c.id == id).expect("claimed");
    let figure = |id: &str, name: &str| {
        claim(id)
            .figures
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{id}: no figure {name}"))
            .value
    };

    // The stateful kill: the sessions lost are among those that were on the killed replica, and
    // the table's figures are the run's.
    let stateful = e
        .runs
        .iter()
        .find(|r| r.service == Design::Stateful && r.failover.is_some())
        .expect("the stateful kill run");
    let f = stateful.failover.as_ref().expect("a kill");
    let on_killed = f.sessions_on_killed.expect("counted");
    assert!(
        f.sessions_lost_after_kill <= on_killed,
        "lost {} of {on_killed}",
        f.sessions_lost_after_kill
    );
    assert!(on_killed > 0, "sessions were on {}", f.replica);
    assert_eq!(
        figure("crash-loses-sessions", "stateful: sessions lost"),
        f.sessions_lost_after_kill as f64
    );
    // Neither other design lost a session to its replica's kill.
    for design in [Design::Stateless, Design::Externalized] {
        assert_eq!(
            figure("crash-loses-sessions", &format!("{design}: sessions lost")),
            0.0
        );
    }

    // The token: read without its key, so the claim that it is encrypted is wrong.
    let token = e.probes.token.as_ref().expect("a token read");
    assert!(token.username_readable && token.cart_lines_readable == token.cart_lines);
    assert_eq!(claim("jwt-not-encrypted").verdict, Verdict::Wrong);

    // Replays: the token works after logout, the session ids do not, and the short-lived token
    // stops after its lifetime.
    for r in &e.probes.replays {
        let want = if r.design == Design::Stateless {
            r.tries
        } else {
            0
        };
        assert_eq!(r.accepted, want, "{r:?}");
    }
    let x = e.probes.expiry.as_ref().expect("the expiry probe");
    assert!(x.accepted_before_exp);
    assert!(x.refused_after_s.expect("refused") >= x.lifetime_s as f64);

    // Bytes: the session ids do not grow with the cart; the token does.
    for b in &e.probes.request_bytes {
        if b.design == Design::Stateless {
            assert!(b.full_cart > b.empty_cart, "{b:?}");
        } else {
            assert_eq!(b.full_cart, b.empty_cart, "{b:?}");
        }
    }

    // The Redis kill: requests failed while it was down, and every failure is in the run.
    let spof = e
        .runs
        .iter()
        .find(|r| r.failover.as_ref().is_some_and(|f| f.replica == "redis"))
        .expect("the Redis kill run");
    assert!(
        spof.failed_requests > 0,
        "requests failed while Redis was down"
    );
    assert_eq!(
        figure("store-spof", "requests failed"),
        spof.failover
            .as_ref()
            .and_then(|f| f.failure_window.as_ref())
            .map_or(0, |w| w.failed) as f64
    );
    let share = figure("store-spof", "share failed in the seconds Redis was down");
    assert!(share > 0.0 && share <= 100.0, "{share}");
}

/// The child's exit status once it exits, polled every 200 ms; past `within`, SIGINT (so it takes
/// its lab down), a further 60 s, then `None`.
fn wait_or_interrupt(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let grace = Instant::now() + Duration::from_secs(60);
    while Instant::now() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

//! The evidence on the Docker lab: `statelab-load evidence --docker --quick` brings up a compose
//! project and network of its own (`statelab-evidence`, 10.231.10.0/24) with the image under
//! test, reaches every replica and Redis at their addresses in that network, and takes it all
//! down again.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use statelab_formats::Design;
use statelab_load::evidence::claims::{Evidence, Verdict};

use crate::checks::{Checks, POLL_EVERY};
use crate::lab::E2eLab;

/// The evidence's compose project.
const PROJECT: &str = "statelab-evidence";

pub async fn quick(lab: &E2eLab, load: &Result<std::path::PathBuf, String>, checks: &Checks) {
    let Ok(load) = load else {
        checks.fail("evidence --docker: statelab-load available", "no binary");
        return;
    };
    let out = lab.tmp.join("evidence");
    let log = lab.tmp.join("evidence.log");
    checks.log("statelab-load evidence --docker --quick (a lab of its own)");
    let status = run(lab, load, &out, &log).await;
    let ok = status.is_some_and(|s| s.success());
    if !checks.check(
        "evidence --docker --quick: ran to the end in its own Docker lab",
        ok,
        format!("exit {status:?}; its log: {}", log.display()),
    ) {
        for line in std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
        {
            checks.log(format!("    {line}"));
        }
    }
    let label = format!("label=com.docker.compose.project={PROJECT}");
    let mut left = Vec::new();
    let mut unasked = Vec::new();
    for list in [
        &["ps", "-aq"][..],
        &["network", "ls", "-q"],
        &["volume", "ls", "-q"],
    ] {
        match Command::new("docker")
            .args(list)
            .args(["--filter", &label])
            .output()
        {
            Ok(out) if out.status.success() => left.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| format!("{}: {l}", list[0])),
            ),
            other => unasked.push(format!("docker {}: {other:?}", list.join(" "))),
        }
    }
    checks.check(
        format!(
            "evidence --docker: its lab is down, no container, network or volume of project {PROJECT} left"
        ),
        left.is_empty() && unasked.is_empty(),
        format!("left: {left:?}; not asked: {unasked:?}"),
    );
    if !ok {
        return;
    }
    let e: Evidence = match std::fs::read_to_string(out.join("evidence.json"))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(why) => {
            checks.fail("evidence --docker: a typed evidence.json", why);
            return;
        }
    };
    checks.check(
        "evidence --docker: evidence.json says it ran in Docker, short mode",
        e.mode == "docker" && e.quick,
        format!("mode {}, quick {}", e.mode, e.quick),
    );
    checks.check(
        "evidence --docker: every probe measured (replicas and Redis reached in the lab network)",
        e.probes.not_measured.is_empty(),
        format!("{:?}", e.probes.not_measured),
    );
    let grew = |design: Design, what: &str| {
        e.probes
            .memory
            .iter()
            .find(|m| m.design == design && m.what == what)
            .map(|m| m.bytes_per_session)
    };
    let (stateful, redis) = (
        grew(Design::Stateful, "replica RSS"),
        grew(Design::Externalized, "Redis used_memory"),
    );
    checks.check(
        format!(
            "evidence --docker: memory per session in a stateful container ({stateful:?} bytes) and in Redis's ({redis:?})"
        ),
        stateful.is_some_and(|b| b > 0.0) && redis.is_some_and(|b| b > 0.0),
        "no growth measured",
    );
    let rt = e.probes.redis_round_trip.as_ref();
    checks.check(
        format!(
            "evidence --docker: a Redis round trip across the lab's bridge (p50 {:?} ms)",
            rt.map(|r| r.p50_ms)
        ),
        rt.is_some_and(|r| r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms),
        format!("{rt:?}"),
    );
    let replays_right = e.probes.replays.len() == 3
        && e.probes.replays.iter().all(|r| {
            r.accepted
                == if r.design == Design::Stateless {
                    r.tries
                } else {
                    0
                }
        });
    checks.check(
        "evidence --docker: a logged-out token replayed works, a session id does not",
        replays_right,
        format!("{:?}", e.probes.replays),
    );
    let verdict = |id: &str| e.claims.iter().find(|c| c.id == id).map(|c| c.verdict);
    checks.check(
        "evidence --docker: the stateful kill lost sessions, the others none (holds)",
        verdict("crash-loses-sessions") == Some(Verdict::Holds),
        format!("{:?}", verdict("crash-loses-sessions")),
    );
    checks.check(
        "evidence --docker: Redis killed failed requests (the store is the SPOF: holds)",
        verdict("store-spof") == Some(Verdict::Holds),
        format!("{:?}", verdict("store-spof")),
    );
}

/// Runs the evidence with the image under test and this build's binaries, outside the lab
/// under test's settings. Past 10 minutes it is interrupted (Ctrl-C: it takes its lab down) and
/// given a further minute.
async fn run(lab: &E2eLab, load: &Path, out: &Path, log: &Path) -> Option<ExitStatus> {
    let file = std::fs::File::create(log).ok()?;
    let mut child = Command::new(load)
        .args(["evidence", "--docker", "--quick", "--out"])
        .arg(out)
        .arg("--lab")
        .arg(lab.lab_script())
        .current_dir(&lab.root)
        .env("STATELAB_IMAGE", &lab.image)
        .env("STATELAB_BIN_DIR", lab.bin_dir())
        .env_remove("STATELAB_LAB_DIR")
        .env_remove("STATELAB_PROJECT")
        .env_remove("STATELAB_SUBNET")
        .stdin(Stdio::null())
        .stdout(file.try_clone().ok()?)
        .stderr(file)
        .spawn()
        .ok()?;
    for (limit, interrupt) in [(600, true), (60, false)] {
        let deadline = Instant::now() + Duration::from_secs(limit);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        if interrupt {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

//! The pools under change: one scaled out and back in, ip-hash behind Docker's NAT and behind a
//! trusted in-network client, and the load generator killing a replica mid-run through
//! `scripts/lab`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use statelab_formats::{Design, Strategy};
use statelab_load::report::{read_run, FaultStep, RunReport};

use crate::checks::{poll, Checks, POLL_EVERY};
use crate::http::{anonymous_get, Admin, Listed};
use crate::lab::{run_logged, show_tail, E2eLab};
use crate::shop::served_by;

/// `scripts/lab scale stateless 4`: a fourth container takes traffic; `scale stateless 3`: it is
/// drained out of the proxy and removed.
pub async fn scale(lab: &E2eLab, admin: &Admin, checks: &Checks) {
    let grown = lab.scale(Design::Stateless, 4).await;
    let name = "scale stateless 4: a stateless-4 container started, healthy, registered and \
                routed to";
    let added = grown.as_ref().is_ok_and(|s| s.added == ["stateless-4"]);
    if !checks.check(name, added, format!("{grown:?}")) {
        return;
    }
    let reached = poll(Duration::from_secs(30), POLL_EVERY, || async {
        served_by(lab, Design::Stateless, "stateless-4")
            .await
            .then_some(())
    })
    .await;
    checks.check(
        "stateless-4 serves traffic through the proxy",
        reached.is_some(),
        "no fresh client reached it within 30 s",
    );
    let shrunk = lab.scale(Design::Stateless, 3).await;
    let removed = shrunk.as_ref().is_ok_and(|s| s.removed == ["stateless-4"]);
    if !checks.check(
        "scripts/lab scale stateless 3",
        removed,
        format!("{shrunk:?}"),
    ) {
        return;
    }
    let listed = admin.listed("stateless-4").await;
    checks.check(
        "scale stateless 3: stateless-4 drained out of the proxy",
        listed == Listed::Missing,
        format!("the admin status still lists it ({listed:?})"),
    );
    let left = lab.service_container("stateless-4").await;
    checks.check(
        "scale stateless 3: the stateless-4 container is gone",
        left.is_none(),
        format!("container {left:?} is still there"),
    );
}

/// Clients named in `X-Forwarded-For` by the ip-hash checks.
fn forwarded_clients() -> Vec<String> {
    (1..=12).map(|i| format!("198.51.100.{i}")).collect()
}

/// ip-hash behind Docker NAT: from the host every client is the bridge gateway (and a spoofed
/// `X-Forwarded-For` is ignored), so one replica takes all; a load generator inside the lab
/// network is a trusted proxy, and the clients it names spread.
pub async fn ip_hash(lab: &E2eLab, admin: &Admin, checks: &Checks) {
    let switched = admin.set_strategy(Design::Stateful, Strategy::IpHash).await;
    if !checks.check(
        "switch the stateful pool to ip-hash through the admin API",
        switched,
        "PUT /admin/pools/stateful/strategy was not answered 2xx",
    ) {
        return;
    }
    let mut from_host = BTreeSet::new();
    for client in forwarded_clients() {
        let headers = [("x-forwarded-for", client.as_str())];
        let answer = anonymous_get(&lab.proxy_url(), "/stateful/health", &headers).await;
        from_host.extend(answer.replica);
    }
    checks.check(
        format!(
            "ip-hash from the host: 12 clients (spoofed X-Forwarded-For ignored) on {} \
             replica(s), want 1 (NAT)",
            from_host.len()
        ),
        from_host.len() == 1,
        format!("replicas: {from_host:?}"),
    );

    let inside = in_network_spread(lab).await;
    let detail = format!("replicas: {inside:?}");
    let inside = inside.map_or(0, |set| set.len());
    checks.check(
        format!(
            "ip-hash from a trusted in-network load generator: 12 clients on {inside} \
             replicas, want >1"
        ),
        inside > 1,
        detail,
    );

    let back = admin.set_strategy(Design::Stateful, Strategy::Cookie).await;
    checks.check(
        "switch the stateful pool back to cookie",
        back,
        "PUT /admin/pools/stateful/strategy was not answered 2xx",
    );
}

/// The replicas the lab image's `statelab-client` reached for the 12 clients, sent from a
/// container at the lab network's `.250` (inside the proxy's trusted range).
async fn in_network_spread(lab: &E2eLab) -> Result<BTreeSet<String>, String> {
    let net = lab.network().await.ok_or("no lab network")?;
    let ip = format!("{}.250", lab.net_prefix());
    let tag = lab.client_tag();
    let clients = forwarded_clients();
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        &net,
        "--ip",
        &ip,
        "--label",
        &tag,
        &lab.image,
        "statelab-client",
    ];
    args.extend(clients.iter().map(String::as_str));
    let ran = lab.docker(&args, Duration::from_secs(60)).await;
    if !ran.ok {
        return Err(ran.why());
    }
    // A replica's name per answer; `connect-failed` for a client that got none.
    Ok(ran
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("stateful-"))
        .collect())
}

/// The generator's runs: a 6 s shop run on each of two designs with one replica killed at 2 s and
/// started again at 4 s through `scripts/lab`; the stateful users lose sessions, the
/// externalized ones none. Then every replica is healthy again.
pub async fn load_runs(
    lab: &E2eLab,
    admin: &Admin,
    load: &Result<PathBuf, String>,
    checks: &Checks,
) {
    let load = match load {
        Ok(path) => {
            checks.pass(format!("statelab-load available ({})", path.display()));
            path
        }
        Err(why) => {
            checks.fail("statelab-load available", why);
            return;
        }
    };
    for (design, victim) in [
        (Design::Stateful, "stateful-3"),
        (Design::Externalized, "externalized-3"),
    ] {
        let Some(report) = load_run(lab, load, design, victim, checks).await else {
            continue;
        };
        let ok = |step: FaultStep| {
            let event = report.events.iter().rfind(|e| e.what == step);
            event.is_some_and(|e| e.ok)
        };
        let (kill_ok, restart_ok) = (ok(FaultStep::Kill), ok(FaultStep::Restart));
        checks.check(
            format!(
                "statelab-load: {victim} killed and started again mid-run through scripts/lab \
                 (kill {kill_ok}, start {restart_ok})"
            ),
            kill_ok && restart_ok,
            format!("events: {:?}", report.events),
        );
        let (lost, failed) = (report.session_losses, report.failed_requests);
        if design == Design::Stateful {
            checks.check(
                format!(
                    "statelab-load: stateful users lost {lost} session(s) with {victim} \
                     ({failed} failed requests), want >0"
                ),
                lost > 0,
                "no session lost with the replica that held them",
            );
        } else {
            checks.check(
                format!(
                    "statelab-load: {victim} killed mid-run, {lost} session(s) lost ({failed} \
                     failed requests), want 0 lost"
                ),
                lost == 0,
                format!("{lost} sessions lost"),
            );
        }
    }
    let healthy = poll(Duration::from_secs(60), POLL_EVERY, || async {
        admin.all_nine_healthy().await.then_some(())
    })
    .await;
    checks.check(
        "all nine replicas healthy again after the load runs",
        healthy.is_some(),
        "not within 60 s",
    );
}

/// One run of `statelab-load` from the host against `design`'s pool, `victim` killed at 2 s and
/// started at 4 s; its `run.json`, or a FAIL line saying why there is none.
async fn load_run(
    lab: &E2eLab,
    load: &Path,
    design: Design,
    victim: &str,
    checks: &Checks,
) -> Option<RunReport> {
    let out = lab.tmp.join(format!("load-{design}"));
    let log = lab.tmp.join(format!("load-{design}.log"));
    let mut cmd = lab.load_command(load, design);
    cmd.args(["--duration", "6"])
        .arg("--kill")
        .arg(format!("{victim}@2"))
        .args(["--restart", "@4", "--out"])
        .arg(&out);
    // Its exit status is not the verdict: the report is.
    run_logged(cmd, &log).await;
    let name = format!("statelab-load on {design}: a readable report in run.json");
    match read_run(&out.join("run.json")) {
        Ok(report) => {
            checks.pass(name);
            Some(report)
        }
        Err(e) => {
            checks.fail(name, format!("{e}; its output ended:"));
            show_tail(&log, 3);
            None
        }
    }
}

//! The Sentinel store's split brain: the primary cut off from the other Redis nodes and the
//! Sentinels (`scripts/lab partition redis-primary`) while the externalized replicas still reach
//! it. With asynchronous replication, the cart adds it acknowledged in that time are gone once the
//! partition heals and it becomes a replica of the node promoted meanwhile; with `--redis-wait 1`
//! it acknowledges none of them, and nothing acknowledged is lost. `heal` leaves no rule behind.
//! Then `statelab-load run --partition redis-primary@2 --heal @6` does the same under load, and
//! its report counts what was lost.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use statelab_formats::lab::{Healed, Partitioned};
use statelab_formats::Design;

use crate::checks::{poll, Checks, POLL_EVERY};
use crate::http::Shopper;
use crate::lab::{run_logged, show_tail, E2eLab};
use statelab_load::report::{read_run, FaultStep, RunReport};

/// How long the user adds to the cart right after the cut: well inside the Sentinels'
/// `down-after-milliseconds` (1 s), so every add reaches the node that was cut off.
const ADDING: Duration = Duration::from_millis(600);

/// The rules of the partition's chain in a container's network namespace, as `iptables -S`
/// lists the table; `None` when the chain is not there (a failure to list it fails the test).
async fn chain_in(lab: &E2eLab, container: &str) -> Option<Vec<String>> {
    let pid = lab
        .docker(
            &["inspect", "-f", "{{.State.Pid}}", container],
            Duration::from_secs(30),
        )
        .await;
    let pid = pid.stdout.trim().to_string();
    let out = lab
        .command("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["iptables", "-w", "-S"])
        .output()
        .await
        .ok()?;
    assert!(
        out.status.success(),
        "iptables -S in the container's namespace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().any(|l| l == "-N STATELAB-PARTITION").then(|| {
        text.lines()
            .filter(|l| l.starts_with("-A STATELAB-PARTITION "))
            .map(str::to_string)
            .collect()
    })
}

/// The role `scripts/lab status` gives a Redis node.
async fn role(lab: &E2eLab, node: &str) -> Option<String> {
    let status = lab.status().await?;
    status.parts.into_iter().find(|p| p.name == node)?.role
}

/// One partition of the Sentinel lab's primary, healed once a replica has been promoted; the
/// acknowledged adds made meanwhile, and how many of them the cart still has.
async fn split_brain(lab: &E2eLab, what: &str, checks: &Checks) -> Option<(usize, usize)> {
    let user = Shopper::new(&format!("partition-user-{what}"), &lab.proxy_url());
    let login = user.login(Design::Externalized).await;
    let add = user.add(Design::Externalized, "apple", 1).await;
    checks.check(
        format!("{what}: login and one apple before the partition"),
        login.is(200) && add.is(200),
        format!("got {} and {}", login.code(), add.code()),
    );
    let before = lab.primaries().await;
    let (ran, cut) = lab
        .lab_json::<Partitioned>("partition", &["redis-primary"])
        .await;
    let Some(cut) = cut.filter(|_| ran.ok) else {
        checks.fail(
            format!("{what}: scripts/lab partition redis-primary"),
            ran.why(),
        );
        return None;
    };
    checks.check(
        format!(
            "{what}: scripts/lab partition cut {} off from {}",
            cut.node,
            cut.cut_off.join(" ")
        ),
        before.contains(&cut.node) && cut.cut_off.len() == 5,
        format!("primary before: {before:?}; {cut:?}"),
    );
    let container = lab.service_container(&cut.node).await.unwrap_or_default();
    let rules = chain_in(lab, &container).await;
    checks.check(
        format!(
            "{what}: the cut is a chain in {}'s own network namespace",
            cut.node
        ),
        rules.as_ref().is_some_and(|r| r.len() == 10),
        format!("{rules:?}"),
    );
    // Adds right after the cut: the replicas still hold the node that was cut off.
    let started = Instant::now();
    let (mut acknowledged, mut refused) = (0usize, 0usize);
    while started.elapsed() < ADDING {
        if user.add(Design::Externalized, "pear", 1).await.is(200) {
            acknowledged += 1;
        } else {
            refused += 1;
        }
    }
    checks.log(format!(
        "{what}: {acknowledged} pears acknowledged and {refused} refused in the first {} ms of the partition",
        ADDING.as_millis()
    ));
    let promoted = poll(Duration::from_secs(30), POLL_EVERY, || async {
        let now = lab.primaries().await;
        (now.len() == 1 && now[0] != cut.node).then(|| now[0].clone())
    })
    .await;
    checks.check(
        format!(
            "{what}: the Sentinels promoted another node ({promoted:?}) while {} was cut off",
            cut.node
        ),
        promoted.is_some(),
        "no other primary within 30 s",
    );
    let old_role = role(lab, &cut.node).await;
    checks.check(
        format!("{what}: split brain: {} still says it is primary", cut.node),
        old_role.as_deref() == Some("primary"),
        format!("its role: {old_role:?}"),
    );
    let (ran, healed) = lab.lab_json::<Healed>("heal", &[]).await;
    checks.check(
        format!("{what}: scripts/lab heal"),
        ran.ok && healed.is_some_and(|h| h.healed == [cut.node.clone()]),
        ran.why(),
    );
    let rules = chain_in(lab, &container).await;
    checks.check(
        format!(
            "{what}: no rule left in {}'s namespace after heal",
            cut.node
        ),
        rules.is_none(),
        format!("{rules:?}"),
    );
    let demoted = poll(Duration::from_secs(30), POLL_EVERY, || async {
        (role(lab, &cut.node).await.as_deref() == Some("replica")).then_some(())
    })
    .await;
    checks.check(
        format!(
            "{what}: {} rejoined as a replica of the new primary",
            cut.node
        ),
        demoted.is_some(),
        "its role did not become replica within 30 s",
    );
    let cart = poll(Duration::from_secs(30), POLL_EVERY, || async {
        let cart = user.get("/externalized/cart").await;
        cart.is(200).then_some(cart)
    })
    .await;
    let Some(cart) = cart else {
        checks.fail(
            format!("{what}: the cart answers after the heal"),
            "no 200 within 30 s",
        );
        return None;
    };
    let pears = usize::try_from(cart.qty("pear").unwrap_or(0)).unwrap_or(usize::MAX);
    checks.check(
        format!("{what}: the apple from before the partition is in the cart"),
        cart.qty("apple") == Some(1),
        format!("{} {}", cart.code(), cart.body),
    );
    let lost = acknowledged.saturating_sub(pears);
    checks.log(format!(
        "{what}: {acknowledged} pears acknowledged during the partition, {pears} in the cart after it healed: {lost} acknowledged adds lost"
    ));
    Some((acknowledged, lost))
}

/// `statelab-load run` on the externalized pool for 12 s, the primary cut off at 2 s and healed at
/// 6 s; its report, checked for the partition's record.
async fn load_run(lab: &E2eLab, load: &Path, what: &str, checks: &Checks) -> Option<RunReport> {
    let tag: String = what.chars().filter(char::is_ascii_alphanumeric).collect();
    let out = lab.tmp.join(format!("load-partition-{tag}"));
    let log = lab.tmp.join(format!("load-partition-{tag}.log"));
    let mut cmd = lab.load_command(load, Design::Externalized);
    cmd.args(["--duration", "12"])
        .args(["--partition", "redis-primary@2", "--heal", "@6", "--out"])
        .arg(&out);
    // Its exit status is not the verdict: the report is.
    run_logged(cmd, &log).await;
    let report = match read_run(&out.join("run.json")) {
        Ok(report) => report,
        Err(e) => {
            checks.fail(
                format!("{what}: statelab-load --partition: a readable run.json"),
                e,
            );
            show_tail(&log, 5);
            return None;
        }
    };
    let steps: Vec<(FaultStep, bool)> = report.events.iter().map(|e| (e.what, e.ok)).collect();
    checks.check(
        format!("{what}: statelab-load recorded the partition and the heal"),
        steps == [(FaultStep::Partition, true), (FaultStep::Heal, true)],
        format!("events: {:?}", report.events),
    );
    let failover = report.failover.as_ref();
    checks.check(
        format!(
            "{what}: the report's failover is the partition's, with the node cut off, what from, and \
             the primary promoted meanwhile ({:?})",
            failover.and_then(|f| f.new_primary.as_ref()).map(|p| &p.name)
        ),
        failover.is_some_and(|f| {
            f.fault == FaultStep::Partition
                && f.killed_node.is_some()
                && f.cut_off.as_ref().is_some_and(|c| c.len() == 5)
                && f.restart_at_s.is_some()
                && f.new_primary.is_some()
        }),
        format!("{failover:?}"),
    );
    Some(report)
}

/// The lab up with `--redis sentinel` and these words more, the split brain, a load run with a
/// partition, and the lab down.
async fn run(
    lab: &E2eLab,
    load: Option<&PathBuf>,
    what: &str,
    extra: &[&str],
    checks: &Checks,
) -> Option<((usize, usize), Option<RunReport>)> {
    let log = lab.tmp.join(format!("up-{what}.log"));
    let mut args = vec!["up", "--docker", "--redis", "sentinel"];
    args.extend(extra);
    let up = lab
        .lab_logged(&args, &[("STATELAB_SKIP_IMAGE_BUILD", "1")], &log)
        .await;
    if !checks.check(
        format!("{what}: scripts/lab {}", args.join(" ")),
        up,
        "its log above",
    ) {
        show_tail(&log, 40);
        return None;
    }
    let result = split_brain(lab, what, checks).await;
    let report = match load {
        Some(load) => load_run(lab, load, what, checks).await,
        None => None,
    };
    let down = lab.lab(&["down", "-v"]).await;
    checks.check(format!("{what}: scripts/lab down -v"), down.ok, down.why());
    Some((result?, report))
}

/// Acknowledged adds and logins the report found lost from the cut's second on.
fn lost_in(report: &RunReport) -> (u64, u64, u64) {
    let f = report.failover.as_ref();
    (
        f.and_then(|f| f.acknowledged_adds).unwrap_or(0),
        f.and_then(|f| f.acknowledged_adds_lost).unwrap_or(0),
        f.and_then(|f| f.acknowledged_logins_lost).unwrap_or(0),
    )
}

pub async fn partitions(lab: &E2eLab, load: &Result<PathBuf, String>, checks: &Checks) {
    let load = match load {
        Ok(path) => Some(path),
        Err(why) => {
            checks.fail("statelab-load for the partition runs", why);
            None
        }
    };
    if let Some(((acknowledged, lost), report)) =
        run(lab, load, "sentinel, asynchronous", &[], checks).await
    {
        checks.check(
            format!(
                "asynchronous replication: acknowledged adds lost across the partition ({lost} of {acknowledged})"
            ),
            lost > 0,
            "none lost: the lesson did not show",
        );
        if let Some(report) = report {
            let (adds, adds_lost, logins_lost) = lost_in(&report);
            checks.check(
                format!(
                    "asynchronous replication under load: the report counts acknowledged writes lost \
                     from the cut on ({adds_lost} of {adds} adds, {logins_lost} logins)"
                ),
                adds_lost + logins_lost > 0,
                "none counted",
            );
        }
    }
    if let Some(((acknowledged, lost), report)) = run(
        lab,
        load,
        "sentinel, --redis-wait 1",
        &["--redis-wait", "1"],
        checks,
    )
    .await
    {
        checks.check(
            format!(
                "--redis-wait 1: no acknowledged add lost across the partition ({acknowledged} acknowledged)"
            ),
            lost == 0,
            format!("{lost} lost"),
        );
        if let Some(report) = report {
            let (adds, adds_lost, logins_lost) = lost_in(&report);
            checks.check(
                format!(
                    "--redis-wait 1 under load: no acknowledged write lost ({adds} adds acknowledged \
                     from the cut on)"
                ),
                adds_lost == 0 && logins_lost == 0,
                format!("{adds_lost} adds and {logins_lost} logins lost"),
            );
        }
    }
}

//! The externalized sessions' store: Redis killed and started, its container removed and created
//! again (the data is on the named volume), `down -v` leaving nothing behind; then the Sentinel
//! topology, whose primary is killed, and the Cluster topology, whose fullest primary is killed.
//! The externalized users keep session and cart through each.

use std::time::{Duration, Instant};

use statelab_formats::Design;

use crate::checks::{poll, Checks, POLL_EVERY};
use crate::http::{Admin, Answer, Shopper};
use crate::lab::{show_tail, E2eLab};

/// Polls `GET path` for the user until it is answered 200, for at most 30 s.
async fn answered(user: &Shopper, path: &str) -> Option<Answer> {
    poll(Duration::from_secs(30), POLL_EVERY, || async {
        let answer = user.get(path).await;
        answer.is(200).then_some(answer)
    })
    .await
}

/// After a Redis outage: the service answers again by itself, the session and the cart (2
/// apples, 1 pear) are whole, and every replica is healthy in the proxy.
async fn externalized_whole(user: &Shopper, admin: &Admin, after: &str, checks: &Checks) {
    let me = answered(user, "/externalized/me").await;
    checks.check(
        format!("externalized: service recovers by itself after {after}"),
        me.is_some(),
        "GET /externalized/me not answered 200 within 30 s",
    );
    let name = me.as_ref().and_then(Answer::username);
    checks.check(
        format!(
            "externalized: session survived {after} (user {})",
            name.as_deref().unwrap_or("?")
        ),
        name.as_deref() == Some(user.name.as_str()),
        format!("want {}", user.name),
    );
    let cart = user.get("/externalized/cart").await;
    let (apples, pears) = (cart.qty("apple"), cart.qty("pear"));
    checks.check(
        format!("externalized: cart survived {after} (2 apples, 1 pear)"),
        apples == Some(2) && pears == Some(1),
        format!(
            "apples {apples:?}, pears {pears:?}; {} {}",
            cart.code(),
            cart.body
        ),
    );
    let healthy = poll(Duration::from_secs(30), POLL_EVERY, || async {
        admin.all_nine_healthy().await.then_some(())
    })
    .await;
    checks.check(
        format!("externalized: all replicas healthy in the proxy after {after}"),
        healthy.is_some(),
        "not within 30 s",
    );
}

/// Redis killed: the externalized service answers 503 at once; Redis started again: it
/// recovers by itself with the session and cart whole (append-only file on the volume).
pub async fn redis_restart(lab: &E2eLab, admin: &Admin, user: &Shopper, checks: &Checks) {
    let killed = lab.kill("redis").await;
    checks.check(
        "scripts/lab kill redis",
        killed.as_ref().is_ok_and(|k| k.killed == "redis"),
        format!("{killed:?}"),
    );
    let me = user.get("/externalized/me").await;
    checks.check(
        format!(
            "externalized: Redis down answers 503 at once (got {} in {} ms)",
            me.code(),
            me.ms
        ),
        me.is(503) && me.ms < 5000,
        "want 503 within 5000 ms",
    );
    let started = lab.start("redis").await;
    checks.check(
        "scripts/lab start redis",
        started.as_ref().is_ok_and(|st| st.started == "redis"),
        format!("{started:?}"),
    );
    externalized_whole(user, admin, "the Redis restart", checks).await;
}

/// The Redis container removed and created anew with the lab's own compose settings: the data
/// lives on the named volume, so the session and cart are still there.
pub async fn redis_recreate(lab: &E2eLab, admin: &Admin, user: &Shopper, checks: &Checks) {
    let old = lab.service_container("redis").await;
    let log = lab.tmp.join("recreate.log");
    let recreated = lab.compose_logged(&["rm", "-sf", "redis"], &log).await
        && (lab.compose_logged(&["up", "-d", "--no-deps", "--no-build", "redis"], &log)).await;
    if !recreated {
        show_tail(&log, 40);
    }
    if !checks.check(
        "redis: compose rm -sf redis, then compose up -d redis",
        recreated,
        "compose failed (its log above)",
    ) {
        return;
    }
    let new = lab.service_container("redis").await;
    let short = |id: &Option<String>| {
        id.as_deref()
            .unwrap_or("none")
            .chars()
            .take(12)
            .collect::<String>()
    };
    checks.check(
        format!(
            "redis: container removed and created anew ({} -> {})",
            short(&old),
            short(&new)
        ),
        new.is_some() && new != old,
        "no new container",
    );
    externalized_whole(user, admin, "a new Redis container", checks).await;
}

/// `scripts/lab down -v`, then no container (`what` names the topology in the checks' names).
async fn down(lab: &E2eLab, what: &str, checks: &Checks) {
    let log = lab.tmp.join(format!("down{what}.log"));
    let ok = lab.lab_logged(&["down", "-v"], &[], &log).await;
    if !ok {
        show_tail(&log, 40);
    }
    checks.check(
        format!("scripts/lab down -v{what}"),
        ok,
        "it failed (its log above)",
    );
    let left = lab.containers(&[lab.project_label()]).await;
    checks.check(
        format!("down -v{what}: no container left"),
        left.is_empty(),
        format!("left: {left:?}"),
    );
}

/// `scripts/lab down -v` leaves no container, in-network client, network or volume of the
/// project.
pub async fn down_leaves_nothing(lab: &E2eLab, checks: &Checks) {
    down(lab, "", checks).await;
    let clients = lab.containers(&[lab.client_label()]).await;
    checks.check(
        "down -v: no load generator left",
        clients.is_empty(),
        format!("left: {clients:?}"),
    );
    for kind in ["network", "volume"] {
        let left = lab.project_objects(kind).await;
        checks.check(
            format!("down -v: no {kind} left"),
            left.is_empty(),
            format!("left: {left:?}"),
        );
    }
}

/// `scripts/lab up --docker --redis TOPOLOGY` with the images already built: how long it took,
/// `None` when it failed (its log shown).
async fn up_topology(lab: &E2eLab, topology: &str, checks: &Checks) -> Option<Duration> {
    checks.log(format!(
        "the {topology} topology (scripts/lab up --docker --redis {topology}, the images already \
         built)"
    ));
    let log = lab.tmp.join(format!("up-{topology}.log"));
    let started = Instant::now();
    let args = ["up", "--docker", "--redis", topology];
    let skip = [("STATELAB_SKIP_IMAGE_BUILD", "1")];
    if lab.lab_logged(&args, &skip, &log).await {
        Some(started.elapsed())
    } else {
        show_tail(&log, 40);
        None
    }
}

/// Sentinel: the primary killed, a replica promoted without help, the externalized user's cart
/// whole; the killed node comes back as a replica.
pub async fn sentinel(lab: &E2eLab, checks: &Checks) {
    if let Some(took) = up_topology(lab, "sentinel", checks).await {
        checks.pass(format!(
            "sentinel: redis-1..3 and sentinel-1..3 up, replicas in sync, every Sentinel ready, \
             in {} s",
            took.as_secs()
        ));
        sentinel_failover(lab, checks).await;
    } else {
        checks.fail(
            "scripts/lab up --docker --redis sentinel",
            "it failed (its log above)",
        );
    }
    down(lab, " (sentinel)", checks).await;
}

async fn sentinel_failover(lab: &E2eLab, checks: &Checks) {
    let user = Shopper::new("sentinel-user", &lab.proxy_url());
    let login = user.login(Design::Externalized).await;
    let add = user.add(Design::Externalized, "apple", 2).await;
    checks.check(
        format!(
            "sentinel: login and cart add answered (got {} and {})",
            login.code(),
            add.code()
        ),
        login.is(200) && add.is(200),
        "want 200 and 200",
    );
    let at_start = lab.primaries().await;
    checks.check(
        "sentinel: redis-1 is the primary at start",
        at_start == ["redis-1"],
        format!("primaries: {at_start:?}"),
    );
    let killed_at = Instant::now();
    let killed = lab.kill("redis-primary").await;
    checks.check(
        "scripts/lab kill redis-primary (the primary at start)",
        killed.as_ref().is_ok_and(|k| at_start.contains(&k.killed)),
        format!("{killed:?}"),
    );
    let cart = answered(&user, "/externalized/cart").await;
    checks.check(
        "sentinel: requests work again by themselves after the primary's kill",
        cart.is_some(),
        "GET /externalized/cart not answered 200 within 30 s",
    );
    checks.log(format!(
        "first answer after the kill: {} s",
        killed_at.elapsed().as_secs()
    ));
    let apples = cart.as_ref().and_then(|c| c.qty("apple"));
    checks.check(
        format!("sentinel: the cart survived the failover (2 apples, got {apples:?})"),
        apples == Some(2),
        "want 2 apples",
    );
    let now = lab.primaries().await;
    checks.check(
        format!("sentinel: a replica was promoted (primary now: {now:?})"),
        now == ["redis-2"] || now == ["redis-3"],
        "want redis-2 or redis-3",
    );
    let started = lab.start("redis-1").await;
    checks.check(
        "scripts/lab start redis-1",
        started.as_ref().is_ok_and(|st| st.started == "redis-1"),
        format!("{started:?}"),
    );
    let replica = poll(Duration::from_secs(30), POLL_EVERY, || async {
        let status = lab.status().await?;
        let part = status.parts.into_iter().find(|p| p.name == "redis-1")?;
        (part.role.as_deref() == Some("replica")).then_some(())
    })
    .await;
    checks.check(
        "sentinel: redis-1 came back as a replica",
        replica.is_some(),
        "scripts/lab status did not give redis-1 the role replica within 30 s",
    );
}

/// Cluster: six users' carts whole after the fullest primary's kill, and three primaries again.
pub async fn cluster(lab: &E2eLab, checks: &Checks) {
    if let Some(took) = up_topology(lab, "cluster", checks).await {
        checks.pass(format!(
            "cluster: redis-cluster-1..6 up, cluster created and ok, replicas in sync, in {} s",
            took.as_secs()
        ));
        cluster_failover(lab, checks).await;
    } else {
        checks.fail(
            "scripts/lab up --docker --redis cluster",
            "it failed (its log above)",
        );
    }
    down(lab, " (cluster)", checks).await;
}

async fn cluster_failover(lab: &E2eLab, checks: &Checks) {
    let users: Vec<Shopper> = (1..=6)
        .map(|u| Shopper::new(&format!("cluster-user-{u}"), &lab.proxy_url()))
        .collect();
    let mut refused = Vec::new();
    for user in &users {
        let login = user.login(Design::Externalized).await;
        let add = user.add(Design::Externalized, "pear", 3).await;
        if !(login.is(200) && add.is(200)) {
            refused.push(format!("{}: {} {}", user.name, login.code(), add.code()));
        }
    }
    checks.check(
        "cluster: six users logged in and added to their carts",
        refused.is_empty(),
        format!("not answered 200: {refused:?}"),
    );
    let at_start = lab.primaries().await;
    checks.check(
        "cluster: three primaries at start",
        at_start.len() == 3,
        format!("primaries: {at_start:?}"),
    );
    let killed = lab.kill("redis-primary").await;
    checks.check(
        "scripts/lab kill redis-primary (cluster, one of the primaries at start)",
        killed.as_ref().is_ok_and(|k| at_start.contains(&k.killed)),
        format!("{killed:?}"),
    );
    let whole = poll(Duration::from_secs(30), POLL_EVERY, || async {
        for user in &users {
            let cart = user.get("/externalized/cart").await;
            if !(cart.is(200) && cart.qty("pear") == Some(3)) {
                return None;
            }
        }
        Some(())
    })
    .await;
    checks.check(
        "cluster: every user's cart answers again, whole, after the kill",
        whole.is_some(),
        "not within 30 s",
    );
    let now = lab.primaries().await;
    checks.check(
        "cluster: three primaries again (a replica took over)",
        now.len() == 3,
        format!("primaries: {now:?}"),
    );
}

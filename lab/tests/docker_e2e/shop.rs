//! One user per design logs in through the proxy and fills a cart; the replica serving each is
//! killed, and each design keeps its promise: the stateless and externalized users keep session
//! and cart with no failed request, the stateful user's session is gone and a new login works on
//! another replica. Then the killed replicas start again and rejoin.

use std::time::Duration;

use statelab_formats::{Design, HealthDetail};

use crate::checks::{poll, Checks, Step, POLL_EVERY};
use crate::http::{anonymous_get, Admin, Listed, Shopper};
use crate::lab::E2eLab;

/// A user of one design and the replica that served it before the kill.
#[derive(Debug)]
pub struct Served {
    pub design: Design,
    pub user: Shopper,
    pub replica: String,
}

/// Requests sent right after the kill by each shared-nothing user.
const AFTER_KILL: usize = 30;

/// Login, two apples in the cart, `GET /me`; the replica that answered it is the user's.
pub async fn log_in(lab: &E2eLab, checks: &Checks) -> Step<Vec<Served>> {
    let mut served = Vec::new();
    for design in Design::ALL {
        let user = Shopper::new(&format!("{design}-user"), &lab.proxy_url());
        let login = user.login(design).await;
        checks.check(
            format!("{design}: login through the proxy ({})", login.summary()),
            login.is(200),
            format!("got {}: {}", login.code(), login.body),
        );
        let add = user.add(design, "apple", 2).await;
        checks.check(
            format!("{design}: add 2 apples to the cart"),
            add.is(200),
            format!("got {}: {}", add.code(), add.body),
        );
        let me = user.get(&format!("/{design}/me")).await;
        let name = me.username();
        checks.check(
            format!("{design}: GET /me is the user"),
            me.is(200) && name.as_deref() == Some(user.name.as_str()),
            format!("got {} as {name:?}, want 200 as {}", me.code(), user.name),
        );
        let Some(replica) = me.replica.clone() else {
            return Err(checks.abort(
                format!("{design}: an x-replica header on GET /me"),
                "none: the replica serving the user is unknown",
            ));
        };
        checks.log(format!("{design} user last served by {replica}"));
        served.push(Served {
            design,
            user,
            replica,
        });
    }
    Ok(served)
}

/// Kills each user's replica (`scripts/lab kill`, `docker kill` here) and checks what each design
/// promises.
pub async fn kill_serving(lab: &E2eLab, served: &[Served], checks: &Checks) {
    for s in served {
        let killed = lab.kill(&s.replica).await;
        checks.check(
            format!("scripts/lab kill {}", s.replica),
            killed.as_ref().is_ok_and(|k| k.killed == s.replica),
            format!("{killed:?}"),
        );
    }
    for s in served.iter().filter(|s| s.design != Design::Stateful) {
        shared_nothing_survives(s, checks).await;
    }
    if let Some(s) = served.iter().find(|s| s.design == Design::Stateful) {
        stateful_session_lost(s, checks).await;
    }
}

/// A stream of requests right after the kill: none fails or claims to come from the dead
/// replica; session and cart are whole and the cart still takes writes.
async fn shared_nothing_survives(s: &Served, checks: &Checks) {
    let (design, user, killed) = (s.design, &s.user, &s.replica);
    let (mut bad, mut dead, mut slowest) = (0, 0, 0);
    for i in 1..=AFTER_KILL {
        let path = if i % 3 == 0 { "cart" } else { "me" };
        let answer = user.get(&format!("/{design}/{path}")).await;
        slowest = slowest.max(answer.ms);
        if !answer.is(200) {
            bad += 1;
            checks.log(format!(
                "{design}: request {i} got {}: {}",
                answer.code(),
                answer.body
            ));
        }
        if answer.replica.as_deref() == Some(killed.as_str()) {
            dead += 1;
        }
    }
    checks.check(
        format!(
            "{design}: {AFTER_KILL} requests after killing {killed}, {bad} failed (slowest \
             {slowest} ms)"
        ),
        bad == 0,
        format!("{bad} answers were not 200"),
    );
    checks.check(
        format!("{design}: no answer claimed to come from the killed {killed}"),
        dead == 0,
        format!("{dead} answers carried x-replica: {killed}"),
    );
    let me = user.get(&format!("/{design}/me")).await;
    let name = me.username();
    checks.check(
        format!(
            "{design}: session survived (200 as {} on {})",
            user.name,
            me.replica()
        ),
        me.is(200) && name.as_deref() == Some(user.name.as_str()),
        format!("got {} as {name:?}", me.code()),
    );
    let cart = user.get(&format!("/{design}/cart")).await;
    let apples = cart.qty("apple");
    checks.check(
        format!("{design}: cart survived (2 apples)"),
        apples == Some(2),
        format!("apples: {apples:?}; {} {}", cart.code(), cart.body),
    );
    let add = user.add(design, "pear", 1).await;
    checks.check(
        format!("{design}: cart still writable after the kill"),
        add.is(200),
        format!("got {}: {}", add.code(), add.body),
    );
}

/// The session lived in the dead process: 401 from another replica, and a new login sticks to
/// another replica.
async fn stateful_session_lost(s: &Served, checks: &Checks) {
    let (user, killed) = (&s.user, &s.replica);
    let me = user.get("/stateful/me").await;
    checks.check(
        format!(
            "stateful: session gone after killing {killed} (got {}, want 401)",
            me.summary()
        ),
        me.is(401),
        format!("got {}: {}", me.code(), me.body),
    );
    checks.check(
        "stateful: the 401 came from another replica",
        me.replica.as_deref() != Some(killed.as_str()),
        format!("x-replica: {}", me.replica()),
    );
    let login = user.login(Design::Stateful).await;
    checks.check(
        format!("stateful: new login works (200 on {})", login.replica()),
        login.is(200),
        format!("got {}: {}", login.code(), login.body),
    );
    let relogin = login.replica.clone();
    checks.check(
        format!("stateful: new login landed on another replica than {killed}"),
        relogin.as_deref() != Some(killed.as_str()),
        format!("x-replica: {}", login.replica()),
    );
    let me = user.get("/stateful/me").await;
    checks.check(
        format!("stateful: new session sticks to {}", login.replica()),
        me.is(200) && me.replica.is_some() && me.replica == relogin,
        format!("got {}", me.summary()),
    );
}

/// A fresh client (no cookies) reaches `replica` through its pool: `GET /POOL/health` is 200,
/// answered by that replica (its `x-replica`, and the replica its health answer names).
pub async fn served_by(lab: &E2eLab, pool: Design, replica: &str) -> bool {
    let answer = anonymous_get(&lab.proxy_url(), &format!("/{pool}/health"), &[]).await;
    let named = answer.json::<HealthDetail>().map(|h| h.replica);
    answer.is(200)
        && answer.replica.as_deref() == Some(replica)
        && named.as_deref() == Some(replica)
}

/// Starts the killed replicas again (`scripts/lab start`); each must become healthy in the
/// proxy's view and serve traffic through it.
pub async fn rejoin(lab: &E2eLab, admin: &Admin, served: &[Served], checks: &Checks) {
    for s in served {
        let started = lab.start(&s.replica).await;
        checks.check(
            format!("scripts/lab start {}", s.replica),
            started.as_ref().is_ok_and(|st| st.started == s.replica),
            format!("{started:?}"),
        );
    }
    for s in served {
        let replica = s.replica.as_str();
        let healthy = poll(Duration::from_secs(30), POLL_EVERY, || async {
            (admin.listed(replica).await == Listed::Healthy).then_some(())
        })
        .await;
        checks.check(
            format!("{replica} rejoined: healthy in the proxy's admin status"),
            healthy.is_some(),
            "not within 30 s",
        );
        let serving = poll(Duration::from_secs(30), POLL_EVERY, || async {
            served_by(lab, s.design, replica).await.then_some(())
        })
        .await;
        checks.check(
            format!("{replica} rejoined: serves traffic through the proxy again"),
            serving.is_some(),
            "no fresh client reached it within 30 s",
        );
    }
}

//! The lab as a Docker Swarm stack (`scripts/lab up --swarm`), with the image under test: users
//! of each design log in; the stateless service is scaled 3 → 5 → 2 and the proxy's pool follows
//! by DNS with no admin call; the task serving each design's users is killed, Swarm replaces it
//! under the same name, and each design keeps its promise (the stateless and externalized
//! sessions survive, the stateful ones on the killed task are gone); `down` leaves no stack,
//! service, container, network or volume of the lab, and no swarm that the lab made.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use statelab_formats::Design;

use crate::checks::{poll, Checks, POLL_EVERY};
use crate::http::{Admin, Shopper};
use crate::lab::E2eLab;

/// Users per design.
const USERS: usize = 9;

/// The engine's swarm state: `inactive`, `active`, ...
async fn swarm_state(lab: &E2eLab) -> String {
    let ran = lab
        .docker(
            &["info", "--format", "{{.Swarm.LocalNodeState}}"],
            Duration::from_secs(30),
        )
        .await;
    ran.stdout.trim().to_string()
}

/// The replicas of a pool in the proxy's view, each with whether it serves.
async fn pool(admin: &Admin, design: Design) -> Vec<(String, bool)> {
    let Some(status) = admin.status().await else {
        return Vec::new();
    };
    status
        .pools
        .iter()
        .filter(|p| p.name == design.as_str())
        .flat_map(|p| &p.replicas)
        .map(|r| (r.name.clone(), r.serving()))
        .collect()
}

fn names(design: Design, slots: impl IntoIterator<Item = u8>) -> BTreeSet<String> {
    slots.into_iter().map(|k| format!("{design}-{k}")).collect()
}

pub async fn lab_on_swarm(lab: &E2eLab, checks: &Checks) {
    let before = swarm_state(lab).await;
    checks.log(format!("the engine's swarm state before: {before}"));
    let log = lab.tmp.join("swarm-up.log");
    let up = lab
        .lab_logged(
            &["up", "--swarm"],
            &[("STATELAB_SKIP_IMAGE_BUILD", "1")],
            &log,
        )
        .await;
    if !checks.check(
        "scripts/lab up --swarm: the stack deployed, nine replicas found by DNS and healthy",
        up,
        format!("see {}", log.display()),
    ) {
        crate::lab::show_tail(&log, 40);
        let _ = lab.lab(&["down", "-v"]).await;
        return;
    }
    checks.check(
        "the engine is in a swarm while the lab is up",
        swarm_state(lab).await == "active",
        "docker info says otherwise",
    );
    let mode = lab.lab(&["mode"]).await;
    checks.check(
        "scripts/lab mode says swarm",
        mode.stdout.trim() == "swarm",
        format!("got {:?}", mode.stdout.trim()),
    );
    // The token the Docker lab recorded, which every command hands on (STATELAB_ADMIN_TOKEN).
    let Some(recorded) = lab.adopt_recorded() else {
        checks.fail("an admin token for the Swarm lab", "none recorded");
        let _ = lab.lab(&["down", "-v"]).await;
        return;
    };
    let admin = Admin::new(&lab.admin_url(), &recorded.token);
    let status = lab.status().await;
    checks.check(
        "scripts/lab status: every part up and healthy, each a task's container",
        status.as_ref().is_some_and(|s| {
            s.mode == "swarm"
                && s.parts.len() == 12
                && s.parts.iter().all(|p| {
                    p.up && p.container.is_some() && p.health.as_deref() == Some("healthy")
                })
        }),
        format!("{status:?}"),
    );

    let users = log_in(lab, checks).await;
    scale(lab, &admin, checks).await;
    kill_and_replace(lab, &admin, &users, checks).await;

    let down = lab.lab(&["down", "-v"]).await;
    checks.check("scripts/lab down -v", down.ok, down.why());
    let namespace = format!("label=com.docker.stack.namespace={}", lab.project);
    for kind in [["ps", "-aq"], ["network", "ls"], ["volume", "ls"]] {
        let mut args = kind.to_vec();
        if kind[0] != "ps" {
            args.push("-q");
        }
        args.extend(["--filter", &namespace]);
        let left = lab.docker(&args, Duration::from_secs(30)).await.lines();
        checks.check(
            format!("after down: no {} of the stack left", kind[0]),
            left.is_empty(),
            format!("left: {left:?}"),
        );
    }
    let services = lab
        .docker(
            &[
                "service",
                "ls",
                "-q",
                "--filter",
                &format!("label=com.docker.stack.namespace={}", lab.project),
            ],
            Duration::from_secs(30),
        )
        .await;
    checks.check(
        "after down: no service of the stack (or no swarm to ask)",
        services.lines().is_empty(),
        format!("left: {:?}", services.lines()),
    );
    let after = swarm_state(lab).await;
    checks.check(
        format!("after down: the swarm state is the one the phase began with ({before})"),
        after == before,
        format!("now {after}"),
    );
}

/// `USERS` users per design, each logged in with an apple in the cart; who serves whom.
async fn log_in(lab: &E2eLab, checks: &Checks) -> Vec<(Design, Shopper, String)> {
    let mut users = Vec::new();
    for design in Design::ALL {
        let mut ok = 0;
        for i in 1..=USERS {
            let user = Shopper::new(&format!("swarm-{design}-{i}"), &lab.proxy_url());
            let login = user.login(design).await;
            let add = user.add(design, "apple", 1).await;
            let me = user.get(&format!("/{design}/me")).await;
            if login.is(200) && add.is(200) && me.is(200) {
                ok += 1;
                let replica = me.replica().to_string();
                users.push((design, user, replica));
            }
        }
        checks.check(
            format!("{design}: {USERS} users logged in through the Swarm proxy"),
            ok == USERS,
            format!("{ok} of {USERS}"),
        );
    }
    users
}

/// `scripts/lab scale stateless 5`, then `2`: `docker service scale`, and the proxy's pool is
/// exactly the service's tasks after each, every one serving.
async fn scale(lab: &E2eLab, admin: &Admin, checks: &Checks) {
    for (n, want) in [(5u8, 5usize), (2, 2)] {
        let started = Instant::now();
        let scaled = lab.scale(Design::Stateless, n).await;
        let took = started.elapsed().as_secs_f64();
        let Ok(scaled) = scaled else {
            checks.fail(
                format!("scripts/lab scale stateless {n}"),
                format!("{scaled:?}"),
            );
            continue;
        };
        let replicas: BTreeSet<String> = scaled.replicas.iter().cloned().collect();
        checks.check(
            format!("scripts/lab scale stateless {n}: {want} replicas, in {took:.1} s"),
            replicas.len() == want,
            format!("{scaled:?}"),
        );
        let seen = pool(admin, Design::Stateless).await;
        let serving: BTreeSet<String> = seen
            .iter()
            .filter(|(_, s)| *s)
            .map(|(n, _)| n.clone())
            .collect();
        checks.check(
            format!(
                "the proxy's stateless pool followed by DNS: {}",
                replicas.iter().cloned().collect::<Vec<_>>().join(" ")
            ),
            seen.len() == want && serving == replicas,
            format!("the proxy has {seen:?}"),
        );
        if n == 5 {
            checks.check(
                "scaling out added stateless-4 and stateless-5",
                scaled.added == ["stateless-4", "stateless-5"],
                format!("added {:?}", scaled.added),
            );
        }
    }
    // The pool back at three, as the kills below expect.
    let back = lab.scale(Design::Stateless, 3).await;
    checks.check(
        "scripts/lab scale stateless 3",
        back.as_ref().is_ok_and(|s| s.replicas.len() == 3),
        format!("{back:?}"),
    );
}

/// Kills the task serving each design's first user (`scripts/lab kill`), waits for Swarm's
/// replacement (`scripts/lab start`), and counts the sessions each design kept.
async fn kill_and_replace(
    lab: &E2eLab,
    admin: &Admin,
    users: &[(Design, Shopper, String)],
    checks: &Checks,
) {
    for design in Design::ALL {
        let Some((_, _, victim)) = users.iter().find(|(d, _, _)| *d == design) else {
            checks.fail(format!("{design}: a user to follow"), "no user logged in");
            continue;
        };
        let victim = victim.clone();
        let killed = lab.kill(&victim).await;
        checks.check(
            format!("scripts/lab kill {victim}: its task's container killed"),
            killed
                .as_ref()
                .is_ok_and(|k| k.killed == victim && k.container.is_some()),
            format!("{killed:?}"),
        );
        let started = Instant::now();
        let replaced = lab.start(&victim).await;
        let took = started.elapsed().as_secs_f64();
        let new_container = match (&killed, &replaced) {
            (Ok(k), Ok(r)) => r.container.is_some() && r.container != k.container,
            _ => false,
        };
        checks.check(
            format!(
                "Swarm replaced {victim} under the same name, in a new container ({took:.1} s)"
            ),
            new_container,
            format!("{replaced:?}"),
        );
        let back = poll(Duration::from_secs(30), POLL_EVERY, || async {
            let seen = pool(admin, design).await;
            (seen.len() == 3
                && seen.iter().all(|(_, s)| *s)
                && names(design, 1..=3) == seen.iter().map(|(n, _)| n.clone()).collect())
            .then_some(())
        })
        .await;
        checks.check(
            format!("the proxy's {design} pool is whole again: {design}-1..3 serving"),
            back.is_some(),
            format!("{:?}", pool(admin, design).await),
        );
        let (mut kept, mut lost, mut on_victim) = (0, 0, 0);
        for (_, user, replica) in users.iter().filter(|(d, _, _)| *d == design) {
            let me = user.get(&format!("/{design}/me")).await;
            if replica == &victim {
                on_victim += 1;
            }
            if me.is(200) && me.username().as_deref() == Some(user.name.as_str()) {
                kept += 1;
            } else {
                lost += 1;
            }
        }
        checks.log(format!(
            "{design}: after the kill of {victim}, {kept} sessions kept and {lost} lost of {} ({on_victim} were served by {victim})",
            kept + lost
        ));
        match design {
            Design::Stateful => checks.check(
                format!("stateful: the sessions on the killed {victim} are gone, the others kept ({lost} lost of {USERS}, {on_victim} were on it)"),
                on_victim > 0 && lost == on_victim,
                format!("lost {lost}, on the victim {on_victim}"),
            ),
            _ => checks.check(
                format!("{design}: every session survived the task's replacement ({kept} of {USERS})"),
                lost == 0,
                format!("lost {lost}"),
            ),
        };
    }
}

//! The lab in containers, end to end: the real `scripts/lab up --docker` (images built offline
//! from Debian packages where no registry answers), Docker, compose and the proxy as Docker
//! publishes it, driven from the host as a user drives them.
//!
//! One scenario, its phases in order, each in a module of its own:
//! - [`start`]: up, the admin token, plain `docker compose` from the repository root, nine
//!   healthy replicas; the admin API's guard from the host and from inside the lab network; the
//!   dashboard.
//! - [`shop`]: one user per design, the serving replicas killed, what each design promises, the
//!   replicas started again and rejoining.
//! - [`objects`]: a stateless user's avatar stored through the proxy, the object store `s3`
//!   killed (the avatar unavailable, the session unharmed) and started again (the avatar back).
//! - [`pools`]: a pool scaled out and in, ip-hash behind Docker's NAT and behind a trusted
//!   in-network client, the load generator killing replicas mid-run through `scripts/lab`.
//! - [`store`]: Redis killed, then its container created anew; `down -v` leaving nothing; the
//!   Sentinel and the Cluster topologies failing over.
//! - [`partition`]: the Sentinel primary cut off from the other nodes (`scripts/lab partition`)
//!   while the replicas still reach it: with asynchronous replication the adds it acknowledged
//!   meanwhile are lost once it heals, with `--redis-wait 1` none acknowledged is; `heal` leaves no
//!   rule behind.
//! - [`evidence`]: `statelab-load evidence --docker --quick` in a compose project of its own,
//!   its probes reaching the replicas and Redis in that lab's network, and nothing left after.
//!
//! - [`swarm`]: `scripts/lab up --swarm` with the image under test: the stateless service
//!   scaled 3 → 5 → 2 with the proxy following by DNS, a task of each design killed and replaced
//!   by Swarm, the sessions each design kept, and `down` leaving no stack and no swarm the lab
//!   made.
//!
//! [`checks`] prints a PASS or FAIL line per check as it goes and the tally at the end; [`lab`]
//! holds the lab's isolation (its own lab directory, compose project `statelab-e2e`, image
//! `statelab-e2e:latest`, network `10.231.9.0/24`, free host ports; `STATELAB_E2E_*` override
//! them) and takes the lab down when the test ends, passed or not, unless
//! `STATELAB_E2E_KEEP=1`; [`http`] is the host's HTTP.
//!
//! Where no Docker engine answers `docker info`, the test says loudly that it did not run and
//! returns; with `CI` set, it fails instead. `scripts/test` runs it in a phase of its own (the
//! workspace's `cargo test` skips it); alone:
//! `cargo test --profile ci -p statelab-lab --test docker_e2e`.

#[path = "docker_e2e/checks.rs"]
mod checks;
#[path = "docker_e2e/evidence.rs"]
mod evidence;
#[path = "docker_e2e/http.rs"]
mod http;
#[path = "docker_e2e/lab.rs"]
mod lab;
#[path = "docker_e2e/objects.rs"]
mod objects;
#[path = "docker_e2e/partition.rs"]
mod partition;
#[path = "docker_e2e/pools.rs"]
mod pools;
#[path = "docker_e2e/shop.rs"]
mod shop;
#[path = "docker_e2e/start.rs"]
mod start;
#[path = "docker_e2e/store.rs"]
mod store;
#[path = "docker_e2e/swarm.rs"]
mod swarm;

use std::path::{Path, PathBuf};
use std::process::Command;

use checks::{say, Checks, Step};
use lab::{Cleanup, E2eLab};
use statelab_test_support::lab_bin_dir;

#[tokio::test]
async fn docker_lab_end_to_end() {
    if let Err(why) = docker_engine_answers() {
        not_run(&why);
        return;
    }
    let bins = lab_bin_dir();
    let load = load_binary(&bins);
    let checks = Checks::new();
    let lab = E2eLab::new(bins);
    {
        let _cleanup = Cleanup {
            lab: &lab,
            checks: &checks,
        };
        // A stop has printed its FAIL line; the cleanup and the tally follow either way.
        let _ = scenario(&lab, &load, &checks).await;
    }
    if lab.keep {
        checks.log(format!(
            "STATELAB_E2E_KEEP=1: its files stay in {}",
            lab.tmp.path().display()
        ));
        std::mem::forget(lab);
    }
    checks.finish();
}

/// The phases, in order.
async fn scenario(lab: &E2eLab, load: &Result<PathBuf, String>, checks: &Checks) -> Step {
    let admin = start::up(lab, checks).await?;
    start::admin_guard(lab, &admin, checks).await;
    start::dashboard(&admin, checks).await;

    let served = shop::log_in(lab, checks).await?;
    shop::kill_serving(lab, &served, checks).await;
    shop::rejoin(lab, &admin, &served, checks).await;

    objects::avatars(lab, checks).await;

    pools::scale(lab, &admin, checks).await;
    pools::ip_hash(lab, &admin, checks).await;
    pools::load_runs(lab, &admin, load, checks).await;

    let externalized = served
        .iter()
        .find(|s| s.design == statelab_formats::Design::Externalized)
        .map(|s| &s.user);
    if let Some(user) = externalized {
        store::redis_restart(lab, &admin, user, checks).await;
        store::redis_recreate(lab, &admin, user, checks).await;
    }
    store::down_leaves_nothing(lab, checks).await;
    store::sentinel(lab, checks).await;
    store::cluster(lab, checks).await;
    partition::partitions(lab, load, checks).await;

    evidence::quick(lab, load, checks).await;
    swarm::lab_on_swarm(lab, checks).await;
    Ok(())
}

/// `docker info` answers; else why not.
fn docker_engine_answers() -> Result<(), String> {
    match Command::new("docker").arg("info").output() {
        Err(e) => Err(format!("docker: {e}")),
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty());
            Err(format!("docker info: {}", last.unwrap_or("failed").trim()))
        }
    }
}

/// Says loudly that the test did not run; under `CI`, where nothing may be left out, fails.
fn not_run(why: &str) {
    let message = format!(
        "\n!!! NOT RUN: the Docker end-to-end test: no Docker engine answers `docker info`\n\
         !!!   ({why})\n\
         !!!   Nothing was tested. Start a Docker engine, or run where one is, to run it.\n"
    );
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !ci,
        "{message}!!!   CI is set, and CI must run every test: this is a failure.\n"
    );
    say(&message);
}

/// The `statelab-load` binary: `STATELAB_LOAD` when set, else the one [`lab_bin_dir`] keeps up
/// to date beside the lab's binaries.
fn load_binary(bins: &Path) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("STATELAB_LOAD").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let path = bins.join("statelab-load");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("no {}", path.display()))
    }
}

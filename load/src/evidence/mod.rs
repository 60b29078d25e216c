//! `statelab-load evidence`: the textbook's table of stateful against stateless, each claim
//! answered with figures measured in one run, a verdict and its reason.
//!
//! It starts a lab of its own (natively, on free ports, in `OUT/lab`), so it runs beside a user's
//! lab. First the probes ([`probes`]): a token read without its key, a logged-out credential
//! replayed, the bytes of a request at an empty and a full cart, memory per session, Redis round
//! trips, and a stateless replica of its own with a two-second token lifetime. Then the load
//! runs, which are the comparison's own ([`crate::compare`]): its kill, skew, scaling, file, chat
//! and store runs, and the externalized pool with its one Redis killed and started again. Last,
//! with the shared lab down, the capacity suite's curves for stateless and externalized.
//! [`claims::judge`] turns it all into the table; `evidence.json` and `evidence.html` hold it, the
//! probes and the runs.

pub mod claims;
pub mod probes;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Parser};
use statelab_formats::lab::Ports;
use statelab_formats::{Design, Strategy};

use crate::compare::plan::{PlannedRun, Workload};
use crate::compare::{self, CompareArgs, Restore};
use crate::fault::Lab;
use claims::Evidence;

/// `statelab-load evidence`'s flags.
#[derive(Debug, Clone, Args)]
pub struct EvidenceArgs {
    /// Directory for evidence.json, evidence.html, each run's files and the lab's own directory.
    #[arg(long)]
    pub out: PathBuf,

    /// The short mode: the kill runs alone, 9 s each, and smaller probes (about a minute once
    /// built); the claims that need the other runs say they were not measured.
    #[arg(long)]
    pub quick: bool,

    /// The Docker lab instead of the native one: compose project `statelab-evidence` on
    /// 10.231.10.0/24 with free host ports; the store runs, native only, are left out.
    #[arg(long)]
    pub docker: bool,

    /// The lab's command.
    #[arg(long, env = "STATELAB_LAB_CMD", default_value = "scripts/lab")]
    pub lab: String,
}

/// The comparison's flags, parsed as its command line would be, for the runs the evidence
/// borrows.
#[derive(Debug, Parser)]
struct CompareLine {
    #[command(flatten)]
    args: CompareArgs,
}

/// Seconds per run, and the probes' sizes, in each mode.
fn sizes(quick: bool) -> (u64, probes::Sizes) {
    if quick {
        (
            9,
            probes::Sizes {
                replays: 5,
                sessions: 1000,
                cpu_requests: 300,
                round_trips: 500,
            },
        )
    } else {
        (
            21,
            probes::Sizes {
                replays: 20,
                sessions: 5000,
                cpu_requests: 2000,
                round_trips: 5000,
            },
        )
    }
}

/// Runs the evidence and writes it; the exit status.
pub fn evidence(args: &EvidenceArgs) -> anyhow::Result<i32> {
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("cannot resolve {}", args.out.display()))?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let lab = own_lab(args, &out)?;
    let (duration, sizes) = sizes(args.quick);
    let runtime = crate::run::runtime(None).context("cannot start the runtime")?;
    let (evidence, interrupted) = runtime.block_on(async {
        // Ctrl-C stops what is under way at its next step; the lab is taken down and what was
        // measured is written.
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        let (up, down): (&[&str], &[&str]) = if args.docker {
            say(&format!(
                "starting a lab of its own (scripts/lab up --docker, project {DOCKER_PROJECT})"
            ));
            (&["up", "--docker"], &["down", "-v"])
        } else {
            say("starting a lab of its own (scripts/lab up, free ports)");
            (&["up"], &["down"])
        };
        let how = claims::How {
            quick: args.quick,
            docker: args.docker,
        };
        let result = match lab.run(up).await {
            Ok(_) => measure(&lab, &out, duration, sizes, how, &stop).await,
            Err(e) => Err(anyhow::Error::msg(e)),
        };
        if let Err(e) = lab.run(down).await {
            say(&e);
        }
        let mut evidence = result?;
        let interrupted = stop.load(Ordering::SeqCst);
        // The capacity curves run after the shared lab is down: each in a lab of its own with CPU
        // budgets, with nothing else on the host.
        if args.quick {
            evidence.capacity_not_measured = Some(claims::SHORT_MODE.into());
        } else if interrupted {
            evidence.capacity_not_measured =
                Some("not measured: the evidence was interrupted before it".into());
        } else {
            match capacity(&lab, &out, args.docker).await {
                Ok(suite) => evidence.capacity = Some(suite),
                Err(e) => {
                    say(&format!("capacity not measured: {e:#}"));
                    evidence.capacity_not_measured = Some(format!("not measured: {e:#}"));
                }
            }
        }
        evidence.claims = claims::judge(
            &evidence.probes,
            &claims::Runs {
                dirs: &evidence.run_dirs,
                reports: &evidence.runs,
            },
            evidence.capacity.as_ref(),
            how,
        );
        anyhow::Ok((evidence, interrupted))
    })?;
    crate::output::write_evidence(&out, &evidence)?;
    print!("{}", crate::output::evidence_text(&evidence));
    println!(
        "wrote {0}/evidence.json and {0}/evidence.html",
        out.display()
    );
    if interrupted {
        say("interrupted: the claims whose runs did not happen say they were not measured");
        return Ok(130);
    }
    Ok(0)
}

fn say(msg: &str) {
    eprintln!("evidence: {msg}");
}

/// The Docker lab's compose project and network: apart from a user's lab (10.231.7.0/24), the
/// capacity suite's (10.231.8.0/24) and the end-to-end test's (10.231.9.0/24).
const DOCKER_PROJECT: &str = "statelab-evidence";
const DOCKER_SUBNET: &str = "10.231.10.0/24";

/// The lab command for the evidence's own lab, in `OUT/lab`: natively on free loopback ports;
/// in Docker in a compose project and network of its own, its proxy and admin API published on
/// free host ports. Ports a user pinned for their own lab are not this lab's.
fn own_lab(args: &EvidenceArgs, out: &Path) -> anyhow::Result<Lab> {
    let lab = Lab::parse(&args.lab)
        .map_err(anyhow::Error::msg)?
        .with_env("STATELAB_LAB_DIR", &out.join("lab").to_string_lossy())
        .with_env("STATELAB_REDIS_PORT", "");
    Ok(if args.docker {
        let proxy = crate::capacity::scenarios::free_port()?;
        let admin = crate::capacity::scenarios::free_port()?;
        lab.with_env("STATELAB_PORTS", "")
            .with_env("STATELAB_PROJECT", DOCKER_PROJECT)
            .with_env("STATELAB_SUBNET", DOCKER_SUBNET)
            .with_env("STATELAB_PROXY_PORT", &proxy.to_string())
            .with_env("STATELAB_ADMIN_PORT", &admin.to_string())
    } else {
        lab.with_env("STATELAB_PORTS", "free")
            .with_env("STATELAB_PROXY_PORT", "")
            .with_env("STATELAB_ADMIN_PORT", "")
    })
}

async fn measure(
    lab: &Lab,
    out: &Path,
    duration: u64,
    sizes: probes::Sizes,
    how: claims::How,
    stop: &AtomicBool,
) -> anyhow::Result<Evidence> {
    let ports: Ports = lab.answer(&["ports"]).await.map_err(anyhow::Error::msg)?;
    let place = probes::Place {
        proxy: *ports
            .addresses
            .get("proxy")
            .context("the lab names no proxy address")?,
        addresses: ports.addresses,
    };
    say("probes: the token, replays after logout, request bytes, memory, Redis");
    let bin_dir = std::env::var_os("STATELAB_BIN_DIR")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty());
    let probes = probes::run(&place, sizes, bin_dir.as_deref(), &out.join("probes")).await;
    for (name, why) in &probes.not_measured {
        say(&format!("probe {name} not measured: {why}"));
    }
    let mut flags: Vec<&str> = Vec::new();
    if how.docker {
        flags.push("--docker");
    }
    if !how.quick {
        flags.extend(["--scale", "--skew", "--files", "--chat"]);
        // The store runs bring up native labs of their own.
        if !how.docker {
            flags.push("--store");
        }
    }
    let line = CompareLine::try_parse_from(
        [
            "compare",
            "--out",
            &out.to_string_lossy(),
            "--duration",
            &duration.to_string(),
        ]
        .iter()
        .chain(&flags),
    )
    .context("the evidence's comparison flags")?;
    let matrix = line.args.matrix()?;
    let wanted = claims::wanted_runs(how.quick);
    let mut runs: Vec<PlannedRun> = matrix
        .runs()
        .into_iter()
        .filter(|r| wanted.contains(&r.dir.as_str()))
        .collect();
    if how.docker {
        if let Some(i) = runs.iter().position(|r| r.dir == claims::SKEW_RUNS[0]) {
            let nat = behind_nat(&runs[i]);
            runs.insert(i + 1, nat);
        }
    }
    let after_kills = runs
        .iter()
        .rposition(|r| claims::KILL_RUNS.contains(&r.dir.as_str()))
        .map_or(0, |i| i + 1);
    runs.insert(after_kills, redis_killed(matrix.workload));
    let mut restore = Restore::default();
    let result = compare::carry_out(&matrix, &runs, lab, out, stop, &mut restore).await;
    compare::put_back(lab, restore).await;
    let reports = result?;
    // An interrupted evidence has fewer reports than runs: the first ones, in order.
    let run_dirs: Vec<String> = runs
        .iter()
        .take(reports.len())
        .map(|r| r.dir.clone())
        .collect();
    Ok(Evidence {
        title: "statelab: the textbook table, measured".into(),
        generated_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        mode: if how.docker { "docker" } else { "native" }.into(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        quick: how.quick,
        claims: Vec::new(),
        probes,
        runs: reports,
        run_dirs,
        capacity: None,
        capacity_not_measured: None,
    })
}

/// The replica counts of the capacity curves, and the seconds each step holds its rate.
const CAPACITY_REPLICAS: [u8; 2] = [1, 3];
const CAPACITY_STEP_SECS: u64 = 3;
/// The capacity scenarios the evidence runs: stateless, and externalized with a small Redis
/// (0.02 core).
const CAPACITY_SCENARIOS: [&str; 2] = ["stateless-budgeted", "externalized-small-store"];
/// In Docker the externalized curve has a Redis of 0.1 core: a container's budget pays for its
/// healthcheck too, and at 0.02 core Redis's `redis-cli ping` every 2 s keeps p99 over 100 ms at
/// any rate, so no step would meet the SLO (docs/capacity.md, the Docker lab's table).
const CAPACITY_SCENARIOS_DOCKER: [&str; 2] = ["stateless-budgeted", "externalized-larger-store"];

/// Capacity at one and at three replicas of a fixed CPU budget, for stateless and for
/// externalized with a small Redis: the capacity suite's own scenarios
/// ([`crate::capacity::scenarios`]), each in a lab of its own; written to `OUT/capacity/` too.
async fn capacity(
    lab: &Lab,
    out: &Path,
    docker: bool,
) -> anyhow::Result<crate::capacity::scenarios::CapacitySuite> {
    let dir = out.join("capacity");
    let args = crate::capacity::scenarios::SuiteArgs {
        docker,
        out: dir.clone(),
        lab: lab.clone(),
        replicas: CAPACITY_REPLICAS.to_vec(),
        step_secs: CAPACITY_STEP_SECS,
        slo: crate::capacity::search::Slo::default(),
        only: if docker {
            CAPACITY_SCENARIOS_DOCKER
        } else {
            CAPACITY_SCENARIOS
        }
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    };
    say("capacity: stateless and externalized at 1 and 3 replicas of 0.2 core");
    let suite = crate::capacity::scenarios::run_suite(&args).await?;
    crate::output::write_capacity_suite(&dir, &suite)?;
    Ok(suite)
}

/// The skewed stateful run under ip-hash from the host, where Docker's NAT makes every client
/// the bridge's gateway: the comparison leaves it out, the evidence shows what it hides.
fn behind_nat(cookie: &PlannedRun) -> PlannedRun {
    PlannedRun {
        dir: claims::NAT_SKEW_RUN.into(),
        strategy: Strategy::IpHash,
        label: Some("skew stateful/ip-hash behind Docker's NAT".into()),
        balance_factor: None,
        ..cookie.clone()
    }
}

/// The externalized pool with its one Redis killed at a third of the run and started again at
/// two thirds.
fn redis_killed(workload: Workload) -> PlannedRun {
    let third = workload.duration_s / 3;
    PlannedRun {
        kill: Some(("redis".into(), third)),
        restart_at_s: Some(2 * third),
        ..PlannedRun::named(
            "store",
            Design::Externalized,
            Strategy::RoundRobin,
            "redis-killed",
            workload,
        )
    }
}

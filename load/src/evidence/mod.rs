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

use anyhow::{bail, Context};
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

    /// The Docker lab instead of the native one (refused: the probes reach each replica and Redis
    /// on loopback, which the Docker lab does not publish).
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
    if args.docker {
        bail!(
            "--docker: the evidence runs natively only; its probes reach each replica and Redis on loopback, which the Docker lab does not publish"
        );
    }
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("cannot resolve {}", args.out.display()))?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let lab = Lab::parse(&args.lab)
        .map_err(anyhow::Error::msg)?
        .with_env("STATELAB_LAB_DIR", &out.join("lab").to_string_lossy())
        .with_env("STATELAB_PORTS", "free")
        // Ports a user pinned for their own lab are not this lab's.
        .with_env("STATELAB_PROXY_PORT", "")
        .with_env("STATELAB_ADMIN_PORT", "")
        .with_env("STATELAB_REDIS_PORT", "");
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
        say("starting a lab of its own (scripts/lab up, free ports)");
        let result = match lab.run(&["up"]).await {
            Ok(_) => measure(&lab, &out, duration, sizes, args.quick, &stop).await,
            Err(e) => Err(anyhow::Error::msg(e)),
        };
        if let Err(e) = lab.run(&["down"]).await {
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
            match capacity(&lab, &out).await {
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

async fn measure(
    lab: &Lab,
    out: &Path,
    duration: u64,
    sizes: probes::Sizes,
    quick: bool,
    stop: &AtomicBool,
) -> anyhow::Result<Evidence> {
    let ports: Ports = lab.answer(&["ports"]).await.map_err(anyhow::Error::msg)?;
    let place = probes::Place {
        proxy: *ports
            .ports
            .get("proxy")
            .context("the lab names no proxy port")?,
        ports: ports.ports.clone(),
    };
    say("probes: the token, replays after logout, request bytes, memory, Redis");
    let bin_dir = std::env::var_os("STATELAB_BIN_DIR")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty());
    let probes = probes::run(&place, sizes, bin_dir.as_deref(), &out.join("probes")).await;
    for (name, why) in &probes.not_measured {
        say(&format!("probe {name} not measured: {why}"));
    }
    let flags: &[&str] = if quick {
        &[]
    } else {
        &["--scale", "--store", "--skew", "--files", "--chat"]
    };
    let line = CompareLine::try_parse_from(
        [
            "compare",
            "--out",
            &out.to_string_lossy(),
            "--duration",
            &duration.to_string(),
        ]
        .iter()
        .chain(flags),
    )
    .context("the evidence's comparison flags")?;
    let matrix = line.args.matrix()?;
    let wanted = claims::wanted_runs(quick);
    let mut runs: Vec<PlannedRun> = matrix
        .runs()
        .into_iter()
        .filter(|r| wanted.contains(&r.dir.as_str()))
        .collect();
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
        mode: "native".into(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        quick,
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
/// The capacity scenarios the evidence runs: stateless, and externalized with a small Redis.
const CAPACITY_SCENARIOS: [&str; 2] = ["stateless-budgeted", "externalized-small-store"];

/// Capacity at one and at three replicas of a fixed CPU budget, for stateless and for
/// externalized with a small Redis: the capacity suite's own scenarios
/// ([`crate::capacity::scenarios`]), each in a lab of its own; written to `OUT/capacity/` too.
async fn capacity(
    lab: &Lab,
    out: &Path,
) -> anyhow::Result<crate::capacity::scenarios::CapacitySuite> {
    let dir = out.join("capacity");
    let args = crate::capacity::scenarios::SuiteArgs {
        docker: false,
        out: dir.clone(),
        lab: lab.clone(),
        replicas: CAPACITY_REPLICAS.to_vec(),
        step_secs: CAPACITY_STEP_SECS,
        slo: crate::capacity::search::Slo::default(),
        only: CAPACITY_SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
    };
    say("capacity: stateless and externalized at 1 and 3 replicas of 0.2 core");
    let suite = crate::capacity::scenarios::run_suite(&args).await?;
    crate::output::write_capacity_suite(&dir, &suite)?;
    Ok(suite)
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

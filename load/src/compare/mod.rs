//! `statelab-load compare`: the lab's comparison. The same shop workload against each design
//! through the proxy, one replica killed mid-run, and one report of what each design cost; with
//! `--scale`, each design's pool grown and shrunk while it serves; with `--store`, the Redis
//! primary killed under each Redis topology.
//!
//! The runs are data ([`plan::Matrix::runs`]); carrying them out ([`compare`]) is the same
//! `run` a user types, in this process, with the lab driven through its own command (`scripts/lab
//! ... --json`) between runs: strategies set, killed replicas started again, pools resized and put
//! back, store labs brought up and down. Whatever happens, the pools' strategies and sizes are
//! put back at the end, and a lab this command brought up is taken down.

pub mod plan;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser};
use statelab_formats::lab::{LabStatus, Ports};
use statelab_formats::{BalanceFactor, Strategy};

use crate::capacity::scenarios;
use crate::config::{RunArgs, RunPlan};
use crate::fault::Lab;
use crate::output;
use crate::report::{self, RunReport};
use plan::{Matrix, PlannedRun, Skewed, Workload, POOL_SIZE};

/// `statelab-load compare`'s flags. Each workload figure can also come from the environment.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Directory for each run's run.{json,html} and the whole report.{json,html}.
    #[arg(long)]
    pub out: PathBuf,

    /// Compare in the Docker lab (`scripts/lab up --docker`) instead of the native one.
    #[arg(long)]
    pub docker: bool,

    /// Seconds per kill or store run (9 to 900); the kill comes at a third of it.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(9..=900))]
    pub duration: u64,

    /// New sessions per second in the kill and store runs.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,

    /// Add the scaling runs.
    #[arg(long, conflicts_with = "only_scale")]
    pub scale: bool,

    /// The scaling runs alone.
    #[arg(long)]
    pub only_scale: bool,

    /// Add the store runs: the externalized pool with the Redis primary killed, once per Redis
    /// topology, each in a native lab of its own on free ports.
    #[arg(long, conflicts_with = "only_store")]
    pub store: bool,

    /// The store runs alone.
    #[arg(long)]
    pub only_store: bool,

    /// Add the skew runs: heavy users (a Zipf law over a closed population) under cookie and
    /// ip-hash, without and with bounded loads, each pool grown from 3 to 4 at half time.
    #[arg(long, conflicts_with = "only_skew")]
    pub skew: bool,

    /// The skew runs alone.
    #[arg(long)]
    pub only_skew: bool,

    /// Seconds per skew run (the pool grows at half time).
    #[arg(long, env = "COMPARE_SKEW_DURATION", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(6..=900))]
    pub skew_duration: u64,

    /// Users of the skew runs; the k-th thinks k^1.1 times as long as the first.
    #[arg(long, env = "COMPARE_SKEW_USERS", default_value_t = 40,
          value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub skew_users: u32,

    /// The heaviest user's think time in the skew runs.
    #[arg(long, env = "COMPARE_SKEW_THINK_MS", default_value_t = 20)]
    pub skew_think_ms: u64,

    /// Add the file runs: avatars on the stateful replicas' disks against the object store, with
    /// a replica killed, the stateful pool shrunk, and the object store killed.
    #[arg(long, conflicts_with = "only_files")]
    pub files: bool,

    /// The file runs alone.
    #[arg(long)]
    pub only_files: bool,

    /// Seconds per file run (the kill at a third, the restart at two thirds, the scale-in at
    /// half time).
    #[arg(long, env = "COMPARE_FILES_DURATION", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(6..=900))]
    pub files_duration: u64,

    /// New sessions per second in the file runs.
    #[arg(long, env = "COMPARE_FILES_RATE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub files_rate: u32,

    /// Add the chat runs: users in rooms over WebSockets, each design with a replica killed and
    /// its pool shrunk under open sockets.
    #[arg(long, conflicts_with = "only_chat")]
    pub chat: bool,

    /// The chat runs alone.
    #[arg(long)]
    pub only_chat: bool,

    /// Seconds per chat run (the kill at a third, the restart at two thirds, the scale-in at
    /// half time).
    #[arg(long, env = "COMPARE_CHAT_DURATION", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(6..=900))]
    pub chat_duration: u64,

    /// Chat users, in rooms of --chat-room-size.
    #[arg(long, env = "COMPARE_CHAT_USERS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub chat_users: u32,

    /// Users per chat room.
    #[arg(long, env = "COMPARE_CHAT_ROOM_SIZE", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub chat_room_size: u32,

    /// Think time between a chat user's messages.
    #[arg(long, env = "COMPARE_CHAT_THINK_MS", default_value_t = 100)]
    pub chat_think_ms: u64,

    /// The balance factor of the bounded skew runs (a percentage, 100 to 1000).
    #[arg(long, default_value = "125")]
    pub balance_factor: BalanceFactor,

    /// Think time between a session's requests in the kill and store runs.
    #[arg(long, env = "COMPARE_THINK_MS", default_value_t = 100)]
    pub think_ms: u64,

    /// Cart adds per session in the kill and store runs.
    #[arg(long, env = "COMPARE_ADDS", default_value_t = 3)]
    pub adds: u32,

    /// Seconds per scaling run.
    #[arg(long, env = "COMPARE_SCALE_DURATION", default_value_t = 40)]
    pub scale_duration: u64,

    /// Second of a scaling run at which the pool is resized (at least 3, before its end).
    #[arg(long, env = "COMPARE_SCALE_AT", default_value_t = 12)]
    pub scale_at: u64,

    /// New sessions per second in the scaling runs.
    #[arg(long, env = "COMPARE_SCALE_RATE", default_value_t = 10)]
    pub scale_rate: u32,

    /// Cart adds per session in the scaling runs (long sessions: about 11 s each by default).
    #[arg(long, env = "COMPARE_SCALE_ADDS", default_value_t = 20)]
    pub scale_adds: u32,

    /// Think time in the scaling runs.
    #[arg(long, env = "COMPARE_SCALE_THINK_MS", default_value_t = 500)]
    pub scale_think_ms: u64,

    /// The longest drain of a replica a scaling run removes: longer than a session, so a
    /// cookie-pinned session can finish on the draining replica.
    #[arg(long, env = "COMPARE_SCALE_DRAIN", default_value_t = 15)]
    pub scale_drain: u64,

    /// The capacity scenarios instead: each design's capacity against its replica count, the
    /// bottleneck and the USL, and a full pool grown at its peak, each in a lab of its own sized
    /// for it (capacity-report.json, capacity-report.html).
    #[arg(long, conflicts_with_all = ["scale", "only_scale", "store", "only_store"])]
    pub capacity: bool,

    /// The replica counts of the capacity curves.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,3,4,6",
        requires = "capacity"
    )]
    pub capacity_replicas: Vec<u8>,

    /// Seconds each capacity step holds its rate.
    #[arg(long, default_value_t = 5, requires = "capacity",
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub capacity_step_secs: u64,

    /// Only these capacity scenarios (stateless-budgeted, externalized-small-store,
    /// externalized-larger-store, saturation, stateless-one-host).
    #[arg(long, value_delimiter = ',', requires = "capacity")]
    pub capacity_only: Vec<String>,

    /// The capacity steps' SLO.
    #[arg(long, default_value = "p99=50ms,errors=0.1%", requires = "capacity")]
    pub slo: crate::capacity::search::Slo,

    /// The lab's command.
    #[arg(long, env = "STATELAB_LAB_CMD", default_value = "scripts/lab")]
    pub lab: String,

    /// Only print the runs it would make, one a line.
    #[arg(long)]
    pub plan: bool,
}

impl CompareArgs {
    /// The runs these flags ask for, or why they cannot work.
    pub fn matrix(&self) -> anyhow::Result<Matrix> {
        let store = self.store || self.only_store;
        if store && self.docker {
            bail!("--store runs natively only (each topology in a lab of its own on free ports)");
        }
        let chat = self.chat || self.only_chat;
        if !(3..self.scale_duration).contains(&self.scale_at) {
            bail!("--scale-at must be at least 3 and below --scale-duration");
        }
        Ok(Matrix {
            docker: self.docker,
            kills: !(self.only_scale
                || self.only_store
                || self.only_skew
                || self.only_files
                || self.only_chat),
            scale: self.scale || self.only_scale,
            store,
            skew: self.skew || self.only_skew,
            skew_workload: Workload {
                rate: 0,
                adds: 3,
                think_ms: self.skew_think_ms,
                duration_s: self.skew_duration,
                sources: None,
                skewed: Some(Skewed {
                    users: self.skew_users,
                    skew: "zipf:1.1",
                    sources_skew: Some("zipf:1"),
                }),
            },
            skew_factor: self.balance_factor,
            chat,
            chat_workload: Workload {
                rate: 0,
                adds: 0,
                think_ms: self.chat_think_ms,
                duration_s: self.chat_duration,
                sources: None,
                skewed: None,
            },
            chat_rooms: plan::ChatRooms {
                users: self.chat_users,
                room_size: self.chat_room_size,
            },
            files: self.files || self.only_files,
            files_workload: Workload {
                rate: self.files_rate,
                adds: 2,
                think_ms: 50,
                duration_s: self.files_duration,
                sources: None,
                skewed: None,
            },
            workload: Workload {
                rate: self.rate,
                adds: self.adds,
                think_ms: self.think_ms,
                duration_s: self.duration,
                sources: None,
                skewed: None,
            },
            scale_workload: Workload {
                rate: self.scale_rate,
                adds: self.scale_adds,
                think_ms: self.scale_think_ms,
                duration_s: self.scale_duration,
                sources: None,
                skewed: None,
            },
            scale_at_s: self.scale_at,
            scale_drain_s: self.scale_drain,
        })
    }
}

/// `run`'s flags, for parsing a planned run exactly as the command line would.
#[derive(Debug, Parser)]
pub(crate) struct RunLine {
    #[command(flatten)]
    pub(crate) args: RunArgs,
}

/// What the lab looked like before the comparison touched it, to put back at the end.
#[derive(Debug, Default)]
pub(crate) struct Restore {
    /// Each pool's strategy and balance factor.
    strategies: Vec<(String, Strategy, Option<BalanceFactor>)>,
    /// Pools a scale run resized.
    resized: Vec<String>,
    /// A store run's lab still up.
    store_lab: Option<Lab>,
    /// The comparison brought the shared lab up.
    started: bool,
}

/// Carries out the comparison: every planned run in order, then the report. Returns the exit
/// status: 0, or 130 when interrupted (Ctrl-C; the reports of the runs done are kept).
pub fn compare(args: &CompareArgs) -> anyhow::Result<i32> {
    if args.capacity {
        return capacity_suite(args);
    }
    let matrix = args.matrix()?;
    let runs = matrix.runs();
    if args.plan {
        for r in &runs {
            println!("{}", r.dir);
        }
        return Ok(0);
    }
    let lab = Lab::parse(&args.lab).map_err(anyhow::Error::msg)?;
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("cannot resolve {}", args.out.display()))?;
    let runtime = crate::run::runtime(None).context("cannot start the runtime")?;
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        let mut restore = Restore::default();
        let result = carry_out(&matrix, &runs, &lab, &out, &stop, &mut restore).await;
        put_back(&lab, restore).await;
        let reports = result?;
        if reports.len() < runs.len() {
            say(&format!(
                "interrupted after {} of {} runs; their reports are in {}",
                reports.len(),
                runs.len(),
                out.display()
            ));
            return Ok(130);
        }
        let comparison = output::write_comparison(&out, &matrix.title(), reports)?;
        println!();
        print!("{}", output::comparison_text(&comparison));
        println!("wrote {0}/report.json and {0}/report.html", out.display());
        Ok(0)
    })
}

fn say(msg: &str) {
    eprintln!("compare: {msg}");
}

/// `--capacity`: the capacity scenarios into one report (`capacity::scenarios`).
fn capacity_suite(args: &CompareArgs) -> anyhow::Result<i32> {
    let names: Vec<&str> = scenarios::suite().iter().map(|s| s.name).collect();
    if let Some(bad) = args
        .capacity_only
        .iter()
        .find(|o| !names.contains(&o.as_str()))
    {
        bail!(
            "--capacity-only: no scenario '{bad}' (they are {})",
            names.join(", ")
        );
    }
    if args.plan {
        for name in names
            .iter()
            .filter(|n| args.capacity_only.is_empty() || args.capacity_only.iter().any(|o| o == *n))
        {
            println!("{name}");
        }
        return Ok(0);
    }
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("cannot resolve {}", args.out.display()))?;
    let suite_args = scenarios::SuiteArgs {
        docker: args.docker,
        out: out.clone(),
        lab: Lab::parse(&args.lab).map_err(anyhow::Error::msg)?,
        replicas: args.capacity_replicas.clone(),
        step_secs: args.capacity_step_secs,
        slo: args.slo,
        only: args.capacity_only.clone(),
    };
    let runtime = crate::run::runtime(None).context("cannot start the runtime")?;
    let suite = runtime.block_on(scenarios::run_suite(&suite_args))?;
    output::write_capacity_suite(&out, &suite)?;
    print!("{}", output::capacity_suite_text(&suite));
    println!(
        "wrote {0}/capacity-report.json and {0}/capacity-report.html",
        out.display()
    );
    Ok(0)
}

/// The runs, each with what it needs of the lab before and after; stops at the first that fails
/// and, with the runs done, at a Ctrl-C.
pub(crate) async fn carry_out(
    matrix: &Matrix,
    runs: &[PlannedRun],
    lab: &Lab,
    out: &Path,
    stop: &AtomicBool,
    restore: &mut Restore,
) -> anyhow::Result<Vec<RunReport>> {
    let shared = runs.iter().any(|r| r.store.is_none());
    let mut ports = None;
    if shared {
        let want = if matrix.docker { "docker" } else { "native" };
        match lab.run(&["mode"]).await {
            Ok(mode) if mode.trim() == want => {}
            Ok(mode) => bail!(
                "the lab is up in {} mode; compare {}or scripts/lab down first",
                mode.trim(),
                if mode.trim() == "docker" {
                    "with --docker "
                } else {
                    "without --docker "
                }
            ),
            Err(_) => {
                say(&format!(
                    "the lab is not up: scripts/lab up{}",
                    if matrix.docker { " --docker" } else { "" }
                ));
                let up: &[&str] = if matrix.docker {
                    &["up", "--docker"]
                } else {
                    &["up"]
                };
                restore.started = true;
                lab.run(up).await.map_err(anyhow::Error::msg)?;
            }
        }
        let status: LabStatus = lab.answer(&["status"]).await.map_err(anyhow::Error::msg)?;
        let proxy = status
            .proxy
            .context("the proxy's admin API does not answer (scripts/lab status)")?;
        restore.strategies = proxy
            .pools
            .iter()
            .map(|p| (p.name.clone(), p.strategy, p.balance_factor))
            .collect();
        ports = Some(proxy_ports(lab).await?);
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut reports = Vec::new();
    for run in runs {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (run_lab, (proxy, admin)) = match &run.store {
            None => (lab.clone(), ports.context("no shared lab")?),
            Some(store) => {
                let dir = out.join("labs").join(store.name);
                let store_lab = lab
                    .clone()
                    .with_env("STATELAB_LAB_DIR", &dir.to_string_lossy())
                    .with_env("STATELAB_PORTS", "free");
                say(&format!(
                    "store: {} (scripts/lab up {})",
                    store.name,
                    store.up.join(" ")
                ));
                restore.store_lab = Some(store_lab.clone());
                let mut up = vec!["up"];
                up.extend(&store.up);
                store_lab.run(&up).await.map_err(anyhow::Error::msg)?;
                let ports = proxy_ports(&store_lab).await?;
                (store_lab, ports)
            }
        };
        let pool = run.design.as_str();
        if run.store.is_none() {
            set_routing(lab, pool, run.strategy, run.balance_factor).await?;
        }
        if let Some(sc) = &run.scale {
            restore.resized.push(pool.to_owned());
            lab.run(&["scale", pool, &sc.from.to_string(), "--now"])
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let report = one_run(run, &run_lab, proxy, admin, &out.join(&run.dir)).await;
        // What the run changed goes back before the next, whatever its outcome.
        if let Some((victim, _)) = run.kill.as_ref().filter(|_| run.store.is_none()) {
            // Started again unless the run did it.
            let up = lab
                .status()
                .await
                .and_then(|s| s.part(victim).map(|p| p.up));
            if up != Some(true) {
                lab.run(&["start", victim])
                    .await
                    .map_err(anyhow::Error::msg)?;
            }
        }
        if run.scale.is_some() {
            lab.run(&["scale", pool, &POOL_SIZE.to_string(), "--now"])
                .await
                .map_err(anyhow::Error::msg)?;
        }
        if let Some(store_lab) = restore.store_lab.take() {
            if let Err(e) = store_lab.run(&["down", "-v"]).await {
                say(&e);
            }
        }
        let report = report?;
        if report.interrupted {
            stop.store(true, Ordering::SeqCst);
            break;
        }
        if let Some(e) = report.events.iter().find(|e| !e.ok) {
            bail!(
                "the {} run: its scheduled {} of {} failed: {}",
                report.label,
                e.what,
                e.replica,
                e.detail
            );
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Sets a pool's strategy and its balance factor: the factor where the strategy takes one, off
/// otherwise, so a factor left from an earlier run never shows in this one's report.
async fn set_routing(
    lab: &Lab,
    pool: &str,
    strategy: Strategy,
    factor: Option<BalanceFactor>,
) -> anyhow::Result<()> {
    let factor = match factor.filter(|_| strategy.takes_balance_factor()) {
        Some(f) => f.to_string(),
        None => "off".into(),
    };
    let line = [
        "strategy",
        pool,
        strategy.as_str(),
        "--balance-factor",
        &factor,
    ];
    lab.run(&line).await.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The proxy's and the admin API's ports on the host, from `scripts/lab ports --json`.
pub(crate) async fn proxy_ports(lab: &Lab) -> anyhow::Result<(u16, u16)> {
    let ports: Ports = lab.answer(&["ports"]).await.map_err(anyhow::Error::msg)?;
    let port = |name: &str| {
        ports
            .ports
            .get(name)
            .copied()
            .with_context(|| format!("scripts/lab ports names no {name} port"))
    };
    Ok((port("proxy")?, port("admin")?))
}

/// One run, as `statelab-load run` with the planned flags would carry it out; writes its files.
async fn one_run(
    run: &PlannedRun,
    lab: &Lab,
    proxy: u16,
    admin: u16,
    dir: &Path,
) -> anyhow::Result<RunReport> {
    let mut line = vec!["run".to_owned()];
    line.extend(run.run_flags(proxy, admin, &lab.program, &dir.to_string_lossy()));
    let mut parsed = RunLine::try_parse_from(&line)
        .with_context(|| format!("the planned run {} is not a valid run", run.dir))?;
    // The proxy's token, when the environment gives none: the one the lab recorded.
    if parsed.args.proxy.admin_token.is_none() {
        parsed.args.proxy.admin_token = lab.admin_token();
    }
    let plan = RunPlan::from_args(&parsed.args)?.with_lab(lab.clone());
    say(&format!(
        "{}: {} s at {} sessions/s",
        run.label
            .clone()
            .unwrap_or_else(|| format!("{}/{}", run.design, run.strategy)),
        run.workload.duration_s,
        run.workload.rate
    ));
    let report = crate::run::run(plan.resolve().await).await?;
    print!("{}", report::summary(&report));
    output::write_run(dir, &report)?;
    println!("wrote {0}/run.json and {0}/run.html", dir.display());
    Ok(report)
}

/// Puts back the pools' strategies and sizes, takes down a store lab left up and the shared lab
/// if the comparison brought it up. Each step is tried whatever the others did.
pub(crate) async fn put_back(lab: &Lab, restore: Restore) {
    for (pool, strategy, factor) in &restore.strategies {
        if let Err(e) = set_routing(lab, pool, *strategy, *factor).await {
            say(&e.to_string());
        }
    }
    for pool in &restore.resized {
        if let Err(e) = lab
            .run(&["scale", pool, &POOL_SIZE.to_string(), "--now"])
            .await
        {
            say(&e);
        }
    }
    if let Some(store_lab) = restore.store_lab {
        if let Err(e) = store_lab.run(&["down", "-v"]).await {
            say(&e);
        }
    }
    if restore.started {
        if let Err(e) = lab.run(&["down"]).await {
            say(&e);
        }
    }
}

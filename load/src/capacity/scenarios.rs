//! `statelab-load compare --capacity`: the capacity scenarios, each in a lab of its own sized for
//! it (natively on free ports, or as a compose project of its own), into one report
//! (`capacity-report.json`, `capacity-report.html`):
//!
//! 1. `stateless-budgeted`: stateless, round-robin, replicas of a fixed size.
//! 2. `externalized-small-store` and `externalized-larger-store`: externalized behind a Redis
//!    with a small CPU budget, then a larger one: where the ceiling sits and how it moves.
//! 3. `saturation`: a pool of three past its capacity with long sessions grows to four: stateful
//!    with cookie affinity against stateless ([`super::saturation`]).
//! 4. `stateless-one-host`: the stateless curve with no budgets at all.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use statelab_formats::lab::Scaled;
use statelab_formats::{procfs, Design, Strategy};

use super::report::CapacityReport;
use super::saturation::{summarise, SaturationRun};
use super::search::Slo;
use super::{measure_with, CapacityArgs};
use crate::compare::{proxy_ports, RunLine};
use crate::config::{ProxyArgs, RunPlan};
use crate::fault::{FaultStep, Lab};

/// Each replica's budget in the budgeted scenarios, in cores: six replicas take 1.2 of this
/// machine's two cores and leave 0.8 to the proxy, Redis and the generator.
pub const REPLICA_CPU: &str = "0.2";
/// CPU work per request in the replica-bound scenarios: 0.2 of a core then serves about 200
/// requests a second.
pub const WORK_US: &str = "1000";
/// Work per request in the store scenarios: half, so that a few replicas outrun a small store.
pub const STORE_WORK_US: &str = "500";
/// The small and the larger Redis budget: a fiftieth of a core (a 1 ms quota every 50 ms) and a
/// tenth.
pub const SMALL_STORE_CPU: &str = "0.02";
pub const LARGER_STORE_CPU: &str = "0.1";
/// The saturation experiment: offered load over the three-replica capacity, its length, when the
/// pool grows, and its sessions' shape (long: about 20 requests over some 6 s).
pub const OVERLOAD: f64 = 1.15;
pub const SATURATION_SECS: u64 = 45;
pub const SATURATION_SCALE_AT: u64 = 15;
pub const SATURATION_ADDS: u32 = 16;
pub const SATURATION_THINK_MS: u64 = 300;

/// One scenario of the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    /// The words after `scripts/lab up` (`--docker` added in Docker mode).
    pub up: Vec<&'static str>,
    /// A capacity curve of this pool, or the saturation experiment.
    pub curve: Option<Design>,
}

/// The suite, in order.
pub fn suite() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "stateless-budgeted",
            title: "stateless, round-robin, replicas of 0.2 core",
            up: vec!["--replica-cpu", REPLICA_CPU, "--work-us", WORK_US],
            curve: Some(Design::Stateless),
        },
        Scenario {
            name: "externalized-small-store",
            title: "externalized, Redis with 0.02 core",
            up: vec![
                "--replica-cpu",
                REPLICA_CPU,
                "--store-cpu",
                SMALL_STORE_CPU,
                "--work-us",
                STORE_WORK_US,
            ],
            curve: Some(Design::Externalized),
        },
        Scenario {
            name: "externalized-larger-store",
            title: "externalized, Redis with 0.1 core",
            up: vec![
                "--replica-cpu",
                REPLICA_CPU,
                "--store-cpu",
                LARGER_STORE_CPU,
                "--work-us",
                STORE_WORK_US,
            ],
            curve: Some(Design::Externalized),
        },
        Scenario {
            name: "saturation",
            title: "a full pool grown from 3 to 4 at the peak: stateful/cookie against stateless",
            up: vec!["--replica-cpu", REPLICA_CPU, "--work-us", WORK_US],
            curve: None,
        },
        Scenario {
            name: "stateless-one-host",
            title: "stateless, round-robin, no budgets: processes on one host",
            up: vec!["--work-us", WORK_US],
            curve: Some(Design::Stateless),
        },
    ]
}

/// A curve scenario's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveResult {
    pub name: String,
    pub title: String,
    /// `scripts/lab up` flags of its lab.
    pub lab: String,
    pub report: CapacityReport,
}

/// The saturation scenario's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationResult {
    pub lab: String,
    pub slo_p99_ms: f64,
    pub runs: Vec<SaturationRun>,
    pub verdict: String,
}

/// The whole suite's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacitySuite {
    pub title: String,
    /// `native` or `docker`.
    pub mode: String,
    pub host_cores: u32,
    pub started_unix_ms: u64,
    pub curves: Vec<CurveResult>,
    pub saturation: Option<SaturationResult>,
}

/// What the suite needs from `compare`'s flags.
#[derive(Debug, Clone)]
pub struct SuiteArgs {
    pub docker: bool,
    pub out: PathBuf,
    pub lab: Lab,
    pub replicas: Vec<u8>,
    pub step_secs: u64,
    pub slo: Slo,
    /// Only these scenarios (all when empty).
    pub only: Vec<String>,
}

fn say(msg: &str) {
    eprintln!("capacity: {msg}");
}

/// A free port on loopback, for a Docker scenario lab's published ports.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// The lab command for a scenario: its own lab directory, and in Docker its own project,
/// network and host ports.
fn scenario_lab(args: &SuiteArgs, s: &Scenario) -> anyhow::Result<Lab> {
    let dir = args.out.join("labs").join(s.name);
    let lab = args
        .lab
        .clone()
        .with_env("STATELAB_LAB_DIR", &dir.to_string_lossy());
    Ok(if args.docker {
        lab.with_env("STATELAB_PROJECT", "statelab-capacity")
            .with_env("STATELAB_SUBNET", "10.231.8.0/24")
            .with_env("STATELAB_PROXY_PORT", &free_port()?.to_string())
            .with_env("STATELAB_ADMIN_PORT", &free_port()?.to_string())
    } else {
        lab.with_env("STATELAB_PORTS", "free")
    })
}

/// The capacity flags of a curve in a scenario lab.
fn curve_args(args: &SuiteArgs, service: Design, ports: (u16, u16), s: &Scenario) -> CapacityArgs {
    CapacityArgs {
        service,
        replicas: args.replicas.clone(),
        slo: args.slo,
        step_secs: args.step_secs,
        warmup_secs: 2,
        start_rate: 5.0,
        max_rate: 2000.0,
        bisections: 3,
        adds: 3,
        think_ms: 0,
        fit_on: 3,
        proxy: ProxyArgs {
            target: Some(format!("http://127.0.0.1:{}/{service}", ports.0)),
            admin: format!("http://127.0.0.1:{}", ports.1),
            admin_token: crate::fault::admin_token_in(&args.out.join("labs").join(s.name)),
        },
        // The step's own lab command is replaced by `lab` (with its environment) before it runs.
        lab: args.lab.program.clone(),
        label: Some(s.name.to_owned()),
        out: None,
    }
}

/// Runs the suite; returns its record (also written to `out`).
pub async fn run_suite(args: &SuiteArgs) -> anyhow::Result<CapacitySuite> {
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut suite = CapacitySuite {
        title: format!(
            "statelab: does another replica help? ({} lab, {} cores)",
            if args.docker { "docker" } else { "native" },
            procfs::host_cores()
        ),
        mode: if args.docker { "docker" } else { "native" }.into(),
        host_cores: procfs::host_cores(),
        started_unix_ms,
        curves: Vec::new(),
        saturation: None,
    };
    for s in suite_selected(&args.only) {
        let lab = scenario_lab(args, &s)?;
        let mut up = vec!["up"];
        if args.docker {
            up.push("--docker");
        }
        up.extend(&s.up);
        say(&format!("{}: scripts/lab {}", s.name, up.join(" ")));
        lab.run(&up).await.map_err(anyhow::Error::msg)?;
        let outcome = scenario(args, &s, &lab, &mut suite).await;
        if let Err(e) = lab.run(&["down", "-v"]).await {
            say(&format!("{}: down failed: {e}", s.name));
        }
        outcome?;
    }
    Ok(suite)
}

fn suite_selected(only: &[String]) -> Vec<Scenario> {
    suite()
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s.name))
        .collect()
}

async fn scenario(
    args: &SuiteArgs,
    s: &Scenario,
    lab: &Lab,
    suite: &mut CapacitySuite,
) -> anyhow::Result<()> {
    let ports = proxy_ports(lab).await?;
    match s.curve {
        Some(service) => {
            let cargs = curve_args(args, service, ports, s);
            let report = measure_with(&cargs, lab).await?;
            print!("{}", super::report::text(&report));
            suite.curves.push(CurveResult {
                name: s.name.into(),
                title: s.title.into(),
                lab: s.up.join(" "),
                report,
            });
        }
        None => {
            let mut runs = Vec::new();
            for (service, strategy) in [
                (Design::Stateful, Strategy::Cookie),
                (Design::Stateless, Strategy::RoundRobin),
            ] {
                runs.push(saturate(args, s, lab, ports, service, strategy).await?);
            }
            let verdict = saturation_verdict(&runs);
            say(&verdict);
            suite.saturation = Some(SaturationResult {
                lab: s.up.join(" "),
                slo_p99_ms: args.slo.p99_ms,
                runs,
                verdict,
            });
        }
    }
    Ok(())
}

/// The saturation experiment for one design: its three-replica capacity, then the overloaded
/// run with the pool grown to four.
async fn saturate(
    args: &SuiteArgs,
    s: &Scenario,
    lab: &Lab,
    ports: (u16, u16),
    service: Design,
    strategy: Strategy,
) -> anyhow::Result<SaturationRun> {
    lab.run(&["strategy", service.as_str(), strategy.as_str()])
        .await
        .map_err(anyhow::Error::msg)?;
    let mut cargs = curve_args(args, service, ports, s);
    cargs.replicas = vec![3];
    cargs.bisections = 2;
    cargs.label = Some(format!("{service}/{strategy} at 3"));
    let three = measure_with(&cargs, lab).await?;
    let capacity3 = three
        .points
        .first()
        .and_then(super::report::Point::capacity_rps)
        .with_context(|| format!("{service} met the SLO at no rate with 3 replicas"))?;
    let per_session = SATURATION_ADDS + 4;
    let rate = OVERLOAD * capacity3 / f64::from(per_session);
    let _: Scaled = lab
        .answer(&["scale", service.as_str(), "3", "--now"])
        .await
        .map_err(anyhow::Error::msg)?;
    let words: Vec<String> = vec![
        "run".into(),
        "--service".into(),
        service.as_str().into(),
        "--strategy".into(),
        strategy.as_str().into(),
        "--rate".into(),
        format!("{rate:.2}"),
        "--adds".into(),
        SATURATION_ADDS.to_string(),
        "--think-ms".into(),
        SATURATION_THINK_MS.to_string(),
        "--duration".into(),
        SATURATION_SECS.to_string(),
        "--scale".into(),
        format!("{service}=4@{SATURATION_SCALE_AT}"),
        "--target".into(),
        format!("http://127.0.0.1:{}/{service}", ports.0),
        "--admin".into(),
        format!("http://127.0.0.1:{}", ports.1),
        "--quiet".into(),
    ];
    let mut run_args = <RunLine as clap::Parser>::try_parse_from(&words)
        .context("the saturation run's flags")?
        .args;
    run_args.proxy.admin_token = cargs.proxy.admin_token.clone();
    say(&format!(
        "{service}/{strategy}: 3 replicas hold {capacity3:.0} req/s; {rate:.1} sessions/s of {per_session} requests ({OVERLOAD}×) for {SATURATION_SECS} s, grown to 4 at {SATURATION_SCALE_AT} s"
    ));
    let plan = RunPlan::from_args(&run_args)?.with_lab(lab.clone());
    let report = crate::run::run(plan.resolve().await).await?;
    let scale_at = report
        .events
        .iter()
        .find(|e| e.what == FaultStep::Scale && e.ok)
        .map(|e| e.at_s + e.took_s)
        .context("the pool was not grown to four")?;
    let newcomer = format!("{service}-4");
    let out = summarise(
        &report,
        strategy.as_str(),
        capacity3,
        OVERLOAD,
        per_session,
        scale_at,
        &newcomer,
        args.slo.p99_ms,
    );
    lab.run(&["scale", service.as_str(), "3", "--now"])
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(out)
}

fn saturation_verdict(runs: &[SaturationRun]) -> String {
    let part = |r: &SaturationRun| {
        let over = r
            .over_slo_after_scale_s
            .map_or_else(|| "until the run ended".into(), |s| format!("for {s:.0} s"));
        format!(
            "{}/{}: p99 above the SLO {over} after the 4th replica came (it took {:.0}% of the next 10 s of requests)",
            r.service,
            r.strategy,
            r.newcomer_share * 100.0
        )
    };
    runs.iter().map(part).collect::<Vec<_>>().join("; ")
}

//! `statelab-load capacity`: does another replica buy capacity? For each replica count the pool
//! is scaled through the lab, warmed up, and searched for the highest arrival rate that meets
//! the SLO ([`search`]); every part's CPU is read from the lab before and after each step
//! (`scripts/lab cpu --json`) and the generator's from its own `/proc` entry, so the step can
//! name its bottleneck ([`mod@bottleneck`]). The Universal Scalability Law is fitted to the
//! capacities ([`usl`]), once on all of them and once on the first three only, to test what it
//! predicts for the rest. [`report`] holds the record and its table; `html::capacity` the page.

pub mod bottleneck;
pub mod report;
pub mod saturation;
pub mod scenarios;
pub mod search;
pub mod usl;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Parser};
use statelab_formats::lab::{CpuTimes, LabStatus, Scaled, MAX_REPLICAS_PER_POOL};
use statelab_formats::{procfs, Design};

use crate::config::{ProxyArgs, RunArgs, RunPlan};
use crate::fault::Lab;
use crate::report::RunReport;
use bottleneck::{bottleneck, PartKind, PartUse};
use report::{CapacityReport, Holdout, Point, Prediction, Step};
use search::{Search, SearchPlan, Slo, Verdict};

/// Share of late session starts or late steps above which the generator, not the pool, set the
/// pace of a step. A step that lags is run once more before the search takes it as the
/// generator's limit: one hiccup (another process on the host, say) is not a limit.
const LAG_SHARE: f64 = 0.05;

/// `statelab-load capacity`'s flags.
#[derive(Debug, Clone, Args)]
pub struct CapacityArgs {
    /// The pool to measure.
    #[arg(long)]
    pub service: Design,
    /// The replica counts, e.g. 1,2,3,4 (each 1-9); the pool is scaled to each in turn and back
    /// to its size before the run at the end.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,6,8")]
    pub replicas: Vec<u8>,
    /// What a step must meet: p99 latency and failed share, e.g. p99=50ms,errors=0.1%.
    #[arg(long, default_value = "p99=50ms,errors=0.1%")]
    pub slo: Slo,
    /// Seconds each step holds its rate.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub step_secs: u64,
    /// Seconds of load at the start rate after each scale, not counted.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=120))]
    pub warmup_secs: u64,
    /// The first rate tried, in sessions a second (each session is a login, --adds cart adds,
    /// a cart, a checkout and a logout).
    #[arg(long, default_value_t = 5.0)]
    pub start_rate: f64,
    /// The highest rate tried, in sessions a second.
    #[arg(long, default_value_t = 2000.0)]
    pub max_rate: f64,
    /// Bisection steps once the ramp has bracketed the capacity.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub bisections: u32,
    /// Cart adds per session.
    #[arg(long, default_value_t = 3)]
    pub adds: u32,
    /// Think time between a session's requests, in ms.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
    /// The USL is also fitted on the first this many replica counts alone, and its prediction
    /// for the others printed against what was measured.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=9))]
    pub fit_on: u8,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// The lab's command.
    #[arg(long, env = "STATELAB_LAB_CMD", default_value = "scripts/lab")]
    pub lab: String,
    /// A name for the run (default: SERVICE/capacity).
    #[arg(long)]
    pub label: Option<String>,
    /// Directory for capacity.json and capacity.html.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The `run` flags of one step, parsed as `statelab-load run` parses them.
#[derive(Debug, Parser)]
struct StepCli {
    #[command(flatten)]
    run: RunArgs,
}

/// The generator's own CPU time so far.
fn own_seconds() -> f64 {
    procfs::process_seconds(std::process::id()).unwrap_or(0.0)
}

/// A reading of every part's CPU, the generator's and the host's, with its time.
pub(crate) struct Reading {
    at: Instant,
    lab: CpuTimes,
    generator: f64,
}

pub(crate) async fn read_cpu(lab: &Lab) -> anyhow::Result<Reading> {
    let times: CpuTimes = lab
        .answer(&["cpu"])
        .await
        .map_err(|e| anyhow::anyhow!("scripts/lab cpu: {e}"))?;
    Ok(Reading {
        at: Instant::now(),
        lab: times,
        generator: own_seconds(),
    })
}

/// Each part's mean cores between two readings (a part missing from either is left out), and
/// the host's busy cores.
pub(crate) fn cpu_between(a: &Reading, b: &Reading) -> (Vec<PartUse>, f64) {
    let secs = (b.at - a.at).as_secs_f64().max(1e-3);
    let mut parts: Vec<PartUse> = b
        .lab
        .parts
        .iter()
        .filter_map(|p| {
            let before = a.lab.parts.iter().find(|q| q.name == p.name)?;
            Some(PartUse {
                name: p.name.clone(),
                kind: PartKind::of(&p.name),
                cores: (p.seconds - before.seconds).max(0.0) / secs,
                budget: p.budget,
            })
        })
        .collect();
    parts.push(PartUse {
        name: "generator".into(),
        kind: PartKind::Generator,
        cores: (b.generator - a.generator).max(0.0) / secs,
        budget: None,
    });
    let host = (b.lab.host_busy_seconds - a.lab.host_busy_seconds).max(0.0) / secs;
    (parts, host)
}

impl CapacityArgs {
    fn step_args(&self, rate: f64, secs: u64) -> anyhow::Result<RunArgs> {
        let words = vec![
            "run".to_string(),
            "--service".into(),
            self.service.as_str().into(),
            "--model".into(),
            "open".into(),
            "--rate".into(),
            format!("{rate}"),
            "--duration".into(),
            secs.max(1).to_string(),
            "--adds".into(),
            self.adds.to_string(),
            "--think-ms".into(),
            self.think_ms.to_string(),
            "--lab".into(),
            self.lab.clone(),
            "--quiet".into(),
        ];
        let mut args = StepCli::try_parse_from(words)
            .context("the step's run flags")?
            .run;
        args.proxy = self.proxy.clone();
        Ok(args)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.replicas.is_empty() {
            bail!("--replicas names no replica count");
        }
        if let Some(n) = self
            .replicas
            .iter()
            .find(|n| **n == 0 || **n > MAX_REPLICAS_PER_POOL)
        {
            bail!("--replicas: {n} is not 1-{MAX_REPLICAS_PER_POOL}");
        }
        if !(self.start_rate > 0.0 && self.start_rate <= self.max_rate) {
            bail!("--start-rate must be above 0 and at most --max-rate");
        }
        Ok(())
    }
}

/// One step: the rate held for `secs`, with every part's CPU around it.
async fn step(args: &CapacityArgs, lab: &Lab, rate: f64, slo: &Slo) -> anyhow::Result<Step> {
    let plan = RunPlan::from_args(&args.step_args(rate, args.step_secs)?)?.with_lab(lab.clone());
    let before = read_cpu(lab).await?;
    let run: RunReport = crate::run::run(plan.resolve().await).await?;
    let after = read_cpu(lab).await?;
    let (cpu, host) = cpu_between(&before, &after);
    let late = run.starts_late as f64 > LAG_SHARE * run.sessions_started.max(1) as f64
        || run.steps_late as f64 > LAG_SHARE * run.requests.max(1) as f64
        || run.starts_dropped > 0;
    let verdict = Verdict {
        rate,
        p99_ms: run.p99_ms,
        error_share: run.failed_requests as f64 / run.requests.max(1) as f64,
        generator_lagged: late,
    };
    let limit = bottleneck(&cpu, host, f64::from(after.lab.host_cores));
    Ok(Step {
        rate,
        throughput_rps: run.throughput_rps,
        requests: run.requests,
        p50_ms: run.p50_ms,
        p99_ms: run.p99_ms,
        error_share: verdict.error_share,
        generator_lagged: late,
        passed: verdict.passes(slo),
        cpu,
        host_busy_cores: host,
        bottleneck: limit,
    })
}

fn say(msg: &str) {
    eprintln!("capacity: {msg}");
}

/// Searches one replica count.
async fn point(args: &CapacityArgs, lab: &Lab, n: u8, plan: SearchPlan) -> anyhow::Result<Point> {
    let scaled: Scaled = lab
        .answer(&["scale", args.service.as_str(), &n.to_string(), "--now"])
        .await
        .map_err(|e| anyhow::anyhow!("scripts/lab scale: {e}"))?;
    say(&format!(
        "{} at {n}: {}",
        args.service,
        scaled.replicas.join(" ")
    ));
    if args.warmup_secs > 0 {
        let warm = RunPlan::from_args(&args.step_args(args.start_rate, args.warmup_secs)?)?
            .with_lab(lab.clone());
        crate::run::run(warm.resolve().await).await?;
    }
    let mut search = Search::new(plan, args.slo);
    let mut steps: Vec<Step> = Vec::new();
    while let Some(rate) = search.next_rate() {
        let mut s = step(args, lab, rate, &args.slo).await?;
        if s.generator_lagged {
            say(&format!(
                "  N={n} rate {rate:.1}/s: the generator lagged; once more"
            ));
            s = step(args, lab, rate, &args.slo).await?;
        }
        say(&format!(
            "  N={n} rate {rate:.1}/s: {:.0} req/s, p99 {:.1} ms, errors {:.2}%{}, {} {:.0}% → {}",
            s.throughput_rps,
            s.p99_ms,
            s.error_share * 100.0,
            if s.generator_lagged {
                ", generator lagged"
            } else {
                ""
            },
            s.bottleneck.name,
            s.bottleneck.utilisation * 100.0,
            if s.passed { "pass" } else { "fail" }
        ));
        search.record(Verdict {
            rate,
            p99_ms: s.p99_ms,
            error_share: s.error_share,
            generator_lagged: s.generator_lagged,
        });
        steps.push(s);
    }
    let best = search
        .best()
        .and_then(|b| steps.iter().find(|s| s.passed && s.rate == b).cloned());
    Ok(Point {
        replicas: n,
        ending: search.ending().unwrap_or(search::Ending::Bracketed),
        best,
        steps,
    })
}

/// The fit on the first `k` points, and its predictions for the rest.
fn holdout(measured: &[(f64, f64)], k: usize) -> Option<Holdout> {
    if measured.len() <= k {
        return None;
    }
    let model = usl::fit(&measured[..k])?;
    Some(Holdout {
        fitted_on: measured[..k].iter().map(|(n, _)| *n as u8).collect(),
        model,
        predictions: measured[k..]
            .iter()
            .map(|(n, x)| {
                let predicted = model.at(*n);
                Prediction {
                    replicas: *n as u8,
                    predicted_rps: predicted,
                    measured_rps: *x,
                    error: (predicted - x) / x,
                }
            })
            .collect(),
    })
}

/// Runs the whole capacity measurement through the lab command `--lab` names and returns its
/// record.
pub async fn measure(args: &CapacityArgs) -> anyhow::Result<CapacityReport> {
    let lab = Lab::parse(&args.lab).map_err(anyhow::Error::msg)?;
    measure_with(args, &lab).await
}

/// [`measure`] through `lab` (a lab command with an environment of its own, say).
pub async fn measure_with(args: &CapacityArgs, lab: &Lab) -> anyhow::Result<CapacityReport> {
    args.check()?;
    let status: LabStatus = lab
        .answer(&["status"])
        .await
        .map_err(|e| anyhow::anyhow!("the lab must be up (scripts/lab status): {e}"))?;
    let prefix = format!("{}-", args.service.as_str());
    let before = status
        .parts
        .iter()
        .filter(|p| p.name.starts_with(&prefix))
        .count();
    let strategy = status.proxy.as_ref().and_then(|v| {
        v.pools
            .iter()
            .find(|p| p.name == args.service.as_str())
            .map(|p| p.strategy.to_string())
    });
    let plan = SearchPlan {
        start_rate: args.start_rate,
        max_rate: args.max_rate,
        bisections: args.bisections,
    };
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut points = Vec::new();
    let mut failure = None;
    for n in &args.replicas {
        match point(args, lab, *n, plan).await {
            Ok(p) => points.push(p),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if before > 0 {
        let size = before.to_string();
        if let Err(e) = lab
            .run(&["scale", args.service.as_str(), &size, "--now"])
            .await
        {
            say(&format!(
                "could not scale {} back to {size}: {e}",
                args.service
            ));
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let verdict = report::verdict(&points);
    let mut r = CapacityReport {
        label: args
            .label
            .clone()
            .unwrap_or_else(|| format!("{}/capacity", args.service)),
        service: args.service,
        strategy,
        slo: args.slo,
        search: plan,
        step_secs: args.step_secs,
        host_cores: procfs::host_cores(),
        started_unix_ms,
        points,
        fit: None,
        holdout: None,
        verdict,
    };
    let measured = r.measured();
    r.fit = usl::fit(&measured);
    r.holdout = holdout(&measured, usize::from(args.fit_on));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holdout_predicts_the_counts_it_did_not_see() {
        let truth = usl::Usl {
            lambda: 100.0,
            sigma: 0.1,
            kappa: 0.01,
            r_squared: 1.0,
        };
        let measured: Vec<(f64, f64)> = [1.0, 2.0, 3.0, 4.0, 6.0]
            .iter()
            .map(|n| (*n, truth.at(*n)))
            .collect();
        let h = holdout(&measured, 3).expect("two points to predict");
        assert_eq!(h.fitted_on, vec![1, 2, 3]);
        assert_eq!(h.predictions.len(), 2);
        assert!(h.predictions.iter().all(|p| p.error.abs() < 1e-6), "{h:?}");
        assert!(holdout(&measured[..3], 3).is_none());
    }

    #[test]
    fn a_step_runs_with_the_generators_own_flags() {
        let args = Wrap::try_parse_from(["x", "--service", "stateless"])
            .expect("defaults parse")
            .args;
        let run = args.step_args(12.5, 5).expect("step flags");
        assert_eq!(run.rate, 12.5);
        assert_eq!(run.duration, 5);
        assert_eq!(run.adds, 3);
        assert!(args.check().is_ok());
        let bad = CapacityArgs {
            replicas: vec![0],
            ..args
        };
        assert!(bad.check().is_err());
    }

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: CapacityArgs,
    }
}

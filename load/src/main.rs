//! `statelab-load`: parse the command line, run, write the reports. All the work is in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use statelab_load::capacity::{self, CapacityArgs};
use statelab_load::compare::{self, CompareArgs};
use statelab_load::config::{RunArgs, RunPlan};
use statelab_load::evidence::{self, EvidenceArgs};
use statelab_load::output;
use statelab_load::report;
use statelab_load::run;

/// statelab's load generator: virtual shoppers with their own cookies against one service,
/// an optional replica kill mid-run, and a report of what happened (terminal, JSON, HTML).
#[derive(Debug, Parser)]
#[command(name = "statelab-load", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive load against one service and report it.
    Run(Box<RunArgs>),
    /// The lab's comparison: the same workload against each design with a replica killed, and
    /// with --scale and --store the scaling and store runs; one report for all.
    Compare(Box<CompareArgs>),
    /// Does another replica buy capacity? The highest rate meeting the SLO at each replica
    /// count, with every part's CPU, the bottleneck named and the USL fitted
    /// (capacity.json, capacity.html).
    Capacity(Box<CapacityArgs>),
    /// The textbook's claims about stateful and stateless, each answered with figures measured
    /// in a lab of its own, a verdict and its reason (evidence.json, evidence.html).
    Evidence(Box<EvidenceArgs>),
    /// Merge the run.json files of several runs into one comparison (report.json, report.html).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Directory for report.json and report.html.
    #[arg(long)]
    out: PathBuf,

    /// Title of the report.
    #[arg(long, default_value = "statelab: stateful vs stateless, measured")]
    title: String,

    /// run.json files written by `statelab-load run --out`, in the order to show them.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_command(*args),
        Command::Compare(args) => compare::compare(&args),
        Command::Capacity(args) => capacity_command(&args),
        Command::Evidence(args) => evidence::evidence(&args),
        Command::Report(args) => report_command(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("statelab-load: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run_command(args: RunArgs) -> anyhow::Result<i32> {
    let plan = RunPlan::from_args(&args)?;
    let runtime = run::runtime(args.threads).context("cannot start the runtime")?;
    let report = runtime.block_on(async { run::run(plan.resolve().await).await })?;
    print!("{}", report::summary(&report));
    if let Some(dir) = &args.out {
        output::write_run(dir, &report)?;
        println!("wrote {0}/run.json and {0}/run.html", dir.display());
    }
    // Ctrl-C: the report is written; the exit status says the run did not run its course, so
    // a script running several (scripts/compare) stops too.
    if report.interrupted {
        return Ok(130);
    }
    // A scheduled fault that could not be carried out makes the run's story wrong: say so.
    if report.events.iter().any(|e| !e.ok) {
        eprintln!("statelab-load: a scheduled lab command failed (see the events above)");
        return Ok(3);
    }
    Ok(0)
}

fn capacity_command(args: &CapacityArgs) -> anyhow::Result<i32> {
    let runtime = run::runtime(None).context("cannot start the runtime")?;
    let report = runtime.block_on(capacity::measure(args))?;
    print!("{}", capacity::report::text(&report));
    if let Some(dir) = &args.out {
        output::write_capacity(dir, &report)?;
        println!(
            "wrote {0}/capacity.json and {0}/capacity.html",
            dir.display()
        );
    }
    Ok(0)
}

fn report_command(args: ReportArgs) -> anyhow::Result<i32> {
    let runs = args
        .runs
        .iter()
        .map(|p| report::read_run(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let comparison = output::write_comparison(&args.out, &args.title, runs)?;
    print!("{}", output::comparison_text(&comparison));
    println!(
        "wrote {0}/report.json and {0}/report.html",
        args.out.display()
    );
    Ok(0)
}

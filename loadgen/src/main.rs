//! `statelab-load`: parse the command line, run, write the reports. All the work is in the library.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use statelab_loadgen::client::{Client, Target};
use statelab_loadgen::config::{Model, ModelKind, Routing, RunConfig, Work, WorkflowKind};
use statelab_loadgen::fault::{parse_seconds, Fault, Lab};
use statelab_loadgen::html;
use statelab_loadgen::report::{self, Comparison, RunReport};
use statelab_loadgen::run;
use statelab_loadgen::workflow::Workflow;
use statelab_proxy_api::StatusView;

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
    /// Merge the run.json files of several runs into one comparison (report.json, report.html).
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Service {
    Stateful,
    Stateless,
    Externalized,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Stateful => "stateful",
            Service::Stateless => "stateless",
            Service::Externalized => "externalized",
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The service under load; sets the default target and names the run.
    #[arg(long, value_enum)]
    service: Service,

    /// Base URL, http://IP:PORT[/PREFIX]. Default: the lab's proxy,
    /// http://127.0.0.1:8080/<service>. A replica directly: e.g. http://127.0.0.1:18001.
    #[arg(long, env = "STATELAB_LOAD_TARGET")]
    target: Option<String>,

    /// The proxy's admin API, asked for the pool's strategy when --strategy is not given
    /// (not asked when the target has no path prefix: that is a replica, "direct").
    #[arg(
        long,
        env = "STATELAB_LOAD_ADMIN",
        default_value = "http://127.0.0.1:8081"
    )]
    admin: String,

    /// The routing strategy to record in the report (cookie, ip-hash, round-robin, direct).
    #[arg(long)]
    strategy: Option<String>,

    /// A name for the run in reports. Default: SERVICE/STRATEGY.
    #[arg(long)]
    label: Option<String>,

    /// Workload model.
    #[arg(long, value_enum, default_value = "open")]
    model: ModelKind,

    /// Open model: new sessions (or raw requests) per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,

    /// Open model: most sessions running at once; arrivals beyond it are dropped and counted.
    #[arg(long, default_value_t = 2000)]
    max_sessions: u64,

    /// Closed model: concurrent users.
    #[arg(long, default_value_t = 20)]
    users: u64,

    /// What each user does.
    #[arg(long, value_enum, default_value = "shop")]
    workflow: WorkflowKind,

    /// Shop workflow: cart adds per session.
    #[arg(long, default_value_t = 3)]
    adds: u32,

    /// Shop workflow: think time between a user's requests, in milliseconds.
    #[arg(long, default_value_t = 100)]
    think_ms: u64,

    /// Raw workflow: the path to GET (after the target's prefix).
    #[arg(long, default_value = "/health")]
    path: String,

    /// Run length in seconds (1..=900); no request is started after it.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=900))]
    duration: u64,

    /// Per-request timeout in milliseconds (connect, send and the whole answer).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,

    /// Spread users over this many source addresses, 127.0.0.1 ... 127.0.0.N, when the target is
    /// on loopback (so ip-hash sees N clients); 1 uses the system's choice.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=250))]
    sources: u64,

    /// Kill this replica at this second of the run, with `LAB kill REPLICA`
    /// (e.g. --kill stateful-2@10).
    #[arg(long, value_name = "REPLICA@SECONDS")]
    kill: Option<String>,

    /// Start the killed replica again at this second, with `LAB start REPLICA` (e.g. @20).
    #[arg(long, value_name = "@SECONDS", requires = "kill")]
    restart: Option<String>,

    /// The lab's handle, used for --kill, --restart and --memory.
    #[arg(long, env = "STATELAB_LAB_CMD", default_value = "scripts/lab")]
    lab: String,

    /// After the run, record the resident memory of the service's replicas (`LAB mem`).
    #[arg(long)]
    memory: bool,

    /// Write run.json and run.html into this directory (created if missing).
    #[arg(long)]
    out: Option<PathBuf>,

    /// Runtime threads (default: one per core); 1 runs everything on one thread.
    #[arg(long)]
    threads: Option<usize>,

    /// No progress line (it is shown only on a terminal anyway).
    #[arg(long)]
    quiet: bool,
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
    let service = args.service.name();
    let target_url = args
        .target
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:8080/{service}"));
    let target = Target::parse(&target_url).map_err(anyhow::Error::msg)?;
    if !(args.rate > 0.0 && args.rate <= 1_000_000.0) {
        bail!("--rate must be above 0 and at most 1000000");
    }
    let mut fault = args
        .kill
        .as_deref()
        .map(Fault::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let (Some(f), Some(at)) = (fault.as_mut(), args.restart.as_deref()) {
        let at = parse_seconds(at).map_err(|e| anyhow::anyhow!("--restart: {e}"))?;
        if at <= f.kill_at {
            bail!("--restart must come after the kill");
        }
        f.restart_at = Some(at);
    }
    let duration = Duration::from_secs(args.duration);
    if let Some(f) = &fault {
        if f.kill_at >= duration || f.restart_at.is_some_and(|at| at >= duration) {
            bail!(
                "--kill and --restart must fall within --duration ({}s)",
                args.duration
            );
        }
    }
    let sources = if target.addr.ip().is_loopback() && target.addr.is_ipv4() && args.sources > 1 {
        (1..=args.sources)
            .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8)))
            .collect()
    } else {
        Vec::new()
    };
    let work = match args.workflow {
        WorkflowKind::Shop => Work::Shop(Workflow {
            adds: args.adds,
            think: Duration::from_millis(args.think_ms),
        }),
        WorkflowKind::Raw => Work::Raw {
            path: args.path.clone(),
        },
    };
    let model = match args.model {
        ModelKind::Open => Model::Open {
            rate: args.rate,
            max_sessions: args.max_sessions,
        },
        ModelKind::Closed => Model::Closed { users: args.users },
    };
    let lab = Lab::parse(&args.lab).map_err(anyhow::Error::msg)?;
    let strategy = args
        .strategy
        .as_deref()
        .map(str::parse::<Routing>)
        .transpose()?;

    // One thread: a current-thread runtime, without the multi-thread scheduler's cross-thread
    // bookkeeping (the generator on one core, as scripts/bench-loadgen runs it).
    let mut builder = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    if let Some(n) = args.threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let runtime = builder.build().context("cannot start the runtime")?;
    let report = runtime.block_on(async {
        let strategy = match strategy {
            Some(s) => Some(s),
            None if target.prefix.is_empty() => Some(Routing::Direct),
            None => ask_strategy(&args.admin, service).await,
        };
        let label = args.label.clone().unwrap_or_else(|| match &strategy {
            Some(s) => format!("{service}/{s}"),
            None => service.to_owned(),
        });
        run::run(RunConfig {
            service: service.to_owned(),
            strategy,
            label,
            target_url: target_url.clone(),
            target: target.clone(),
            model,
            work,
            duration,
            timeout: Duration::from_millis(args.timeout_ms),
            sources,
            fault,
            lab,
            sample_memory: args.memory,
            progress: !args.quiet && run::progress_wanted(),
        })
        .await
    })?;
    print!("{}", report::summary(&report));
    if let Some(dir) = &args.out {
        write_run(dir, &report)?;
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

fn write_run(dir: &Path, report: &RunReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    report::write_json(&dir.join("run.json"), report)?;
    let page = html::render(&report.label, std::slice::from_ref(report));
    std::fs::write(dir.join("run.html"), page)
        .with_context(|| format!("cannot write {}", dir.join("run.html").display()))?;
    println!("wrote {0}/run.json and {0}/run.html", dir.display());
    Ok(())
}

fn report_command(args: ReportArgs) -> anyhow::Result<i32> {
    let runs = args
        .runs
        .iter()
        .map(|p| report::read_run(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let comparison = Comparison {
        title: args.title.clone(),
        generated_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        runs,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    report::write_json(&args.out.join("report.json"), &comparison)?;
    std::fs::write(
        args.out.join("report.html"),
        html::render(&comparison.title, &comparison.runs),
    )
    .with_context(|| format!("cannot write into {}", args.out.display()))?;
    print!("{}", report::comparison_table(&comparison.runs));
    println!(
        "wrote {0}/report.json and {0}/report.html",
        args.out.display()
    );
    Ok(0)
}

/// The pool's strategy from the proxy's `/admin/status`, or `None` if the proxy does not say.
async fn ask_strategy(admin: &str, pool: &str) -> Option<Routing> {
    let target = Target::parse(admin).ok()?;
    let mut client = Client::new(target, None, Duration::from_secs(2));
    let answer = client
        .send(http::Method::GET, "/admin/status", None)
        .await
        .result
        .ok()?;
    if !answer.status.is_success() {
        return None;
    }
    let status: StatusView = serde_json::from_slice(&answer.body).ok()?;
    status.pool(pool).map(|p| Routing::Proxy(p.strategy))
}

//! What a run is asked to do: the `run` command's flags ([`RunArgs`]), checked against each other
//! into a [`RunPlan`] (or refused with a [`ConfigError`]), which becomes the [`RunConfig`] the run
//! carries out; and the names a run records: the workload model, the workflow and how the
//! requests were routed ([`ModelKind`], [`WorkflowKind`], [`Routing`]).
//!
//! The same enums are the command line's choices and the values `run.json` holds, so the two
//! cannot drift apart; their serde names are the JSON format other tools read (docs/load.md).

use std::fmt;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
pub use statelab_formats::AdminToken;
use statelab_formats::{Design, StatusView, Strategy};

use crate::client::{Client, Target};
use crate::fault::{parse_seconds, Fault, Lab, ScaleStep};
use crate::skew::Zipf;
use crate::workflow::Workflow;

// The variants' `///` lines are the `--help` text of `--model` and `--workflow`.

/// How sessions are started; `run.json`'s `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Sessions arrive at --rate per second, independent of how fast answers come; latency is
    /// measured from each request's intended send time.
    Open,
    /// --users users each run sessions back to back.
    Closed,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Open => "open",
            ModelKind::Closed => "closed",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What each user does; `run.json`'s `workflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowKind {
    /// login → --adds cart adds (with --think-ms between steps) → view cart → checkout → logout.
    Shop,
    /// GET --path again and again (the raw request rate, for comparing with wrk).
    Raw,
    /// Closed model only: log in, open a WebSocket into a room of --room-size users and say a
    /// message every --think-ms while listening; delivery and fan-out latency are measured.
    Chat,
}

impl WorkflowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Shop => "shop",
            WorkflowKind::Raw => "raw",
            WorkflowKind::Chat => "chat",
        }
    }
}

impl fmt::Display for WorkflowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the requests reached the service; `run.json`'s `strategy`.
///
/// The proxy's strategies are its own type, so a name the proxy would not accept cannot be
/// recorded; `direct` is the generator's addition for runs against one replica, with no proxy to
/// route. In JSON it is one string (`cookie`, `ip-hash`, `round-robin`, `direct`), as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Routing {
    /// Through the proxy, whose pool used this strategy.
    Proxy(Strategy),
    /// Straight to a replica.
    Direct,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Proxy(s) => s.as_str(),
            Routing::Direct => "direct",
        }
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text names neither a proxy strategy nor `direct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRouting(pub String);

/// Lists the proxy's strategies from [`Strategy::ALL`], so a strategy the proxy gains is named
/// here without a change.
impl fmt::Display for UnknownRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown strategy {:?}: expected ", self.0)?;
        for s in Strategy::ALL {
            write!(f, "{s}, ")?;
        }
        f.write_str("or direct")
    }
}

impl std::error::Error for UnknownRouting {}

impl FromStr for Routing {
    type Err = UnknownRouting;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "direct" => Ok(Routing::Direct),
            name => name
                .parse()
                .map(Routing::Proxy)
                .map_err(|_| UnknownRouting(name.to_owned())),
        }
    }
}

impl TryFrom<String> for Routing {
    type Error = UnknownRouting;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Routing> for &'static str {
    fn from(r: Routing) -> Self {
        r.as_str()
    }
}

/// How sessions (or raw requests) are started.
#[derive(Debug, Clone)]
pub enum Model {
    /// New sessions arrive at `rate` per second whatever the answers do; at most `max_sessions`
    /// run at once (arrivals beyond are dropped and counted).
    Open { rate: f64, max_sessions: u64 },
    /// `users` users each run sessions back to back.
    Closed { users: u64 },
}

impl Model {
    pub fn kind(&self) -> ModelKind {
        match self {
            Model::Open { .. } => ModelKind::Open,
            Model::Closed { .. } => ModelKind::Closed,
        }
    }
}

/// What each user does.
#[derive(Debug, Clone)]
pub enum Work {
    Shop(Workflow),
    /// GET `path` repeatedly: the raw request rate, for comparing the generator with wrk.
    Raw {
        path: String,
    },
    Chat(crate::chat::ChatFlow),
}

impl Work {
    pub fn kind(&self) -> WorkflowKind {
        match self {
            Work::Shop(_) => WorkflowKind::Shop,
            Work::Raw { .. } => WorkflowKind::Raw,
            Work::Chat(_) => WorkflowKind::Chat,
        }
    }
}

/// The open model's session numbers map onto skewed sources in cycles of this many.
pub const OPEN_SOURCE_CYCLE: u64 = 1000;

/// Where the load goes and the proxy's admin API: the flags `run` and `capacity` share.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Base URL, http://IP:PORT[/PREFIX]. Default: the lab's proxy,
    /// `http://127.0.0.1:8080/<service>`. A replica directly: e.g. `http://127.0.0.1:18001`.
    #[arg(long, env = "STATELAB_LOAD_TARGET")]
    pub target: Option<String>,

    /// The proxy's admin API, asked for the pool's strategy when --strategy is not given
    /// (not asked when the target has no path prefix: that is a replica, "direct").
    #[arg(
        long,
        env = "STATELAB_LOAD_ADMIN",
        default_value = "http://127.0.0.1:8081"
    )]
    pub admin: String,

    /// The admin API's bearer token, when the proxy wants one (the Docker lab's is in
    /// .lab/admin-token). Better from the environment: a flag shows in the process list.
    #[arg(long, env = "STATELAB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<AdminToken>,
}

/// A run, fully specified: what [`crate::run::run`] carries out and
/// [`crate::report::RunReport::build`] describes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The design under load.
    pub service: Design,
    pub strategy: Option<Routing>,
    pub label: String,
    pub target_url: String,
    pub target: Target,
    pub model: Model,
    pub work: Work,
    pub duration: Duration,
    pub timeout: Duration,
    pub sources: Vec<IpAddr>,
    /// With `--sources-skew`: the index into `sources` of each user (of each session number, in
    /// a cycle, for the open model); empty: users take the addresses in turn.
    pub source_bins: Vec<usize>,
    /// `--skew`: the closed model's users' think times follow this law.
    pub skew: Option<Zipf>,
    pub sources_skew: Option<Zipf>,
    pub fault: Option<Fault>,
    /// Pools grown or shrunk during the run (`--scale`).
    pub scales: Vec<ScaleStep>,
    pub lab: Lab,
    pub sample_memory: bool,
    pub sample_cpu: bool,
    pub progress: bool,
    /// The proxy's admin API, read before and after the run for the pool's balance factor and
    /// bounded moves; `None` for a replica targeted directly.
    pub admin: Option<AdminApi>,
}

/// Where the proxy's admin API answers, and its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminApi {
    pub url: String,
    pub token: Option<AdminToken>,
}

impl AdminApi {
    /// The pool's view in `GET /admin/status`, or `None` if the proxy does not say.
    pub async fn pool(&self, pool: &str) -> Option<statelab_formats::PoolView> {
        let target = Target::parse(&self.url).ok()?;
        let mut client = Client::new(target, None, Duration::from_secs(2));
        if let Some(token) = &self.token {
            client = client.with_bearer(token.as_str());
        }
        let answer = client
            .send(http::Method::GET, "/admin/status", None)
            .await
            .result
            .ok()?;
        if !answer.status.is_success() {
            return None;
        }
        let status: StatusView = serde_json::from_slice(&answer.body).ok()?;
        status.pool(pool).cloned()
    }
}

/// The `run` command's flags as given. Their `///` lines are the `--help` text; the checks that
/// involve several flags are [`RunPlan::from_args`]'s.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The service under load; sets the default target and names the run.
    #[arg(long)]
    pub service: Design,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    /// The routing strategy to record in the report: one of the proxy's (cookie, ip-hash,
    /// round-robin, ...) or direct.
    #[arg(long)]
    pub strategy: Option<String>,

    /// A name for the run in reports. Default: SERVICE/STRATEGY.
    #[arg(long)]
    pub label: Option<String>,

    /// Workload model.
    #[arg(long, value_enum, default_value = "open")]
    pub model: ModelKind,

    /// Open model: new sessions (or raw requests) per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,

    /// Open model: most sessions running at once; arrivals beyond it are dropped and counted.
    #[arg(long, default_value_t = 2000)]
    pub max_sessions: u64,

    /// Closed model: concurrent users.
    #[arg(long, default_value_t = 20)]
    pub users: u64,

    /// What each user does.
    #[arg(long, value_enum, default_value = "shop")]
    pub workflow: WorkflowKind,

    /// Shop workflow: cart adds per session.
    #[arg(long, default_value_t = 3)]
    pub adds: u32,

    /// Shop workflow: upload an avatar after login (`PUT /avatar`, about 4 KiB); after the adds
    /// another visitor (the same address, no cookies, so the proxy places it afresh) reads it by
    /// name (`GET /avatar/{username}`). The report counts files lost.
    #[arg(long)]
    pub avatar: bool,

    /// Shop workflow: think time between a user's requests, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub think_ms: u64,

    /// Chat workflow: users per room (user k is in room k / N).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub room_size: u64,

    /// Raw workflow: the path to GET (after the target's prefix).
    #[arg(long, default_value = "/health")]
    pub path: String,

    /// Run length in seconds (1..=900); no request is started after it.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub duration: u64,

    /// Per-request timeout in milliseconds (connect, send and the whole answer).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,

    /// Spread users over this many source addresses, 127.0.0.1 ... 127.0.0.N, when the target is
    /// on loopback (so ip-hash sees N clients); 1 uses the system's choice.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=250))]
    pub sources: u64,

    /// Heavy users: the closed model's users think --think-ms × k^S between requests (k their
    /// rank, the first user heaviest), so their request rates follow a Zipf law of exponent S
    /// (e.g. zipf:1.1). The heaviest 5% are reported apart.
    #[arg(long, value_name = "zipf:S")]
    pub skew: Option<Zipf>,

    /// Skewed sources: users are shared out among the source addresses by a Zipf law of exponent
    /// S, so the first address carries the most (an office behind a NAT).
    #[arg(long, value_name = "zipf:S")]
    pub sources_skew: Option<Zipf>,

    /// Kill this replica at this second of the run, with `LAB kill REPLICA`
    /// (e.g. --kill stateful-2@10).
    #[arg(long, value_name = "REPLICA@SECONDS")]
    pub kill: Option<String>,

    /// Start the killed replica again at this second, with `LAB start REPLICA` (e.g. @20).
    #[arg(long, value_name = "@SECONDS", requires = "kill")]
    pub restart: Option<String>,

    /// Cut this Redis node off from the other Redis nodes and the Sentinels at this second, with
    /// `LAB partition NODE` (Docker lab; e.g. --partition redis-primary@10). The externalized
    /// replicas still reach it, except those named with --partition-from.
    #[arg(long, value_name = "NODE@SECONDS", conflicts_with = "kill")]
    pub partition: Option<String>,

    /// An externalized replica that loses the partitioned node too (repeatable).
    #[arg(long, value_name = "REPLICA", requires = "partition")]
    pub partition_from: Vec<String>,

    /// Heal the partition at this second, with `LAB heal` (e.g. @20).
    #[arg(long, value_name = "@SECONDS", requires = "partition")]
    pub heal: Option<String>,

    /// Grow or shrink a pool to N replicas at this second, with `LAB scale POOL N`
    /// (e.g. --scale stateless=4@10); repeatable, and combinable with --kill.
    #[arg(long, value_name = "POOL=N@SECONDS")]
    pub scale: Vec<String>,

    /// The lab's handle, used for --kill, --restart, --scale and --memory.
    #[arg(long, env = "STATELAB_LAB_CMD", default_value = "scripts/lab")]
    pub lab: String,

    /// After the run, record the resident memory of the service's replicas (`LAB mem`).
    #[arg(long)]
    pub memory: bool,

    /// Record every part's CPU over the run against its budget (`LAB cpu`, read just before
    /// the run and just after it).
    #[arg(long)]
    pub cpu: bool,

    /// Write run.json and run.html into this directory (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Runtime threads (default: one per core); 1 runs everything on one thread.
    #[arg(long)]
    pub threads: Option<usize>,

    /// No progress line (it is shown only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// A `run` command that cannot be carried out, and why; each names the flag to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--target` (or its default) is not `http://IP:PORT[/PREFIX]`.
    #[error("{0}")]
    Target(String),
    #[error("--rate must be above 0 and at most 1000000")]
    Rate,
    /// `--kill` is not `REPLICA@SECONDS`.
    #[error("{0}")]
    Kill(String),
    /// `--restart` is not a number of seconds.
    #[error("--restart: {0}")]
    Restart(String),
    /// Only a killed replica can be started again (the command line's own parser says so too).
    #[error("--restart needs --kill")]
    RestartWithoutKill,
    #[error("--restart must come after the kill")]
    RestartNotAfterKill,
    /// A step after the run's end would never happen, and the report would not show it.
    #[error("--kill and --restart must fall within --duration ({duration_s}s)")]
    OutsideDuration { duration_s: u64 },
    /// `--partition` is not `NODE@SECONDS` of a Redis node.
    #[error("{0}")]
    Partition(String),
    /// `--heal` is not a number of seconds.
    #[error("--heal: {0}")]
    Heal(String),
    #[error("--heal must come after the partition")]
    HealNotAfterPartition,
    #[error("--partition and --heal must fall within --duration ({duration_s}s)")]
    PartitionOutsideDuration { duration_s: u64 },
    /// `--scale` is not `POOL=N@SECONDS`.
    #[error("{0}")]
    Scale(String),
    /// A scale step after the run's end would never happen.
    #[error("--scale must fall within --duration ({duration_s}s)")]
    ScaleOutsideDuration { duration_s: u64 },
    /// `--lab` is empty.
    #[error("{0}")]
    Lab(String),
    #[error("--strategy: {0}")]
    Strategy(UnknownRouting),
    /// Heavy users are users of the closed model: the open model's sessions are each new.
    #[error("--skew shapes the closed model's users: add --model closed")]
    SkewNeedsClosed,
    /// A chat user stays in its room: users of the closed model.
    #[error("--workflow chat runs the closed model's users, each in its room: add --model closed")]
    ChatNeedsClosed,
}

/// Where the run's strategy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrategySource {
    /// `--strategy`, or `direct` for a target without a path prefix (a replica, no proxy).
    Known(Routing),
    /// The proxy's admin API ([`RunConfig::admin`]), asked just before the run.
    AskProxy,
}

/// A `run` command whose flags have been checked against each other: everything
/// [`RunConfig`] needs, but the strategy when only the proxy can tell it.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The run; its `strategy` and `label` are settled by [`RunPlan::resolve`].
    config: RunConfig,
    strategy: StrategySource,
    /// `--label`; without it the run is named after its service and strategy.
    label: Option<String>,
}

impl RunPlan {
    /// The run with `lab` as its lab command (one that carries an environment of its own).
    pub fn with_lab(mut self, lab: Lab) -> Self {
        self.config.lab = lab;
        self
    }

    /// Checks the flags in the order a user reads them and refuses the first that cannot work,
    /// before any load is sent or any replica killed.
    pub fn from_args(args: &RunArgs) -> Result<RunPlan, ConfigError> {
        let service = args.service;
        let target_url = args
            .proxy
            .target
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:8080/{service}"));
        let target = Target::parse(&target_url).map_err(ConfigError::Target)?;
        if !(args.rate > 0.0 && args.rate <= 1_000_000.0) {
            return Err(ConfigError::Rate);
        }
        let fault = fault(args)?;
        let scales = args
            .scale
            .iter()
            .map(|spec| ScaleStep::parse(spec).map_err(ConfigError::Scale))
            .collect::<Result<Vec<_>, _>>()?;
        if scales
            .iter()
            .any(|s| s.at >= Duration::from_secs(args.duration))
        {
            return Err(ConfigError::ScaleOutsideDuration {
                duration_s: args.duration,
            });
        }
        let lab = Lab::parse(&args.lab).map_err(ConfigError::Lab)?;
        let admin = (!target.prefix.is_empty()).then(|| AdminApi {
            url: args.proxy.admin.clone(),
            // An empty STATELAB_ADMIN_TOKEN is no token.
            token: args
                .proxy
                .admin_token
                .clone()
                .filter(|t| !t.as_str().is_empty()),
        });
        let strategy = match (&args.strategy, &admin) {
            (Some(name), _) => StrategySource::Known(name.parse().map_err(ConfigError::Strategy)?),
            (None, None) => StrategySource::Known(Routing::Direct),
            (None, Some(_)) => StrategySource::AskProxy,
        };
        // Several source addresses only where they all reach the target: on IPv4 loopback.
        let sources = if target.addr.ip().is_loopback() && target.addr.is_ipv4() && args.sources > 1
        {
            (1..=args.sources)
                .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8)))
                .collect()
        } else {
            Vec::new()
        };
        // The clock's nanoseconds: another run's avatars and rooms differ from this one's.
        let run_tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let work = match args.workflow {
            WorkflowKind::Shop => Work::Shop(Workflow {
                avatar: args.avatar,
                run_tag,
                adds: args.adds,
                think: Duration::from_millis(args.think_ms),
            }),
            WorkflowKind::Raw => Work::Raw {
                path: args.path.clone(),
            },
            WorkflowKind::Chat => {
                if args.model != ModelKind::Closed {
                    return Err(ConfigError::ChatNeedsClosed);
                }
                Work::Chat(crate::chat::ChatFlow {
                    room_size: args.room_size,
                    think: Duration::from_millis(args.think_ms.max(1)),
                    run_tag,
                })
            }
        };
        if args.skew.is_some() && args.model != ModelKind::Closed {
            return Err(ConfigError::SkewNeedsClosed);
        }
        // Users, or for the open model a cycle of session numbers, over the addresses.
        let source_bins = match (args.sources_skew, sources.len()) {
            (Some(z), n) if n > 1 => {
                let users = match args.model {
                    ModelKind::Closed => args.users,
                    ModelKind::Open => OPEN_SOURCE_CYCLE,
                };
                z.assign(usize::try_from(users).unwrap_or(usize::MAX), n)
            }
            _ => Vec::new(),
        };
        let model = match args.model {
            ModelKind::Open => Model::Open {
                rate: args.rate,
                max_sessions: args.max_sessions,
            },
            ModelKind::Closed => Model::Closed { users: args.users },
        };
        Ok(RunPlan {
            config: RunConfig {
                service,
                strategy: None,
                label: String::new(),
                target_url,
                target,
                model,
                work,
                duration: Duration::from_secs(args.duration),
                timeout: Duration::from_millis(args.timeout_ms),
                sources,
                source_bins,
                skew: args.skew,
                sources_skew: args.sources_skew,
                fault,
                scales,
                lab,
                sample_memory: args.memory,
                sample_cpu: args.cpu,
                admin,
                // A progress line is for a person watching a terminal, not for a log file.
                progress: !args.quiet && std::io::stderr().is_terminal(),
            },
            strategy,
            label: args.label.clone(),
        })
    }

    pub fn strategy(&self) -> &StrategySource {
        &self.strategy
    }

    /// The run to carry out: asks the proxy for the pool's strategy when the flags did not give
    /// it. A proxy that does not answer leaves the strategy unknown rather than failing the run.
    pub async fn resolve(self) -> RunConfig {
        let asked = match &self.strategy {
            StrategySource::Known(_) => None,
            StrategySource::AskProxy => match &self.config.admin {
                Some(api) => api
                    .pool(self.config.service.as_str())
                    .await
                    .map(|p| Routing::Proxy(p.strategy)),
                None => None,
            },
        };
        self.into_config(asked)
    }

    /// The run, with `asked` (the proxy's answer, `None` when it gave none) as its strategy when
    /// the flags left the strategy to the proxy.
    fn into_config(self, asked: Option<Routing>) -> RunConfig {
        let strategy = match self.strategy {
            StrategySource::Known(routing) => Some(routing),
            StrategySource::AskProxy => asked,
        };
        let service = self.config.service;
        let label = self.label.unwrap_or_else(|| match strategy {
            Some(s) => format!("{service}/{s}"),
            None => service.to_string(),
        });
        RunConfig {
            strategy,
            label,
            ..self.config
        }
    }
}

/// `--partition` and `--heal` as one schedule inside the run.
fn partition(args: &RunArgs, spec: &str) -> Result<Fault, ConfigError> {
    let mut fault = Fault::partition(spec, &args.partition_from).map_err(ConfigError::Partition)?;
    if let Some(at) = args.heal.as_deref() {
        let at = parse_seconds(at).map_err(ConfigError::Heal)?;
        if at <= fault.kill_at {
            return Err(ConfigError::HealNotAfterPartition);
        }
        fault.restart_at = Some(at);
    }
    let duration = Duration::from_secs(args.duration);
    if fault.kill_at >= duration || fault.restart_at.is_some_and(|at| at >= duration) {
        return Err(ConfigError::PartitionOutsideDuration {
            duration_s: args.duration,
        });
    }
    Ok(fault)
}

/// `--kill` and `--restart` (or `--partition` and `--heal`) as one schedule inside the run.
fn fault(args: &RunArgs) -> Result<Option<Fault>, ConfigError> {
    if let Some(spec) = args.partition.as_deref() {
        return partition(args, spec).map(Some);
    }
    let Some(spec) = args.kill.as_deref() else {
        return match args.restart {
            Some(_) => Err(ConfigError::RestartWithoutKill),
            None => Ok(None),
        };
    };
    let mut fault = Fault::parse(spec).map_err(ConfigError::Kill)?;
    if let Some(at) = args.restart.as_deref() {
        let at = parse_seconds(at).map_err(ConfigError::Restart)?;
        if at <= fault.kill_at {
            return Err(ConfigError::RestartNotAfterKill);
        }
        fault.restart_at = Some(at);
    }
    let duration = Duration::from_secs(args.duration);
    if fault.kill_at >= duration || fault.restart_at.is_some_and(|at| at >= duration) {
        return Err(ConfigError::OutsideDuration {
            duration_s: args.duration,
        });
    }
    Ok(Some(fault))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;

    use clap::Parser;

    /// The `run` flags alone, parsed as the binary parses them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    /// `statelab-load run --service stateful EXTRA...`; the flags that have an environment
    /// variable get a fixed value unless EXTRA gives one, so the caller's environment cannot
    /// change the outcome.
    fn parse(extra: &[&str]) -> RunArgs {
        let words = ["statelab-load", "--service", "stateful"]
            .iter()
            .chain(extra)
            .copied();
        let mut args = Cli::try_parse_from(words).expect("valid flags").run;
        let given = |flag: &str| extra.contains(&flag);
        if !given("--target") {
            args.proxy.target = Some("http://127.0.0.1:8080/stateful".into());
        }
        if !given("--admin") {
            args.proxy.admin = "http://127.0.0.1:8081".into();
        }
        if !given("--admin-token") {
            args.proxy.admin_token = None;
        }
        if !given("--lab") {
            args.lab = "scripts/lab".into();
        }
        args
    }

    fn refused(extra: &[&str]) -> ConfigError {
        RunPlan::from_args(&parse(extra)).expect_err("the flags must be refused")
    }

    fn plan(extra: &[&str]) -> RunPlan {
        RunPlan::from_args(&parse(extra)).expect("the flags must be accepted")
    }

    #[test]
    fn skew_shapes_the_closed_users_and_the_sources() {
        let err = RunPlan::from_args(&parse(&["--skew", "zipf:1.1"])).expect_err("open model");
        assert!(matches!(err, ConfigError::SkewNeedsClosed), "{err}");
        let cfg = plan(&[
            "--model",
            "closed",
            "--users",
            "40",
            "--skew",
            "zipf:1.1",
            "--sources-skew",
            "zipf:1",
        ])
        .into_config(None);
        assert_eq!(cfg.skew, Some(Zipf { s: 1.1 }));
        assert_eq!(cfg.source_bins.len(), 40);
        // Eight addresses: the first carries 1/H_8 ≈ 37% of the users, the last about 5%.
        let first = cfg.source_bins.iter().filter(|b| **b == 0).count();
        let last = cfg.source_bins.iter().filter(|b| **b == 7).count();
        assert_eq!((first, last), (15, 2));
        let plain = plan(&["--model", "closed"]).into_config(None);
        assert!(plain.source_bins.is_empty() && plain.skew.is_none());
    }

    #[test]
    fn the_defaults_make_an_open_shop_run_through_the_proxy() {
        let plan = plan(&[]);
        assert_eq!(plan.strategy(), &StrategySource::AskProxy);
        let cfg = plan.into_config(None);
        assert_eq!(
            cfg.admin,
            Some(AdminApi {
                url: "http://127.0.0.1:8081".into(),
                token: None,
            })
        );
        assert_eq!(cfg.service, Design::Stateful);
        assert_eq!(cfg.label, "stateful");
        assert_eq!(cfg.target.prefix, "/stateful");
        assert_eq!(cfg.duration, Duration::from_secs(30));
        assert_eq!(cfg.timeout, Duration::from_millis(2000));
        assert!(matches!(cfg.model, Model::Open { rate, max_sessions: 2000 } if rate == 20.0));
        let Work::Shop(shop) = &cfg.work else {
            panic!("not a shop run: {:?}", cfg.work);
        };
        assert_eq!((shop.adds, shop.think), (3, Duration::from_millis(100)));
        assert_eq!(cfg.sources.len(), 8);
        assert_eq!(cfg.sources[7], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 8)));
        assert!(cfg.fault.is_none() && !cfg.sample_memory);
    }

    #[test]
    fn the_default_target_is_the_services_path_on_the_proxy() {
        let mut args = parse(&[]);
        args.proxy.target = None;
        args.service = Design::Externalized;
        let cfg = RunPlan::from_args(&args).expect("valid").into_config(None);
        assert_eq!(cfg.target_url, "http://127.0.0.1:8080/externalized");
    }

    #[test]
    fn rate_bounds() {
        for rate in ["0", "-1", "1000000.5", "NaN", "inf"] {
            assert_eq!(
                refused(&[&format!("--rate={rate}")]),
                ConfigError::Rate,
                "--rate {rate}"
            );
        }
        assert_eq!(
            ConfigError::Rate.to_string(),
            "--rate must be above 0 and at most 1000000"
        );
        plan(&["--rate", "1000000"]);
        plan(&["--rate", "0.01"]);
    }

    #[test]
    fn the_restart_must_come_after_the_kill() {
        for at in ["@5", "@10", "10", "@9.99"] {
            assert_eq!(
                refused(&["--kill", "stateful-2@10", "--restart", at]),
                ConfigError::RestartNotAfterKill,
                "--restart {at}"
            );
        }
        let cfg = plan(&["--kill", "stateful-2@10", "--restart", "@10.5"]).into_config(None);
        let fault = cfg.fault.expect("a fault");
        assert_eq!(fault.replica, "stateful-2");
        assert_eq!(fault.kill_at, Duration::from_secs(10));
        assert_eq!(fault.restart_at, Some(Duration::from_millis(10_500)));
    }

    #[test]
    fn kill_and_restart_must_fall_within_the_run() {
        let outside = ConfigError::OutsideDuration { duration_s: 10 };
        assert_eq!(
            refused(&["--duration", "10", "--kill", "stateful-2@10"]),
            outside
        );
        assert_eq!(
            refused(&[
                "--duration",
                "10",
                "--kill",
                "stateful-2@5",
                "--restart",
                "@10"
            ]),
            outside
        );
        assert_eq!(
            outside.to_string(),
            "--kill and --restart must fall within --duration (10s)"
        );
        plan(&["--duration", "10", "--kill", "stateful-2@9.5"]);
    }

    #[test]
    fn scale_steps_are_checked_and_kept_beside_a_kill() {
        let cfg = plan(&[
            "--duration",
            "20",
            "--kill",
            "stateful-2@5",
            "--scale",
            "stateful=4@3",
            "--scale",
            "stateful=3@12",
        ])
        .into_config(None);
        assert_eq!(cfg.scales.len(), 2);
        assert_eq!(cfg.scales[1].replicas, 3);
        assert!(cfg.fault.is_some());
        assert_eq!(
            refused(&["--duration", "10", "--scale", "stateless=4@10"]),
            ConfigError::ScaleOutsideDuration { duration_s: 10 }
        );
        let ConfigError::Scale(why) = refused(&["--scale", "stateless=12@1"]) else {
            panic!("a bad --scale is a Scale error");
        };
        assert!(why.contains("1 to 9"), "{why}");
    }

    #[test]
    fn malformed_kill_and_restart_say_which_flag() {
        let ConfigError::Kill(why) = refused(&["--kill", "stateful-2"]) else {
            panic!("not a --kill error");
        };
        assert!(why.contains("REPLICA@SECONDS"), "{why}");
        let err = refused(&["--kill", "stateful-2@3", "--restart", "soon"]);
        assert!(matches!(err, ConfigError::Restart(_)), "{err:?}");
        assert!(err.to_string().starts_with("--restart: "), "{err}");
    }

    #[test]
    fn a_partition_cuts_a_redis_node_and_heals_after_it_within_the_run() {
        let cfg = plan(&[
            "--duration",
            "20",
            "--partition",
            "redis-primary@4",
            "--partition-from",
            "externalized-2",
            "--heal",
            "@9.5",
        ])
        .into_config(None);
        let fault = cfg.fault.expect("a fault");
        assert_eq!(fault.replica, "redis-primary");
        assert_eq!(fault.kill_at, Duration::from_secs(4));
        assert_eq!(fault.restart_at, Some(Duration::from_millis(9_500)));
        assert_eq!(
            fault.kind,
            FaultKind::Partition {
                from: vec!["externalized-2".to_owned()]
            }
        );
        let ConfigError::Partition(why) = refused(&["--partition", "stateful-1@4"]) else {
            panic!("a partition of a replica is a --partition error");
        };
        assert!(why.contains("Redis node"), "{why}");
        assert!(matches!(
            refused(&["--partition", "redis-1"]),
            ConfigError::Partition(why) if why.starts_with("--partition")
        ));
        assert_eq!(
            refused(&["--partition", "redis-1@5", "--heal", "@5"]),
            ConfigError::HealNotAfterPartition
        );
        assert_eq!(
            refused(&[
                "--duration",
                "10",
                "--partition",
                "redis-1@5",
                "--heal",
                "@10"
            ]),
            ConfigError::PartitionOutsideDuration { duration_s: 10 }
        );
        assert!(matches!(
            refused(&["--partition", "redis-1@5", "--heal", "later"]),
            ConfigError::Heal(_)
        ));
        let both = [
            "statelab-load",
            "--service",
            "externalized",
            "--kill",
            "redis-1@3",
            "--partition",
            "redis-1@4",
        ];
        assert!(
            Cli::try_parse_from(both).is_err(),
            "a kill or a partition, not both"
        );
        let heal_alone = ["statelab-load", "--service", "externalized", "--heal", "@5"];
        assert!(
            Cli::try_parse_from(heal_alone).is_err(),
            "a heal needs a partition"
        );
    }

    #[test]
    fn a_restart_needs_a_kill() {
        let words = ["statelab-load", "--service", "stateful", "--restart", "@5"];
        assert!(Cli::try_parse_from(words).is_err(), "the parser refuses it");
        let mut args = parse(&[]);
        args.restart = Some("@5".into());
        assert_eq!(
            RunPlan::from_args(&args).expect_err("refused"),
            ConfigError::RestartWithoutKill
        );
    }

    #[test]
    fn bad_targets_are_refused() {
        for target in [
            "https://127.0.0.1:8080",
            "http://localhost:8080/x",
            "127.0.0.1:80",
        ] {
            let err = refused(&["--target", target]);
            assert!(matches!(err, ConfigError::Target(_)), "{target}: {err:?}");
            assert!(err.to_string().contains(target), "{err}");
        }
    }

    #[test]
    fn an_empty_lab_command_is_refused() {
        for lab in ["", "   "] {
            let err = refused(&["--lab", lab]);
            assert!(matches!(err, ConfigError::Lab(_)), "{err:?}");
        }
        let cfg = plan(&["--lab", "bash scripts/lab"]).into_config(None);
        assert_eq!((cfg.lab.program.as_str(), cfg.lab.args.len()), ("bash", 1));
    }

    #[test]
    fn strategies_are_known_names_or_direct() {
        let err = refused(&["--strategy", "sticky"]);
        assert_eq!(err, ConfigError::Strategy(UnknownRouting("sticky".into())));
        assert!(err.to_string().starts_with("--strategy: "), "{err}");
        assert!(err.to_string().contains("round-robin"), "{err}");

        let given = plan(&["--strategy", "ip-hash"]);
        assert_eq!(
            given.strategy(),
            &StrategySource::Known(Routing::Proxy(Strategy::IpHash))
        );
        // What the flags say wins over anything the proxy would answer.
        let cfg = given.into_config(Some(Routing::Proxy(Strategy::Cookie)));
        assert_eq!(cfg.strategy, Some(Routing::Proxy(Strategy::IpHash)));
        assert_eq!(cfg.label, "stateful/ip-hash");

        // A replica itself: no proxy to ask, the run is "direct".
        let replica = plan(&["--target", "http://127.0.0.1:18001"]);
        assert_eq!(replica.strategy(), &StrategySource::Known(Routing::Direct));
        assert_eq!(replica.into_config(None).label, "stateful/direct");
    }

    #[test]
    fn the_label_defaults_to_service_and_strategy() {
        let cookie = Some(Routing::Proxy(Strategy::Cookie));
        assert_eq!(plan(&[]).into_config(cookie).label, "stateful/cookie");
        assert_eq!(plan(&[]).into_config(None).label, "stateful");
        assert_eq!(plan(&["--label", "mine"]).into_config(cookie).label, "mine");
        assert_eq!(plan(&[]).into_config(cookie).strategy, cookie);
    }

    #[test]
    fn several_sources_only_on_ipv4_loopback() {
        let far = plan(&["--target", "http://10.0.0.1:8080/stateful"]).into_config(None);
        assert!(far.sources.is_empty());
        let one = plan(&["--sources", "1"]).into_config(None);
        assert!(one.sources.is_empty());
        let words = ["statelab-load", "--service", "stateful", "--sources", "251"];
        assert!(Cli::try_parse_from(words).is_err());
    }

    #[test]
    fn raw_and_closed_runs() {
        let cfg = plan(&[
            "--workflow",
            "raw",
            "--path",
            "/me",
            "--model",
            "closed",
            "--users",
            "7",
        ])
        .into_config(None);
        assert!(matches!(&cfg.work, Work::Raw { path } if path == "/me"));
        assert!(matches!(cfg.model, Model::Closed { users: 7 }));
        assert_eq!(
            (cfg.work.kind(), cfg.model.kind()),
            (WorkflowKind::Raw, ModelKind::Closed)
        );
    }

    #[test]
    fn routing_names_round_trip_and_unknown_ones_are_refused() {
        for (text, routing) in [
            ("cookie", Routing::Proxy(Strategy::Cookie)),
            ("ip-hash", Routing::Proxy(Strategy::IpHash)),
            ("round-robin", Routing::Proxy(Strategy::RoundRobin)),
            ("direct", Routing::Direct),
        ] {
            assert_eq!(text.parse::<Routing>(), Ok(routing));
            let json = serde_json::to_string(&routing).expect("serialise");
            assert_eq!(json, format!("\"{text}\""));
            let back: Routing = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, routing);
            assert_eq!(routing.as_str(), text);
        }
        let err = "sticky".parse::<Routing>().expect_err("not a strategy");
        let text = err.to_string();
        assert!(
            text.starts_with("unknown strategy \"sticky\": expected "),
            "{text}"
        );
        for s in Strategy::ALL {
            assert!(text.contains(s.as_str()), "{text}");
        }
        assert!(text.ends_with(", or direct"), "{text}");
        assert!(serde_json::from_str::<Routing>("\"sticky\"").is_err());
    }

    #[test]
    fn kinds_serialise_as_their_names() {
        for m in [ModelKind::Open, ModelKind::Closed] {
            let json = serde_json::to_string(&m).expect("serialise");
            assert_eq!(json, format!("\"{m}\""));
        }
        for w in [WorkflowKind::Shop, WorkflowKind::Raw] {
            let json = serde_json::to_string(&w).expect("serialise");
            assert_eq!(json, format!("\"{w}\""));
        }
    }

    /// An admin API that wants `Bearer t0k`: one answer per connection, the status or a 401.
    async fn admin_wanting_a_token() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let (status, body) = if head.contains("\r\nauthorization: bearer t0k\r\n") {
                    let pool = serde_json::json!({
                        "name": "stateful", "prefix": "/stateful", "strategy": "ip-hash",
                        "available": true, "replicas": []
                    });
                    ("200 OK", serde_json::json!({ "pools": [pool] }).to_string())
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"error":"unauthorized","message":"no"}"#.into(),
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_strategy_lookup_sends_the_admin_token() {
        let admin = format!("http://{}", admin_wanting_a_token().await);
        let with = plan(&["--admin", &admin, "--admin-token", "t0k"]);
        assert!(
            !format!("{with:?}").contains("t0k"),
            "the token stays out of Debug"
        );
        assert_eq!(
            with.resolve().await.strategy,
            Some(Routing::Proxy(Strategy::IpHash))
        );
        let without = plan(&["--admin", &admin]);
        assert_eq!(without.resolve().await.strategy, None);
    }
}

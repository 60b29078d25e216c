//! `statelab-lab`: the binary behind `scripts/lab`. It parses the verb and the environment, then
//! hands over to the native or the Docker lab.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use statelab_formats::lab::Routings;
use statelab_formats::lab::{LabStatus, Memory, Primaries, Sizing, WorkDist, MAX_WORK_US, MIN_CPU};
use statelab_formats::{BadBalanceFactor, BalanceFactor, PoolRouting, Strategy};
use statelab_lab::docker::Docker;
use statelab_lab::labdir::{LabDir, Mode, StoreChoice};
use statelab_lab::model::{Design, Drain, Part, Store, Target};
use statelab_lab::native::Native;
use statelab_lab::platform::{delete_native_data, Platform};
use statelab_lab::probe::{admin_summary, routed_line, routing_line, Probe};
use statelab_lab::settings::Settings;
use statelab_lab::swarm::Swarm;
use statelab_lab::{out, say};

const AFTER_HELP: &str = "\
Either way the proxy answers on 127.0.0.1:8080 and its admin API on 127.0.0.1:8081 by default.
State, PIDs and logs live in the lab directory, .lab/ (logs in .lab/logs/); the mode in use is in
.lab/mode, the ports chosen by up in .lab/ports, which every later command reads.

Environment:
  STATELAB_LAB_DIR        the lab directory (default .lab in the repository); set it to the same
                          value for every command on that lab
  STATELAB_PORTS          native mode: \"free\" gives every replica, the proxy, the admin API,
                          Redis and the object store a random free loopback port (from 10000 up to
                          the ephemeral range) instead of the fixed ones, except those pinned
                          below; default \"fixed\"
  STATELAB_PROXY_PORT, STATELAB_ADMIN_PORT   host ports (default 8080, 8081)
  STATELAB_REDIS_PORT     native Redis port (default: first free port from 16379)
  STATELAB_BIN_DIR        where the binaries are (':'-separated search list); when set, cargo is
                          not run. Default: cargo build --profile lab --locked, then
                          ${CARGO_TARGET_DIR:-target}/lab
  STATELAB_S3S_FS         native mode: the object store's program (default: s3s-fs on PATH, else
                          ${CARGO_TARGET_DIR:-target}/tools/bin/s3s-fs, which scripts/lab builds)
  STATELAB_UP_TIMEOUT     seconds to wait for health (default 90)
  STATELAB_PROJECT        compose project name, or the Swarm stack's (default statelab)
  STATELAB_SUBNET         the compose network, or the Swarm stack's overlay network, a /24
                          (default 10.231.7.0/24); the proxy's config is generated to match
                          (.lab/proxy.docker.toml)
  STATELAB_OFFLINE        1: build images with deploy/offline-images without asking a registry;
                          0: use the official images; unset: if a base image is missing locally,
                          pull the Redis and runtime images (STATELAB_PROBE_TIMEOUT s each, default
                          20) and go offline if a pull fails or times out
  STATELAB_SKIP_IMAGE_BUILD  1: in Docker and Swarm mode, use the statelab image already built
  STATELAB_ADMIN_TOKEN    up: the proxy's admin token. Docker and Swarm mode always have one (this, the one
                          recorded before, or a random one); native mode only when this is set.
                          up records it in .lab/admin-token, which later commands read";

/// The user's one handle on the statelab lab: native processes, the compose project or a Swarm
/// stack.
#[derive(Debug, Parser)]
#[command(name = "scripts/lab", after_help = AFTER_HELP, arg_required_else_help = true)]
struct Cli {
    /// Answer kill, start, primaries, mem, ports, status, scale and strategy with one JSON object
    /// on standard output (their types are in statelab-formats, `statelab_formats::lab`;
    /// strategy's in `statelab_lab::probe`) instead of lines for people; messages still go to
    /// standard error.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Start Redis, the object store, nine replicas and the proxy; return once all are healthy.
    Up {
        /// The compose project instead of native processes.
        #[arg(long, conflicts_with = "swarm")]
        docker: bool,
        /// A Docker Swarm stack (deploy/stack.yaml): the engine's swarm, or a one-node swarm the
        /// lab makes and leaves again at `down`; each pool follows its service by DNS.
        #[arg(long)]
        swarm: bool,
        /// The Redis behind the externalized pool: one Redis (`redis`), or three data nodes
        /// (`redis-1` primary at start, `redis-2`, `redis-3`) watched by three Sentinels
        /// (`sentinel-1..3`) that fail over by themselves.
        #[arg(long, value_enum, default_value = "single")]
        redis: Store,
        /// Replicas that must hold each session write before the externalized services
        /// acknowledge it (their `--redis-wait`); 0 acknowledges once the primary has it.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2))]
        redis_wait: u32,
        /// Each replica's CPU budget, in cores (e.g. 0.2; at least 0.01): natively a control
        /// group per replica (as root), in Docker the container's CPU quota. `scale` and
        /// `start` give new replicas the same.
        #[arg(long, value_name = "CORES")]
        replica_cpu: Option<f64>,
        /// Each Redis node's CPU budget (Sentinels too), in cores, like --replica-cpu.
        #[arg(long, value_name = "CORES")]
        store_cpu: Option<f64>,
        /// CPU work, in microseconds, every replica does per API request (their --work-us):
        /// what makes a budget bind (docs/capacity.md).
        #[arg(long, default_value_t = 0, value_name = "MICROSECONDS")]
        work_us: u32,
        /// How each request's work varies: fixed, or exp (an exponential draw of mean
        /// --work-us: most requests cheap, a few long; their --work-dist).
        #[arg(long, default_value = "fixed", value_name = "fixed|exp")]
        work_dist: WorkDist,
    },
    /// Each part up/down and healthy or not, then the proxy's admin status (exit 1: a part is down).
    Status,
    /// SIGKILL one part: stateful-K, stateless-K, externalized-K, proxy, s3 (the object store),
    /// a Redis node (redis; redis-1..3 and sentinel-1..3 with --redis sentinel), or
    /// redis-primary, whichever Redis node is primary now (docker kill in Docker mode; in Swarm
    /// mode of the task's container, which Swarm replaces).
    Kill { name: Target },
    /// Start a killed part again and wait until it is healthy and, for a replica, until the proxy
    /// routes to it again. A Redis data node comes back as a replica of the primary now. In
    /// Swarm mode, waits for the task Swarm started in its place.
    Start { name: Target },
    /// The Redis nodes that are primary now, one name a line (exit 1 when none is known, as
    /// during a failover).
    Primaries,
    /// Docker mode: cut a Redis node (a name, or redis-primary) off from the other Redis nodes
    /// and the Sentinels, dropping every packet between them in the node's own network
    /// namespace; the externalized replicas still reach it, except those named with --from.
    Partition {
        name: Target,
        /// An externalized replica that loses the node too (repeatable).
        #[arg(long, value_name = "REPLICA")]
        from: Vec<Part>,
        /// Heal after this many seconds, then return (default: stay cut until `heal`).
        #[arg(long = "for", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        for_seconds: Option<u64>,
    },
    /// Docker mode: remove every cut `partition` made.
    Heal,
    /// Stop everything the lab started.
    Down {
        /// Also delete the stored data: Redis's, the object store's files and (natively) the
        /// stateful replicas' disks.
        #[arg(short = 'v', long = "volumes")]
        volumes: bool,
    },
    /// Follow one part's log (Ctrl-C to stop).
    Logs { name: Part },
    /// The lab's ports, one "NAME PORT" line each: natively redis, the nine replicas, proxy and
    /// admin; in Docker and Swarm mode proxy and admin only.
    Ports,
    /// Resident memory of each running replica, one "NAME BYTES" line each.
    Mem,
    /// CPU time each running part has used so far, one "NAME SECONDS BUDGET" line each (BUDGET
    /// in cores, or "-"), then "host BUSY_SECONDS CORES"; two readings apart give the use between.
    Cpu,
    /// Show the Docker NAT trap for ip-hash and the way around it (Docker mode).
    IphashDemo,
    /// Grow or shrink a pool to N replicas (1-9) while it serves. New replicas start, pass their
    /// health check and are registered with the proxy; removed ones are drained first (their
    /// pinned clients stay until idle, at most --drain seconds) unless --now. In Swarm mode,
    /// `docker service scale`, which the proxy follows by DNS, draining for its pool's
    /// discover_drain_seconds.
    Scale {
        /// stateful, stateless or externalized.
        pool: Design,
        /// The number of replicas the pool should have.
        n: u8,
        /// Remove at once, without draining.
        #[arg(long, conflicts_with = "drain")]
        now: bool,
        /// The longest drain of a removed replica, in seconds (default 5).
        #[arg(long, value_name = "SECONDS")]
        drain: Option<u64>,
    },
    /// Print the mode the lab runs in, native, docker or swarm (exit 1 when it is not up).
    Mode,
    /// Without arguments, each pool's strategy ("POOL STRATEGY" lines, then " balance-factor N"
    /// when bounded loads are on); with POOL STRATEGY, switch that pool (cookie, ip-hash,
    /// ip-modulo, round-robin or least-requests) through the proxy's admin API; with
    /// --balance-factor, set or clear the pool's balance factor, with the switch or alone.
    Strategy {
        /// The pool: stateful, stateless or externalized.
        pool: Option<String>,
        /// Its strategy from now on.
        strategy: Option<Strategy>,
        /// Consistent hashing with bounded loads, for ip-hash and cookie only: no replica is given
        /// a new request beyond N% of the pool's average load in requests in flight (100 to 1000,
        /// e.g. 125); "off" turns it off. Without it, a switch leaves the pool's factor as it is.
        #[arg(long, value_name = "N|off", requires = "pool")]
        balance_factor: Option<FactorArg>,
    },
}

/// The repository: `STATELAB_ROOT` (set by `scripts/lab`), else the one this binary was built in.
fn repository_root() -> PathBuf {
    match std::env::var_os("STATELAB_ROOT") {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    }
}

/// The lab the directory records as up.
fn lab(settings: Settings, dir: LabDir) -> anyhow::Result<Platform> {
    Platform::load(running(&dir)?, settings, dir)
}

fn running(dir: &LabDir) -> anyhow::Result<Mode> {
    dir.mode()?.with_context(|| {
        format!(
            "the lab is not running (no {}); start it with scripts/lab up [--docker|--swarm]",
            dir.path("mode").display()
        )
    })
}

async fn run(verb: Verb, json: bool) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env(&repository_root())?;
    let dir = LabDir::new(settings.lab_dir.clone());
    match verb {
        Verb::Up {
            docker,
            swarm,
            redis,
            redis_wait,
            replica_cpu,
            store_cpu,
            work_us,
            work_dist,
        } => {
            if let Some(mode) = dir.mode()? {
                bail!(
                    "the lab is already up in {} mode; scripts/lab down first",
                    mode.as_str()
                );
            }
            if redis_wait > 0 && redis != Store::Sentinel {
                bail!(
                    "--redis-wait goes with --redis sentinel: a single Redis has no replica to \
                     wait for, and WAIT must follow the write on the node's own connection, which \
                     the cluster client does not expose"
                );
            }
            let store = StoreChoice {
                store: redis,
                wait: redis_wait,
            };
            let sizing = sizing(replica_cpu, store_cpu, work_us, work_dist)?;
            let up = async {
                if docker {
                    Docker::up(settings.clone(), dir.clone(), store, sizing).await
                } else if swarm {
                    Swarm::up(settings.clone(), dir.clone(), store, sizing).await
                } else {
                    Native::up(settings.clone(), dir.clone(), store, sizing).await
                }
            };
            tokio::select! {
                result = up => result.map(|()| ExitCode::SUCCESS),
                _ = tokio::signal::ctrl_c() => {
                    say("interrupted: stopping what up started");
                    take_down(settings, dir, false).await?;
                    Ok(ExitCode::from(130))
                }
            }
        }
        Verb::Status => {
            let status = lab(settings, dir)?.status().await;
            if json {
                print_json(&status)?;
            } else {
                out(status_table(&status));
            }
            Ok(if status.all_up() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Verb::Kill { name } => {
            let killed = lab(settings, dir)?.kill(name).await?;
            if json {
                print_json(&killed)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Start { name } => {
            let started = lab(settings, dir)?.start(name).await?;
            if json {
                print_json(&started)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Partition {
            name,
            from,
            for_seconds,
        } => {
            let lab = lab(settings, dir)?;
            let cut = lab.partition(name, &from).await?;
            // The answer tells of the cut as made, before any wait.
            if json {
                print_json(&cut)?;
            }
            if let Some(secs) = for_seconds {
                say(format!("healing in {secs} s (Ctrl-C heals at once)"));
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(secs)) => {}
                    _ = tokio::signal::ctrl_c() => say("interrupted: healing now"),
                }
                lab.heal()?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Heal => {
            let healed = lab(settings, dir)?.heal()?;
            if json {
                print_json(&healed)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Primaries => {
            let names = lab(settings, dir)?.primaries().await;
            let none = names.is_empty();
            if json {
                print_json(&Primaries { primaries: names })?;
            } else {
                for n in &names {
                    out(format!("{n}\n"));
                }
            }
            Ok(if none {
                say("no Redis node is known to be primary now");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Verb::Down { volumes } => {
            if dir.mode()?.is_none() {
                say(format!(
                    "the lab is not running (nothing recorded in {})",
                    dir.path("mode").display()
                ));
                return Ok(ExitCode::SUCCESS);
            }
            take_down(settings, dir, volumes).await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Logs { name } => {
            lab(settings, dir)?.logs(name)?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Ports => {
            let lab = lab(settings, dir)?;
            if json {
                print_json(&lab.ports())?;
            } else {
                for (name, port) in lab.port_lines() {
                    out(format!("{name} {port}\n"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Mem => {
            let lines = lab(settings, dir)?.mem()?;
            if json {
                print_json(&Memory {
                    replicas: lines.into_iter().collect(),
                })?;
            } else {
                for (name, bytes) in lines {
                    out(format!("{name} {bytes}\n"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Cpu => {
            let times = lab(settings, dir)?.cpu();
            if json {
                print_json(&times)?;
            } else {
                for p in &times.parts {
                    let budget = p.budget.map_or_else(|| "-".into(), |b| format!("{b}"));
                    out(format!("{} {:.2} {budget}\n", p.name, p.seconds));
                }
                out(format!(
                    "host {:.2} {}\n",
                    times.host_busy_seconds, times.host_cores
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Scale {
            pool,
            n,
            now,
            drain,
        } => {
            let drain = match (now, drain) {
                (true, _) => Drain::Now,
                (false, Some(s)) => Drain::UpTo(std::time::Duration::from_secs(s)),
                (false, None) => Drain::Default,
            };
            let scaled = lab(settings, dir)?.scale(pool, n, drain).await?;
            if json {
                print_json(&scaled)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Mode => {
            out(format!("{}\n", running(&dir)?.as_str()));
            Ok(ExitCode::SUCCESS)
        }
        Verb::Strategy {
            pool,
            strategy,
            balance_factor,
        } => {
            // Checked before anything is asked of the lab or the proxy.
            let change = match &pool {
                None => None,
                Some(pool) => Some(routing_change(pool, strategy, balance_factor)?),
            };
            running(&dir)?;
            let admin = *dir
                .ports()
                .get("admin")
                .context("the lab's ports file names no admin port")?;
            let probe = Probe::new(dir.admin_token());
            let status = || async {
                probe.admin_status(admin).await.with_context(|| {
                    format!("the proxy's admin API does not answer on port {admin}")
                })
            };
            match (pool, change) {
                (Some(pool), Some(change)) => {
                    if let (None, Some(Some(factor))) = (change.strategy, change.balance_factor) {
                        // The factor alone: it must bound the strategy the pool has.
                        let now = status().await?;
                        if let Some(p) = now.pools.iter().find(|p| p.name == pool) {
                            if !p.strategy.takes_balance_factor() {
                                bail!("{}", factor_refused(&pool, p.strategy, factor, false));
                            }
                        }
                    }
                    let routed = probe.set_routing(admin, &pool, &change).await?;
                    say(routed_line(&routed, change.balance_factor.is_some()));
                    if json {
                        print_json(&routed)?;
                    }
                }
                _ => {
                    let routings = Routings::from(&status().await?);
                    if json {
                        print_json(&routings)?;
                    } else {
                        for p in &routings.pools {
                            out(format!("{}\n", routing_line(p)));
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::IphashDemo => {
            if dir.mode()? != Some(Mode::Docker) {
                bail!("iphash-demo needs the Docker lab: scripts/lab up --docker");
            }
            Docker::load(settings, dir)?.iphash_demo().await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `up`'s sizing flags, checked: a budget is at least [`MIN_CPU`] and at most the host's cores.
fn sizing(
    replica_cpu: Option<f64>,
    store_cpu: Option<f64>,
    work_us: u32,
    work_dist: WorkDist,
) -> anyhow::Result<Sizing> {
    let cores = f64::from(statelab_formats::procfs::host_cores());
    for (flag, value) in [("--replica-cpu", replica_cpu), ("--store-cpu", store_cpu)] {
        if let Some(v) = value {
            if !(MIN_CPU..=cores).contains(&v) {
                bail!("{flag} must be between {MIN_CPU} and {cores} (this host's cores), got {v}");
            }
        }
    }
    if work_us > MAX_WORK_US {
        bail!("--work-us must be at most {MAX_WORK_US} (one second), got {work_us}");
    }
    Ok(Sizing {
        replica_cpu,
        store_cpu,
        work_us,
        work_dist,
    })
}

/// `--balance-factor N|off`: a factor to set, or `off` to turn bounded loads off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FactorArg(Option<BalanceFactor>);

impl FromStr for FactorArg {
    type Err = BadBalanceFactor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" => Ok(FactorArg(None)),
            n => n.parse().map(|f| FactorArg(Some(f))),
        }
    }
}

/// The strategies a balance factor bounds, in words: "cookie and ip-hash".
fn factor_strategies() -> String {
    let names: Vec<&str> = Strategy::ALL
        .into_iter()
        .filter(|s| s.takes_balance_factor())
        .map(Strategy::as_str)
        .collect();
    either(&names, "and")
}

/// `a, b or c` (with `or`), `a and b` (with `and`).
fn either(names: &[&str], last: &str) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., end] => format!("{} {last} {end}", rest.join(", ")),
    }
}

/// Why a balance factor is refused for `strategy`: `given` when the command named the strategy,
/// else it is the pool's strategy now.
fn factor_refused(pool: &str, strategy: Strategy, factor: BalanceFactor, given: bool) -> String {
    let whose = if given {
        strategy.to_string()
    } else {
        format!("{pool}'s strategy, {strategy}")
    };
    format!(
        "--balance-factor {factor} does not apply to {whose}: a balance factor bounds {} only \
         (switch in the same command, e.g. scripts/lab strategy {pool} ip-hash --balance-factor \
         {factor}; --balance-factor off clears it with any strategy)",
        factor_strategies()
    )
}

/// The admin API's body for `strategy POOL [STRATEGY] [--balance-factor N|off]`; refused, before
/// any request, without a strategy or a factor, or with a factor for a strategy it does not bound.
fn routing_change(
    pool: &str,
    strategy: Option<Strategy>,
    factor: Option<FactorArg>,
) -> anyhow::Result<PoolRouting> {
    if strategy.is_none() && factor.is_none() {
        let names: Vec<&str> = Strategy::ALL.into_iter().map(Strategy::as_str).collect();
        bail!(
            "name the strategy too ({}), or --balance-factor N|off",
            either(&names, "or")
        );
    }
    if let (Some(s), Some(FactorArg(Some(f)))) = (strategy, factor) {
        if !s.takes_balance_factor() {
            bail!("{}", factor_refused(pool, s, f, true));
        }
    }
    Ok(PoolRouting {
        strategy,
        balance_factor: factor.map(|FactorArg(f)| f),
    })
}

/// One JSON object on standard output, a line of its own.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    out(format!("{}\n", serde_json::to_string(value)?));
    Ok(())
}

/// The `status` table for people: a line a part, then a line a pool of the proxy's view.
fn status_table(status: &LabStatus) -> String {
    let id = if status.mode != "native" {
        "CONTAINER"
    } else {
        "PID"
    };
    let mut out = format!(
        "{:<16} {id:<14} {:<8} {:<10} {:<9} CPU\n",
        "PART", "STATE", "HEALTH", "ROLE"
    );
    for p in &status.parts {
        let id = match (&p.container, p.pid) {
            (Some(c), _) => c.clone(),
            (None, Some(pid)) => pid.to_string(),
            (None, None) => "-".into(),
        };
        let state = match (p.up, &p.down) {
            (true, _) => "up".to_string(),
            (false, Some(why)) => format!("down({why})"),
            (false, None) => "down".to_string(),
        };
        let health = p.health.as_deref().unwrap_or("-");
        let role = p.role.as_deref().unwrap_or("-");
        let budget = p
            .cpu_budget
            .map_or_else(|| "-".to_string(), |b| format!("{b} core"));
        out.push_str(&format!(
            "{:<16} {id:<14} {state:<8} {health:<10} {role:<9} {budget}\n",
            p.name
        ));
    }
    out.push_str(&admin_summary(status.admin_port, status.proxy.as_ref()));
    out
}

/// Stops whichever lab the directory records; `volumes` also deletes the stored data.
async fn take_down(settings: Settings, dir: LabDir, volumes: bool) -> anyhow::Result<()> {
    let Some(mode) = dir.mode()? else {
        return Ok(());
    };
    match Platform::load(mode, settings, dir.clone()) {
        Ok(lab) => lab.down(volumes).await,
        // A native lab interrupted before its ports were written: nothing was started.
        Err(_) if mode == Mode::Native => {
            dir.clear();
            if volumes {
                delete_native_data(&dir);
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(format!("error: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.verb, cli.json)) {
        Ok(code) => code,
        Err(e) => {
            say(format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The `strategy` verb's words: pool, strategy, balance factor.
    type StrategyWords = (Option<String>, Option<Strategy>, Option<FactorArg>);

    /// The `strategy` verb's words, as the command line gives them to [`run`].
    fn strategy_words(args: &[&str]) -> Result<StrategyWords, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("scripts/lab").chain(args.iter().copied()))?;
        match cli.verb {
            Verb::Strategy {
                pool,
                strategy,
                balance_factor,
            } => Ok((pool, strategy, balance_factor)),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    fn factor(percent: u32) -> Option<FactorArg> {
        Some(FactorArg(Some(
            BalanceFactor::new(percent).expect("a factor"),
        )))
    }

    #[test]
    fn strategy_takes_a_balance_factor_with_the_strategy_or_alone() {
        assert_eq!(
            strategy_words(&["strategy"]).expect("parse"),
            (None, None, None)
        );
        assert_eq!(
            strategy_words(&["strategy", "stateful", "ip-hash", "--balance-factor", "125"])
                .expect("parse"),
            (Some("stateful".into()), Some(Strategy::IpHash), factor(125))
        );
        assert_eq!(
            strategy_words(&["strategy", "--balance-factor", "off", "stateless", "cookie"])
                .expect("parse"),
            (
                Some("stateless".into()),
                Some(Strategy::Cookie),
                Some(FactorArg(None))
            )
        );
        assert_eq!(
            strategy_words(&["strategy", "stateful", "--balance-factor", "1000"]).expect("parse"),
            (Some("stateful".into()), None, factor(1000))
        );
        assert_eq!(
            strategy_words(&["--json", "strategy", "stateless", "least-requests"]).expect("parse"),
            (
                Some("stateless".into()),
                Some(Strategy::LeastRequests),
                None
            )
        );
        // Bad values are refused with the balance factor's own message; a factor needs a pool.
        for bad in ["90", "x", "1001", ""] {
            let e = strategy_words(&["strategy", "stateful", "--balance-factor", bad])
                .expect_err(bad)
                .to_string();
            assert!(
                e.contains("expected a percentage from 100 to 1000"),
                "{bad}: {e}"
            );
        }
        assert!(strategy_words(&["strategy", "--balance-factor", "125"]).is_err());
        assert!(strategy_words(&["strategy", "stateful", "sticky"]).is_err());
    }

    #[test]
    fn a_routing_change_is_checked_before_it_is_sent() {
        let set = routing_change("stateful", Some(Strategy::IpHash), factor(125)).expect("set");
        assert_eq!(
            serde_json::to_string(&set).expect("json"),
            r#"{"strategy":"ip-hash","balance_factor":125}"#
        );
        let off = routing_change("stateful", None, Some(FactorArg(None))).expect("off");
        assert_eq!(
            serde_json::to_string(&off).expect("json"),
            r#"{"balance_factor":null}"#,
            "off goes as null"
        );
        let switch = routing_change("stateful", Some(Strategy::Cookie), None).expect("switch");
        assert_eq!(
            serde_json::to_string(&switch).expect("json"),
            r#"{"strategy":"cookie"}"#,
            "no factor given: the pool's is left as it is"
        );
        // off goes with any strategy; a factor only with those it bounds.
        assert!(routing_change(
            "stateless",
            Some(Strategy::RoundRobin),
            Some(FactorArg(None))
        )
        .is_ok());
        for s in Strategy::ALL {
            let r = routing_change("stateless", Some(s), factor(150));
            assert_eq!(r.is_ok(), s.takes_balance_factor(), "{s}: {r:?}");
            if let Err(e) = r {
                let e = e.to_string();
                assert!(
                    e.contains(&format!("does not apply to {s}"))
                        && e.contains("bounds cookie and ip-hash only"),
                    "{e}"
                );
            }
        }
        let e = routing_change("stateful", None, None).expect_err("nothing to change");
        assert!(
            e.to_string()
                .contains("cookie, ip-hash, ip-modulo, round-robin or least-requests"),
            "{e}"
        );
    }

    /// docs/lab.md's command table and the header of `scripts/lab` describe every verb, and name
    /// none that is gone.
    #[test]
    fn the_docs_and_the_script_header_list_every_verb() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("lab/ sits in the workspace root");
        let read = |rel: &str| {
            std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
        };
        let docs = read("docs/lab.md");
        let script = read("scripts/lab");
        let verbs: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        assert!(verbs.len() > 10, "{verbs:?}");
        for verb in &verbs {
            assert!(
                docs.contains(&format!("| `scripts/lab {verb}")),
                "docs/lab.md's command table has no row for `scripts/lab {verb}`"
            );
            assert!(
                script.contains(&format!("#   scripts/lab {verb}")),
                "the header of scripts/lab does not describe `{verb}`"
            );
        }
        let named = |text: &str, prefix: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(prefix))
                .filter_map(|rest| rest.split([' ', '`']).next().map(str::to_owned))
                .collect()
        };
        for name in named(&docs, "| `scripts/lab ") {
            assert!(
                verbs.contains(&name),
                "docs/lab.md describes a verb `{name}` the lab has not"
            );
        }
        for name in named(&script, "#   scripts/lab ") {
            assert!(
                verbs.contains(&name),
                "scripts/lab describes a verb `{name}` the lab has not"
            );
        }
    }
}

//! The scheduled fault and scale steps, carried out through the lab's own handle (`scripts/lab
//! kill NAME`, `scripts/lab start NAME`, `scripts/lab scale POOL N`), so a run kills a replica or
//! resizes a pool exactly as a user would — natively or in containers, whichever mode the lab is
//! in; and the record of each step ([`Event`]).
//!
//! A kill of a Redis node (a name starting with `redis`, such as the lab's alias `redis-primary`)
//! is watched: the lab's primaries are asked for (`LAB primaries`) just before the kill and then
//! every [`PRIMARY_POLL`] until one appears that was not among them, or the run ends; the part the
//! kill's answer names (`LAB --json kill`, `statelab_formats::lab::Killed`) is kept in the kill's
//! event. Every lab command is run with `--json` and read as its typed answer, never as the
//! sentences the lab prints for people.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statelab_formats::lab::{Killed, Memory, Partitioned, Primaries, MAX_REPLICAS_PER_POOL};
use statelab_formats::status::MAX_DRAIN_SECS;
use statelab_formats::Design;
use tokio::process::Command;
use tokio::sync::oneshot;

use crate::stats::{Epochs, KillMark, Recorder};

/// How long a lab command may take before the run gives up on it.
const LAB_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a question to the lab (`LAB primaries`) may take: one that hangs through a failover
/// must neither hold up the kill it precedes nor stall the polling after it.
const LAB_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the primaries are asked for after a Redis kill: the new primary's time is known to
/// within this (plus the lab's own time to answer).
pub const PRIMARY_POLL: Duration = Duration::from_millis(250);

/// The lab's command-line handle: a program and the words before the subcommand, and the
/// environment it runs with beyond the generator's own (a lab directory of its own, say).
#[derive(Debug, Clone)]
pub struct Lab {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The admin token recorded in the lab directory `dir` (`admin-token`), if any.
pub fn admin_token_in(dir: &std::path::Path) -> Option<statelab_formats::AdminToken> {
    std::fs::read_to_string(dir.join("admin-token"))
        .ok()
        .map(|t| statelab_formats::AdminToken::new(t.trim().to_owned()))
        .filter(|t| !t.as_str().is_empty())
}

impl Lab {
    /// Splits a command such as `scripts/lab` or `bash scripts/lab` on whitespace.
    pub fn parse(command: &str) -> Result<Self, String> {
        let mut words = command.split_whitespace().map(str::to_owned);
        let program = words
            .next()
            .ok_or_else(|| "the lab command is empty".to_owned())?;
        Ok(Lab {
            program,
            args: words.collect(),
            env: Vec::new(),
        })
    }

    /// The lab's directory: `STATELAB_LAB_DIR` as this command runs it, else `.lab` in the
    /// repository whose `scripts/` holds the command.
    pub fn dir(&self) -> Option<std::path::PathBuf> {
        let set = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "STATELAB_LAB_DIR")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("STATELAB_LAB_DIR").ok())
            .filter(|v| !v.is_empty());
        match set {
            Some(dir) => Some(dir.into()),
            None => {
                let program = std::path::absolute(&self.program).ok()?;
                Some(program.parent()?.parent()?.join(".lab"))
            }
        }
    }

    /// The admin token the lab's proxy wants, as `up` recorded it (always in Docker mode).
    pub fn admin_token(&self) -> Option<statelab_formats::AdminToken> {
        admin_token_in(&self.dir()?)
    }

    /// The same lab command with `key=value` in its environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `LAB WORDS...` and returns its standard output, or why it failed.
    pub async fn run(&self, words: &[&str]) -> Result<String, String> {
        self.run_within(words, LAB_COMMAND_TIMEOUT).await
    }

    /// Runs `LAB --json WORDS...` and reads its answer as `T`.
    pub async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        words: &[&str],
    ) -> Result<T, String> {
        self.answer_within(words, LAB_COMMAND_TIMEOUT).await
    }

    async fn run_within(&self, words: &[&str], limit: Duration) -> Result<String, String> {
        let output = self.output(words, limit).await?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let last = last_message(&output.stderr);
        Err(format!(
            "{} {} failed ({}): {}",
            self.program,
            words.join(" "),
            output.status,
            if last.is_empty() { "no message" } else { &last }
        ))
    }

    async fn answer_within<T: serde::de::DeserializeOwned>(
        &self,
        words: &[&str],
        limit: Duration,
    ) -> Result<T, String> {
        let json = with_json(words);
        let text = self.run_within(&json, limit).await?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} {}: not the answer expected ({e})",
                self.program,
                json.join(" ")
            )
        })
    }

    /// Runs `LAB WORDS...` to its end, within `limit`.
    async fn output(
        &self,
        words: &[&str],
        limit: Duration,
    ) -> Result<std::process::Output, String> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .args(words)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        match tokio::time::timeout(limit, cmd.output()).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(format!("cannot run {}: {e}", self.program)),
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        }
    }

    /// Runs `LAB --json WORDS...`: whether it succeeded, its last message for people (standard
    /// error) and its answer (standard output, one JSON object of `statelab_formats::lab`).
    async fn call(&self, words: &[&str]) -> Called {
        let output = match self.output(&with_json(words), LAB_COMMAND_TIMEOUT).await {
            Ok(output) => output,
            Err(why) => {
                return Called {
                    ok: false,
                    detail: why,
                    answer: String::new(),
                }
            }
        };
        Called {
            ok: output.status.success(),
            detail: last_message(&output.stderr),
            answer: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }

    /// `LAB status --json`, read whether or not a part is down (the command then exits 1);
    /// `None` when it gives no status at all.
    pub async fn status(&self) -> Option<statelab_formats::lab::LabStatus> {
        serde_json::from_str(&self.call(&["status"]).await.answer).ok()
    }

    /// Resident memory of each running replica of `service`, from `LAB mem --json`. Empty when
    /// the lab cannot say.
    pub async fn memory(&self, service: Design) -> BTreeMap<String, u64> {
        self.answer::<Memory>(&["mem"])
            .await
            .map(|m| of_design(m, service))
            .unwrap_or_default()
    }

    /// The Redis nodes that are primary now, from `LAB primaries --json`; `None` when the lab
    /// cannot tell (a failing status, as during a failover, or no name at all).
    pub async fn primaries(&self) -> Option<BTreeSet<String>> {
        self.answer_within::<Primaries>(&["primaries"], LAB_QUERY_TIMEOUT)
            .await
            .ok()
            .map(|p| p.primaries.into_iter().collect::<BTreeSet<_>>())
            .filter(|names| !names.is_empty())
    }
}

/// `--json` before the verb and its words.
fn with_json<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let mut json = vec!["--json"];
    json.extend_from_slice(words);
    json
}

/// A command's last non-empty line on standard error: its last message for people.
fn last_message(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// What a lab command did.
#[derive(Debug)]
struct Called {
    ok: bool,
    /// Its last message for people.
    detail: String,
    /// Its JSON answer.
    answer: String,
}

/// Whether a kill of `name` is a Redis node's, whose aftermath is a new primary to watch for.
pub fn watches_primaries(name: &str) -> bool {
    name.starts_with("redis")
}

/// The decision of each poll after a Redis kill: the first (by name) of the primaries `now` that
/// was not among those `before` the kill, or `None` while there is none. Every primary that
/// survived the kill is in both, so only a promotion answers.
pub fn new_primary<'a>(before: &BTreeSet<String>, now: &'a BTreeSet<String>) -> Option<&'a str> {
    now.iter()
        .find(|name| !before.contains(*name))
        .map(String::as_str)
}

/// The node that became primary after a Redis kill, and when the generator first saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPrimary {
    pub name: String,
    /// Seconds since the run's start at which `LAB primaries` answered with it; the promotion
    /// came at most one poll ([`PRIMARY_POLL`], plus the lab's time to answer) earlier.
    pub at_s: f64,
}

/// What the lab said about its Redis primaries around a kill.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrimaryWatch {
    /// The primaries just before the kill; `None` when the lab could not tell.
    pub before: Option<BTreeSet<String>>,
    /// The first primary not among `before`; `None` when none appeared within the run.
    pub new_primary: Option<NewPrimary>,
}

/// After a Redis kill that `before` preceded, asks for the primaries every [`PRIMARY_POLL`] until
/// a new one appears, the run ends at `end` or `stop` turns true. Runs beside the load: each
/// question is a child process, bounded by [`LAB_QUERY_TIMEOUT`] and dropped (killed) at the end.
async fn watch_primaries(
    lab: &Lab,
    before: &BTreeSet<String>,
    start: Instant,
    end: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<NewPrimary> {
    let mut tick = tokio::time::interval(PRIMARY_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = tokio::time::sleep_until(end.into());
    tokio::pin!(ended);
    loop {
        let now = tokio::select! {
            _ = &mut ended => return None,
            _ = stop.wait_for(|s| *s) => return None,
            now = async {
                tick.tick().await;
                lab.primaries().await
            } => now,
        };
        if let Some(name) = now.as_ref().and_then(|now| new_primary(before, now)) {
            return Some(NewPrimary {
                name: name.to_owned(),
                at_s: start.elapsed().as_secs_f64(),
            });
        }
    }
}

/// The replicas of `design` (`design-N`) in the lab's memory answer.
fn of_design(memory: Memory, design: Design) -> BTreeMap<String, u64> {
    memory
        .replicas
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix(design.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect()
}

/// A step of the scheduled fault; `run.json`'s `events[].what`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultStep {
    Kill,
    Restart,
    /// A pool grown or shrunk (`LAB scale POOL N`); the event's `replica` is `POOL=N`.
    Scale,
    /// A Redis node cut off from the other Redis nodes and the Sentinels (`LAB partition NODE`).
    Partition,
    /// Every cut removed (`LAB heal`).
    Heal,
}

impl FaultStep {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultStep::Kill => "kill",
            FaultStep::Restart => "restart",
            FaultStep::Scale => "scale",
            FaultStep::Partition => "partition",
            FaultStep::Heal => "heal",
        }
    }

    /// The lab's word for the step: a restart is `LAB start`, the same verb a user types.
    fn lab_verb(self) -> &'static str {
        match self {
            FaultStep::Kill => "kill",
            FaultStep::Restart => "start",
            FaultStep::Scale => "scale",
            FaultStep::Partition => "partition",
            FaultStep::Heal => "heal",
        }
    }

    /// The step that stops the part or cuts it off: what the report's failover is measured from.
    pub fn is_fault(self) -> bool {
        matches!(self, FaultStep::Kill | FaultStep::Partition)
    }

    /// The step that undoes it: the part started again, or the cut healed.
    pub fn is_undo(self) -> bool {
        matches!(self, FaultStep::Restart | FaultStep::Heal)
    }
}

/// One lab command due at a second of the run.
#[derive(Debug, Clone)]
struct Step {
    what: FaultStep,
    at: Duration,
    /// What the event names: the replica, or `POOL=N` for a scale.
    subject: String,
    /// The words after the verb.
    args: Vec<String>,
}

/// How a shrinking scale step removes replicas: the lab's `--drain SECONDS` or `--now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shrink {
    /// The lab's default drain.
    Default,
    /// Drain for at most this many seconds (`:drain=S`).
    Drain(u64),
    /// At once (`:now`).
    Now,
}

/// Grow or shrink `pool` to `replicas` at `at` after the start (`--scale POOL=N@SECONDS`, with
/// `:now` or `:drain=S` for how a shrink removes replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleStep {
    pub pool: Design,
    pub replicas: u8,
    pub at: Duration,
    pub removal: Shrink,
}

impl ScaleStep {
    /// Parses `POOL=N@SECONDS[:now|:drain=S]` (e.g. `stateless=4@10`, `stateful=3@12:drain=15`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let bad = || {
            format!("--scale '{spec}': expected POOL=N@SECONDS[:now|:drain=S], e.g. stateless=4@10")
        };
        let (pool, rest) = spec.split_once('=').ok_or_else(bad)?;
        let (n, rest) = rest.split_once('@').ok_or_else(bad)?;
        let (at, removal) = match rest.split_once(':') {
            None => (rest, Shrink::Default),
            Some((at, "now")) => (at, Shrink::Now),
            Some((at, option)) => {
                let secs = option
                    .strip_prefix("drain=")
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|s| *s <= MAX_DRAIN_SECS)
                    .ok_or_else(|| {
                        format!(
                            "--scale '{spec}': after ':' comes 'now' or 'drain=S' (S in 0..={MAX_DRAIN_SECS})"
                        )
                    })?;
                (at, Shrink::Drain(secs))
            }
        };
        let pool: Design = pool.parse().map_err(|e| format!("--scale '{spec}': {e}"))?;
        let replicas: u8 = n
            .parse()
            .ok()
            .filter(|n| (1..=MAX_REPLICAS_PER_POOL).contains(n))
            .ok_or_else(|| {
                format!(
                    "--scale '{spec}': a pool has 1 to {MAX_REPLICAS_PER_POOL} replicas in the lab"
                )
            })?;
        Ok(ScaleStep {
            pool,
            replicas,
            at: parse_seconds(at).map_err(|e| format!("--scale '{spec}': {e}"))?,
            removal,
        })
    }

    fn step(&self) -> Step {
        let mut args = vec![self.pool.to_string(), self.replicas.to_string()];
        let mut subject = format!("{}={}", self.pool, self.replicas);
        match self.removal {
            Shrink::Default => {}
            Shrink::Drain(s) => {
                args.extend(["--drain".to_owned(), s.to_string()]);
                subject.push_str(&format!(" drain={s}"));
            }
            Shrink::Now => {
                args.push("--now".to_owned());
                subject.push_str(" now");
            }
        }
        Step {
            what: FaultStep::Scale,
            at: self.at,
            subject,
            args,
        }
    }
}

/// What a step that was never carried out says in its event's `detail`.
pub const NOT_CARRIED_OUT: &str = "not carried out: the run was interrupted first";

/// What the sessions are told of the steps: scale epochs begun and ended, or a kill done.
#[derive(Clone, Copy)]
enum Sessions<'a> {
    Scale(&'a Epochs),
    Kill(&'a KillMark),
}

/// Sleeps until each step is due and runs it through the lab, recording what happened. Once
/// `stop` turns true no further step starts; each one not carried out is recorded as a failed
/// event, so a report never silently lacks a planned step.
///
/// With [`Sessions::Scale`], each step that runs begins a new scale epoch and ends it when its
/// command returns, so the sessions can tell what the step moved; with [`Sessions::Kill`], a kill is
/// marked when it begins and when it has succeeded, so the sessions can tell which were on the
/// killed replica. With `primaries`, the kill step asks
/// for the lab's primaries just before it and, once the kill has succeeded, sends what the lab
/// said.
async fn run_steps(
    steps: Vec<Step>,
    lab: &Lab,
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    sessions: Sessions<'_>,
    mut primaries: Option<oneshot::Sender<Option<BTreeSet<String>>>>,
) {
    // The node a kill actually stopped: `redis-primary` names another node once it has failed
    // over, so the restart starts the one that was killed.
    let mut killed: Option<String> = None;
    for mut step in steps {
        if let (FaultStep::Restart, Some(node)) = (step.what, &killed) {
            step.args = vec![node.clone()];
        }
        let due = tokio::time::sleep_until((start + step.at).into());
        let stopped = tokio::select! {
            _ = due => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let event = if stopped {
            Event {
                at_s: step.at.as_secs_f64(),
                what: step.what,
                replica: step.subject,
                took_s: 0.0,
                ok: false,
                detail: NOT_CARRIED_OUT.into(),
                killed: None,
                cut_off: None,
            }
        } else {
            let watch = primaries.take_if(|_| step.what.is_fault());
            let before = match &watch {
                Some(_) => lab.primaries().await,
                None => None,
            };
            let begun = Instant::now();
            // Sessions sit on replicas: a partition cuts off a Redis node, which none is on.
            if let (Sessions::Kill(kill), FaultStep::Kill) = (sessions, step.what) {
                kill.begin(&step.subject, begun);
            }
            let epochs = match sessions {
                Sessions::Scale(epochs) => Some(epochs),
                Sessions::Kill(_) => None,
            };
            let epoch = epochs.map(Epochs::begin);
            let mut words = vec![step.what.lab_verb()];
            words.extend(step.args.iter().map(String::as_str));
            let Called { ok, detail, answer } = lab.call(&words).await;
            let mut cut_off = None;
            if ok && step.what.is_fault() {
                killed = match step.what {
                    FaultStep::Partition => {
                        serde_json::from_str::<Partitioned>(&answer).ok().map(|p| {
                            cut_off = Some(p.cut_off);
                            p.node
                        })
                    }
                    _ => serde_json::from_str::<Killed>(&answer)
                        .ok()
                        .map(|k| k.killed),
                };
                if let (Sessions::Kill(kill), FaultStep::Kill) = (sessions, step.what) {
                    kill.over(Instant::now());
                }
            }
            if let Some(watch) = watch.filter(|_| ok) {
                let _ = watch.send(before);
            }
            if let (Some(epochs), Some(epoch)) = (epochs, epoch) {
                epochs.end(epoch);
            }
            Event {
                at_s: begun.saturating_duration_since(start).as_secs_f64(),
                what: step.what,
                replica: step.subject,
                took_s: begun.elapsed().as_secs_f64(),
                ok,
                detail,
                killed: killed.clone().filter(|_| step.what.is_fault()),
                cut_off,
            }
        };
        events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

/// Runs the scale steps in their order of time, apart from any kill (a drain may take seconds).
/// Each begins a scale epoch in `recorder` (see [`crate::stats::moves`]).
pub async fn run_scales(
    mut steps: Vec<ScaleStep>,
    lab: Lab,
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
    stop: tokio::sync::watch::Receiver<bool>,
    recorder: Arc<Recorder>,
) {
    steps.sort_by_key(|s| s.at);
    let steps = steps.iter().map(ScaleStep::step).collect();
    run_steps(
        steps,
        &lab,
        start,
        events,
        stop,
        Sessions::Scale(recorder.epochs()),
        None,
    )
    .await;
}

impl fmt::Display for FaultStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of the fault as it happened; `run.json`'s `events[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_s: f64,
    pub what: FaultStep,
    pub replica: String,
    /// How long the lab command took (`kill` returns once the process is gone, `start` once the
    /// replica is healthy).
    pub took_s: f64,
    pub ok: bool,
    /// The lab command's last message for people (why it failed, if it did).
    pub detail: String,
    /// The part a kill stopped, as the lab's answer names it (an alias such as `redis-primary`
    /// resolved); kept within the run, not written to its report.
    #[serde(skip)]
    pub killed: Option<String>,
    /// The parts a partition cut the node off from, as the lab's answer names them; kept within
    /// the run.
    #[serde(skip)]
    pub cut_off: Option<Vec<String>>,
}

/// Kill `replica` at `kill_at` after the start, or cut it off (a Redis node, with `kind`
/// [`FaultKind::Partition`]); start it again, or heal the cut, at `restart_at` if given.
#[derive(Debug, Clone)]
pub struct Fault {
    pub replica: String,
    pub kill_at: Duration,
    pub restart_at: Option<Duration>,
    pub kind: FaultKind,
}

/// What the fault does to its part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FaultKind {
    /// `LAB kill`, undone by `LAB start`.
    #[default]
    Kill,
    /// `LAB partition NODE --from R...`: the node cut off from the other Redis nodes, the
    /// Sentinels and these replicas; undone by `LAB heal`.
    Partition { from: Vec<String> },
}

impl Fault {
    /// Parses `REPLICA@SECONDS` (e.g. `stateful-2@10` or `stateful-2@7.5`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (replica, at) = spec.split_once('@').ok_or_else(|| {
            format!("--kill '{spec}': expected REPLICA@SECONDS, e.g. stateful-2@10")
        })?;
        if replica.is_empty()
            || !replica
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "--kill '{spec}': '{replica}' is not a replica name"
            ));
        }
        Ok(Fault {
            replica: replica.to_owned(),
            kill_at: parse_seconds(at).map_err(|e| format!("--kill '{spec}': {e}"))?,
            restart_at: None,
            kind: FaultKind::Kill,
        })
    }

    /// Parses `NODE@SECONDS` for `--partition`, cutting the node off from the other Redis nodes,
    /// the Sentinels and `from`.
    pub fn partition(spec: &str, from: &[String]) -> Result<Self, String> {
        let fault = Fault::parse(spec).map_err(|e| e.replacen("--kill", "--partition", 1))?;
        if !watches_primaries(&fault.replica) {
            return Err(format!(
                "--partition '{spec}': a partition cuts off a Redis node (e.g. redis-primary@10)"
            ));
        }
        Ok(Fault {
            kind: FaultKind::Partition {
                from: from.to_vec(),
            },
            ..fault
        })
    }

    /// Kills (or cuts off), then restarts (or heals) if asked, each when due (see `run_steps`),
    /// marking in `recorder` when the fault was over. A Redis node's kill is
    /// watched until a new primary appears or the run ends at `end`; what the lab said is
    /// returned (`None` for another kill, or one not carried out).
    pub async fn run(
        self,
        lab: Lab,
        start: Instant,
        end: Instant,
        events: Arc<Mutex<Vec<Event>>>,
        stop: tokio::sync::watch::Receiver<bool>,
        recorder: Arc<Recorder>,
    ) -> Option<PrimaryWatch> {
        let step = |what, at, args| Step {
            what,
            at,
            subject: self.replica.clone(),
            args,
        };
        let mut steps = Vec::new();
        match &self.kind {
            FaultKind::Kill => {
                steps.push(step(
                    FaultStep::Kill,
                    self.kill_at,
                    vec![self.replica.clone()],
                ));
                if let Some(at) = self.restart_at {
                    steps.push(step(FaultStep::Restart, at, vec![self.replica.clone()]));
                }
            }
            FaultKind::Partition { from } => {
                let mut args = vec![self.replica.clone()];
                for r in from {
                    args.extend(["--from".to_owned(), r.clone()]);
                }
                steps.push(step(FaultStep::Partition, self.kill_at, args));
                if let Some(at) = self.restart_at {
                    steps.push(step(FaultStep::Heal, at, Vec::new()));
                }
            }
        }
        if !watches_primaries(&self.replica) {
            run_steps(
                steps,
                &lab,
                start,
                events,
                stop,
                Sessions::Kill(recorder.kill()),
                None,
            )
            .await;
            return None;
        }
        let (before_tx, before_rx) = oneshot::channel();
        let watch = async {
            // No answer: the kill did not happen.
            let before = before_rx.await.ok()?;
            let new_primary = match &before {
                Some(before) => watch_primaries(&lab, before, start, end, stop.clone()).await,
                None => None,
            };
            Some(PrimaryWatch {
                before,
                new_primary,
            })
        };
        let partition = matches!(self.kind, FaultKind::Partition { .. });
        let steps = run_steps(
            steps,
            &lab,
            start,
            Arc::clone(&events),
            stop.clone(),
            Sessions::Kill(recorder.kill()),
            Some(before_tx),
        );
        let watched = tokio::join!(steps, watch).1;
        if partition {
            heal_left_cut(&lab, start, &events).await;
        }
        watched
    }
}

/// A cut the run made and did not heal (no `--heal`, or one not carried out) would outlive the
/// run, a split brain nobody sees: it is healed now, and the heal recorded with why.
async fn heal_left_cut(lab: &Lab, start: Instant, events: &Arc<Mutex<Vec<Event>>>) {
    let left = {
        let events = events.lock().unwrap_or_else(|e| e.into_inner());
        let cut = events
            .iter()
            .any(|e| e.what == FaultStep::Partition && e.ok);
        let healed = events.iter().any(|e| e.what == FaultStep::Heal && e.ok);
        cut && !healed
    };
    if !left {
        return;
    }
    let begun = Instant::now();
    let Called { ok, detail, .. } = lab.call(&[FaultStep::Heal.lab_verb()]).await;
    let event = Event {
        at_s: begun.saturating_duration_since(start).as_secs_f64(),
        what: FaultStep::Heal,
        replica: String::new(),
        took_s: begun.elapsed().as_secs_f64(),
        ok,
        detail: format!("{HEALED_AT_END}: {detail}"),
        killed: None,
        cut_off: None,
    };
    events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
}

/// What a heal the run added at its end says in its event's `detail`.
pub const HEALED_AT_END: &str = "healed at the run's end, so the cut does not outlive it";

/// Parses `@SECONDS` or `SECONDS` (fractions allowed).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let t = text.strip_prefix('@').unwrap_or(text);
    let secs: f64 = t
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("'{text}' is outside 0..=86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_read_from_the_labs_own_directory() {
        let dir = statelab_test_support::TempDir::new("lab-token");
        let lab = Lab::parse("scripts/lab")
            .expect("a command")
            .with_env("STATELAB_LAB_DIR", &dir.path().to_string_lossy());
        assert_eq!(lab.dir().as_deref(), Some(dir.path()));
        assert!(lab.admin_token().is_none(), "no token recorded yet");
        std::fs::write(dir.join("admin-token"), "s3cret\n").expect("write the token");
        assert_eq!(
            lab.admin_token().map(|t| t.as_str().to_owned()),
            Some("s3cret".into())
        );
        std::fs::write(dir.join("admin-token"), "\n").expect("write an empty token");
        assert!(lab.admin_token().is_none(), "an empty file is no token");
    }

    #[test]
    fn kill_specs_parse_or_say_why_not() {
        let f = Fault::parse("stateful-2@7.5").expect("valid test input");
        assert_eq!(f.replica, "stateful-2");
        assert_eq!(f.kill_at, Duration::from_millis(7500));
        assert!(Fault::parse("stateful-2")
            .expect_err("an invalid input")
            .contains("REPLICA@SECONDS"));
        assert!(Fault::parse("@3").is_err());
        assert!(Fault::parse("a;b@3").is_err());
        assert!(Fault::parse("x@-1").is_err());
        assert_eq!(
            parse_seconds("@12").expect("valid test input"),
            Duration::from_secs(12)
        );
    }

    #[test]
    fn scale_specs_parse_or_say_why_not() {
        let s = ScaleStep::parse("stateless=4@7.5").expect("valid test input");
        assert_eq!(
            s,
            ScaleStep {
                pool: Design::Stateless,
                replicas: 4,
                at: Duration::from_millis(7500),
                removal: Shrink::Default,
            }
        );
        let now = ScaleStep::parse("stateful=3@12:now").expect("valid test input");
        assert_eq!(now.removal, Shrink::Now);
        assert_eq!(now.step().args, ["stateful", "3", "--now"]);
        let drain = ScaleStep::parse("stateful=3@12:drain=15").expect("valid test input");
        assert_eq!(drain.removal, Shrink::Drain(15));
        assert_eq!(drain.step().args, ["stateful", "3", "--drain", "15"]);
        assert_eq!(drain.step().subject, "stateful=3 drain=15");
        for bad in [
            "stateful=3@12:later",
            "stateful=3@12:drain=",
            "stateful=3@12:drain=601",
            "stateless@4",
            "stateless=4",
            "=4@1",
            "stateless=0@1",
            "stateless=10@1",
            "Pool=2@1",
            "stateless=4@x",
        ] {
            assert!(ScaleStep::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_of_one_design_only() {
        let memory = Memory {
            replicas: [
                ("stateful-1", 1000),
                ("stateful-2", 2000),
                ("stateless-1", 5),
                ("statefulx-1", 9),
                ("stateful-", 3),
                ("redis", 7),
            ]
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect(),
        };
        let m = of_design(memory, Design::Stateful);
        assert_eq!(m.len(), 2);
        assert_eq!(m["stateful-2"], 2000);
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_new_primary_is_one_that_was_not_primary_before_the_kill() {
        let sentinel = set(&["redis-1"]);
        // Still the old primary (not yet noticed), or no primary at all: keep polling.
        assert_eq!(new_primary(&sentinel, &set(&["redis-1"])), None);
        assert_eq!(new_primary(&sentinel, &set(&[])), None);
        assert_eq!(new_primary(&sentinel, &set(&["redis-3"])), Some("redis-3"));
        // Cluster: the surviving primaries are no news; the promoted replica is.
        let cluster = set(&["redis-cluster-1", "redis-cluster-2", "redis-cluster-3"]);
        let mid = set(&["redis-cluster-2", "redis-cluster-3"]);
        assert_eq!(new_primary(&cluster, &mid), None);
        let after = set(&["redis-cluster-2", "redis-cluster-3", "redis-cluster-4"]);
        assert_eq!(new_primary(&cluster, &after), Some("redis-cluster-4"));
        // The killed node back as primary (restarted before a failover) is not new either.
        assert_eq!(new_primary(&cluster, &cluster), None);
        assert!(watches_primaries("redis-primary") && watches_primaries("redis-2"));
        assert!(!watches_primaries("stateful-2") && !watches_primaries("externalized-1"));
    }

    /// A lab that logs each call and answers `primaries` from the numbered files `answer-N`
    /// (N: how many times it was asked; a missing file fails, as the lab does when it cannot
    /// tell), and `kill` as the native lab does.
    fn fake_lab(dir: &statelab_test_support::TempDir, answers: &[Option<&str>]) -> Lab {
        for (n, answer) in answers.iter().enumerate() {
            if let Some(text) = answer {
                let primaries = Primaries {
                    primaries: text.split_whitespace().map(str::to_owned).collect(),
                };
                let json = serde_json::to_string(&primaries).expect("serialise");
                std::fs::write(dir.join(format!("answer-{}", n + 1)), json).expect("write");
            }
        }
        let script = r#"d=$(dirname "$0"); [ "$1" = --json ] || exit 2; shift; echo "$*" >> "$d/calls"
case "$1" in
  primaries) echo >> "$d/asked"; n=$(wc -l < "$d/asked")
    [ -e "$d/answer-$n" ] || exit 1; cat "$d/answer-$n" ;;
  kill) echo "lab: stopping" >&2; echo "lab: killed redis-1 (pid 4242, SIGKILL)" >&2
    echo '{"killed":"redis-1","pid":4242}' ;;
esac"#;
        std::fs::write(dir.join("lab"), script).expect("write");
        Lab::parse(&format!("sh {}", dir.join("lab").display())).expect("valid test input")
    }

    fn calls(dir: &statelab_test_support::TempDir) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn kill_now(lab: Lab, replica: &str, end: Duration) -> (Option<PrimaryWatch>, Event) {
        let fault = Fault::parse(&format!("{replica}@0")).expect("valid test input");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let start = Instant::now();
        let recorder = Arc::new(Recorder::new(start, end));
        let watch = fault
            .run(
                lab,
                start,
                start + end,
                events.clone(),
                stopped,
                recorder.clone(),
            )
            .await;
        let event = events.lock().expect("not poisoned")[0].clone();
        // A kill that was carried out is marked for the sessions.
        assert_eq!(recorder.kill().on_killed().is_some(), event.ok);
        (watch, event)
    }

    #[tokio::test]
    async fn a_redis_kill_is_watched_until_a_new_primary_appears() {
        let dir = statelab_test_support::TempDir::new("fault-watch");
        let before = "redis-cluster-1\nredis-cluster-2\nredis-cluster-3\n";
        let lab = fake_lab(
            &dir,
            &[
                Some(before),
                None,
                Some("redis-cluster-2\nredis-cluster-3\n"),
                Some("redis-cluster-2\nredis-cluster-3\nredis-cluster-5\n"),
            ],
        );
        let (watch, event) = kill_now(lab, "redis-primary", Duration::from_secs(30)).await;
        let watch = watch.expect("a Redis kill is watched");
        assert_eq!(
            watch.before,
            Some(set(&before.split_whitespace().collect::<Vec<_>>()))
        );
        let new = watch.new_primary.expect("a new primary");
        assert_eq!(new.name, "redis-cluster-5");
        assert!(new.at_s >= event.at_s, "{new:?} {event:?}");
        assert!(event.ok, "{event:?}");
        assert_eq!(event.killed.as_deref(), Some("redis-1"));
        assert_eq!(event.detail, "lab: killed redis-1 (pid 4242, SIGKILL)");
        // Asked once before the kill, then polled until the answer named a new primary.
        assert_eq!(
            calls(&dir),
            [
                "primaries",
                "kill redis-primary",
                "primaries",
                "primaries",
                "primaries"
            ]
        );
    }

    #[tokio::test]
    async fn the_watch_ends_with_the_run_and_other_kills_are_not_watched() {
        let dir = statelab_test_support::TempDir::new("fault-watch-end");
        let same = Some("redis-1\n");
        let lab = fake_lab(&dir, &[same, same, same, same, same, same, same, same]);
        let (watch, _) = kill_now(lab, "redis-primary", Duration::from_millis(600)).await;
        let watch = watch.expect("a Redis kill is watched");
        assert_eq!(watch.before, Some(set(&["redis-1"])));
        assert_eq!(watch.new_primary, None);

        // No list before the kill (the lab could not tell): nothing to compare with, no polls.
        let dir = statelab_test_support::TempDir::new("fault-watch-none");
        let lab = fake_lab(&dir, &[]);
        let (watch, _) = kill_now(lab, "redis-2", Duration::from_secs(30)).await;
        assert_eq!(watch, Some(PrimaryWatch::default()));
        assert_eq!(calls(&dir), ["primaries", "kill redis-2"]);

        let dir = statelab_test_support::TempDir::new("fault-watch-other");
        let lab = fake_lab(&dir, &[same]);
        let (watch, event) = kill_now(lab, "stateful-2", Duration::from_secs(30)).await;
        assert!(watch.is_none() && event.ok);
        assert_eq!(calls(&dir), ["kill stateful-2"]);
    }

    #[test]
    fn steps_keep_their_json_names_and_lab_verbs() {
        for (step, name, verb) in [
            (FaultStep::Kill, "kill", "kill"),
            (FaultStep::Restart, "restart", "start"),
            (FaultStep::Scale, "scale", "scale"),
        ] {
            let json = serde_json::to_string(&step).expect("serialise");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(step.as_str(), name);
            assert_eq!(step.lab_verb(), verb);
        }
    }
}

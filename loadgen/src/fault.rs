//! The scheduled fault and scale steps, carried out through the lab's own handle (`scripts/lab
//! kill NAME`, `scripts/lab start NAME`, `scripts/lab scale POOL N`), so a run kills a replica or
//! resizes a pool exactly as a user would — natively or in containers, whichever mode the lab is
//! in; and the record of each step ([`Event`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::stats::{Epochs, Recorder};

/// How long a lab command may take before the run gives up on it.
const LAB_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The lab's command-line handle: a program and the words before the subcommand.
#[derive(Debug, Clone)]
pub struct Lab {
    pub program: String,
    pub args: Vec<String>,
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
        })
    }

    /// Runs `LAB WORDS...` to its end, within [`LAB_COMMAND_TIMEOUT`].
    async fn output(&self, words: &[&str]) -> Result<std::process::Output, String> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).args(words).kill_on_drop(true);
        match tokio::time::timeout(LAB_COMMAND_TIMEOUT, cmd.output()).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(format!("cannot run {}: {e}", self.program)),
            Err(_) => Err(format!(
                "no answer within {} s",
                LAB_COMMAND_TIMEOUT.as_secs()
            )),
        }
    }

    /// Runs `LAB WORDS...`; returns whether it succeeded and its last output line.
    async fn call(&self, words: &[&str]) -> (bool, String) {
        let output = match self.output(words).await {
            Ok(output) => output,
            Err(why) => return (false, why),
        };
        let text = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned();
        (output.status.success(), last)
    }

    /// Resident memory of each running replica of `service`, from `LAB mem` (`NAME BYTES` lines).
    /// Empty when the lab cannot say.
    pub async fn memory(&self, service: &str) -> BTreeMap<String, u64> {
        match self.output(&["mem"]).await {
            Ok(output) if output.status.success() => {
                parse_memory(&String::from_utf8_lossy(&output.stdout), service)
            }
            _ => BTreeMap::new(),
        }
    }
}

/// Keeps the `NAME BYTES` lines of `service`'s replicas (`service-N`).
pub fn parse_memory(text: &str, service: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let bytes = words.next()?.parse().ok()?;
            let n = name.strip_prefix(service)?.strip_prefix('-')?;
            n.parse::<u32>().ok()?;
            Some((name.to_owned(), bytes))
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
}

impl FaultStep {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultStep::Kill => "kill",
            FaultStep::Restart => "restart",
            FaultStep::Scale => "scale",
        }
    }

    /// The lab's word for the step: a restart is `LAB start`, the same verb a user types.
    fn lab_verb(self) -> &'static str {
        match self {
            FaultStep::Kill => "kill",
            FaultStep::Restart => "start",
            FaultStep::Scale => "scale",
        }
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
pub enum Removal {
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
    pub pool: String,
    pub replicas: u8,
    pub at: Duration,
    pub removal: Removal,
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
            None => (rest, Removal::Default),
            Some((at, "now")) => (at, Removal::Now),
            Some((at, option)) => {
                let secs = option
                    .strip_prefix("drain=")
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|s| *s <= 600)
                    .ok_or_else(|| {
                        format!(
                            "--scale '{spec}': after ':' comes 'now' or 'drain=S' (S in 0..=600)"
                        )
                    })?;
                (at, Removal::Drain(secs))
            }
        };
        if pool.is_empty() || !pool.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!("--scale '{spec}': '{pool}' is not a pool name"));
        }
        let replicas: u8 = n
            .parse()
            .ok()
            .filter(|n| (1..=9).contains(n))
            .ok_or_else(|| format!("--scale '{spec}': a pool has 1 to 9 replicas in the lab"))?;
        Ok(ScaleStep {
            pool: pool.to_owned(),
            replicas,
            at: parse_seconds(at).map_err(|e| format!("--scale '{spec}': {e}"))?,
            removal,
        })
    }

    fn step(&self) -> Step {
        let mut args = vec![self.pool.clone(), self.replicas.to_string()];
        let mut subject = format!("{}={}", self.pool, self.replicas);
        match self.removal {
            Removal::Default => {}
            Removal::Drain(s) => {
                args.extend(["--drain".to_owned(), s.to_string()]);
                subject.push_str(&format!(" drain={s}"));
            }
            Removal::Now => {
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

/// Sleeps until each step is due and runs it through the lab, recording what happened. Once
/// `stop` turns true no further step starts; each one not carried out is recorded as a failed
/// event, so a report never silently lacks a planned step.
///
/// With `epochs`, each step that runs begins a new scale epoch and ends it when its command
/// returns, so the sessions can tell what the step moved.
async fn run_steps(
    steps: Vec<Step>,
    lab: Lab,
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    epochs: Option<&Epochs>,
) {
    for step in steps {
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
            }
        } else {
            let begun = Instant::now();
            let epoch = epochs.map(Epochs::begin);
            let mut words = vec![step.what.lab_verb()];
            words.extend(step.args.iter().map(String::as_str));
            let (ok, detail) = lab.call(&words).await;
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
    run_steps(steps, lab, start, events, stop, Some(recorder.epochs())).await;
}

impl fmt::Display for FaultStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Readers of a report compare the step with its JSON name (`e.what == "restart"`, as the lab
/// tests do); this keeps that working now that the field is typed.
impl PartialEq<&str> for FaultStep {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
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
    /// The lab command's last output line (why it failed, if it did).
    pub detail: String,
}

/// Kill `replica` at `kill_at` after the start; start it again at `restart_at` if given.
#[derive(Debug, Clone)]
pub struct Fault {
    pub replica: String,
    pub kill_at: Duration,
    pub restart_at: Option<Duration>,
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
        })
    }

    /// Kills, then restarts if asked, each when due (see [`run_steps`]).
    pub async fn run(
        self,
        lab: Lab,
        start: Instant,
        events: Arc<Mutex<Vec<Event>>>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let step = |what, at| Step {
            what,
            at,
            subject: self.replica.clone(),
            args: vec![self.replica.clone()],
        };
        let mut steps = vec![step(FaultStep::Kill, self.kill_at)];
        if let Some(at) = self.restart_at {
            steps.push(step(FaultStep::Restart, at));
        }
        run_steps(steps, lab, start, events, stop, None).await;
    }
}

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
                pool: "stateless".into(),
                replicas: 4,
                at: Duration::from_millis(7500),
                removal: Removal::Default,
            }
        );
        let now = ScaleStep::parse("stateful=3@12:now").expect("valid test input");
        assert_eq!(now.removal, Removal::Now);
        assert_eq!(now.step().args, ["stateful", "3", "--now"]);
        let drain = ScaleStep::parse("stateful=3@12:drain=15").expect("valid test input");
        assert_eq!(drain.removal, Removal::Drain(15));
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
    fn memory_lines_of_one_service_only() {
        let text = "stateful-1 1000\nstateful-2 2000\nstateless-1 5\nstatefulx-1 9\nbad\nredis 7\n";
        let m = parse_memory(text, "stateful");
        assert_eq!(m.len(), 2);
        assert_eq!(m["stateful-2"], 2000);
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
            assert!(step == name);
            assert_eq!(step.lab_verb(), verb);
        }
    }
}

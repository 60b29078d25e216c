//! What a run is asked to do ([`RunConfig`]), and the names it records: the workload model, the
//! workflow and how the requests were routed ([`ModelKind`], [`WorkflowKind`], [`Routing`]).
//!
//! The same enums are the command line's choices and the values `run.json` holds, so the two
//! cannot drift apart; their serde names are the JSON format other tools read (docs/load.md).

use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use statelab_proxy_api::Strategy;

use crate::client::Target;
use crate::fault::{Fault, Lab};
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
}

impl WorkflowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Shop => "shop",
            WorkflowKind::Raw => "raw",
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

/// The name as text, so code that reads the strategy as a string (`report.strategy.as_deref()`,
/// as the lab tests do) keeps working now that the field is typed.
impl Deref for Routing {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// The text names neither a proxy strategy nor `direct`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy {0:?}: expected cookie, ip-hash, round-robin or direct")]
pub struct UnknownRouting(pub String);

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
}

impl Work {
    pub fn kind(&self) -> WorkflowKind {
        match self {
            Work::Shop(_) => WorkflowKind::Shop,
            Work::Raw { .. } => WorkflowKind::Raw,
        }
    }
}

/// A run, fully specified: what [`crate::run::run`] carries out and
/// [`crate::report::RunReport::build`] describes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub service: String,
    pub strategy: Option<Routing>,
    pub label: String,
    pub target_url: String,
    pub target: Target,
    pub model: Model,
    pub work: Work,
    pub duration: Duration,
    pub timeout: Duration,
    pub sources: Vec<IpAddr>,
    pub fault: Option<Fault>,
    pub lab: Lab,
    pub sample_memory: bool,
    pub progress: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(&*routing, text);
        }
        let err = "sticky".parse::<Routing>().expect_err("not a strategy");
        assert!(err.to_string().contains("round-robin or direct"), "{err}");
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
}

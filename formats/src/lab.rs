//! The lab's layout and limits, shared by the lab supervisor that applies them, the proxy's
//! default configuration and the load generator that checks its flags against them; and the
//! machine-readable answers of the lab's verbs (`scripts/lab VERB --json`), which the load
//! generator reads instead of the sentences the lab prints for people.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{Design, StatusView};

/// The lab's object store's part name (`scripts/lab kill s3`).
pub const OBJECTS_NAME: &str = "s3";

/// Replicas per pool when the lab comes up.
pub const REPLICAS_PER_POOL: u8 = 3;

/// The most replicas a pool can be scaled to in the lab: the fixed native ports (`stateful-k` on
/// 18000+k, `stateless-k` on 18010+k) and the container addresses (`.1k`, `.2k`, `.3k`) leave
/// room for k = 1..9. (The proxy itself takes up to [`crate::config::MAX_REPLICAS_PER_POOL`].)
pub const MAX_REPLICAS_PER_POOL: u8 = 9;

/// Tens digit of a design's fixed ports (18001.., 18011.., 18021..) and container addresses
/// (.11.., .21.., .31..).
pub fn slot(design: Design) -> u16 {
    match design {
        Design::Stateful => 0,
        Design::Stateless => 1,
        Design::Externalized => 2,
    }
}

/// The fixed native port of replica `index` (from 1): stateful-k 18000+k, stateless-k 18010+k,
/// externalized-k 18020+k.
pub fn fixed_port(design: Design, index: u8) -> u16 {
    18000 + 10 * slot(design) + u16::from(index)
}

/// The last octet of replica `index`'s container address: stateful-k .1k, stateless-k .2k,
/// externalized-k .3k.
pub fn container_octet(design: Design, index: u8) -> u16 {
    10 * (slot(design) + 1) + u16::from(index)
}

/// `scripts/lab kill --json NAME`: the part killed, with the name an alias (`redis-primary`)
/// resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Killed {
    pub killed: String,
    /// The process killed (native lab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The container killed (Docker lab), its short id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// `scripts/lab start --json NAME`: the part started, healthy and, for a replica, routed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The primary a Redis data node came back as a replica of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
}

/// `scripts/lab primaries --json`: the Redis nodes that are primary now (empty during a failover,
/// when the command also exits 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Primaries {
    pub primaries: Vec<String>,
}

/// `scripts/lab partition --json NODE`: the Redis node cut off (an alias such as `redis-primary`
/// resolved), and the parts it no longer reaches nor is reached by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioned {
    pub node: String,
    pub cut_off: Vec<String>,
}

/// `scripts/lab heal --json`: the nodes whose cut was removed (none when there was no partition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healed {
    pub healed: Vec<String>,
}

/// `scripts/lab mem --json`: each running replica's resident memory in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub replicas: BTreeMap<String, u64>,
}

/// `scripts/lab ports --json`: the ports `up` chose, by name (`proxy`, `admin`, and natively the
/// replicas and Redis nodes), and where the host reaches each part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// Ports on the host's loopback.
    pub ports: BTreeMap<String, u16>,
    /// Each part's address as the host reaches it: natively `127.0.0.1:PORT`; in Docker the
    /// published `proxy` and `admin` on loopback, and the replicas, the Redis nodes and `s3` at
    /// their addresses in the lab network.
    #[serde(default)]
    pub addresses: BTreeMap<String, SocketAddr>,
}

/// `scripts/lab scale --json POOL N`: the pool's replicas once the scale is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaled {
    pub pool: Design,
    pub replicas: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// `scripts/lab status --json`: each part of the lab, and the proxy's own view of its pools. The
/// command exits 1 when a part is down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabStatus {
    /// `native` or `docker`.
    pub mode: String,
    pub parts: Vec<PartStatus>,
    /// The proxy's admin port on the host.
    pub admin_port: u16,
    /// The proxy's `GET /admin/status`; `None` when its admin API does not answer.
    pub proxy: Option<StatusView>,
}

impl LabStatus {
    /// Every part runs.
    pub fn all_up(&self) -> bool {
        self.parts.iter().all(|p| p.up)
    }

    pub fn part(&self, name: &str) -> Option<&PartStatus> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// One part of the lab in [`LabStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartStatus {
    pub name: String,
    /// Its process or container runs.
    pub up: bool,
    /// Why a part is down where the platform says (Docker: the container's state, `exited`,
    /// `missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// Its own health check: `healthy`, `unhealthy` or `starting`; `None` when it is down or has
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// A Redis node's role (`primary`, `replica`, `sentinel`); `None` for other parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Its CPU budget in cores, as the platform enforces it (a cgroup's quota, a container's
    /// `cpus`); `None` when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_budget: Option<f64>,
}

/// The smallest CPU budget a part may get: a hundredth of a core.
pub const MIN_CPU: f64 = 0.01;
/// The CPU quota's period for a budget of 0.1 core or more, in microseconds. A part that spends
/// its quota waits for the next period, so throttling adds at most one period (minus the quota)
/// to a request's latency: 10 ms keeps that below a typical SLO.
pub const CPU_PERIOD_US: u64 = 10_000;
/// The kernel's least quota: 1 ms a period.
pub const MIN_QUOTA_US: u64 = 1_000;

/// The period for a budget of `cores`: [`CPU_PERIOD_US`], or longer where the quota would fall
/// under [`MIN_QUOTA_US`] (0.02 core: 50 ms, during which a throttled part waits up to 49 ms).
pub fn cpu_period_us(cores: f64) -> u64 {
    let needed = (MIN_QUOTA_US as f64 / cores.max(MIN_CPU)).ceil() as u64;
    needed.max(CPU_PERIOD_US)
}

/// The quota, in microseconds a period, for `cores` of a core.
pub fn cpu_quota_us(cores: f64) -> u64 {
    (cores * cpu_period_us(cores) as f64).round() as u64
}

/// The largest `--work-us` a service takes: one second of CPU per request.
pub const MAX_WORK_US: u32 = 1_000_000;

/// The most one request's work may cost under [`WorkDist::Exp`], in multiples of `--work-us`.
pub const MAX_WORK_DRAW: f64 = 20.0;

/// How each request's work varies around `--work-us` (`--work-dist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkDist {
    /// Every request costs `--work-us`.
    #[default]
    Fixed,
    /// Each request's cost is drawn from an exponential distribution of mean `--work-us`
    /// (capped at [`MAX_WORK_DRAW`] times it): most requests cheap, a few long, the mean the same.
    Exp,
}

impl WorkDist {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkDist::Fixed => "fixed",
            WorkDist::Exp => "exp",
        }
    }
}

impl std::fmt::Display for WorkDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "fixed" => Ok(WorkDist::Fixed),
            "exp" => Ok(WorkDist::Exp),
            other => Err(format!(
                "unknown work distribution {other:?}: expected fixed or exp"
            )),
        }
    }
}

/// The size `up` gave the lab's parts (`--replica-cpu`, `--store-cpu`, `--work-us`); every later
/// command reads it, so that `scale` and `start` size a new part the same way.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Sizing {
    /// Each replica's CPU budget, in cores; `None`: unbounded.
    pub replica_cpu: Option<f64>,
    /// Each Redis node's CPU budget (Sentinels included), in cores; `None`: unbounded.
    pub store_cpu: Option<f64>,
    /// The CPU work each replica does per API request, in microseconds (`--work-us`).
    pub work_us: u32,
    /// How that work varies from request to request (`--work-dist`).
    #[serde(default)]
    pub work_dist: WorkDist,
}

impl Sizing {
    /// Whether any part gets a budget.
    pub fn bounded(&self) -> bool {
        self.replica_cpu.is_some() || self.store_cpu.is_some()
    }
}

/// `scripts/lab cpu --json`: the CPU time every running part has used so far, and the host's.
/// Two readings apart give each part's use over the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuTimes {
    pub parts: Vec<PartCpu>,
    /// Cores the host has (what an unbudgeted part competes for).
    pub host_cores: u32,
    /// CPU time the whole host has spent busy so far (`/proc/stat`: all but idle and iowait),
    /// in seconds.
    pub host_busy_seconds: f64,
}

/// One part in [`CpuTimes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartCpu {
    pub name: String,
    /// User and system CPU time of its process so far, in seconds.
    pub seconds: f64,
    /// Its CPU budget in cores, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
}

/// `scripts/lab strategy --json`: every pool's routing, from the proxy's admin status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routings {
    pub pools: Vec<RoutingView>,
}

/// One pool's routing as `scripts/lab strategy` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingView {
    pub name: String,
    pub strategy: crate::Strategy,
    /// Bounded loads' factor (`null` when off); it applies to `ip-hash` and `cookie` only.
    pub balance_factor: Option<crate::BalanceFactor>,
    /// Requests the balance factor sent past their first choice since the proxy started.
    pub bounded_moves: u64,
}

impl From<&crate::StatusView> for Routings {
    fn from(status: &crate::StatusView) -> Routings {
        Routings {
            pools: status.pools.iter().map(RoutingView::from).collect(),
        }
    }
}

impl From<&crate::PoolView> for RoutingView {
    fn from(p: &crate::PoolView) -> RoutingView {
        RoutingView {
            name: p.name.clone(),
            strategy: p.strategy,
            balance_factor: p.balance_factor,
            bounded_moves: p.bounded_moves,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_a_quota_of_at_least_a_millisecond() {
        assert_eq!((cpu_period_us(0.2), cpu_quota_us(0.2)), (10_000, 2000));
        assert_eq!((cpu_period_us(0.1), cpu_quota_us(0.1)), (10_000, 1000));
        assert_eq!((cpu_period_us(1.5), cpu_quota_us(1.5)), (10_000, 15_000));
        assert_eq!((cpu_period_us(0.02), cpu_quota_us(0.02)), (50_000, 1000));
        assert_eq!((cpu_period_us(0.03), cpu_quota_us(0.03)), (33_334, 1000));
        assert_eq!(cpu_period_us(0.01), 100_000);
    }

    #[test]
    fn the_layout_leaves_room_for_every_replica() {
        let mut ports = std::collections::BTreeSet::new();
        for d in Design::ALL {
            for k in 1..=MAX_REPLICAS_PER_POOL {
                assert!(ports.insert(fixed_port(d, k)), "{d}-{k}");
                assert!(container_octet(d, k) < 250, "{d}-{k}");
            }
        }
        assert_eq!(fixed_port(Design::Stateless, 1), 18011);
        assert_eq!(container_octet(Design::Externalized, 2), 32);
    }

    #[test]
    fn answers_leave_out_what_a_mode_has_not() {
        let killed = Killed {
            killed: "redis-2".into(),
            pid: Some(42),
            container: None,
        };
        let json = serde_json::to_string(&killed).expect("serialise");
        assert_eq!(json, r#"{"killed":"redis-2","pid":42}"#);
        assert_eq!(
            serde_json::from_str::<Killed>(&json).expect("parse"),
            killed
        );
    }
}

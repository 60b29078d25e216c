//! The lab's parts and layout as types: the one place that says which parts exist, what they are
//! called, where they listen and how the proxy routes to them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use statelab_formats::lab::{MAX_REPLICAS_PER_POOL, OBJECTS_NAME, REPLICAS_PER_POOL};
pub use statelab_formats::Design;
use statelab_formats::{lab, ConfigFile, HealthSection, PoolSection, RetrySection, ServerSection};

/// The port every replica listens on inside its container.
pub const CONTAINER_SERVICE_PORT: u16 = 8000;
/// The proxy's listeners inside its container (published on the host's loopback).
pub const CONTAINER_PROXY_PORT: u16 = 8080;
pub const CONTAINER_ADMIN_PORT: u16 = 8081;
/// The admin API's readiness path: no token, no data; the proxy's compose healthcheck.
pub const ADMIN_READY_PATH: &str = "/admin/ready";

/// The compose network's default first three octets (`STATELAB_SUBNET` moves it).
pub const DEFAULT_NET_PREFIX: &str = "10.231.7";
/// Redis's memory bound, for the native and the container lab alike. With `noeviction`, a full
/// Redis refuses new sessions (the services answer 503 `store_full`) and keeps every session it
/// holds; an evicting policy (`allkeys-lru`, `volatile-lru`) would make room by silently deleting
/// live sessions, logging their users out with no error anywhere. 256 MB holds about 1.3 million
/// sessions with an empty cart (docs/limits.md).
pub const REDIS_MEMORY_FLAGS: [&str; 4] =
    ["--maxmemory", "256mb", "--maxmemory-policy", "noeviction"];

/// The Redis the externalized pool uses, chosen at `up` (`--redis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Store {
    /// One Redis, `redis`: the single point of failure, restarted only by the user.
    #[default]
    Single,
    /// `redis-1` (primary at start), `redis-2` and `redis-3` (replicas), and `sentinel-1..3`,
    /// which promote a replica when the primary fails.
    Sentinel,
    /// A Redis Cluster of `redis-cluster-1..6`: three primaries, each with one replica, the
    /// sessions sharded over them by key.
    Cluster,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Single => "single",
            Store::Sentinel => "sentinel",
            Store::Cluster => "cluster",
        }
    }

    /// The Redis processes of this topology, in start order: data nodes, then Sentinels.
    pub fn nodes(self) -> Vec<StoreNode> {
        match self {
            Store::Single => vec![StoreNode::Redis],
            Store::Sentinel => (1..=SENTINEL_NODES)
                .map(StoreNode::Data)
                .chain((1..=SENTINEL_NODES).map(StoreNode::Sentinel))
                .collect(),
            Store::Cluster => (1..=CLUSTER_NODES).map(StoreNode::Cluster).collect(),
        }
    }
}

impl FromStr for Store {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(Store::Single),
            "sentinel" => Ok(Store::Sentinel),
            "cluster" => Ok(Store::Cluster),
            _ => Err(format!(
                "unknown Redis topology '{s}' (single, sentinel or cluster)"
            )),
        }
    }
}

/// Data nodes and Sentinels of the Sentinel topology: three of each, so that a quorum of two
/// Sentinels survives the loss of one, and a replica remains after a failover.
pub const SENTINEL_NODES: u8 = 3;
/// The name the Sentinels monitor the primary under (the services' `--redis-master-name`).
pub const SENTINEL_MASTER_NAME: &str = "statelab";
/// Sentinels that must agree the primary is down before a failover.
pub const SENTINEL_QUORUM: u8 = 2;
/// How long the primary must be silent before a Sentinel calls it down. Production's default is
/// 30 s; a lab wants a failover it can watch within a run.
pub const SENTINEL_DOWN_AFTER_MS: u64 = 1000;
/// Sentinel's `failover-timeout`, which paces retries of a failover that stalled and the
/// reconfiguration of the replicas. Production's default is 3 minutes.
pub const SENTINEL_FAILOVER_TIMEOUT_MS: u64 = 5000;
/// Nodes of the Cluster topology: three primaries and a replica for each, as
/// `redis-cli --cluster create --cluster-replicas 1` pairs them.
pub const CLUSTER_NODES: u8 = 6;
/// How long a cluster node must be unreachable before the others fail it over. Production's
/// default is 15 s.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 2000;

/// The Sentinel topology's data nodes copy the primary at once: Redis 7 otherwise waits 5 s
/// (`repl-diskless-sync-delay`) to batch replicas, a window in which a failover would find no
/// copy at all.
pub const REPLICATION_FLAGS: [&str; 2] = ["--repl-diskless-sync-delay", "0"];
/// The port Redis and Sentinel listen on inside their containers.
pub const CONTAINER_REDIS_PORT: u16 = 6379;
pub const CONTAINER_SENTINEL_PORT: u16 = 26379;

/// One Redis process of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreNode {
    /// The single Redis, `redis`.
    Redis,
    /// `redis-k`: a data node of the Sentinel topology.
    Data(u8),
    /// `sentinel-k`.
    Sentinel(u8),
    /// `redis-cluster-k`: a node of the Cluster topology.
    Cluster(u8),
}

impl StoreNode {
    /// The last octet of the node's container address: `redis` .5, `redis-k` .5+k,
    /// `sentinel-k` .40+k, `redis-cluster-k` .50+k.
    pub fn container_octet(self) -> u16 {
        match self {
            StoreNode::Redis => 5,
            StoreNode::Data(k) => 5 + u16::from(k),
            StoreNode::Sentinel(k) => 40 + u16::from(k),
            StoreNode::Cluster(k) => 50 + u16::from(k),
        }
    }

    pub fn is_sentinel(self) -> bool {
        matches!(self, StoreNode::Sentinel(_))
    }

    /// The port the node listens on inside its container.
    pub fn container_port(self) -> u16 {
        if self.is_sentinel() {
            CONTAINER_SENTINEL_PORT
        } else {
            CONTAINER_REDIS_PORT
        }
    }
}

impl fmt::Display for StoreNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreNode::Redis => f.write_str("redis"),
            StoreNode::Data(k) => write!(f, "redis-{k}"),
            StoreNode::Sentinel(k) => write!(f, "sentinel-{k}"),
            StoreNode::Cluster(k) => write!(f, "redis-cluster-{k}"),
        }
    }
}

/// One replica: `<pool>-<k>`, k from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Replica {
    pub design: Design,
    pub index: u8,
}

impl Replica {
    /// The replicas the lab comes up with, pool by pool.
    pub fn initial() -> impl Iterator<Item = Replica> {
        Design::ALL
            .into_iter()
            .flat_map(|design| (1..=REPLICAS_PER_POOL).map(move |index| Replica { design, index }))
    }

    /// The fixed native port: stateful-k 18000+k, stateless-k 18010+k, externalized-k 18020+k.
    pub fn fixed_port(self) -> u16 {
        lab::fixed_port(self.design, self.index)
    }

    /// The last octet of the replica's container address: stateful-k .1k, stateless-k .2k,
    /// externalized-k .3k.
    pub fn container_octet(self) -> u16 {
        lab::container_octet(self.design, self.index)
    }
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.design, self.index)
    }
}

/// A part of the lab a user can name: a Redis node, `s3`, a replica, or `proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Store(StoreNode),
    /// `s3`: the object store (`s3s-fs`) where stateless and externalized keep avatars.
    Objects,
    Replica(Replica),
    Proxy,
}

/// The port the object store listens on inside its container.
pub const CONTAINER_S3_PORT: u16 = 9000;
/// The object store's fixed native port.
pub const FIXED_S3_PORT: u16 = 19000;

/// A budget for people: `0.2 core`, or `unbounded`.
pub fn budget_words(cores: Option<f64>) -> String {
    cores.map_or_else(|| "unbounded".into(), |c| format!("{c} core"))
}

impl Part {
    /// The single Redis.
    pub const REDIS: Part = Part::Store(StoreNode::Redis);

    /// The CPU budget `sizing` gives this part, in cores: replicas and Redis nodes (Sentinels
    /// included) may have one, the proxy never.
    pub fn budget(self, sizing: &lab::Sizing) -> Option<f64> {
        match self {
            Part::Replica(_) => sizing.replica_cpu,
            Part::Store(_) => sizing.store_cpu,
            Part::Objects | Part::Proxy => None,
        }
    }

    /// The parts of a lab with this store and these replicas, in start order: the Redis nodes,
    /// the object store, the replicas, the proxy.
    pub fn with(store: Store, replicas: impl IntoIterator<Item = Replica>) -> Vec<Part> {
        store
            .nodes()
            .into_iter()
            .map(Part::Store)
            .chain(std::iter::once(Part::Objects))
            .chain(replicas.into_iter().map(Part::Replica))
            .chain(std::iter::once(Part::Proxy))
            .collect()
    }

    /// The parts the lab comes up with.
    pub fn initial(store: Store) -> Vec<Part> {
        Part::with(store, Replica::initial())
    }

    /// The last octet of the part's container address.
    pub fn container_octet(self) -> u16 {
        match self {
            Part::Store(n) => n.container_octet(),
            Part::Proxy => 2,
            Part::Objects => 4,
            Part::Replica(r) => r.container_octet(),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Store(n) => n.fmt(f),
            Part::Objects => f.write_str(OBJECTS_NAME),
            Part::Proxy => f.write_str("proxy"),
            Part::Replica(r) => r.fmt(f),
        }
    }
}

/// What `kill` and `start` take: a part, or `redis-primary`, whichever Redis node is primary now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Part(Part),
    RedisPrimary,
}

impl Target {
    /// The part this names, `redis-primary` resolved through `primary` (asked only then).
    pub async fn resolve<F>(self, primary: impl FnOnce() -> F) -> anyhow::Result<Part>
    where
        F: std::future::Future<Output = Option<StoreNode>>,
    {
        match self {
            Target::Part(p) => Ok(p),
            Target::RedisPrimary => primary().await.map(Part::Store).ok_or_else(|| {
                anyhow::anyhow!(
                    "no Redis node is known to be primary now; scripts/lab status shows each node's role"
                )
            }),
        }
    }
}

/// What `start` takes up: the part, and for a Sentinel data node the primary it comes back as a
/// replica of (asked of `primary` only then). `redis-primary` is refused: it names a node that is
/// running. So is a data node while no Sentinel names a primary: it would come back as a second.
pub async fn start_plan<F>(
    target: Target,
    primary: impl FnOnce() -> F,
) -> anyhow::Result<(Part, Option<StoreNode>)>
where
    F: std::future::Future<Output = Option<StoreNode>>,
{
    let Target::Part(part) = target else {
        anyhow::bail!(
            "redis-primary names the primary now, which is running; start a node by its name (scripts/lab status lists them)"
        );
    };
    let Part::Store(n @ StoreNode::Data(_)) = part else {
        return Ok((part, None));
    };
    match primary().await {
        Some(p) => Ok((part, Some(p).filter(|p| *p != n))),
        None => anyhow::bail!(
            "no Sentinel names a primary now, so {part} would come back as a second one; start a \
             Sentinel first (scripts/lab status shows each node)"
        ),
    }
}

impl FromStr for Target {
    type Err = UnknownPart;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "redis-primary" {
            return Ok(Target::RedisPrimary);
        }
        s.parse().map(Target::Part)
    }
}

/// The text names no part the lab can have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown part '{0}'; one of: redis, redis-1..3, sentinel-1..3, redis-cluster-1..6, redis-primary, s3, proxy, stateful-K, stateless-K, externalized-K (K 1-{MAX_REPLICAS_PER_POOL})"
)]
pub struct UnknownPart(pub String);

impl FromStr for Part {
    type Err = UnknownPart;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redis" => return Ok(Part::REDIS),
            "proxy" => return Ok(Part::Proxy),
            OBJECTS_NAME => return Ok(Part::Objects),
            _ => {}
        }
        let unknown = || UnknownPart(s.to_string());
        let (kind, index) = s.rsplit_once('-').ok_or_else(unknown)?;
        let node = |k: &str, most: u8| {
            k.parse::<u8>()
                .ok()
                .filter(|k| (1..=most).contains(k) && !index.starts_with('0'))
                .ok_or_else(unknown)
        };
        match kind {
            "redis" => return Ok(Part::Store(StoreNode::Data(node(index, SENTINEL_NODES)?))),
            "sentinel" => {
                return Ok(Part::Store(StoreNode::Sentinel(node(
                    index,
                    SENTINEL_NODES,
                )?)))
            }
            "redis-cluster" => {
                return Ok(Part::Store(StoreNode::Cluster(node(index, CLUSTER_NODES)?)))
            }
            _ => {}
        }
        let design: Design = kind.parse().map_err(|_| unknown())?;
        let index: u8 = index
            .parse()
            .ok()
            .filter(|i| (1..=MAX_REPLICAS_PER_POOL).contains(i) && !index.starts_with('0'))
            .ok_or_else(unknown)?;
        Ok(Part::Replica(Replica { design, index }))
    }
}

/// How `scale` removes a replica: drained for the default time, at once, or drained for at most
/// the time given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    Default,
    Now,
    UpTo(std::time::Duration),
}

/// The drain `scale` gives a removed replica when none is named.
pub const DEFAULT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Drain {
    /// The longest drain, or `None` for at once.
    pub fn limit(self) -> Option<std::time::Duration> {
        match self {
            Drain::Default => Some(DEFAULT_DRAIN),
            Drain::Now => None,
            Drain::UpTo(d) => Some(d),
        }
    }
}

/// A pool size `scale` can reach.
pub fn check_scale(n: u8) -> anyhow::Result<()> {
    if !(1..=MAX_REPLICAS_PER_POOL).contains(&n) {
        anyhow::bail!(
            "a pool can have 1 to {MAX_REPLICAS_PER_POOL} replicas in the lab (asked for {n})"
        );
    }
    Ok(())
}

/// The ports file names a cluster node's bus port `NODE-bus`.
const BUS_SUFFIX: &str = "-bus";

/// Where the native lab's parts listen on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativePorts {
    /// Every Redis node of the lab's topology.
    pub store: BTreeMap<StoreNode, u16>,
    /// Each cluster node's bus port (`cluster-port`), chosen like the others so that it never
    /// falls in the ephemeral range, as Redis's default (the port + 10000) would.
    pub buses: BTreeMap<StoreNode, u16>,
    /// The object store (`s3`).
    pub objects: u16,
    pub proxy: u16,
    pub admin: u16,
    pub replicas: BTreeMap<Replica, u16>,
}

impl NativePorts {
    pub fn replica(&self, r: Replica) -> u16 {
        self.replicas
            .get(&r)
            .copied()
            .unwrap_or_else(|| r.fixed_port())
    }

    /// The replicas the lab has now.
    pub fn members(&self) -> impl Iterator<Item = Replica> + '_ {
        self.replicas.keys().copied()
    }

    /// The port of a Redis node; 0 when the lab has no such node.
    pub fn node(&self, n: StoreNode) -> u16 {
        self.store.get(&n).copied().unwrap_or(0)
    }

    /// The `NAME PORT` lines of `scripts/lab ports`: the Redis nodes, the object store, the
    /// replicas, proxy, admin.
    pub fn lines(&self) -> Vec<(String, u16)> {
        self.store
            .iter()
            .map(|(n, p)| (n.to_string(), *p))
            .chain(
                self.buses
                    .iter()
                    .map(|(n, p)| (format!("{n}{BUS_SUFFIX}"), *p)),
            )
            .chain(std::iter::once((OBJECTS_NAME.to_string(), self.objects)))
            .chain(self.replicas.iter().map(|(r, p)| (r.to_string(), *p)))
            .chain([
                ("proxy".to_string(), self.proxy),
                ("admin".to_string(), self.admin),
            ])
            .collect()
    }

    /// Reads the `NAME PORT` lines back; `None` when no Redis node, the object store, the proxy
    /// or the admin port is missing. Every replica line is a member.
    pub fn from_lines(lines: &BTreeMap<String, u16>) -> Option<NativePorts> {
        let store: BTreeMap<StoreNode, u16> = lines
            .iter()
            .filter_map(|(name, port)| match name.parse() {
                Ok(Part::Store(n)) => Some((n, *port)),
                _ => None,
            })
            .collect();
        if store.is_empty() {
            return None;
        }
        let buses = lines
            .iter()
            .filter_map(
                |(name, port)| match name.strip_suffix(BUS_SUFFIX)?.parse() {
                    Ok(Part::Store(n)) => Some((n, *port)),
                    _ => None,
                },
            )
            .collect();
        Some(NativePorts {
            store,
            buses,
            objects: *lines.get(OBJECTS_NAME)?,
            proxy: *lines.get("proxy")?,
            admin: *lines.get("admin")?,
            replicas: lines
                .iter()
                .filter_map(|(name, port)| match name.parse() {
                    Ok(Part::Replica(r)) => Some((r, *port)),
                    _ => None,
                })
                .collect(),
        })
    }
}

/// The health checks and retries both labs run with: a replica is marked down after two failed
/// checks 250 ms apart, and a failed connection is retried on another replica.
fn lab_health() -> HealthSection {
    HealthSection {
        path: "/health".into(),
        interval_ms: 250,
        timeout_ms: 500,
        rise: 2,
        fall: 2,
    }
}

/// The services answer in milliseconds, so a replica silent for 2 s is frozen or lost: the
/// request fails over (a GET is retried on another replica, anything else gets `504`) instead of
/// waiting out the proxy's general 30 s default. It stays above the services' own bounded wait
/// (`--redis-timeout-ms`, 1 s per Redis call by default), so a replica's clean `503` with
/// `Retry-After` during a Redis outage reaches the client as such, never as the proxy's `504`.
pub const LAB_READ_TIMEOUT_MS: u64 = 2000;

fn lab_retry() -> RetrySection {
    RetrySection {
        max_retries: 2,
        eject_ms: 2000,
        read_timeout_ms: LAB_READ_TIMEOUT_MS,
        ..RetrySection::default()
    }
}

fn pools(
    members: &[Replica],
    trusted: &[String],
    addr: impl Fn(Replica) -> String,
) -> Vec<PoolSection> {
    Design::ALL
        .into_iter()
        .map(|design| PoolSection {
            name: design.as_str().into(),
            prefix: Some(format!("/{design}")),
            strategy: Some(design.default_strategy()),
            balance_factor: None,
            trusted_proxies: trusted.to_vec(),
            replicas: members
                .iter()
                .filter(|r| r.design == design)
                .map(|r| (r.to_string(), addr(*r)))
                .collect(),
            discover: None,
            discover_interval_ms: None,
            discover_drain_seconds: None,
        })
        .collect()
}

/// The proxy's configuration for the native lab: everything on loopback, no trusted proxies.
pub fn native_proxy_config(ports: &NativePorts) -> ConfigFile {
    ConfigFile {
        server: ServerSection {
            listen: format!("127.0.0.1:{}", ports.proxy),
            admin_listen: format!("127.0.0.1:{}", ports.admin),
            threads: 1,
            grace_period_seconds: 5,
            ..ServerSection::default()
        },
        health: lab_health(),
        retry: lab_retry(),
        pools: Some(pools(&ports.members().collect::<Vec<_>>(), &[], |r| {
            format!("127.0.0.1:{}", ports.replica(r))
        })),
    }
}

/// The proxy's configuration inside the compose network `NET_PREFIX.0/24`, with the replicas the
/// lab comes up with.
///
/// Docker NAT hides client addresses: every request from the host arrives from the bridge gateway
/// (`.1`), so only in-network load generators, which get addresses from `.192/26`, are trusted to
/// name the client in `X-Forwarded-For`. The gateway stays outside that range: trusting it would
/// let anything on the host choose its own hash key.
pub fn docker_proxy_config(net_prefix: &str) -> ConfigFile {
    docker_proxy_config_with(net_prefix, &Replica::initial().collect::<Vec<_>>())
}

/// The proxy's configuration inside the compose network for these members.
pub fn docker_proxy_config_with(net_prefix: &str, members: &[Replica]) -> ConfigFile {
    ConfigFile {
        server: ServerSection {
            listen: format!("0.0.0.0:{CONTAINER_PROXY_PORT}"),
            admin_listen: format!("0.0.0.0:{CONTAINER_ADMIN_PORT}"),
            // In-network clients reach the admin API by the compose service name.
            admin_hosts: vec![Part::Proxy.to_string()],
            threads: 1,
            grace_period_seconds: 5,
            ..ServerSection::default()
        },
        health: lab_health(),
        retry: lab_retry(),
        pools: Some(pools(members, &[trusted_range(net_prefix)], |r| {
            format!(
                "{net_prefix}.{}:{CONTAINER_SERVICE_PORT}",
                r.container_octet()
            )
        })),
    }
}

/// The name a Swarm's DNS answers with the addresses of `design`'s running tasks, and the port
/// they serve on: what the Swarm proxy's pool follows.
pub fn swarm_discover_target(design: Design) -> String {
    format!("tasks.{design}:{CONTAINER_SERVICE_PORT}")
}

/// The proxy's configuration in the Swarm stack (`deploy/stack.yaml`): each pool follows its
/// design's tasks by DNS instead of listing replicas, so `docker service scale` is all it takes.
/// No client address is trusted: the stack runs no in-network load generator.
pub fn swarm_proxy_config() -> ConfigFile {
    let mut config = docker_proxy_config_with(DEFAULT_NET_PREFIX, &[]);
    // `pools` gives one pool per design, in `Design::ALL`'s order.
    for (pool, design) in config.pools.iter_mut().flatten().zip(Design::ALL) {
        pool.trusted_proxies.clear();
        pool.discover = Some(swarm_discover_target(design));
    }
    config
}

/// The range in-network load generators get their addresses from.
pub fn trusted_range(net_prefix: &str) -> String {
    format!("{net_prefix}.192/26")
}

/// A header for a generated file.
pub fn render_proxy_config(config: &ConfigFile, what: &str) -> anyhow::Result<String> {
    Ok(format!(
        "# Written by scripts/lab up from the lab's model (statelab-lab): {what}.\n\n{}",
        toml::to_string(config)?
    ))
}

/// `A.B.C.0/24` → `A.B.C`, refusing anything else.
pub fn net_prefix_of(subnet: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "STATELAB_SUBNET must be a /24 written A.B.C.0/24, e.g. 10.231.7.0/24 (got '{subnet}')"
        )
    };
    let prefix = subnet.strip_suffix(".0/24").ok_or_else(bad)?;
    let octets: Vec<&str> = prefix.split('.').collect();
    if octets.len() != 3 {
        return Err(bad());
    }
    let parsed = octets
        .iter()
        .map(|o| {
            if o.is_empty() || o.len() > 3 || !o.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            o.parse::<u8>()
                .map_err(|_| format!("STATELAB_SUBNET: bad address '{subnet}'"))
        })
        .collect::<Result<Vec<u8>, String>>()?;
    Ok(format!("{}.{}.{}", parsed[0], parsed[1], parsed[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        let parts = Part::initial(Store::Single);
        assert_eq!(parts.len(), 12);
        for p in &parts {
            assert_eq!(p.to_string().parse::<Part>(), Ok(*p));
        }
        assert_eq!(parts[0].to_string(), "redis");
        assert_eq!(parts[1].to_string(), "s3");
        assert_eq!(parts[2].to_string(), "stateful-1");
        assert_eq!(parts[11].to_string(), "proxy");
        assert!(matches!("stateful-9".parse::<Part>(), Ok(Part::Replica(_))));
        for bad in [
            "stateful-10",
            "stateful-0",
            "stateful-04",
            "sessions-1",
            "stateful",
            "redis-4",
            "sentinel-0",
            "s3-1",
            "",
        ] {
            let err = bad.parse::<Part>().expect_err("not a part");
            assert!(err.to_string().contains("stateful-K"), "{err}");
        }
    }

    #[test]
    fn the_sentinel_topology_names_its_nodes_and_the_primary_alias() {
        let parts = Part::initial(Store::Sentinel);
        let names: Vec<String> = parts.iter().take(6).map(Part::to_string).collect();
        assert_eq!(
            names,
            [
                "redis-1",
                "redis-2",
                "redis-3",
                "sentinel-1",
                "sentinel-2",
                "sentinel-3"
            ]
        );
        for p in &parts {
            assert_eq!(p.to_string().parse::<Part>(), Ok(*p));
        }
        assert_eq!("redis-primary".parse(), Ok(Target::RedisPrimary));
        assert_eq!("redis".parse(), Ok(Target::Part(Part::REDIS)));
        let octets: Vec<u16> = Store::Sentinel
            .nodes()
            .iter()
            .map(|n| n.container_octet())
            .collect();
        assert_eq!(octets, [6, 7, 8, 41, 42, 43]);
        let cluster = Part::initial(Store::Cluster);
        assert_eq!(cluster[0].to_string(), "redis-cluster-1");
        assert_eq!(cluster[5].to_string(), "redis-cluster-6");
        for p in &cluster {
            assert_eq!(p.to_string().parse::<Part>(), Ok(*p));
        }
        assert!("redis-cluster-7".parse::<Part>().is_err());
        assert!("redis-cluster-01".parse::<Part>().is_err());
    }

    #[test]
    fn fixed_ports_and_addresses_follow_the_documented_plan() {
        let port = |s: &str| match s.parse::<Part>() {
            Ok(Part::Replica(r)) => (r.fixed_port(), r.container_octet()),
            other => panic!("{s} is not a replica: {other:?}"),
        };
        assert_eq!(port("stateful-1"), (18001, 11));
        assert_eq!(port("stateless-3"), (18013, 23));
        assert_eq!(port("externalized-2"), (18022, 32));
    }

    #[test]
    fn subnets_are_a_slash_24_or_refused() {
        assert_eq!(net_prefix_of("10.99.7.0/24").as_deref(), Ok("10.99.7"));
        assert_eq!(net_prefix_of("010.9.7.0/24").as_deref(), Ok("10.9.7"));
        for bad in [
            "10.99.7.0/16",
            "10.99.0/24",
            "10.300.7.0/24",
            "a.b.c.0/24",
            "",
        ] {
            assert!(net_prefix_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn native_ports_survive_their_lines() {
        let ports = NativePorts {
            store: Store::Sentinel
                .nodes()
                .into_iter()
                .chain(Store::Cluster.nodes())
                .zip(16379..)
                .collect(),
            buses: Store::Cluster.nodes().into_iter().zip(17379..).collect(),
            objects: 19000,
            proxy: 8080,
            admin: 8081,
            replicas: Replica::initial()
                .chain(
                    ["stateless-7".parse::<Part>()]
                        .into_iter()
                        .filter_map(|p| match p {
                            Ok(Part::Replica(r)) => Some(r),
                            _ => None,
                        }),
                )
                .map(|r| (r, r.fixed_port() + 1000))
                .collect(),
        };
        let lines = ports.lines().into_iter().collect();
        assert_eq!(NativePorts::from_lines(&lines), Some(ports));
    }
}

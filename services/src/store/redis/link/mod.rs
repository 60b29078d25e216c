//! How the store reaches a writable Redis, in each of the three topologies a user can pick:
//!
//! - **single** (`--redis-url`): one Redis, reconnected after it comes back;
//! - **sentinel** (`--redis-sentinel`): the primary is whatever Redis Sentinel names now, checked
//!   with `ROLE`, and looked up again when it fails;
//! - **cluster** (`--redis-cluster`): a Redis Cluster, whose slot map and failovers the `redis`
//!   crate's cluster connection follows by itself ([`cluster`]).
//!
//! The single and Sentinel cases share one [`PrimaryLink`]: a multiplexed connection to the node
//! that is primary now, dropped when that node fails or answers `READONLY`, and found again on the
//! next call ([`primary`]; what each error means is [`failure`]'s). That is instead of the crate's
//! `ConnectionManager`, which reconnects to the address it was built with: after a Sentinel
//! failover that is the old primary, which either refuses the connection or, once restarted, is a
//! replica answering `READONLY` to every write.
//!
//! A write that must reach replicas before it is acknowledged (`--redis-wait N`) cannot share the
//! multiplexed connection: `WAIT` blocks the connection it is sent on and counts only that
//! connection's own writes. Such writes take a connection of their own from a small pool
//! ([`wait`]) for the write and its `WAIT`.
//!
//! [`Link`] is the one type the store holds: it picks the topology's link for each call and
//! bounds the call by its timeout.

mod cluster;
mod conn;
mod failure;
mod primary;
mod wait;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult};

use self::cluster::ClusterLink;
pub use self::conn::Conn;
use self::primary::PrimaryLink;
pub use self::wait::{WaitConfig, WaitShort};

/// Where Redis is, as the command line named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One Redis at this URL.
    Single { url: String },
    /// The primary Sentinel knows as `master`, asked of these Sentinels (`host:port`).
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster, discovered from these seed nodes (`host:port`).
    Cluster { nodes: Vec<String> },
}

impl Topology {
    /// The word `/health?detail=1` and the logs use.
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Single { .. } => "single",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster { .. } => "cluster",
        }
    }
}

/// The store's way to Redis.
pub struct Link {
    topology: Topology,
    inner: Inner,
    wait: Option<WaitConfig>,
    /// Every call's bound, lookup, queueing and `WAIT` included.
    timeout: Duration,
}

enum Inner {
    Primary(Arc<PrimaryLink>),
    Cluster(Box<ClusterLink>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("topology", &self.topology)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Builds the link without connecting: a replica starts while Redis is down and connects on
    /// its first call. Fails only on an address that cannot be parsed.
    pub fn new(
        topology: Topology,
        timeout: Duration,
        wait: Option<WaitConfig>,
    ) -> anyhow::Result<Link> {
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let inner = match &topology {
            Topology::Single { url } => {
                Inner::Primary(Arc::new(PrimaryLink::single(url.as_str(), connection)?))
            }
            Topology::Sentinel { sentinels, master } => Inner::Primary(Arc::new(
                PrimaryLink::sentinel(sentinels, master, connection)?,
            )),
            Topology::Cluster { nodes } => {
                if wait.is_some() {
                    anyhow::bail!(
                        "--redis-wait is not available with --redis-cluster: WAIT must follow \
                         the write on the same node's connection, which the cluster client \
                         does not expose"
                    );
                }
                Inner::Cluster(Box::new(ClusterLink::new(nodes, timeout)?))
            }
        };
        Ok(Link {
            topology,
            inner,
            wait,
            timeout,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Whether keys of different hash slots may be written in one command: not in a cluster.
    pub fn spans_slots(&self) -> bool {
        !matches!(self.inner, Inner::Cluster(_))
    }

    /// Runs a read, or a write that needs no replica's acknowledgement, on the shared
    /// connection, within the link's timeout. A call the primary refused as a replica
    /// (`READONLY`) is run once more on the primary found anew.
    pub async fn run<T, F, Fut>(&self, op: F) -> RedisResult<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let deadline = Instant::now() + self.timeout;
        match &self.inner {
            Inner::Cluster(c) => c.run(deadline, op).await,
            Inner::Primary(p) => p.run(deadline, op).await,
        }
    }

    /// [`Link::run`], with its error in the form [`Link::write`] gives.
    pub async fn read<T, F, Fut>(&self, op: F) -> Result<T, WriteError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        self.run(op).await.map_err(WriteError::Redis)
    }

    /// Runs a session write and, with `--redis-wait N`, waits until N replicas hold it, all
    /// within the link's timeout. A write that fewer replicas acknowledged within the wait's
    /// timeout is an error, [`WaitShort`]: it is on the primary and may or may not survive a
    /// failover.
    pub async fn write<T, F, Fut>(&self, op: F) -> Result<T, WriteError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let (Some(wait), Inner::Primary(p)) = (self.wait, &self.inner) else {
            return self.run(op).await.map_err(WriteError::Redis);
        };
        let deadline = Instant::now() + self.timeout;
        wait::write(p, wait, deadline, op).await
    }

    /// Whether a writable primary answers: `ROLE` says `master` (a demoted node still answers
    /// `PING`) and, at most every second, Sentinel still names it; or for a cluster,
    /// `CLUSTER INFO` says every slot is served.
    pub async fn check(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        match &self.inner {
            Inner::Primary(p) => p.check(deadline).await,
            Inner::Cluster(c) => c.check(deadline).await,
        }
    }
}

/// Why a session write failed.
#[derive(Debug)]
pub enum WriteError {
    Redis(RedisError),
    WaitShort(WaitShort),
}

/// `fut` unless `deadline` comes first, which is then an error naming `what` was waited on.
async fn bounded<T>(
    deadline: Instant,
    what: &str,
    fut: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "no answer in time",
                format!("waiting for {what}"),
            )))
        })
}

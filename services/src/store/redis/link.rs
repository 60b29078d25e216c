//! How the store reaches a writable Redis, in each of the three topologies a user can pick:
//!
//! - **single** (`--redis-url`): one Redis, reconnected after it comes back;
//! - **sentinel** (`--redis-sentinel`): the primary is whatever Redis Sentinel names now, checked
//!   with `ROLE`, and looked up again when it fails;
//! - **cluster** (`--redis-cluster`): a Redis Cluster, whose slot map and failovers the `redis`
//!   crate's cluster connection follows by itself.
//!
//! The single and Sentinel cases share one [`PrimaryLink`]: a multiplexed connection to the node
//! that is primary now, dropped when that node fails or answers `READONLY`, and found again on the
//! next call. That is instead of the crate's `ConnectionManager`, which reconnects to the address
//! it was built with: after a Sentinel failover that is the old primary, which either refuses the
//! connection or, once restarted, is a replica answering `READONLY` to every write.
//!
//! A write that must reach replicas before it is acknowledged (`--redis-wait N`) cannot share the
//! multiplexed connection: `WAIT` blocks the connection it is sent on and counts only that
//! connection's own writes. Such writes take a connection of their own from a small pool
//! ([`WaitPool`]) for the write and its `WAIT`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::Sentinel;
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture};
use redis::{RedisResult, ServerErrorKind, Value};

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

/// `--redis-wait`: how many replicas must hold a write before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitConfig {
    pub replicas: u32,
    /// `WAIT`'s own timeout; a write not acknowledged by then is reported as failed.
    pub timeout: Duration,
    /// Connections kept for waiting writes: at most this many writes wait at once per replica
    /// of the service; the others queue for a connection within the call's timeout.
    pub connections: usize,
}

/// After a failed attempt to find the primary, calls fail at once for this long instead of each
/// asking Sentinel again: during a failover window that would be a lookup per request.
const RESOLVE_BACKOFF: Duration = Duration::from_millis(100);

/// A connection for one call: to the primary, or the cluster's.
#[derive(Clone)]
pub enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Why a call failed, as far as the link is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The node is a replica now (`READONLY`): nothing was written, so the call may be retried
    /// on the primary found anew.
    Demoted,
    /// The connection broke, was refused or timed out: the primary may be gone. The call is not
    /// retried, since a write may have been applied before the break.
    Lost,
    /// An answer from a working primary (an `OOM`, a script error): nothing to change.
    Answer,
}

fn classify(e: &RedisError) -> Failure {
    if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || e.code() == Some("READONLY") {
        Failure::Demoted
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
    {
        Failure::Lost
    } else {
        Failure::Answer
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
            Topology::Single { url } => Inner::Primary(Arc::new(PrimaryLink::new(
                Resolver::Fixed(Client::open(url.as_str())?),
                connection,
            ))),
            Topology::Sentinel { sentinels, master } => {
                let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
                Inner::Primary(Arc::new(PrimaryLink::new(
                    Resolver::Sentinel {
                        sentinel: tokio::sync::Mutex::new(Sentinel::build(urls)?),
                        master: master.clone(),
                    },
                    connection,
                )))
            }
            Topology::Cluster { nodes } => {
                if wait.is_some() {
                    anyhow::bail!(
                        "--redis-wait is not available with --redis-cluster: WAIT must follow \
                         the write on the same node's connection, which the cluster client \
                         does not expose"
                    );
                }
                let urls: Vec<String> = nodes.iter().map(|s| format!("redis://{s}")).collect();
                let client = ClusterClient::builder(urls)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .min_retry_wait(20)
                    .max_retry_wait(200)
                    .build()?;
                Inner::Cluster(Box::new(ClusterLink {
                    client,
                    conn: tokio::sync::Mutex::new(None),
                }))
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
            Inner::Cluster(c) => {
                let conn = bounded(deadline, "the cluster", c.conn()).await?;
                bounded(deadline, "the cluster", op(conn)).await
            }
            Inner::Primary(p) => {
                let mut retried = false;
                loop {
                    let primary = bounded(deadline, "the primary's lookup", p.primary()).await?;
                    let answer = tokio::time::timeout_at(
                        deadline.into(),
                        op(Conn::Node(primary.shared.clone())),
                    )
                    .await
                    .unwrap_or_else(|_| Err(silent(&primary, p)));
                    match answer {
                        Ok(v) => return Ok(v),
                        Err(e) if p.failed(&primary, &e, retried) => retried = true,
                        Err(e) => return Err(e),
                    }
                }
            }
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
        let mut retried = false;
        loop {
            let primary = bounded(deadline, "the primary's lookup", p.primary())
                .await
                .map_err(WriteError::Redis)?;
            let pool = primary.waiting.get_or_init(|| WaitPool::new(wait));
            // Waiting for a free connection says nothing about the primary: a timeout here is
            // the service being busy, not a reason to look the primary up again.
            let lease = bounded(
                deadline,
                "a free connection for a waiting write",
                pool.lease(&primary.client, &p.connection),
            )
            .await;
            let mut lease = match lease {
                Ok(lease) => lease,
                Err(e) => {
                    p.failed(&primary, &e, true);
                    return Err(WriteError::Redis(e));
                }
            };
            let result = tokio::time::timeout_at(deadline.into(), async {
                let value = op(Conn::Node(lease.conn.clone())).await?;
                let acked: u32 = redis::cmd("WAIT")
                    .arg(wait.replicas)
                    .arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX))
                    .query_async(&mut lease.conn)
                    .await?;
                Ok::<_, RedisError>((value, acked))
            })
            .await
            .unwrap_or_else(|_| Err(silent(&primary, p)));
            match result {
                Ok((value, acked)) => {
                    lease.keep();
                    if acked < wait.replicas {
                        return Err(WriteError::WaitShort(WaitShort {
                            acked,
                            wanted: wait.replicas,
                            timeout: wait.timeout,
                        }));
                    }
                    return Ok(value);
                }
                Err(e) => {
                    if classify(&e) == Failure::Answer {
                        lease.keep();
                    }
                    if p.failed(&primary, &e, retried) {
                        retried = true;
                        continue;
                    }
                    return Err(WriteError::Redis(e));
                }
            }
        }
    }

    /// Whether a writable primary answers: `ROLE` says `master` (a demoted node still answers
    /// `PING`) and, at most every second, Sentinel still names it; or for a cluster,
    /// `CLUSTER INFO` says every slot is served.
    pub async fn check(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        match &self.inner {
            Inner::Primary(p) => {
                let primary = bounded(deadline, "the primary's lookup", p.primary())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut conn = primary.shared.clone();
                let role: RedisResult<redis::Role> = tokio::time::timeout_at(
                    deadline.into(),
                    redis::cmd("ROLE").query_async(&mut conn),
                )
                .await
                .unwrap_or_else(|_| Err(silent(&primary, p)));
                match role {
                    Ok(redis::Role::Primary { .. }) => {
                        let named =
                            tokio::time::timeout_at(deadline.into(), p.still_named(&primary));
                        match named.await {
                            Ok(Some(other)) => {
                                p.forget(&primary, &format!("Sentinel names {other} now"));
                                Err(format!(
                                    "redis at {} is a primary Sentinel no longer names ({other} is)",
                                    primary.address
                                ))
                            }
                            _ => Ok(()),
                        }
                    }
                    Ok(_) => {
                        p.forget(&primary, "ROLE says it is not a primary");
                        Err(format!("redis at {} is not a primary now", primary.address))
                    }
                    Err(e) => {
                        p.failed(&primary, &e, true);
                        Err(e.to_string())
                    }
                }
            }
            Inner::Cluster(c) => {
                let mut conn = bounded(deadline, "the cluster", c.conn())
                    .await
                    .map_err(|e| e.to_string())?;
                let info: String = bounded(
                    deadline,
                    "the cluster",
                    redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn),
                )
                .await
                .map_err(|e| e.to_string())?;
                if info.lines().any(|l| l.trim() == "cluster_state:ok") {
                    Ok(())
                } else {
                    Err("the cluster reports a state other than ok".into())
                }
            }
        }
    }
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

/// The primary `primary` did not answer within the call's bound: it may be frozen or cut off,
/// and Sentinel may already have promoted another. This connection is dropped (and only this
/// one: another call may have found a newer primary meanwhile), so the next call looks the
/// primary up again instead of waiting on the silent one.
fn silent(primary: &Arc<Primary>, link: &PrimaryLink) -> RedisError {
    link.forget(primary, "no answer within the call's bound");
    RedisError::from((
        ErrorKind::Io,
        "no answer in time",
        format!("from the primary at {}", primary.address),
    ))
}

/// A write that fewer replicas than `--redis-wait` acknowledged in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitShort {
    pub acked: u32,
    pub wanted: u32,
    pub timeout: Duration,
}

/// Why a session write failed.
#[derive(Debug)]
pub enum WriteError {
    Redis(RedisError),
    WaitShort(WaitShort),
}

/// How the primary is found.
enum Resolver {
    /// Always the same address (`--redis-url`).
    Fixed(Client),
    /// Asked of Sentinel, which also checks the node's `ROLE`.
    Sentinel {
        sentinel: tokio::sync::Mutex<Sentinel>,
        master: String,
    },
}

/// The node that is primary now, and the connections to it.
struct Primary {
    address: String,
    client: Client,
    shared: MultiplexedConnection,
    /// Connections for waiting writes; made on the first one.
    waiting: std::sync::OnceLock<WaitPool>,
}

/// One primary at a time, found again after it fails.
///
/// The lookup runs as a task of its own, which the calls waiting for it do not bound: a lookup
/// may outlast a call's timeout (a Sentinel whose container is gone costs a connect timeout
/// before the next one is asked), and it must still finish, so that a later call finds the
/// primary instead of starting the same lookup over. It is bounded by [`LOOKUP_LIMIT`] instead.
struct PrimaryLink {
    resolver: Resolver,
    connection: AsyncConnectionConfig,
    state: Mutex<LinkState>,
    /// Woken when a lookup ends.
    looked_up: tokio::sync::Notify,
}

#[derive(Default)]
struct LinkState {
    current: Option<Arc<Primary>>,
    /// A lookup is running.
    looking: bool,
    /// When the last lookup failed, and why.
    failed: Option<(Instant, String)>,
    /// When Sentinel was last asked whether it still names the current primary.
    verified: Option<Instant>,
}

/// How often the health check asks Sentinel whether it still names the primary held.
const VERIFY_EVERY: Duration = Duration::from_secs(1);

/// Longest a lookup of the primary may take before it counts as failed.
const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

fn no_primary(why: &str) -> RedisError {
    RedisError::from((ErrorKind::Io, "no redis primary now", why.to_owned()))
}

impl PrimaryLink {
    fn new(resolver: Resolver, connection: AsyncConnectionConfig) -> PrimaryLink {
        PrimaryLink {
            resolver,
            connection,
            state: Mutex::new(LinkState::default()),
            looked_up: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The primary, looked up first if none is known: the caller waits for the lookup (one at a
    /// time, whoever asks) within its own timeout. After a failed lookup, calls fail at once for
    /// [`RESOLVE_BACKOFF`].
    async fn primary(self: &Arc<Self>) -> RedisResult<Arc<Primary>> {
        let ended = self.looked_up.notified();
        tokio::pin!(ended);
        // Registered before the state is read, so that a lookup ending in between still wakes us.
        ended.as_mut().enable();
        {
            let mut state = self.state();
            if let Some(p) = &state.current {
                return Ok(p.clone());
            }
            if !state.looking {
                if let Some((at, why)) = &state.failed {
                    if at.elapsed() < RESOLVE_BACKOFF {
                        return Err(no_primary(why));
                    }
                }
                state.looking = true;
                tokio::spawn(Arc::clone(self).look_up());
            }
        }
        ended.await;
        let state = self.state();
        match (&state.current, &state.failed) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some((_, why))) => Err(no_primary(why)),
            (None, None) => Err(no_primary("the primary was dropped again")),
        }
    }

    /// One lookup, to its end or [`LOOKUP_LIMIT`]; wakes every call waiting for it, also should
    /// the lookup panic (a lookup left marked as running would hold every later call).
    async fn look_up(self: Arc<Self>) {
        let mut ending = LookupEnd {
            link: Arc::clone(&self),
            outcome: Err("the lookup of the primary stopped without an answer".into()),
        };
        ending.outcome = match tokio::time::timeout(LOOKUP_LIMIT, self.resolve()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("looking the primary up took over {LOOKUP_LIMIT:?}")),
        };
    }

    /// Whether Sentinel still names `primary`: `Some(address)` of the node it names instead, else
    /// `None` (also when no Sentinel could tell, or a lookup is running, or it was asked less
    /// than [`VERIFY_EVERY`] ago). Two Sentinels can promote two replicas in a row, and the node
    /// the first promoted stays a primary, without replicas, until Sentinel converts it some
    /// seconds later; the service must not keep writing there in the meantime.
    async fn still_named(&self, primary: &Arc<Primary>) -> Option<String> {
        let Resolver::Sentinel { sentinel, master } = &self.resolver else {
            return None;
        };
        {
            let mut state = self.state();
            if state.verified.is_some_and(|at| at.elapsed() < VERIFY_EVERY) {
                return None;
            }
            state.verified = Some(Instant::now());
        }
        let mut sentinel = sentinel.try_lock().ok()?;
        let named = sentinel.async_master_for(master, None).await.ok()?;
        let address = named.get_connection_info().addr().to_string();
        (address != primary.address).then_some(address)
    }

    async fn resolve(&self) -> RedisResult<Primary> {
        let client = match &self.resolver {
            Resolver::Fixed(client) => client.clone(),
            Resolver::Sentinel { sentinel, master } => {
                sentinel.lock().await.async_master_for(master, None).await?
            }
        };
        let shared = client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await?;
        Ok(Primary {
            address: client.get_connection_info().addr().to_string(),
            client,
            shared,
            waiting: std::sync::OnceLock::new(),
        })
    }

    /// What a call's failure on `primary` means: the primary is dropped when the error says it is
    /// gone or demoted, and the answer is whether the call may run once more. Only a `READONLY`
    /// refusal allows that (nothing was written), and only once (`retried`).
    fn failed(&self, primary: &Arc<Primary>, e: &RedisError, retried: bool) -> bool {
        match classify(e) {
            Failure::Demoted => {
                self.forget(primary, "it answers READONLY: it is a replica now");
                !retried
            }
            Failure::Lost => {
                self.forget(primary, &e.to_string());
                false
            }
            Failure::Answer => false,
        }
    }

    /// Drops `primary` if it is still the current one, so the next call finds the primary again.
    fn forget(&self, primary: &Arc<Primary>, why: &str) {
        let mut state = self.state();
        if state
            .current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, primary))
        {
            state.current = None;
            tracing::warn!(primary = %primary.address, why, "redis primary dropped; looking it up again on the next call");
        }
    }
}

/// Records a lookup's outcome and wakes the calls waiting for it when the lookup ends, however it
/// ends.
struct LookupEnd {
    link: Arc<PrimaryLink>,
    outcome: Result<Primary, String>,
}

impl Drop for LookupEnd {
    fn drop(&mut self) {
        let outcome = std::mem::replace(&mut self.outcome, Err(String::new()));
        {
            let mut state = self.link.state();
            state.looking = false;
            match outcome {
                Ok(p) => {
                    tracing::info!(primary = %p.address, "redis primary connected");
                    state.current = Some(Arc::new(p));
                    state.failed = None;
                }
                Err(why) => state.failed = Some((Instant::now(), why)),
            }
        }
        self.link.looked_up.notify_waiters();
    }
}

/// The cluster connection, made on first use.
struct ClusterLink {
    client: ClusterClient,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl ClusterLink {
    async fn conn(&self) -> RedisResult<Conn> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(Conn::Cluster(c.clone()));
        }
        let c = self.client.get_async_connection().await?;
        *slot = Some(c.clone());
        Ok(Conn::Cluster(c))
    }
}

/// Connections for waiting writes, each used by one write and its `WAIT` at a time.
struct WaitPool {
    permits: tokio::sync::Semaphore,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl WaitPool {
    fn new(wait: WaitConfig) -> WaitPool {
        WaitPool {
            permits: tokio::sync::Semaphore::new(wait.connections.max(1)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection of its own for one waiting write: an idle one, or a new one while fewer than
    /// the pool's size exist.
    async fn lease<'a>(
        &'a self,
        client: &Client,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<Lease<'a>> {
        let permit = self.permits.acquire().await.map_err(|_| {
            RedisError::from((ErrorKind::Io, "the pool of waiting connections is closed"))
        })?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?
            }
        };
        Ok(Lease {
            pool: self,
            conn,
            keep: false,
            _permit: permit,
        })
    }
}

/// One waiting write's connection; back to the pool only when [`Lease::keep`] says it is sound.
struct Lease<'a> {
    pool: &'a WaitPool,
    conn: MultiplexedConnection,
    keep: bool,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.keep {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.conn.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_asks_for_the_primary_again_and_a_broken_connection_drops_it() {
        let readonly = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert_eq!(classify(&readonly), Failure::Demoted);
        let broken: RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into();
        assert_eq!(classify(&broken), Failure::Lost);
        let refused: RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert_eq!(classify(&refused), Failure::Lost);
        let oom = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "OOM command not allowed",
        ));
        assert_eq!(classify(&oom), Failure::Answer);
    }
}

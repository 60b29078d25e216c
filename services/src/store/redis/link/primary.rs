//! One Redis primary at a time, for the single and Sentinel topologies: found on the first call,
//! dropped when it fails, is demoted or Sentinel names another, and found again on the next call.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::sentinel::Sentinel;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult};

use super::failure::{classify, Failure};
use super::wait::WaitPool;
use super::{bounded, Conn};

/// After a failed attempt to find the primary, calls fail at once for this long instead of each
/// asking Sentinel again: during a failover window that would be a lookup per request.
const RESOLVE_BACKOFF: Duration = Duration::from_millis(100);

/// How often the health check asks Sentinel whether it still names the primary held.
const VERIFY_EVERY: Duration = Duration::from_secs(1);

/// Longest a lookup of the primary may take before it counts as failed.
const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

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
pub(super) struct Primary {
    address: String,
    pub(super) client: Client,
    shared: MultiplexedConnection,
    /// Connections for waiting writes; made on the first one.
    pub(super) waiting: std::sync::OnceLock<WaitPool>,
}

/// One primary at a time, found again after it fails.
///
/// The lookup runs as a task of its own, which the calls waiting for it do not bound: a lookup
/// may outlast a call's timeout (a Sentinel whose container is gone costs a connect timeout
/// before the next one is asked), and it must still finish, so that a later call finds the
/// primary instead of starting the same lookup over. It is bounded by [`LOOKUP_LIMIT`] instead.
pub(super) struct PrimaryLink {
    resolver: Resolver,
    /// How every connection to the primary is made.
    pub(super) connection: AsyncConnectionConfig,
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

fn no_primary(why: &str) -> RedisError {
    RedisError::from((ErrorKind::Io, "no redis primary now", why.to_owned()))
}

/// The primary `primary` did not answer within the call's bound: it may be frozen or cut off,
/// and Sentinel may already have promoted another. This connection is dropped (and only this
/// one: another call may have found a newer primary meanwhile), so the next call looks the
/// primary up again instead of waiting on the silent one.
pub(super) fn silent(primary: &Arc<Primary>, link: &PrimaryLink) -> RedisError {
    link.forget(primary, "no answer within the call's bound");
    RedisError::from((
        ErrorKind::Io,
        "no answer in time",
        format!("from the primary at {}", primary.address),
    ))
}

impl PrimaryLink {
    /// The one Redis at `url` (`--redis-url`).
    pub(super) fn single(url: &str, connection: AsyncConnectionConfig) -> RedisResult<PrimaryLink> {
        Ok(PrimaryLink::new(
            Resolver::Fixed(Client::open(url)?),
            connection,
        ))
    }

    /// The primary the `sentinels` (`host:port`) name as `master` (`--redis-sentinel`).
    pub(super) fn sentinel(
        sentinels: &[String],
        master: &str,
        connection: AsyncConnectionConfig,
    ) -> RedisResult<PrimaryLink> {
        let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
        Ok(PrimaryLink::new(
            Resolver::Sentinel {
                sentinel: tokio::sync::Mutex::new(Sentinel::build(urls)?),
                master: master.to_owned(),
            },
            connection,
        ))
    }

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

    /// [`Link::run`](super::Link::run) on the primary, by `deadline`: once more on the primary
    /// found anew after a `READONLY` refusal.
    pub(super) async fn run<T, F, Fut>(self: &Arc<Self>, deadline: Instant, op: F) -> RedisResult<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let mut retried = false;
        loop {
            let primary = bounded(deadline, "the primary's lookup", self.primary()).await?;
            let answer =
                tokio::time::timeout_at(deadline.into(), op(Conn::Node(primary.shared.clone())))
                    .await
                    .unwrap_or_else(|_| Err(silent(&primary, self)));
            match answer {
                Ok(v) => return Ok(v),
                Err(e) if self.failed(&primary, &e, retried) => retried = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the primary answers `ROLE` as `master` and, at most every [`VERIFY_EVERY`],
    /// Sentinel still names it; a primary found otherwise is dropped.
    pub(super) async fn check(self: &Arc<Self>, deadline: Instant) -> Result<(), String> {
        let primary = bounded(deadline, "the primary's lookup", self.primary())
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = primary.shared.clone();
        let role: RedisResult<redis::Role> =
            tokio::time::timeout_at(deadline.into(), redis::cmd("ROLE").query_async(&mut conn))
                .await
                .unwrap_or_else(|_| Err(silent(&primary, self)));
        match role {
            Ok(redis::Role::Primary { .. }) => {
                let named = tokio::time::timeout_at(deadline.into(), self.still_named(&primary));
                match named.await {
                    Ok(Some(other)) => {
                        self.forget(&primary, &format!("Sentinel names {other} now"));
                        Err(format!(
                            "redis at {} is a primary Sentinel no longer names ({other} is)",
                            primary.address
                        ))
                    }
                    _ => Ok(()),
                }
            }
            Ok(_) => {
                self.forget(&primary, "ROLE says it is not a primary");
                Err(format!("redis at {} is not a primary now", primary.address))
            }
            Err(e) => {
                self.failed(&primary, &e, true);
                Err(e.to_string())
            }
        }
    }

    /// The primary, looked up first if none is known: the caller waits for the lookup (one at a
    /// time, whoever asks) within its own timeout. After a failed lookup, calls fail at once for
    /// [`RESOLVE_BACKOFF`].
    pub(super) async fn primary(self: &Arc<Self>) -> RedisResult<Arc<Primary>> {
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
    pub(super) fn failed(&self, primary: &Arc<Primary>, e: &RedisError, retried: bool) -> bool {
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

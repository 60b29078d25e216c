//! Writes that replicas must hold before they are acknowledged (`--redis-wait N`).
//!
//! `WAIT` blocks the connection it is sent on and counts only that connection's own writes, so
//! such a write cannot share the primary's multiplexed connection: it takes one of its own from
//! a small pool ([`WaitPool`]) for the write and its `WAIT`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult};

use super::failure::{classify, Failure};
use super::primary::{silent, PrimaryLink};
use super::{bounded, Conn, WriteError};

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

/// A write that fewer replicas than `--redis-wait` acknowledged in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitShort {
    pub acked: u32,
    pub wanted: u32,
    pub timeout: Duration,
}

/// [`Link::write`](super::Link::write) with a wait: the write and its `WAIT` on a connection of
/// their own to the primary, by `deadline`, once more on the primary found anew after a
/// `READONLY` refusal.
pub(super) async fn write<T, F, Fut>(
    p: &Arc<PrimaryLink>,
    wait: WaitConfig,
    deadline: Instant,
    op: F,
) -> Result<T, WriteError>
where
    F: Fn(Conn) -> Fut,
    Fut: std::future::Future<Output = RedisResult<T>>,
{
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

/// Connections for waiting writes, each used by one write and its `WAIT` at a time.
pub(super) struct WaitPool {
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

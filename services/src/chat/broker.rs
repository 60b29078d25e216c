//! Rooms fanned out through Redis: every replica `PSUBSCRIBE`s to the rooms' channels once and
//! hands each message to its own sockets in the room; a message said on any replica is
//! `PUBLISH`ed, and kept in the room's history list (`LPUSH` + `LTRIM`, the latest
//! [`CHAT_HISTORY`]), in one `MULTI`/`EXEC`.
//!
//! The broker is one Redis, named by URL. Its failure costs chat only: a join or a message
//! answers `chat_unavailable` (every call is bounded by the timeout), and the subscription
//! reconnects by itself with a backoff, so the rooms come back when Redis does. Messages
//! published while a replica's subscription was down do not reach its sockets live; a socket
//! that joins again is sent them in the history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use statelab_formats::CHAT_HISTORY;
use tokio::sync::broadcast;

use super::{room_within_limit, ChatError, Joined, ROOM_BACKLOG};

/// How long a room's history outlives its last message.
const HISTORY_TTL_SECS: u64 = 24 * 3600;
/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Rooms every replica that names the same Redis and prefix shares.
#[derive(Debug)]
pub struct BrokerRooms {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    /// The connection for `PUBLISH` and the history (multiplexed: every call shares it), made on
    /// first use and dropped on failure.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// This replica's sockets, by room: what the subscription hands each message to.
    local: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
    /// The subscription's task; ends with the rooms.
    subscriber: tokio::task::JoinHandle<()>,
}

impl Drop for BrokerRooms {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl BrokerRooms {
    /// Rooms in the Redis at `url`, channels and history keys under `prefix`, each call bounded
    /// by `timeout`. Connects lazily; fails only on a malformed URL.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("chat broker URL {url:?}: {e}"))?;
        let local = Arc::new(Mutex::new(HashMap::new()));
        let subscriber = tokio::spawn(subscribe(
            client.clone(),
            format!("{prefix}chat:*"),
            format!("{prefix}chat:"),
            Arc::clone(&local),
        ));
        Ok(BrokerRooms {
            client,
            prefix: prefix.to_owned(),
            timeout,
            conn: Mutex::new(None),
            local,
            subscriber,
        })
    }

    fn channel(&self, room: &str) -> String {
        format!("{}chat:{room}", self.prefix)
    }

    fn history_key(&self, room: &str) -> String {
        format!("{}chat-history:{room}", self.prefix)
    }

    /// Runs `f` on the connection, bounded by the timeout; a failure drops the connection so
    /// the next call connects afresh.
    async fn call<T>(
        &self,
        what: &str,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, ChatError> {
        let held = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let attempt = tokio::time::timeout(self.timeout, async {
            let mut conn = match held {
                Some(conn) => conn,
                None => {
                    let conn = self.client.get_multiplexed_async_connection().await?;
                    *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
                    conn
                }
            };
            f(&mut conn).await
        })
        .await;
        let failure = match attempt {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => format!("chat broker {what}: {e}"),
            Err(_) => format!("chat broker {what}: no answer within {:?}", self.timeout),
        };
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Err(ChatError::Unavailable(failure))
    }

    /// Joins `room`: live messages from now on, then the history, so a message said in between
    /// may come in both (the socket sends it once).
    pub async fn join(&self, room: &str) -> Result<Joined, ChatError> {
        let live = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            room_within_limit(
                &mut local,
                room,
                |tx| tx.receiver_count() > 0,
                || broadcast::channel(ROOM_BACKLOG).0,
            )?
            .subscribe()
        };
        let key = self.history_key(room);
        let newest_first: Vec<String> = self
            .call("history", async |c| {
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(CHAT_HISTORY - 1)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(Joined {
            history: newest_first.into_iter().rev().map(Arc::from).collect(),
            live,
        })
    }

    /// Keeps `message` in the room's history and publishes it to every replica.
    pub async fn say(&self, room: &str, message: Arc<str>) -> Result<(), ChatError> {
        let (key, channel) = (self.history_key(room), self.channel(room));
        self.call("publish", async |c| {
            redis::pipe()
                .atomic()
                .lpush(&key, message.as_ref())
                .ltrim(&key, 0, CHAT_HISTORY as isize - 1)
                .expire(&key, HISTORY_TTL_SECS as i64)
                .publish(&channel, message.as_ref())
                .query_async::<()>(c)
                .await
        })
        .await
    }
}

/// Holds one pattern subscription to every room's channel and hands each message to this
/// replica's sockets in that room; subscribes again after a failure, backing off up to
/// [`MAX_BACKOFF`].
async fn subscribe(
    client: redis::Client,
    pattern: String,
    channel_prefix: String,
    local: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.psubscribe(&pattern).await {
                Ok(()) => {
                    backoff = Duration::from_millis(50);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(room) = msg.get_channel_name().strip_prefix(&channel_prefix)
                        else {
                            continue;
                        };
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        let local = local.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(tx) = local.get(room) {
                            let _ = tx.send(Arc::from(payload));
                        }
                    }
                    tracing::warn!("chat broker subscription ended; subscribing again");
                }
                Err(e) => tracing::warn!(error = %e, "chat broker: PSUBSCRIBE failed"),
            },
            Err(e) => {
                tracing::debug!(error = %e, "chat broker: no connection for the subscription")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

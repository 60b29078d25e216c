//! Rooms fanned out through Redis: every replica `PSUBSCRIBE`s to the rooms' channels once and
//! hands each message to its own sockets in the room; a message said on any replica is
//! `PUBLISH`ed, and kept in the room's history list (`LPUSH` + `LTRIM`, the latest
//! [`CHAT_HISTORY`]), in one `MULTI`/`EXEC`.
//!
//! The broker is Redis in any of the store's topologies: one Redis, the primary Sentinel names,
//! or a Cluster. Calls go through the store's own [`Link`], which follows a failover; the
//! subscription is made to a node the topology names at each attempt ([`Subscribe`]): the one
//! Redis, the primary Sentinel names now, or the Cluster's nodes in turn (a `PUBLISH` on any node
//! of a Cluster reaches the subscribers of every node). Its failure costs chat only: a join or a
//! message answers `chat_unavailable` (every call is bounded by the timeout), and the
//! subscription reconnects by itself with a backoff, so the rooms come back when Redis does, or
//! when its replacement is promoted. Messages published while a replica's subscription was down
//! do not reach its sockets live; a socket that joins again is sent them in the history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::sentinel::Sentinel;
use redis::{Client, RedisResult};
use statelab_formats::CHAT_HISTORY;
use tokio::sync::broadcast;

use super::{room_within_limit, ChatError, Joined, ROOM_BACKLOG};
use crate::store::{Conn, Link, Topology};

/// How long a room's history outlives its last message.
const HISTORY_TTL_SECS: u64 = 24 * 3600;
/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The longest an attempt may spend asking Sentinel where to subscribe.
const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

/// Rooms every replica that names the same Redis and prefix shares.
#[derive(Debug)]
pub struct BrokerRooms {
    /// `PUBLISH` and the history: the store's way to a writable Redis, each call bounded.
    link: Link,
    prefix: String,
    /// Bounds a whole call, a read's second attempt included.
    timeout: Duration,
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
    /// Rooms in the Redis `topology` names, channels and history keys under `prefix`, each call
    /// bounded by `timeout`. Connects lazily; fails only on an address that cannot be parsed.
    pub fn new(topology: &Topology, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let link = Link::new(topology.clone(), timeout, None)
            .map_err(|e| anyhow::anyhow!("chat broker: {e}"))?;
        let to = Subscribe::new(topology).map_err(|e| anyhow::anyhow!("chat broker: {e}"))?;
        let local = Arc::new(Mutex::new(HashMap::new()));
        let subscriber = tokio::spawn(subscribe(
            to,
            format!("{prefix}chat:*"),
            format!("{prefix}chat:"),
            Arc::clone(&local),
        ));
        Ok(BrokerRooms {
            link,
            prefix: prefix.to_owned(),
            timeout,
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

    /// Runs `f` through the link, the whole call within the timeout. A read whose connection
    /// was lost under it (the node died, or failed over) is run once more, on the node the link
    /// finds anew, in what is left of the timeout.
    async fn call<T, F, Fut>(&self, what: &str, read: bool, f: F) -> Result<T, ChatError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            let first = self.link.run(&f).await;
            match first {
                Err(e) if read && (e.is_connection_dropped() || e.is_io_error()) => {
                    self.link.run(&f).await
                }
                outcome => outcome,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(outcome) => {
                outcome.map_err(|e| ChatError::Unavailable(format!("chat broker {what}: {e}")))
            }
            Err(_) => Err(ChatError::Unavailable(format!(
                "chat broker {what}: no answer within {:?}",
                self.timeout
            ))),
        }
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
            .call("history", true, |mut c| {
                let key = &key;
                async move {
                    redis::cmd("LRANGE")
                        .arg(key)
                        .arg(0)
                        .arg(CHAT_HISTORY - 1)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(Joined {
            history: newest_first.into_iter().rev().map(Arc::from).collect(),
            live,
        })
    }

    /// Keeps `message` in the room's history and publishes it to every replica, in one
    /// transaction. In a Cluster the channel and the history key hash to different slots, so the
    /// history is kept first and the message published after it (a failure between the two
    /// leaves it in the history, unpublished, and its sender told `chat_unavailable`); a
    /// `PUBLISH` on any node of a Cluster reaches every node's subscribers.
    pub async fn say(&self, room: &str, message: Arc<str>) -> Result<(), ChatError> {
        let (key, channel) = (self.history_key(room), self.channel(room));
        let together = self.link.spans_slots();
        self.call("publish", false, |mut c| {
            let (key, channel, message) = (&key, &channel, &message);
            async move {
                let mut history = redis::pipe();
                history
                    .atomic()
                    .lpush(key, message.as_ref())
                    .ltrim(key, 0, CHAT_HISTORY as isize - 1)
                    .expire(key, HISTORY_TTL_SECS as i64);
                if together {
                    return history
                        .publish(channel, message.as_ref())
                        .query_async::<()>(&mut c)
                        .await;
                }
                history.query_async::<()>(&mut c).await?;
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(message.as_ref())
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }
}

/// Where the subscription connects, asked again at each attempt.
enum Subscribe {
    /// The one Redis.
    Fixed(Client),
    /// The primary Sentinel names now.
    Sentinel { sentinel: Sentinel, master: String },
    /// The Cluster's nodes, in turn: pub/sub messages reach every node of a Cluster.
    Nodes { nodes: Vec<Client>, next: usize },
}

impl Subscribe {
    fn new(topology: &Topology) -> RedisResult<Subscribe> {
        let url = |node: &String| format!("redis://{node}");
        Ok(match topology {
            Topology::Single { url } => Subscribe::Fixed(Client::open(url.as_str())?),
            Topology::Sentinel { sentinels, master } => Subscribe::Sentinel {
                sentinel: Sentinel::build(sentinels.iter().map(url).collect::<Vec<_>>())?,
                master: master.clone(),
            },
            Topology::Cluster { nodes } => Subscribe::Nodes {
                nodes: nodes
                    .iter()
                    .map(|n| Client::open(url(n)))
                    .collect::<RedisResult<_>>()?,
                next: 0,
            },
        })
    }

    /// The node to subscribe on for the next attempt.
    async fn node(&mut self) -> RedisResult<Client> {
        match self {
            Subscribe::Fixed(client) => Ok(client.clone()),
            Subscribe::Sentinel { sentinel, master } => {
                sentinel.async_master_for(master, None).await
            }
            Subscribe::Nodes { nodes, next } => {
                let client = nodes[*next % nodes.len()].clone();
                *next += 1;
                Ok(client)
            }
        }
    }
}

/// Holds one pattern subscription to every room's channel and hands each message to this
/// replica's sockets in that room; subscribes again after a failure, backing off up to
/// [`MAX_BACKOFF`].
async fn subscribe(
    mut to: Subscribe,
    pattern: String,
    channel_prefix: String,
    local: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let pubsub = match tokio::time::timeout(LOOKUP_LIMIT, to.node()).await {
            Ok(Ok(client)) => client.get_async_pubsub().await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no node to subscribe on",
                format!("asking took over {LOOKUP_LIMIT:?}"),
            ))),
        };
        match pubsub {
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

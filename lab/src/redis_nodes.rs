//! Questions the lab asks its Redis nodes and Sentinels: a node's `ROLE`, the primary Sentinel
//! names now, and whether a Sentinel is ready to fail over. Each is bounded and answers `None`
//! when the node does not answer, so a dead node never holds up a command.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use redis::{AsyncConnectionConfig, Client, FromRedisValue};

use crate::model::{SENTINEL_MASTER_NAME, SENTINEL_NODES};

/// Longest wait for one node's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// One command to the node at `addr`, within [`ASK_TIMEOUT`].
async fn ask<T: FromRedisValue>(addr: SocketAddr, cmd: &redis::Cmd) -> Option<T> {
    let client = Client::open(format!("redis://{addr}")).ok()?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    let query = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()?;
        cmd.query_async::<T>(&mut conn).await.ok()
    };
    tokio::time::timeout(ASK_TIMEOUT * 2, query).await.ok()?
}

/// The node at `addr` answers `PING`.
pub async fn answers(addr: SocketAddr) -> bool {
    ask::<String>(addr, &redis::cmd("PING")).await.is_some()
}

/// A node's role as `ROLE` names it: `master`, `slave` or `sentinel`.
pub async fn role(addr: SocketAddr) -> Option<String> {
    let reply: redis::Value = ask(addr, &redis::cmd("ROLE")).await?;
    match reply {
        redis::Value::Array(items) => match items.first()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The primary's address as the first Sentinel that answers names it.
pub async fn sentinel_primary(sentinels: &[SocketAddr]) -> Option<SocketAddr> {
    for s in sentinels {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg(SENTINEL_MASTER_NAME);
        let Some((host, port)) = ask::<Option<(String, u16)>>(*s, &cmd).await.flatten() else {
            continue;
        };
        if let Ok(ip) = host.parse() {
            return Some(SocketAddr::new(ip, port));
        }
    }
    None
}

/// The Sentinel at `addr` monitors the primary, sees it up, and knows every replica and every
/// other Sentinel: only then can it take part in a failover.
pub async fn sentinel_ready(addr: SocketAddr) -> bool {
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg("master").arg(SENTINEL_MASTER_NAME);
    let Some(fields) = ask::<HashMap<String, String>>(addr, &cmd).await else {
        return false;
    };
    let count = |k: &str| {
        fields
            .get(k)
            .and_then(|v| v.parse::<u8>().ok())
            .unwrap_or(0)
    };
    let flags = fields.get("flags").map_or("", String::as_str);
    flags == "master"
        && count("num-slaves") >= SENTINEL_NODES - 1
        && count("num-other-sentinels") >= SENTINEL_NODES - 1
}

/// The node at `addr` is a replica whose link to its primary is up: its initial copy is done and
/// it receives the stream of writes. Until then a failover to it would lose everything.
pub async fn replica_synced(addr: SocketAddr) -> bool {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("replication");
    ask::<String>(addr, &cmd)
        .await
        .is_some_and(|info| info.lines().any(|l| l.trim() == "master_link_status:up"))
}

/// Makes the node at `addr` a replica of `primary` (`REPLICAOF`); true once it said OK.
pub async fn replicate(addr: SocketAddr, primary: SocketAddr) -> bool {
    let mut cmd = redis::cmd("REPLICAOF");
    cmd.arg(primary.ip().to_string()).arg(primary.port());
    ask::<String>(addr, &cmd).await.is_some()
}

/// Keys the node at `addr` holds (`DBSIZE`).
pub async fn dbsize(addr: SocketAddr) -> Option<u64> {
    ask(addr, &redis::cmd("DBSIZE")).await
}

/// The node reports `cluster_state:ok`: every slot is served.
pub async fn cluster_ok(addr: SocketAddr) -> bool {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("INFO");
    ask::<String>(addr, &cmd)
        .await
        .is_some_and(|info| info.lines().any(|l| l.trim() == "cluster_state:ok"))
}

/// Waits until every node of a new cluster says it is ok and every replica holds its copy.
pub async fn wait_cluster_ready(nodes: &[SocketAddr], limit: Duration) -> anyhow::Result<()> {
    crate::probe::wait_until(
        "every cluster node to report cluster_state:ok",
        limit,
        || async {
            for n in nodes {
                if !cluster_ok(*n).await {
                    return false;
                }
            }
            true
        },
    )
    .await?;
    crate::probe::wait_until("every cluster replica to hold its copy", limit, || async {
        for n in nodes {
            if role(*n).await.as_deref() != Some("master") && !replica_synced(*n).await {
                return false;
            }
        }
        true
    })
    .await
}

/// Of these nodes, the primary holding the most keys: the one whose loss costs the most.
pub async fn fullest_primary<N: Copy>(nodes: &[(N, SocketAddr)]) -> Option<N> {
    let mut best: Option<(N, u64)> = None;
    for (n, addr) in nodes {
        if role(*addr).await.as_deref() != Some("master") {
            continue;
        }
        let keys = dbsize(*addr).await.unwrap_or(0);
        if best.is_none_or(|(_, k)| keys > k) {
            best = Some((*n, keys));
        }
    }
    best.map(|(n, _)| n)
}

/// `ROLE`'s word as the status table shows it.
pub fn role_word(role: String) -> String {
    match role.as_str() {
        "master" => "primary".to_string(),
        "slave" => "replica".to_string(),
        _ => role,
    }
}

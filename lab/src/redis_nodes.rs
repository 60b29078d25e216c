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

/// `ROLE`'s word as the status table shows it.
pub fn role_word(role: String) -> String {
    match role.as_str() {
        "master" => "primary".to_string(),
        "slave" => "replica".to_string(),
        _ => role,
    }
}

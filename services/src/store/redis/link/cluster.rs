//! A Redis Cluster: one connection made on first use, which follows the slot map and the
//! cluster's failovers by itself.

use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::RedisResult;

use super::{bounded, Conn};

/// The cluster connection, made on first use.
pub(super) struct ClusterLink {
    client: ClusterClient,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl ClusterLink {
    /// The cluster seeded by `nodes` (`host:port`), every call to a node bounded by `timeout`.
    pub(super) fn new(nodes: &[String], timeout: Duration) -> RedisResult<ClusterLink> {
        let urls: Vec<String> = nodes.iter().map(|s| format!("redis://{s}")).collect();
        let client = ClusterClient::builder(urls)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .min_retry_wait(20)
            .max_retry_wait(200)
            .build()?;
        Ok(ClusterLink {
            client,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    async fn conn(&self) -> RedisResult<Conn> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(Conn::Cluster(c.clone()));
        }
        let c = self.client.get_async_connection().await?;
        *slot = Some(c.clone());
        Ok(Conn::Cluster(c))
    }

    /// [`Link::run`](super::Link::run) on the cluster: the connection and the call, both by
    /// `deadline`.
    pub(super) async fn run<T, F, Fut>(&self, deadline: Instant, op: F) -> RedisResult<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let conn = bounded(deadline, "the cluster", self.conn()).await?;
        bounded(deadline, "the cluster", op(conn)).await
    }

    /// Whether `CLUSTER INFO` says every slot is served.
    pub(super) async fn check(&self, deadline: Instant) -> Result<(), String> {
        let mut conn = bounded(deadline, "the cluster", self.conn())
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

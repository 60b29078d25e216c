//! The Redis nodes: their folders, Sentinel configuration, start order, the cluster, where they
//! listen and whether they run.

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context};

use crate::labdir::LabDir;
use crate::model::{
    NativePorts, Part, Store, StoreNode, SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS,
    SENTINEL_MASTER_NAME, SENTINEL_QUORUM,
};
use crate::probe::wait_until;
use crate::redis_nodes;
use crate::say;
use crate::topology::StoreNodes;

use super::{redis_cli, Native};

impl Native {
    /// Starts the Redis nodes: the data nodes, then the Sentinels, waiting until each Sentinel
    /// knows the primary, its replicas and the other Sentinels, so that a kill right after `up`
    /// is already failed over.
    pub(super) async fn start_store(&self) -> anyhow::Result<()> {
        let nodes = self.store.store.nodes();
        for group in [false, true] {
            let mut children = Vec::new();
            for n in nodes.iter().filter(|n| n.is_sentinel() == group) {
                children.push((Part::Store(*n), self.launch(Part::Store(*n))?));
            }
            for (part, child) in &mut children {
                self.wait_healthy(*part, child)
                    .await
                    .with_context(|| format!("{part} did not start"))?;
            }
        }
        if self.store.store == Store::Cluster {
            self.create_cluster(&nodes).await?;
        }
        if self.store.store == Store::Sentinel {
            for n in nodes
                .iter()
                .filter(|n| **n != StoreNode::Data(1) && !n.is_sentinel())
            {
                let addr = self.node_addr(*n);
                wait_until(
                    &format!("{n} to hold a copy of redis-1"),
                    self.settings.up_timeout,
                    || redis_nodes::replica_synced(addr),
                )
                .await?;
            }
            for n in nodes.iter().filter(|n| n.is_sentinel()) {
                let addr = self.node_addr(*n);
                wait_until(
                    &format!("{n} to see the primary, both replicas and both other sentinels"),
                    self.settings.up_timeout,
                    || redis_nodes::sentinel_ready(addr),
                )
                .await?;
            }
        }
        let list: Vec<String> = nodes
            .iter()
            .map(|n| format!("{n} :{}", self.ports.node(*n)))
            .collect();
        say(format!(
            "redis ({}) up: {} (data in {})",
            self.store.store.name(),
            list.join(", "),
            self.dir.path("redis*").display()
        ));
        Ok(())
    }

    /// `redis-cli --cluster create` over the six nodes (three primaries, a replica each), then
    /// waits until every node says the cluster is ok and every replica holds its copy.
    async fn create_cluster(&self, nodes: &[StoreNode]) -> anyhow::Result<()> {
        let addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| self.node_addr(*n)).collect();
        let log = self.dir.log("redis-cluster-create");
        let out = fs::File::create(&log)?;
        let mut create = tokio::process::Command::new(redis_cli()?);
        create
            .arg("--cluster")
            .arg("create")
            .args(addrs.iter().map(ToString::to_string))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        let status = tokio::time::timeout(self.settings.up_timeout, create.status())
            .await
            .with_context(|| {
                format!(
                    "redis-cli --cluster create did not finish in {} s; see {}",
                    self.settings.up_timeout.as_secs(),
                    log.display()
                )
            })?
            .context("cannot run redis-cli --cluster create")?;
        if !status.success() {
            bail!("redis-cli --cluster create failed; see {}", log.display());
        }
        redis_nodes::wait_cluster_ready(&addrs, self.settings.up_timeout).await
    }

    pub(super) fn node_addr(&self, n: StoreNode) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.node(n)))
    }

    pub(super) fn sentinels(&self) -> Vec<std::net::SocketAddr> {
        self.ports
            .store
            .keys()
            .filter(|n| n.is_sentinel())
            .map(|n| self.node_addr(*n))
            .collect()
    }
}

impl StoreNodes for Native {
    fn topology(&self) -> Store {
        self.store.store
    }

    fn reach(&self, n: StoreNode) -> Option<std::net::SocketAddr> {
        self.ports.store.contains_key(&n).then(|| self.node_addr(n))
    }

    fn node_running(&self, n: StoreNode) -> bool {
        self.running(Part::Store(n)).is_some()
    }
}

/// Where a Redis node keeps its data (and a Sentinel its configuration, which it rewrites).
pub(super) fn node_dir(dir: &LabDir, n: StoreNode) -> PathBuf {
    dir.path(&n.to_string())
}

/// A Sentinel's configuration file, which it must be able to rewrite: it records there what it
/// learns (replicas, other Sentinels, the primary after a failover).
pub(super) fn write_sentinel_config(
    dir: &LabDir,
    ports: &NativePorts,
    n: StoreNode,
) -> anyhow::Result<()> {
    let text = format!(
        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
         sentinel monitor {SENTINEL_MASTER_NAME} 127.0.0.1 {primary} {SENTINEL_QUORUM}\n\
         sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} {SENTINEL_DOWN_AFTER_MS}\n\
         sentinel failover-timeout {SENTINEL_MASTER_NAME} {SENTINEL_FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {SENTINEL_MASTER_NAME} 1\n",
        port = ports.node(n),
        dir = node_dir(dir, n).display(),
        primary = ports.node(StoreNode::Data(1)),
    );
    fs::write(node_dir(dir, n).join("sentinel.conf"), text)?;
    Ok(())
}

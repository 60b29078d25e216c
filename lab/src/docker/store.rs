//! The Redis nodes in the compose network: their addresses, the primary, cluster creation.

use std::net::SocketAddr;

use anyhow::{bail, Context};

use crate::model::{Part, Store, StoreNode};
use crate::redis_nodes;

use super::{docker, run, stdout_of, Docker};

impl Docker {
    /// The running cluster nodes and their addresses.
    fn cluster_nodes(&self) -> Vec<(StoreNode, SocketAddr)> {
        Store::Cluster
            .nodes()
            .into_iter()
            .filter(|n| self.running_node(*n))
            .filter_map(|n| Some((n, self.node_addr(n)?)))
            .collect()
    }

    fn running_node(&self, n: StoreNode) -> bool {
        self.cid(Part::Store(n)).is_some_and(|cid| {
            stdout_of(docker().args(["inspect", "-f", "{{.State.Running}}", &cid])).trim() == "true"
        })
    }

    /// A Redis node's address in the lab network, which the host reaches directly.
    pub(super) fn node_addr(&self, n: StoreNode) -> Option<SocketAddr> {
        format!(
            "{}.{}:{}",
            self.net_prefix,
            n.container_octet(),
            n.container_port()
        )
        .parse()
        .ok()
    }

    /// The data node that is primary now: the single Redis, or the one Sentinel names.
    pub(super) async fn primary(&self) -> Option<StoreNode> {
        match self.store.store {
            Store::Single => Some(StoreNode::Redis),
            Store::Cluster => redis_nodes::fullest_primary(&self.cluster_nodes()).await,
            Store::Sentinel => {
                let sentinels: Vec<SocketAddr> = Store::Sentinel
                    .nodes()
                    .into_iter()
                    .filter(|n| n.is_sentinel())
                    .filter_map(|n| self.node_addr(n))
                    .collect();
                let addr = redis_nodes::sentinel_primary(&sentinels).await?;
                Store::Sentinel
                    .nodes()
                    .into_iter()
                    .find(|n| !n.is_sentinel() && self.node_addr(*n) == Some(addr))
            }
        }
    }

    /// `primaries`: the data nodes that are primary now and whose containers run.
    pub async fn primaries(&self) -> Vec<String> {
        if self.store.store == Store::Cluster {
            let mut names = Vec::new();
            for (n, addr) in self.cluster_nodes() {
                if redis_nodes::role(addr).await.as_deref() == Some("master") {
                    names.push(n.to_string());
                }
            }
            return names;
        }
        let Some(n) = self.primary().await else {
            return Vec::new();
        };
        if self.running_node(n) {
            vec![n.to_string()]
        } else {
            Vec::new()
        }
    }

    /// `redis-cli --cluster create` inside `redis-cluster-1`'s container, over the six nodes'
    /// lab addresses; then waits until the cluster is ok and every replica holds its copy.
    pub(super) async fn create_cluster(&self) -> anyhow::Result<()> {
        let first = Part::Store(StoreNode::Cluster(1));
        let cid = self
            .cid(first)
            .with_context(|| format!("no container for {first}"))?;
        let addrs: Vec<SocketAddr> = Store::Cluster
            .nodes()
            .into_iter()
            .filter_map(|n| self.node_addr(n))
            .collect();
        let out = run(docker()
            .args(["exec", &cid, "redis-cli", "--cluster", "create"])
            .args(addrs.iter().map(ToString::to_string))
            .args(["--cluster-replicas", "1", "--cluster-yes"]))?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        redis_nodes::wait_cluster_ready(&addrs, self.settings.up_timeout).await
    }
}

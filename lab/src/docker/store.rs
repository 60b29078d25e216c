//! The Redis nodes in the compose network: their addresses, whether they run, cluster creation.

use std::net::SocketAddr;

use anyhow::{bail, Context};

use crate::model::{Part, Store, StoreNode};
use crate::redis_nodes;
use crate::topology::StoreNodes;

use super::{docker, run, stdout_of, Docker};

impl Docker {
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

impl StoreNodes for Docker {
    fn topology(&self) -> Store {
        self.store.store
    }

    fn reach(&self, n: StoreNode) -> Option<SocketAddr> {
        self.node_addr(n)
    }

    fn node_running(&self, n: StoreNode) -> bool {
        self.running_node(n)
    }
}

//! The store's topology above the platform: which data node is primary now, and which are
//! primaries, asked of Redis and Sentinel once for both ways of running the lab. A platform says
//! only what it knows of its nodes ([`StoreNodes`]): the topology `up` chose, where the host
//! reaches a node, and whether it runs.

use std::net::SocketAddr;

use crate::model::{Store, StoreNode};
use crate::redis_nodes;

/// What a platform knows of its Redis nodes.
pub trait StoreNodes {
    /// The topology `up` chose.
    fn topology(&self) -> Store;
    /// Where the host reaches the node: natively on loopback, in Docker in the lab network.
    fn reach(&self, n: StoreNode) -> Option<SocketAddr>;
    /// Whether the node's process or container runs.
    fn node_running(&self, n: StoreNode) -> bool;
}

/// The topology's nodes that run, with their addresses.
fn running_nodes(lab: &impl StoreNodes) -> Vec<(StoreNode, SocketAddr)> {
    lab.topology()
        .nodes()
        .into_iter()
        .filter(|n| lab.node_running(*n))
        .filter_map(|n| Some((n, lab.reach(n)?)))
        .collect()
}

/// The data node that is primary now: the single Redis, the one Sentinel names, or the cluster
/// primary holding the most sessions.
pub async fn primary(lab: &impl StoreNodes) -> Option<StoreNode> {
    let store = lab.topology();
    match store {
        Store::Single => Some(StoreNode::Redis),
        Store::Cluster => redis_nodes::fullest_primary(&running_nodes(lab)).await,
        Store::Sentinel => {
            let sentinels: Vec<SocketAddr> = store
                .nodes()
                .into_iter()
                .filter(|n| n.is_sentinel())
                .filter_map(|n| lab.reach(n))
                .collect();
            let addr = redis_nodes::sentinel_primary(&sentinels).await?;
            store
                .nodes()
                .into_iter()
                .find(|n| !n.is_sentinel() && lab.reach(*n) == Some(addr))
        }
    }
}

/// `primaries`: the data nodes that are primary now and run.
pub async fn primaries(lab: &impl StoreNodes) -> Vec<String> {
    if lab.topology() == Store::Cluster {
        let mut names = Vec::new();
        for (n, addr) in running_nodes(lab) {
            if redis_nodes::role(addr).await.as_deref() == Some("master") {
                names.push(n.to_string());
            }
        }
        return names;
    }
    match primary(lab).await {
        Some(n) if lab.node_running(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

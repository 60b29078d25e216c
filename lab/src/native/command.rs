//! The command line of each part.

use std::process::Command;

use crate::model::{
    Design, Part, Store, StoreNode, CLUSTER_NODE_TIMEOUT_MS, REDIS_MEMORY_FLAGS, REPLICATION_FLAGS,
    SENTINEL_MASTER_NAME,
};

use super::store::node_dir;
use super::{redis_server, Native};

impl Native {
    /// The command line of a part; a data node starts as a replica of `replica_of`.
    pub(super) fn command(
        &self,
        part: Part,
        replica_of: Option<StoreNode>,
    ) -> anyhow::Result<Command> {
        let mut cmd;
        match part {
            Part::Store(n) if n.is_sentinel() => {
                cmd = Command::new(redis_server()?);
                cmd.arg(node_dir(&self.dir, n).join("sentinel.conf"))
                    .arg("--sentinel");
            }
            Part::Store(n) => {
                cmd = Command::new(redis_server()?);
                cmd.arg("--port")
                    .arg(self.ports.node(n).to_string())
                    .args(["--bind", "127.0.0.1", "--dir"])
                    .arg(node_dir(&self.dir, n))
                    .args(["--appendonly", "yes", "--appendfsync", "everysec"])
                    .args(REDIS_MEMORY_FLAGS)
                    .args(["--save", "", "--daemonize", "no"]);
                match n {
                    StoreNode::Data(_) => {
                        cmd.args(REPLICATION_FLAGS);
                    }
                    StoreNode::Cluster(_) => {
                        cmd.args(REPLICATION_FLAGS)
                            .args(["--cluster-enabled", "yes"])
                            .args(["--cluster-config-file", "nodes.conf"])
                            .arg("--cluster-node-timeout")
                            .arg(CLUSTER_NODE_TIMEOUT_MS.to_string())
                            .arg("--cluster-port")
                            .arg(self.ports.buses.get(&n).copied().unwrap_or(0).to_string());
                    }
                    _ => {}
                }
                if let Some(primary) = replica_of {
                    cmd.arg("--replicaof")
                        .arg("127.0.0.1")
                        .arg(self.ports.node(primary).to_string());
                }
            }
            Part::Proxy => {
                cmd = Command::new(self.bin("statelab-proxy")?);
                cmd.arg("--config").arg(self.dir.path("proxy.toml"));
                // The token `up` recorded, never one the caller's environment holds now.
                match self.dir.admin_token() {
                    Some(token) => cmd.env("STATELAB_ADMIN_TOKEN", token.as_str()),
                    None => cmd.env_remove("STATELAB_ADMIN_TOKEN"),
                };
            }
            Part::Replica(r) => {
                cmd = Command::new(self.bin(r.design.as_str())?);
                cmd.arg("--listen")
                    .arg(format!("127.0.0.1:{}", self.ports.replica(r)))
                    .arg("--replica")
                    .arg(r.to_string())
                    .arg("--work-us")
                    .arg(self.sizing.work_us.to_string())
                    .arg("--work-dist")
                    .arg(self.sizing.work_dist.as_str());
                match r.design {
                    // Its avatars on its own disk: a directory of its own in the lab's.
                    Design::Stateful => {
                        cmd.arg("--data-dir")
                            .arg(self.dir.path(&format!("data/{r}")));
                    }
                    Design::Stateless => {
                        cmd.arg("--jwt-secret-file")
                            .arg(self.dir.path("jwt-secret"));
                    }
                    Design::Externalized => {
                        // Only the flags below choose the Redis: none from the caller's shell.
                        for var in [
                            "STATELAB_REDIS_URL",
                            "STATELAB_REDIS_SENTINEL",
                            "STATELAB_REDIS_CLUSTER",
                            "STATELAB_REDIS_WAIT",
                        ] {
                            cmd.env_remove(var);
                        }
                        match self.store.store {
                            Store::Single => cmd.arg("--redis-url").arg(format!(
                                "redis://127.0.0.1:{}",
                                self.ports.node(StoreNode::Redis)
                            )),
                            Store::Sentinel => {
                                let list: Vec<String> =
                                    self.sentinels().iter().map(ToString::to_string).collect();
                                cmd.arg("--redis-sentinel")
                                    .arg(list.join(","))
                                    .arg("--redis-master-name")
                                    .arg(SENTINEL_MASTER_NAME)
                            }
                            Store::Cluster => {
                                let list: Vec<String> = self
                                    .ports
                                    .store
                                    .keys()
                                    .map(|n| self.node_addr(*n).to_string())
                                    .collect();
                                cmd.arg("--redis-cluster").arg(list.join(","))
                            }
                        };
                        cmd.arg("--redis-wait").arg(self.store.wait.to_string());
                    }
                }
            }
        }
        Ok(cmd)
    }
}

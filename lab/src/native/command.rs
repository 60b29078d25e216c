//! The command line of each part.

use std::path::PathBuf;
use std::process::Command;

use crate::model::{
    Design, Part, Replica, Store, StoreNode, CLUSTER_NODE_TIMEOUT_MS, REDIS_MEMORY_FLAGS,
    REPLICATION_FLAGS, SENTINEL_MASTER_NAME,
};

use super::store::node_dir;
use super::{redis_server, Native, JWT_SECRET, OBJECTS_DIR};

/// The object store settings a replica could take from the caller's shell.
const S3_VARS: [&str; 5] = [
    "STATELAB_S3_URL",
    "STATELAB_S3_BUCKET",
    "STATELAB_S3_REGION",
    "STATELAB_S3_ACCESS_KEY",
    "STATELAB_S3_SECRET_KEY",
];

/// The chat broker settings a replica could take from the caller's shell.
const CHAT_VARS: [&str; 3] = [
    "STATELAB_CHAT_REDIS_URL",
    "STATELAB_CHAT_PREFIX",
    "STATELAB_CHAT_TIMEOUT_MS",
];

impl Native {
    /// A stateful replica's own disk (`data/stateful-K` in the lab directory); the other designs
    /// keep their files in the object store.
    pub(super) fn disk(&self, r: Replica) -> Option<PathBuf> {
        (r.design == Design::Stateful).then(|| self.dir.path(&format!("data/{r}")))
    }

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
            Part::Objects => {
                let keys = self.s3_keys()?;
                cmd = Command::new(self.s3s_fs()?);
                cmd.args(["--host", "127.0.0.1", "--port"])
                    .arg(self.ports.objects.to_string())
                    .arg("--access-key")
                    .arg(&keys.access)
                    .arg("--secret-key")
                    .arg(&keys.secret)
                    .arg(self.dir.path(OBJECTS_DIR));
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
                // Only the lab's object store and chat broker: none from the caller's shell.
                for var in S3_VARS.iter().chain(&CHAT_VARS) {
                    cmd.env_remove(var);
                }
                if let Some(disk) = self.disk(r) {
                    // Its avatars on its own disk: a directory of its own in the lab's.
                    cmd.arg("--data-dir").arg(disk);
                } else {
                    let keys = self.s3_keys()?;
                    cmd.arg("--s3-url")
                        .arg(format!("http://127.0.0.1:{}", self.ports.objects))
                        .env("STATELAB_S3_ACCESS_KEY", &keys.access)
                        .env("STATELAB_S3_SECRET_KEY", &keys.secret);
                }
                match r.design {
                    Design::Stateful => {}
                    Design::Stateless => {
                        cmd.arg("--jwt-secret-file").arg(self.dir.path(JWT_SECRET));
                        // Its chat rooms through the lab's Redis, as the externalized design's
                        // go through its own: the token carries no socket.
                        if self.store.store == Store::Single {
                            cmd.arg("--chat-redis-url").arg(format!(
                                "redis://127.0.0.1:{}",
                                self.ports.node(StoreNode::Redis)
                            ));
                        }
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

//! The container lab's steps of `scale` ([`Scaling`]): replica containers beyond compose's,
//! configured as compose configures the first three, and deleted again.

use anyhow::{bail, Context};

use crate::model::{Design, Part, Replica, Store, CONTAINER_SERVICE_PORT, SENTINEL_MASTER_NAME};
use crate::scale::Scaling;

use super::{docker, run, Docker};

impl Scaling for Docker {
    /// A further container of the lab image on the lab network at the address the model gives
    /// it (`.1k`, `.2k`, `.3k`). It carries the compose project's labels, so `status`, `kill`,
    /// `start`, `mem` and `down` treat it like the rest.
    async fn add(&mut self, r: Replica) -> anyhow::Result<String> {
        let network = self.lab_network().with_context(|| {
            format!(
                "no lab network for project {}; is the Docker lab up?",
                self.project
            )
        })?;
        let address = format!("{}.{}", self.net_prefix, r.container_octet());
        self.run_replica(&network, r, &address)?;
        self.members.push(r);
        self.members.sort();
        self.write_members()?;
        self.wait_healthy(Part::Replica(r), self.settings.up_timeout)
            .await
            .with_context(|| format!("{r} did not become healthy; see: scripts/lab logs {r}"))?;
        Ok(format!("{address}:{CONTAINER_SERVICE_PORT}"))
    }

    async fn remove(&mut self, r: Replica) -> anyhow::Result<&'static str> {
        if let Some(cid) = self.cid(Part::Replica(r)) {
            let _ = run(docker().args(["rm", "-f", &cid]));
        }
        self.members.retain(|m| *m != r);
        self.write_members()?;
        Ok("its container deleted")
    }
}

impl Docker {
    /// One more replica container, configured as compose configures the first three.
    fn run_replica(&self, network: &str, r: Replica, address: &str) -> anyhow::Result<()> {
        let name = r.to_string();
        let mut cmd = docker();
        cmd.args(["run", "-d", "--network", network, "--ip", address])
            .arg("--name")
            .arg(format!("{}-{name}-1", self.project))
            .arg("--label")
            .arg(format!("com.docker.compose.project={}", self.project))
            .arg("--label")
            .arg(format!("com.docker.compose.service={name}"))
            .arg("--label")
            .arg(format!("statelab.scaled={}", self.project))
            .args([
                "--health-cmd",
                &format!("statelab-healthcheck {CONTAINER_SERVICE_PORT} /health"),
            ])
            .args([
                "--health-interval",
                "2s",
                "--health-timeout",
                "3s",
                "--health-retries",
                "3",
            ])
            .args(["--health-start-period", "20s", "--stop-timeout", "10"])
            .arg("-e")
            .arg(format!("STATELAB_REPLICA={name}"))
            .arg("-e")
            .arg(format!("STATELAB_WORK_US={}", self.sizing.work_us))
            .arg("-e")
            .arg(format!("STATELAB_WORK_DIST={}", self.sizing.work_dist));
        if let Some(cores) = Part::Replica(r).budget(&self.sizing) {
            cmd.args(super::budget::run_flags(cores));
        }
        // lab.env: the stateless replicas' shared JWT key and the object store's keys.
        if r.design != Design::Stateful {
            cmd.arg("--env-file")
                .arg(self.settings.root.join("deploy/lab.env"))
                .arg("-e")
                .arg(format!("STATELAB_S3_URL={}", self.objects_url()));
        }
        match r.design {
            Design::Stateful => {}
            // Its chat rooms through the single Redis, as compose gives the first three.
            Design::Stateless => {
                if self.store.store == Store::Single {
                    cmd.args(["-e", "STATELAB_CHAT_REDIS_URL=redis://redis:6379"]);
                }
            }
            Design::Externalized => {
                cmd.args(["-e", "STATELAB_REDIS_URL=redis://redis:6379"]);
                if self.store.store == Store::Cluster {
                    let nodes: Vec<String> = Store::Cluster
                        .nodes()
                        .into_iter()
                        .filter_map(|n| self.node_addr(n))
                        .map(|a| a.to_string())
                        .collect();
                    cmd.arg("-e")
                        .arg(format!("STATELAB_REDIS_CLUSTER={}", nodes.join(",")));
                }
                if self.store.store == Store::Sentinel {
                    let sentinels: Vec<String> = Store::Sentinel
                        .nodes()
                        .into_iter()
                        .filter(|n| n.is_sentinel())
                        .filter_map(|n| self.node_addr(n))
                        .map(|a| a.to_string())
                        .collect();
                    cmd.arg("-e")
                        .arg(format!("STATELAB_REDIS_SENTINEL={}", sentinels.join(",")))
                        .arg("-e")
                        .arg(format!("STATELAB_REDIS_MASTER_NAME={SENTINEL_MASTER_NAME}"))
                        .arg("-e")
                        .arg(format!("STATELAB_REDIS_WAIT={}", self.store.wait));
                }
            }
        }
        cmd.arg(&self.image).arg(r.design.as_str());
        let out = run(&mut cmd)?;
        if !out.status.success() {
            bail!(
                "docker run {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

//! `scale`: replica containers beyond compose's, added to and removed from the proxy's pools.

use std::time::Duration;

use anyhow::{bail, Context};
use statelab_formats::lab::Scaled;

use crate::model::{
    check_scale, Design, Part, Replica, Store, CONTAINER_SERVICE_PORT, MAX_REPLICAS_PER_POOL,
    SENTINEL_MASTER_NAME,
};
use crate::say;

use super::{docker, run, Docker};

impl Docker {
    /// Grows or shrinks a pool to `n` replicas: further containers of the lab image on the lab
    /// network at the addresses the model gives them (`.1k`, `.2k`, `.3k`), registered with the
    /// proxy; or the highest-numbered ones taken out of the proxy (after `drain`, or at once)
    /// and removed. They carry the compose project's labels, so `status`, `kill`, `start`, `mem`
    /// and `down` treat them like the rest.
    pub async fn scale(
        &mut self,
        design: Design,
        n: u8,
        drain: Option<Duration>,
    ) -> anyhow::Result<Scaled> {
        check_scale(n)?;
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let network = self.lab_network().with_context(|| {
            format!(
                "no lab network for project {}; is the Docker lab up?",
                self.project
            )
        })?;
        let mut count = self.members.iter().filter(|r| r.design == design).count();
        while count < usize::from(n) {
            let index = (1..=MAX_REPLICAS_PER_POOL)
                .find(|i| !self.members.contains(&Replica { design, index: *i }))
                .context("no free replica number")?;
            let r = Replica { design, index };
            let address = format!("{}.{}", self.net_prefix, r.container_octet());
            self.run_replica(&network, r, &address)?;
            self.members.push(r);
            self.members.sort();
            self.write_members()?;
            let part = Part::Replica(r);
            self.wait_healthy(part, self.settings.up_timeout)
                .await
                .with_context(|| {
                    format!("{r} did not become healthy; see: scripts/lab logs {r}")
                })?;
            self.probe
                .add_replica(
                    self.admin_port,
                    design.as_str(),
                    &r.to_string(),
                    &format!("{address}:{CONTAINER_SERVICE_PORT}"),
                )
                .await?;
            self.probe
                .wait_routed(self.admin_port, part, self.settings.up_timeout)
                .await?;
            say(format!("{r} added at {address}"));
            added.push(r.to_string());
            count += 1;
        }
        while count > usize::from(n) {
            let Some(r) = self
                .members
                .iter()
                .rev()
                .find(|r| r.design == design)
                .copied()
            else {
                break;
            };
            let how = self
                .probe
                .remove_replica(self.admin_port, &r.to_string(), drain)
                .await?;
            if let Some(cid) = self.cid(Part::Replica(r)) {
                let _ = run(docker().args(["rm", "-f", &cid]));
            }
            self.members.retain(|m| *m != r);
            self.write_members()?;
            say(format!("{r} removed ({how}) and its container deleted"));
            removed.push(r.to_string());
            count -= 1;
        }
        say(format!("{design}: {n} replica(s)"));
        Ok(Scaled {
            pool: design,
            replicas: self
                .members
                .iter()
                .filter(|r| r.design == design)
                .map(Replica::to_string)
                .collect(),
            added,
            removed,
        })
    }

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

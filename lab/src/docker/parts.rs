//! One part at a time: status, kill, start and logs.

use anyhow::{bail, Context};
use statelab_formats::lab::{Killed, LabStatus, PartStatus, Started};

use crate::labdir::Mode;
use crate::model::{start_plan, Part, Target};
use crate::probe::wait_until;
use crate::redis_nodes;
use crate::say;
use crate::topology;

use super::{docker, run, run_visible, Docker};

impl Docker {
    /// Each part, up or down and healthy or not, and the proxy's own view.
    pub async fn status(&self) -> LabStatus {
        let mut parts = Vec::new();
        for part in Part::with(self.store.store, self.members.iter().copied()) {
            let (cid, state, health, cpu_budget) = match self.cid(part) {
                Some(cid) => {
                    let (s, h) = self.container_health(&cid);
                    let budget = self.inspect_cpu(&cid).0;
                    (Some(cid.chars().take(12).collect::<String>()), s, h, budget)
                }
                None => (None, "missing".to_string(), "-".to_string(), None),
            };
            let up = state == "running";
            let role = match part {
                Part::Store(n) if up => match self.node_addr(n) {
                    Some(addr) => redis_nodes::role(addr).await.map(redis_nodes::role_word),
                    None => None,
                },
                _ => None,
            };
            parts.push(PartStatus {
                name: part.to_string(),
                up,
                down: (!up).then_some(state),
                health: (up && health != "-").then_some(health),
                role,
                pid: None,
                container: cid,
                cpu_budget,
            });
        }
        LabStatus {
            mode: Mode::Docker.as_str().to_string(),
            parts,
            admin_port: self.admin_port,
            proxy: self.probe.admin_status(self.admin_port).await,
        }
    }

    fn cid_or_err(&self, part: Part) -> anyhow::Result<String> {
        if let Part::Store(n) = part {
            if !self.store.store.nodes().contains(&n) {
                bail!(
                    "{part} is not a node of this lab's Redis ({}); scripts/lab status lists them",
                    self.store.store.name()
                );
            }
        }
        if let Part::Replica(r) = part {
            if !self.members.contains(&r) {
                bail!(
                    "{part} is not a member of the lab now (scripts/lab status lists them; scripts/lab scale {} N adds some)",
                    r.design
                );
            }
        }
        self.cid(part)
            .with_context(|| format!("no container for {part} in project {}", self.project))
    }

    pub async fn kill(&self, target: Target) -> anyhow::Result<Killed> {
        let part = target.resolve(|| topology::primary(self)).await?;
        let cid = self.cid_or_err(part)?;
        let out = run(docker().args(["kill", &cid]))?;
        if !out.status.success() {
            bail!(
                "docker kill {part} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let short = &cid[..cid.len().min(12)];
        say(format!(
            "killed {part} (docker kill {short}; its restart policy is now off: scripts/lab start {part})"
        ));
        Ok(Killed {
            killed: part.to_string(),
            pid: None,
            container: Some(short.to_string()),
        })
    }

    /// Starts a stopped part. A Redis data node of the Sentinel topology is made a replica of the
    /// primary Sentinel names now as soon as it answers: its command line would bring an old
    /// primary back as a second, stale primary, which Sentinel converts only after some seconds;
    /// with no primary named, it is not started at all.
    pub async fn start(&self, target: Target) -> anyhow::Result<Started> {
        let (part, replica_of) = start_plan(target, || topology::primary(self)).await?;
        let cid = self.cid_or_err(part)?;
        let out = run(docker().args(["start", &cid]))?;
        if !out.status.success() {
            bail!(
                "docker start {part} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let short = &cid[..cid.len().min(12)];
        let limit = self.settings.up_timeout;
        // A returning data node is made a replica the moment it answers, before its health check
        // comes round: until then it is a second, stale primary.
        let addrs = match (replica_of, part) {
            (Some(p), Part::Store(n)) => self.node_addr(n).zip(self.node_addr(p)),
            _ => None,
        };
        if let (Some(p), Some((addr, primary))) = (replica_of, addrs) {
            wait_until(&format!("{part} to answer"), limit, || {
                redis_nodes::answers(addr)
            })
            .await?;
            if !redis_nodes::replicate(addr, primary).await {
                bail!("{part} did not accept REPLICAOF {primary}");
            }
            wait_until(&format!("{part} to hold a copy of {p}"), limit, || {
                redis_nodes::replica_synced(addr)
            })
            .await?;
        }
        if part == Part::Proxy {
            wait_until("the proxy", limit, || {
                self.probe.proxy_ready(self.admin_port)
            })
            .await
            .context("the proxy did not become ready")?;
        } else {
            self.wait_healthy(part, limit).await.with_context(|| {
                format!("{part} did not become healthy; see: docker logs {short}")
            })?;
        }
        let started = Started {
            started: part.to_string(),
            pid: None,
            container: Some(short.to_string()),
            replica_of: replica_of.map(|p| p.to_string()),
        };
        if let Some(p) = replica_of {
            say(format!(
                "started {part} (container {short}) as a replica of {p}, healthy"
            ));
            return Ok(started);
        }
        say(format!("started {part} (container {short}), healthy"));
        self.probe.wait_routed(self.admin_port, part, limit).await?;
        Ok(started)
    }

    /// Follows a part's container log.
    pub fn logs(&self, part: Part) -> anyhow::Result<()> {
        let cid = self.cid_or_err(part)?;
        run_visible(docker().args(["logs", "--tail", "50", "-f", &cid]))
    }
}

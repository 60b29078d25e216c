//! The container lab's primitives for one part at a time ([`Parts`]: what `docker inspect`
//! says of a part, `docker kill`, `docker start`), and a part's log.

use std::time::Duration;

use anyhow::{bail, Context};

use crate::labdir::Mode;
use crate::model::{Part, Replica, StoreNode};
use crate::parts::{check_member, Handle, Parts, Seen};
use crate::probe::{wait_until, Probe};
use crate::redis_nodes;

use super::budget::inspect_cpu;
use super::{container_health, docker, run, run_visible, Docker};

impl Parts for Docker {
    fn mode(&self) -> Mode {
        Mode::Docker
    }

    fn members(&self) -> Vec<Replica> {
        self.members.clone()
    }

    fn probe(&self) -> &Probe {
        &self.probe
    }

    fn admin_port(&self) -> u16 {
        self.admin_port
    }

    fn up_timeout(&self) -> Duration {
        self.settings.up_timeout
    }

    /// The container's state and healthcheck, as `docker inspect` gives them.
    async fn seen(&self, part: Part) -> Seen {
        match self.cid(part) {
            Some(cid) => container_seen(&cid),
            None => Seen {
                down: Some("missing".to_string()),
                ..Seen::default()
            },
        }
    }

    async fn kill_part(&self, part: Part) -> anyhow::Result<(Handle, String)> {
        let cid = self.cid_or_err(part)?;
        let short = docker_kill(part, &cid)?;
        let how =
            format!("docker kill {short}; its restart policy is now off: scripts/lab start {part}");
        Ok((Handle::Container(short), how))
    }

    /// Starts the stopped container. A returning Sentinel data node is made a replica the moment
    /// it answers, before its health check comes round: its command line would bring an old
    /// primary back as a second, stale primary, which Sentinel converts only after some seconds.
    async fn start_part(
        &self,
        part: Part,
        replica_of: Option<StoreNode>,
    ) -> anyhow::Result<Handle> {
        let cid = self.cid_or_err(part)?;
        let out = run(docker().args(["start", &cid]))?;
        if !out.status.success() {
            bail!(
                "docker start {part} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let short = short(&cid);
        let limit = self.settings.up_timeout;
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
        Ok(Handle::Container(short))
    }
}

/// A container id as `docker ps` shows it: its first twelve digits.
pub(crate) fn short(cid: &str) -> String {
    cid.chars().take(12).collect()
}

/// What `docker inspect` says of a part's container: its state, its healthcheck's verdict while
/// it runs, and its CPU budget.
pub(crate) fn container_seen(cid: &str) -> Seen {
    let (state, health) = container_health(cid);
    let up = state == "running";
    Seen {
        up,
        health: (up && health != "-").then_some(health),
        down: (!up).then_some(state),
        handle: Some(Handle::Container(short(cid))),
        cpu_budget: inspect_cpu(cid).0,
    }
}

/// `docker kill` of a part's container: its short id.
pub(crate) fn docker_kill(part: Part, cid: &str) -> anyhow::Result<String> {
    let out = run(docker().args(["kill", cid]))?;
    if !out.status.success() {
        bail!(
            "docker kill {part} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(short(cid))
}

impl Docker {
    /// The container of a part that belongs to the lab now.
    fn cid_or_err(&self, part: Part) -> anyhow::Result<String> {
        check_member(self, part)?;
        self.cid(part)
            .with_context(|| format!("no container for {part} in project {}", self.project))
    }

    /// Follows a part's container log.
    pub fn logs(&self, part: Part) -> anyhow::Result<()> {
        let cid = self.cid_or_err(part)?;
        run_visible(docker().args(["logs", "--tail", "50", "-f", &cid]))
    }
}

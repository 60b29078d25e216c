//! One part at a time: status, kill, start, memory and log.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use statelab_formats::lab::{CpuTimes, Killed, LabStatus, PartCpu, PartStatus, Started};

use crate::labdir::Mode;
use crate::model::{start_plan, Part, Target};
use crate::probe::wait_until;
use crate::redis_nodes;
use crate::say;
use crate::topology;
use statelab_formats::procfs as cpu;

use super::Native;

impl Native {
    /// Each part, up or down and healthy or not, and the proxy's own view.
    pub async fn status(&self) -> LabStatus {
        let mut parts = Vec::new();
        for part in Part::with(self.store.store, self.ports.members()) {
            let role = match part {
                Part::Store(n) if self.running(part).is_some() => {
                    redis_nodes::role(self.node_addr(n))
                        .await
                        .map(redis_nodes::role_word)
                }
                _ => None,
            };
            let running = self.running(part);
            let health = match running {
                Some(_) if self.healthy(part).await => Some("healthy".to_string()),
                Some(_) => Some("unhealthy".to_string()),
                None => None,
            };
            parts.push(PartStatus {
                name: part.to_string(),
                up: running.is_some(),
                down: None,
                health,
                role,
                pid: running.and_then(|id| u32::try_from(id.pid).ok()),
                container: None,
                cpu_budget: self
                    .cpu_groups
                    .as_ref()
                    .and_then(|g| g.budget(&part.to_string())),
            });
        }
        LabStatus {
            mode: Mode::Native.as_str().to_string(),
            parts,
            admin_port: self.ports.admin,
            proxy: self.probe.admin_status(self.ports.admin).await,
        }
    }

    /// A replica must be a member now, a Redis node one of the lab's topology; the proxy always
    /// is one.
    fn member(&self, part: Part) -> anyhow::Result<()> {
        match part {
            Part::Store(n) if !self.ports.store.contains_key(&n) => bail!(
                "{part} is not a node of this lab's Redis ({}); scripts/lab status lists them",
                self.store.store.name()
            ),
            Part::Replica(r) if !self.ports.replicas.contains_key(&r) => bail!(
                "{part} is not a member of the lab now (scripts/lab status lists them; scripts/lab scale {} N adds some)",
                r.design
            ),
            _ => Ok(()),
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(&self, target: Target) -> anyhow::Result<Killed> {
        let part = target.resolve(|| topology::primary(self)).await?;
        self.member(part)?;
        let id = self
            .running(part)
            .with_context(|| format!("{part} is not running"))?;
        id.signal(Signal::SIGKILL);
        wait_until(
            &format!("{part} (pid {}) to exit", id.pid),
            Duration::from_secs(10),
            || async move { !id.alive() },
        )
        .await?;
        say(format!("killed {part} (pid {}, SIGKILL)", id.pid));
        Ok(Killed {
            killed: part.to_string(),
            pid: u32::try_from(id.pid).ok(),
            container: None,
        })
    }

    /// Starts a part that is down and waits until it is healthy. A data node of the Sentinel
    /// topology comes back as a replica of the primary Sentinel names now (Sentinel would convert
    /// it anyway, but not before it had served as a second, stale primary).
    pub async fn start(&self, target: Target) -> anyhow::Result<Started> {
        let (part, replica_of) = start_plan(target, || topology::primary(self)).await?;
        // A cluster node rejoins by its own record (nodes.conf), as a replica of the node that
        // took its place.
        let mut child = self.launch_as(part, replica_of)?;
        self.wait_healthy(part, &mut child)
            .await
            .with_context(|| format!("{part} did not become healthy"))?;
        if let (Some(p), Part::Store(n)) = (replica_of, part) {
            let addr = self.node_addr(n);
            wait_until(
                &format!("{part} to hold a copy of {p}"),
                self.settings.up_timeout,
                || redis_nodes::replica_synced(addr),
            )
            .await?;
        }
        let pid = self.running(part).map_or(0, |id| id.pid);
        match replica_of {
            Some(p) => say(format!(
                "started {part} (pid {pid}) as a replica of {p}, healthy"
            )),
            None => say(format!("started {part} (pid {pid}), healthy")),
        }
        self.probe
            .wait_routed(self.ports.admin, part, self.settings.up_timeout)
            .await?;
        Ok(Started {
            started: part.to_string(),
            pid: u32::try_from(pid).ok(),
            container: None,
            replica_of: replica_of.map(|p| p.to_string()),
        })
    }

    /// `NAME BYTES` for each running replica: its resident memory (`VmRSS`).
    pub fn mem(&self) -> Vec<(String, u64)> {
        self.ports
            .members()
            .filter_map(|r| {
                let id = self.running(Part::Replica(r))?;
                let status = fs::read_to_string(format!("/proc/{}/status", id.pid)).ok()?;
                let kb: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                Some((r.to_string(), kb * 1024))
            })
            .collect()
    }

    /// The CPU time each running part has used, with its budget, and the host's.
    pub fn cpu(&self) -> CpuTimes {
        let parts = Part::with(self.store.store, self.ports.members())
            .into_iter()
            .filter_map(|part| {
                let id = self.running(part)?;
                Some(PartCpu {
                    name: part.to_string(),
                    seconds: cpu::process_seconds(u32::try_from(id.pid).ok()?)?,
                    budget: self
                        .cpu_groups
                        .as_ref()
                        .and_then(|g| g.budget(&part.to_string())),
                })
            })
            .collect();
        CpuTimes {
            parts,
            host_cores: cpu::host_cores(),
            host_busy_seconds: cpu::host_busy_seconds().unwrap_or(0.0),
        }
    }

    pub fn log_path(&self, part: Part) -> PathBuf {
        self.dir.log(&part.to_string())
    }
}

//! The native lab's primitives for one part at a time ([`Parts`]: what it sees of a part,
//! SIGKILL, launching), and each replica's memory, each part's CPU time and its log.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use statelab_formats::lab::{CpuTimes, PartCpu};

use crate::labdir::Mode;
use crate::model::{Part, Replica, StoreNode};
use crate::parts::{Handle, Parts, Seen};
use crate::probe::{wait_until, Probe};
use crate::redis_nodes;
use statelab_formats::procfs as cpu;

use super::Native;

impl Parts for Native {
    fn mode(&self) -> Mode {
        Mode::Native
    }

    fn members(&self) -> Vec<Replica> {
        self.ports.members().collect()
    }

    fn probe(&self) -> &Probe {
        &self.probe
    }

    fn admin_port(&self) -> u16 {
        self.ports.admin
    }

    fn up_timeout(&self) -> Duration {
        self.settings.up_timeout
    }

    async fn seen(&self, part: Part) -> Seen {
        let running = self.running(part);
        let health = match running {
            Some(_) if self.healthy(part).await => Some("healthy".to_string()),
            Some(_) => Some("unhealthy".to_string()),
            None => None,
        };
        Seen {
            up: running.is_some(),
            down: None,
            health,
            handle: running
                .and_then(|id| u32::try_from(id.pid).ok())
                .map(Handle::Pid),
            cpu_budget: self
                .cpu_groups
                .as_ref()
                .and_then(|g| g.budget(&part.to_string())),
        }
    }

    /// SIGKILL, and wait until the process is gone.
    async fn kill_part(&self, part: Part) -> anyhow::Result<(Handle, String)> {
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
        let pid = u32::try_from(id.pid).unwrap_or_default();
        Ok((Handle::Pid(pid), format!("pid {pid}, SIGKILL")))
    }

    /// Launches the part (a data node with `replicaof` on its command line; a cluster node
    /// rejoins by its own record, `nodes.conf`) and waits until it is healthy and holds its copy.
    async fn start_part(
        &self,
        part: Part,
        replica_of: Option<StoreNode>,
    ) -> anyhow::Result<Handle> {
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
        Ok(Handle::Pid(u32::try_from(pid).unwrap_or_default()))
    }
}

impl Native {
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

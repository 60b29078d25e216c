//! CPU budgets in Docker mode: each container's CFS quota over the lab's period
//! (`docker update --cpu-period --cpu-quota`, the same budget `--cpus` sets, with the period the
//! native lab uses), and the CPU time of each container's process for `scripts/lab cpu`.

use anyhow::bail;
use statelab_formats::lab::{cpu_period_us, cpu_quota_us, CpuTimes, PartCpu};
use statelab_formats::procfs;

use crate::model::{budget_words, Part};
use crate::say;

use super::{docker, run, stdout_of, Docker};

/// `docker run`'s flags for a budget of `cores`.
pub(super) fn run_flags(cores: f64) -> [String; 4] {
    [
        "--cpu-period".into(),
        cpu_period_us(cores).to_string(),
        "--cpu-quota".into(),
        cpu_quota_us(cores).to_string(),
    ]
}

impl Docker {
    /// Gives every running part with a budget its quota.
    pub(super) fn apply_budgets(&self) -> anyhow::Result<()> {
        for part in Part::with(self.store.store, self.members.iter().copied()) {
            let Some(cores) = part.budget(&self.sizing) else {
                continue;
            };
            let Some(cid) = self.cid(part) else { continue };
            let out = run(docker().arg("update").args(run_flags(cores)).arg(&cid))?;
            if !out.status.success() {
                bail!(
                    "docker update could not give {part} a CPU budget: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        if self.sizing.bounded() {
            say(format!(
                "CPU budgets set: replicas {}, Redis nodes {}",
                budget_words(self.sizing.replica_cpu),
                budget_words(self.sizing.store_cpu)
            ));
        }
        Ok(())
    }

    /// The CPU time each running container's main process has used, with its budget, and the
    /// host's.
    pub fn cpu(&self) -> CpuTimes {
        containers_cpu(
            Part::with(self.store.store, self.members.iter().copied())
                .into_iter()
                .filter_map(|part| Some((part.to_string(), self.cid(part)?))),
        )
    }
}

/// A container's budget in cores as Docker enforces it (its quota, or `--cpus`), and its main
/// process on the host.
pub(crate) fn inspect_cpu(cid: &str) -> (Option<f64>, Option<u32>) {
    let out = stdout_of(docker().args([
            "inspect",
            "-f",
            "{{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}} {{.HostConfig.NanoCpus}} {{.State.Pid}}",
            cid,
        ]));
    let words: Vec<f64> = out
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0.0))
        .collect();
    let [quota, period, nano, pid] = words[..] else {
        return (None, None);
    };
    let budget = if quota > 0.0 && period > 0.0 {
        Some(quota / period)
    } else if nano > 0.0 {
        Some(nano / 1e9)
    } else {
        None
    };
    let pid = (pid > 0.0).then_some(pid as u32);
    (budget, pid)
}

/// The CPU time each of these containers' main process has used, with its budget, and the host's.
pub(crate) fn containers_cpu(containers: impl IntoIterator<Item = (String, String)>) -> CpuTimes {
    let parts = containers
        .into_iter()
        .filter_map(|(name, cid)| {
            let (budget, pid) = inspect_cpu(&cid);
            Some(PartCpu {
                name,
                seconds: procfs::process_seconds(pid?)?,
                budget,
            })
        })
        .collect();
    CpuTimes {
        parts,
        host_cores: procfs::host_cores(),
        host_busy_seconds: procfs::host_busy_seconds().unwrap_or(0.0),
    }
}

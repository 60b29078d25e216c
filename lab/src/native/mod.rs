//! The native lab: Redis, the object store, nine replicas and the proxy as local processes on
//! loopback.
//!
//! Each part runs in its own process group, so a Ctrl-C in the terminal that ran `up` does not
//! reach it, with its output appended to `logs/NAME.log`. A part's PID is recorded with the
//! process's start time (`/proc/PID/stat`), so a PID the kernel has since given to another process
//! is never mistaken for the part.
//!
//! The lab's jobs, one a file: `up` (up and `down`), `ports` (choosing them), `store` (the Redis
//! nodes: Sentinel configuration, the cluster, the primary), `objects` (the object store's program
//! and keys), `command` (each part's command line), `process` (launching a part into its CPU
//! budget, its PID record, health waits, signals), `parts` (status, kill, start, memory, CPU time,
//! logs) and `scale`; this file holds the [`Native`] handle, its loading, and where the lab's
//! programs are.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use statelab_formats::lab::Sizing;

use crate::cgroup::CpuGroups;
use crate::labdir::{LabDir, StoreChoice};
use crate::model::NativePorts;
use crate::probe::Probe;
use crate::settings::Settings;

mod command;
mod objects;
mod parts;
mod ports;
mod process;
mod scale;
mod store;
mod up;

use objects::S3Keys;
pub use objects::{s3s_fs, OBJECTS_DIR};

/// The stateless replicas' shared signing key, in the lab directory.
const JWT_SECRET: &str = "jwt-secret";

/// The binaries the native lab runs.
pub const BINARIES: [&str; 4] = ["stateful", "stateless", "externalized", "statelab-proxy"];
/// How long a part gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The native lab as `up` recorded it.
#[derive(Debug)]
pub struct Native {
    settings: Settings,
    store: StoreChoice,
    sizing: Sizing,
    /// The parts' control groups, when the lab has CPU budgets.
    cpu_groups: Option<CpuGroups>,
    dir: LabDir,
    probe: Probe,
    ports: NativePorts,
    bin_dirs: Vec<PathBuf>,
}

/// The first folder's `name` that exists.
pub fn find_bin(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A program on the PATH.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `redis-server` on the PATH.
fn redis_server() -> anyhow::Result<PathBuf> {
    on_path("redis-server")
        .context("redis-server is not on the PATH: apt-get install -y redis-server")
}

/// `redis-cli` on the PATH (Debian's redis-tools, which redis-server depends on).
fn redis_cli() -> anyhow::Result<PathBuf> {
    on_path("redis-cli").context("redis-cli is not on the PATH: apt-get install -y redis-tools")
}

impl Native {
    /// The lab `up` recorded in the lab directory.
    pub fn load(settings: Settings, dir: LabDir) -> anyhow::Result<Native> {
        let ports = NativePorts::from_lines(&dir.ports()).with_context(|| {
            format!(
                "{} does not list every part's port; scripts/lab down, then up",
                dir.path("ports").display()
            )
        })?;
        let bin_dirs = if settings.bin_dirs.is_empty() {
            dir.bin_dirs()
        } else {
            settings.bin_dirs.clone()
        };
        let cpu_groups = dir.cgroup().map(CpuGroups::open).transpose()?;
        Ok(Native {
            settings,
            store: dir.store()?,
            sizing: dir.sizing()?,
            cpu_groups,
            probe: Probe::new(dir.admin_token()),
            dir,
            ports,
            bin_dirs,
        })
    }

    pub fn ports(&self) -> &NativePorts {
        &self.ports
    }

    /// The lab directory it runs from.
    pub fn dir(&self) -> &LabDir {
        &self.dir
    }

    fn bin(&self, name: &str) -> anyhow::Result<PathBuf> {
        find_bin(&self.bin_dirs, name).with_context(|| {
            let dirs: Vec<String> = self
                .bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            format!("no binary '{name}' in: {}", dirs.join(" "))
        })
    }
}

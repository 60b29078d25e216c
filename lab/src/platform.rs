//! The running lab, whichever platform runs it (native processes, a compose project, a Swarm
//! stack): the one type the verbs talk to. Each verb's output and behaviour is the platform's;
//! this is where they meet, so `main.rs` names no platform after `up`.

use std::net::SocketAddr;
use std::path::PathBuf;

use statelab_formats::lab::{
    CpuTimes, Healed, Killed, LabStatus, Partitioned, Ports, Scaled, Started,
};

use crate::docker::Docker;
use crate::labdir::{LabDir, Mode};
use crate::model::{Design, Drain, Part, Store, Target};
use crate::native::Native;
use crate::settings::Settings;
use crate::swarm::Swarm;
use crate::{parts, say, scale, topology};

/// The lab a lab directory records as up.
#[derive(Debug)]
pub enum Platform {
    Native(Native),
    Docker(Docker),
    Swarm(Swarm),
}

impl Platform {
    /// The lab `mode` names, as `up` recorded it in `dir`.
    pub fn load(mode: Mode, settings: Settings, dir: LabDir) -> anyhow::Result<Platform> {
        Ok(match mode {
            Mode::Native => Platform::Native(Native::load(settings, dir)?),
            Mode::Docker => Platform::Docker(Docker::load(settings, dir)?),
            Mode::Swarm => Platform::Swarm(Swarm::load(settings, dir)?),
        })
    }

    pub async fn status(&self) -> LabStatus {
        match self {
            Platform::Native(lab) => parts::status(lab).await,
            Platform::Docker(lab) => parts::status(lab).await,
            Platform::Swarm(lab) => parts::status(lab).await,
        }
    }

    pub async fn kill(&self, target: Target) -> anyhow::Result<Killed> {
        match self {
            Platform::Native(lab) => parts::kill(lab, target).await,
            Platform::Docker(lab) => parts::kill(lab, target).await,
            Platform::Swarm(lab) => parts::kill(lab, target).await,
        }
    }

    pub async fn start(&self, target: Target) -> anyhow::Result<Started> {
        match self {
            Platform::Native(lab) => parts::start(lab, target).await,
            Platform::Docker(lab) => parts::start(lab, target).await,
            Platform::Swarm(lab) => parts::start(lab, target).await,
        }
    }

    /// The data nodes that are primary now and run ([`topology::primaries`]).
    pub async fn primaries(&self) -> Vec<String> {
        match self {
            Platform::Native(lab) => topology::primaries(lab).await,
            Platform::Docker(lab) => topology::primaries(lab).await,
            Platform::Swarm(lab) => topology::primaries(lab).await,
        }
    }

    pub async fn scale(&mut self, pool: Design, n: u8, drain: Drain) -> anyhow::Result<Scaled> {
        match self {
            Platform::Native(lab) => scale::scale(lab, pool, n, drain.limit()).await,
            Platform::Docker(lab) => scale::scale(lab, pool, n, drain.limit()).await,
            // The proxy follows the service's DNS name: no admin call.
            Platform::Swarm(lab) => lab.scale(pool, n, drain).await,
        }
    }

    /// Cuts a Redis node off from the other Redis nodes and the Sentinels, and from `from`.
    pub async fn partition(&self, target: Target, from: &[Part]) -> anyhow::Result<Partitioned> {
        match self {
            Platform::Docker(lab) => lab.partition(target, from).await,
            Platform::Native(_) | Platform::Swarm(_) => Err(partition_refused()),
        }
    }

    /// Removes every cut `partition` made.
    pub fn heal(&self) -> anyhow::Result<Healed> {
        match self {
            Platform::Docker(lab) => lab.heal(),
            Platform::Native(_) | Platform::Swarm(_) => Err(partition_refused()),
        }
    }

    /// The ports on the host, and where the host reaches each part.
    pub fn ports(&self) -> Ports {
        match self {
            Platform::Native(lab) => {
                let lines = lab.ports().lines();
                Ports {
                    addresses: lines
                        .iter()
                        .map(|(name, port)| {
                            (name.clone(), SocketAddr::from(([127, 0, 0, 1], *port)))
                        })
                        .collect(),
                    ports: lines.into_iter().collect(),
                }
            }
            Platform::Docker(lab) => Ports {
                ports: lab.ports_lines().into_iter().collect(),
                addresses: lab.addresses().into_iter().collect(),
            },
            Platform::Swarm(lab) => Ports {
                ports: lab.ports_lines().into_iter().collect(),
                addresses: lab.addresses().into_iter().collect(),
            },
        }
    }

    /// The `NAME PORT` lines of `ports`, in the platform's order.
    pub fn port_lines(&self) -> Vec<(String, u16)> {
        match self {
            Platform::Native(lab) => lab.ports().lines(),
            Platform::Docker(lab) => lab.ports_lines(),
            Platform::Swarm(lab) => lab.ports_lines(),
        }
    }

    /// Each running replica's resident memory in bytes.
    pub fn mem(&self) -> anyhow::Result<Vec<(String, u64)>> {
        match self {
            Platform::Native(lab) => Ok(lab.mem()),
            Platform::Docker(lab) => lab.mem(),
            Platform::Swarm(lab) => lab.mem(),
        }
    }

    pub fn cpu(&self) -> CpuTimes {
        match self {
            Platform::Native(lab) => lab.cpu(),
            Platform::Docker(lab) => lab.cpu(),
            Platform::Swarm(lab) => lab.cpu(),
        }
    }

    /// Follows a part's log: natively its file, in Docker its container's.
    pub fn logs(&self, part: Part) -> anyhow::Result<()> {
        match self {
            Platform::Native(lab) => follow(&lab.log_path(part)),
            Platform::Docker(lab) => lab.logs(part),
            Platform::Swarm(lab) => lab.logs(part),
        }
    }

    /// Stops every part and forgets the running lab; `volumes` also deletes the stored data.
    pub async fn down(&self, volumes: bool) -> anyhow::Result<()> {
        match self {
            Platform::Native(lab) => {
                lab.down().await;
                if volumes {
                    delete_native_data(lab.dir());
                }
                Ok(())
            }
            Platform::Docker(lab) => lab.down(volumes),
            Platform::Swarm(lab) => lab.down(volumes).await,
        }
    }
}

/// Why only the Docker lab takes a partition.
fn partition_refused() -> anyhow::Error {
    anyhow::anyhow!(
        "partition and heal need the Docker lab (scripts/lab up --docker --redis sentinel): there \
         each Redis node has a network namespace of its own to cut; natively every part shares \
         the host's loopback, and the Swarm lab runs the single Redis"
    )
}

/// `tail -F` of a log file, its last 50 lines first.
fn follow(log: &PathBuf) -> anyhow::Result<()> {
    use anyhow::Context;
    let status = std::process::Command::new("tail")
        .args(["-n", "50", "-F"])
        .arg(log)
        .status()
        .context("cannot run tail")?;
    if !status.success() {
        anyhow::bail!("tail {} failed", log.display());
    }
    Ok(())
}

/// Deletes the native lab's stored data: every topology's nodes (data an earlier lab of another
/// topology left too), the object store's files and the replicas' disks.
pub fn delete_native_data(dir: &LabDir) {
    let nodes = [Store::Single, Store::Sentinel, Store::Cluster]
        .into_iter()
        .flat_map(Store::nodes)
        .map(|n| n.to_string());
    let files = [crate::native::OBJECTS_DIR, "data"].map(str::to_string);
    for name in nodes.chain(files) {
        let data = dir.path(&name);
        if std::fs::remove_dir_all(&data).is_ok() {
            say(format!("deleted {}", data.display()));
        }
    }
}

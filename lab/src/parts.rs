//! One part at a time, above the platform: `status`, `kill` and `start`, built once from the
//! primitives each platform gives ([`Parts`]): what it sees of a part, how it kills one, and how
//! it starts one and waits until it is healthy. The part a verb names, whether it belongs to the
//! lab now, the store node's role, the proxy's view and the messages are decided here.

use std::fmt;
use std::time::Duration;

use anyhow::bail;
use statelab_formats::lab::{Killed, LabStatus, PartStatus, Started};

use crate::labdir::Mode;
use crate::model::{start_plan, Part, Replica, StoreNode, Target};
use crate::probe::Probe;
use crate::topology::{self, StoreNodes};
use crate::{redis_nodes, say};

/// How a platform knows a running part: its process, or its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handle {
    Pid(u32),
    /// The container's short id.
    Container(String),
}

impl Handle {
    fn pid(&self) -> Option<u32> {
        match self {
            Handle::Pid(pid) => Some(*pid),
            Handle::Container(_) => None,
        }
    }

    fn container(&self) -> Option<String> {
        match self {
            Handle::Pid(_) => None,
            Handle::Container(id) => Some(id.clone()),
        }
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handle::Pid(pid) => write!(f, "pid {pid}"),
            Handle::Container(id) => write!(f, "container {id}"),
        }
    }
}

/// What a platform sees of one part.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    pub up: bool,
    /// Why it is not up, in the platform's word (a container's state), when it says one.
    pub down: Option<String>,
    /// `healthy` or `unhealthy` while up, when the platform checks.
    pub health: Option<String>,
    pub handle: Option<Handle>,
    /// The part's CPU budget in cores, when it has one.
    pub cpu_budget: Option<f64>,
}

/// The primitives a platform gives for one part at a time.
pub(crate) trait Parts: StoreNodes {
    fn mode(&self) -> Mode;
    /// The replicas the lab has now.
    fn members(&self) -> Vec<Replica>;
    fn probe(&self) -> &Probe;
    fn admin_port(&self) -> u16;
    /// How long a part gets to become healthy.
    fn up_timeout(&self) -> Duration;
    async fn seen(&self, part: Part) -> Seen;
    /// Kills a running part at once and waits until it is gone: its handle, and how it was
    /// killed in the user's words.
    async fn kill_part(&self, part: Part) -> anyhow::Result<(Handle, String)>;
    /// Starts a part that is down and waits until it is healthy; a Sentinel data node comes
    /// back as a replica of `replica_of` and is waited for until it holds its copy.
    async fn start_part(&self, part: Part, replica_of: Option<StoreNode>)
        -> anyhow::Result<Handle>;
}

/// A replica must be a member now, a Redis node one of the lab's topology; the proxy and the
/// object store always are parts of the lab.
pub(crate) fn check_member(lab: &impl Parts, part: Part) -> anyhow::Result<()> {
    match part {
        Part::Store(n) if !lab.topology().nodes().contains(&n) => bail!(
            "{part} is not a node of this lab's Redis ({}); scripts/lab status lists them",
            lab.topology().name()
        ),
        Part::Replica(r) if !lab.members().contains(&r) => bail!(
            "{part} is not a member of the lab now (scripts/lab status lists them; scripts/lab scale {} N adds some)",
            r.design
        ),
        _ => Ok(()),
    }
}

/// Each part, up or down and healthy or not, a data node's role, and the proxy's own view.
pub(crate) async fn status(lab: &impl Parts) -> LabStatus {
    let mut parts = Vec::new();
    for part in Part::with(lab.topology(), lab.members()) {
        let seen = lab.seen(part).await;
        let role = match (part, seen.up) {
            (Part::Store(n), true) => match lab.reach(n) {
                Some(addr) => redis_nodes::role(addr).await.map(redis_nodes::role_word),
                None => None,
            },
            _ => None,
        };
        parts.push(PartStatus {
            name: part.to_string(),
            up: seen.up,
            down: seen.down,
            health: seen.health,
            role,
            pid: seen.handle.as_ref().and_then(Handle::pid),
            container: seen.handle.as_ref().and_then(Handle::container),
            cpu_budget: seen.cpu_budget,
        });
    }
    LabStatus {
        mode: lab.mode().as_str().to_string(),
        parts,
        admin_port: lab.admin_port(),
        proxy: lab.probe().admin_status(lab.admin_port()).await,
    }
}

/// Kills the part `target` names (`redis-primary` resolved now).
pub(crate) async fn kill(lab: &impl Parts, target: Target) -> anyhow::Result<Killed> {
    let part = target.resolve(|| topology::primary(lab)).await?;
    check_member(lab, part)?;
    let (handle, how) = lab.kill_part(part).await?;
    say(format!("killed {part} ({how})"));
    Ok(Killed {
        killed: part.to_string(),
        pid: handle.pid(),
        container: handle.container(),
    })
}

/// Starts a part that is down and waits until it is healthy and, for a replica, until the proxy
/// routes to it again. A Sentinel data node comes back as a replica of the primary Sentinel names
/// now (Sentinel would convert it anyway, but not before it had served as a second, stale
/// primary); a cluster node rejoins by its own record, as a replica of the node that took its
/// place.
pub(crate) async fn start(lab: &impl Parts, target: Target) -> anyhow::Result<Started> {
    let (part, replica_of) = start_plan(target, || topology::primary(lab)).await?;
    check_member(lab, part)?;
    let handle = lab.start_part(part, replica_of).await?;
    match replica_of {
        Some(p) => say(format!(
            "started {part} ({handle}) as a replica of {p}, healthy"
        )),
        None => say(format!("started {part} ({handle}), healthy")),
    }
    lab.probe()
        .wait_routed(lab.admin_port(), part, lab.up_timeout())
        .await?;
    Ok(Started {
        started: part.to_string(),
        pid: handle.pid(),
        container: handle.container(),
        replica_of: replica_of.map(|p| p.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_a_pid_or_a_container_and_says_which() {
        let pid = Handle::Pid(42);
        assert_eq!((pid.pid(), pid.container()), (Some(42), None));
        assert_eq!(pid.to_string(), "pid 42");
        let container = Handle::Container("0123456789ab".into());
        assert_eq!(
            (container.pid(), container.container()),
            (None, Some("0123456789ab".to_string()))
        );
        assert_eq!(container.to_string(), "container 0123456789ab");
    }
}

//! The lab on Docker Swarm: `deploy/stack.yaml` deployed as a stack, each design one replicated
//! service whose tasks the proxy finds by DNS (`tasks.DESIGN`), so `docker service scale` is all
//! a change of size takes.
//!
//! `up --swarm` joins the engine's swarm when it is a manager of one, or makes it a one-node swarm
//! (`docker swarm init --advertise-addr 127.0.0.1`) and records that it did; `down` removes the
//! stack, and leaves the swarm only when the lab made it. A replica is its task's slot:
//! `stateless-2` is the running task of slot 2 of the service `STACK_stateless`, which Swarm
//! replaces under the same slot, and so the same name, when it dies.
//!
//! The lab's jobs, one a file: `up` (the swarm, the deploy, `down`), `parts` (the primitives of
//! `Parts` for a task's container), `scale`; this file holds the [`Swarm`]
//! handle, its loading and what it asks the engine of services and tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use statelab_formats::lab::{CpuTimes, Sizing};

use crate::docker::budget::containers_cpu;
use crate::docker::mem::containers_mem;
use crate::docker::{docker, stdout_of};
use crate::labdir::{random_admin_token, AdminToken, LabDir};
use crate::model::{Design, Part, Replica, Store, MAX_REPLICAS_PER_POOL};
use crate::probe::Probe;
use crate::settings::{Settings, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT};

mod parts;
mod scale;
mod up;

/// The lab file `up --swarm` records its settings in.
const SWARM_ENV: &str = "swarm.env";

/// The Swarm lab, as `up --swarm` recorded it.
#[derive(Debug)]
pub struct Swarm {
    settings: Settings,
    dir: LabDir,
    probe: Probe,
    /// The stack's name: its services are `STACK_redis`, `STACK_stateless`, ...
    stack: String,
    image: String,
    redis_image: String,
    proxy_port: u16,
    admin_port: u16,
    net_prefix: String,
    proxy_config: PathBuf,
    admin_token: AdminToken,
    /// The lab made this engine a swarm, and leaves it at `down`.
    made_swarm: bool,
    /// `swarm init` made `docker_gwbridge`, which `swarm leave` leaves behind.
    made_gwbridge: bool,
    /// The replicas' work per request.
    sizing: Sizing,
}

impl Swarm {
    /// The lab as `up --swarm` recorded it.
    pub fn load(settings: Settings, dir: LabDir) -> anyhow::Result<Swarm> {
        let env = dir.read_env(SWARM_ENV);
        let get = |k: &str| env.get(k).cloned();
        let port = |k: &str, d: u16| get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let admin_token = match dir.admin_token() {
            Some(t) => t,
            None => random_admin_token()?,
        };
        Ok(Swarm {
            probe: Probe::new(Some(admin_token.clone())),
            admin_token,
            stack: get("STATELAB_STACK").unwrap_or_else(|| settings.project.clone()),
            image: get("STATELAB_IMAGE").unwrap_or_else(|| settings.image.clone()),
            redis_image: get("STATELAB_REDIS_IMAGE").unwrap_or_default(),
            proxy_port: port("STATELAB_PROXY_PORT", DEFAULT_PROXY_PORT),
            admin_port: port("STATELAB_ADMIN_PORT", DEFAULT_ADMIN_PORT),
            net_prefix: get("STATELAB_NET_PREFIX").unwrap_or_else(|| settings.net_prefix.clone()),
            proxy_config: get("STATELAB_PROXY_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.path("proxy.swarm.toml")),
            made_swarm: get("STATELAB_MADE_SWARM").as_deref() == Some("1"),
            made_gwbridge: get("STATELAB_MADE_GWBRIDGE").as_deref() == Some("1"),
            sizing: dir.sizing()?,
            settings,
            dir,
        })
    }

    pub fn proxy_port(&self) -> u16 {
        self.proxy_port
    }

    /// The `NAME PORT` lines of `ports`: only the proxy publishes ports.
    pub fn ports_lines(&self) -> Vec<(String, u16)> {
        vec![
            ("proxy".into(), self.proxy_port),
            ("admin".into(), self.admin_port),
        ]
    }

    /// Where the host reaches each part: the proxy and the admin API on loopback. The tasks'
    /// addresses are in an overlay network, which the host does not reach.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.ports_lines()
            .into_iter()
            .map(|(name, port)| (name, SocketAddr::from(([127, 0, 0, 1], port))))
            .collect()
    }

    /// The Swarm service that runs a part.
    fn service(&self, part: Part) -> String {
        let name = match part {
            Part::Replica(r) => r.design.to_string(),
            other => other.to_string(),
        };
        format!("{}_{name}", self.stack)
    }

    /// The task slot a part is: a replica's number; the single task of any other service.
    fn slot(part: Part) -> u8 {
        match part {
            Part::Replica(r) => r.index,
            _ => 1,
        }
    }

    /// The containers of a part's slot on this node, newest first: `(id, running)`.
    fn containers(&self, part: Part) -> Vec<(String, bool)> {
        let out = stdout_of(docker().args([
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.swarm.service.name={}", self.service(part)),
            "--format",
            "{{.ID}} {{.State}} {{.Label \"com.docker.swarm.task.name\"}}",
        ]));
        let (service, slot) = (self.service(part), Self::slot(part));
        out.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let (id, state, task) = (words.next()?, words.next()?, words.next()?);
                (task_slot(&service, task)? == slot).then(|| (id.to_string(), state == "running"))
            })
            .collect()
    }

    /// A part's newest container on this node.
    fn cid(&self, part: Part) -> Option<String> {
        self.containers(part).into_iter().next().map(|(id, _)| id)
    }

    /// The tasks of a design's service that Swarm wants running (or ready to run, during a
    /// restart's delay), on any node: each slot, and whether its task runs (Swarm says `Running`
    /// only once the container's healthcheck passed).
    fn tasks(&self, design: Design) -> BTreeMap<u8, bool> {
        let service = self.service(Part::Replica(Replica { design, index: 1 }));
        let out = stdout_of(docker().args([
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--filter",
            "desired-state=ready",
            "--format",
            "{{.Name}} {{.CurrentState}}",
            &service,
        ]));
        out.lines()
            .filter_map(|line| {
                let (name, state) = line.split_once(' ')?;
                Some((task_slot(&service, name)?, state.starts_with("Running")))
            })
            .collect()
    }

    /// The slots of a design's service whose task Swarm wants running, on any node.
    fn slots(&self, design: Design) -> BTreeSet<u8> {
        self.tasks(design).into_keys().collect()
    }

    /// The replicas of one design now: the slots whose task Swarm wants running, or ready to
    /// run once its restart delay has passed (a replaced task's slot stays a member throughout).
    fn pool(&self, design: Design) -> Vec<Replica> {
        self.slots(design)
            .into_iter()
            .filter(|i| (1..=MAX_REPLICAS_PER_POOL).contains(i))
            .map(|index| Replica { design, index })
            .collect()
    }

    /// The replicas the lab has now, every design's.
    fn replicas(&self) -> Vec<Replica> {
        Design::ALL.into_iter().flat_map(|d| self.pool(d)).collect()
    }

    /// `NAME BYTES` for each running replica container on this node, as `docker stats` reports
    /// its memory.
    pub fn mem(&self) -> anyhow::Result<Vec<(String, u64)>> {
        containers_mem(
            self.replicas()
                .into_iter()
                .filter_map(|r| Some((r.to_string(), self.cid(Part::Replica(r))?))),
        )
    }

    /// The CPU time each part's container on this node has used, and the host's.
    pub fn cpu(&self) -> CpuTimes {
        containers_cpu(
            Part::with(Store::Single, self.replicas())
                .into_iter()
                .filter_map(|part| Some((part.to_string(), self.cid(part)?))),
        )
    }

    /// Follows a part's container log.
    pub fn logs(&self, part: Part) -> anyhow::Result<()> {
        crate::parts::check_member(self, part)?;
        let cid = self
            .cid(part)
            .ok_or_else(|| anyhow::anyhow!("no container for {part} on this node"))?;
        crate::docker::run_visible(docker().args(["logs", "--tail", "50", "-f", &cid]))
    }
}

/// The slot of a task of `service`, from its name: `SERVICE.SLOT` or `SERVICE.SLOT.TASK_ID`.
fn task_slot(service: &str, task: &str) -> Option<u8> {
    let rest = task.strip_prefix(service)?.strip_prefix('.')?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_name_gives_its_slot() {
        let service = "statelab_stateless";
        assert_eq!(task_slot(service, "statelab_stateless.2"), Some(2));
        assert_eq!(
            task_slot(service, "statelab_stateless.12.abcdef0123"),
            Some(12)
        );
        assert_eq!(task_slot(service, "statelab_stateless"), None);
        assert_eq!(task_slot(service, "statelab_stateless.x.y"), None);
        assert_eq!(task_slot(service, "statelab_stateful.2"), None);
        assert_eq!(task_slot("a.b_stateless", "a.b_stateless.3.xyz"), Some(3));
    }
}

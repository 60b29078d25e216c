//! The Swarm lab's primitives for one part at a time ([`Parts`]): a part is its slot's task, and
//! the container of that task on this node is what `status` inspects and `kill` kills. Swarm
//! starts a killed task again by itself, so `start` waits for that.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::docker::container_health;
use crate::docker::parts::{container_seen, docker_kill, short};
use crate::labdir::Mode;
use crate::model::{Part, Replica, Store, StoreNode};
use crate::parts::{Handle, Parts, Seen};
use crate::probe::{wait_until, Probe};
use crate::topology::StoreNodes;

use super::Swarm;

impl StoreNodes for Swarm {
    /// The Swarm lab runs the single Redis.
    fn topology(&self) -> Store {
        Store::Single
    }

    /// The host does not reach the overlay network.
    fn reach(&self, _: StoreNode) -> Option<SocketAddr> {
        None
    }

    fn node_running(&self, n: StoreNode) -> bool {
        self.containers(Part::Store(n))
            .first()
            .is_some_and(|(_, running)| *running)
    }
}

impl Parts for Swarm {
    fn mode(&self) -> Mode {
        Mode::Swarm
    }

    fn members(&self) -> Vec<Replica> {
        self.replicas()
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

    /// The newest container of the part's slot, as `docker inspect` sees it.
    async fn seen(&self, part: Part) -> Seen {
        match self.cid(part) {
            Some(cid) => container_seen(&cid),
            None => Seen {
                down: Some("no task".to_string()),
                ..Seen::default()
            },
        }
    }

    /// `docker kill` of the slot's running container; Swarm replaces the task.
    async fn kill_part(&self, part: Part) -> anyhow::Result<(Handle, String)> {
        let (cid, _) = self
            .containers(part)
            .into_iter()
            .find(|(_, running)| *running)
            .with_context(|| format!("{part} has no running container on this node"))?;
        let short = docker_kill(part, &cid)?;
        let how = format!(
            "docker kill {short}; Swarm starts a new task in its slot, and scripts/lab start {part} waits for it"
        );
        Ok((Handle::Container(short), how))
    }

    /// Swarm starts a killed task again by itself: waits until the slot's new container runs
    /// and passes its healthcheck (the proxy's readiness, for the proxy).
    async fn start_part(&self, part: Part, _: Option<StoreNode>) -> anyhow::Result<Handle> {
        let limit = self.settings.up_timeout;
        wait_until(&format!("Swarm to run {part} again"), limit, || async {
            self.cid(part)
                .is_some_and(|cid| container_health(&cid) == ("running".into(), "healthy".into()))
        })
        .await
        .with_context(|| {
            format!(
                "{part} is not healthy; see: docker service ps {}",
                self.service(part)
            )
        })?;
        if part == Part::Proxy {
            wait_until("the proxy", limit, || {
                self.probe.proxy_ready(self.admin_port)
            })
            .await
            .context("the proxy did not become ready")?;
        }
        let cid = self.cid(part).unwrap_or_default();
        Ok(Handle::Container(short(&cid)))
    }
}

//! `scale`: replicas started and stopped while the pool serves, and the proxy told of them.

use std::fs;
use std::time::Duration;

use anyhow::{bail, Context};
use statelab_formats::lab::Scaled;

use crate::model::{
    check_scale, native_proxy_config, render_proxy_config, Design, Part, Replica,
    MAX_REPLICAS_PER_POOL,
};
use crate::probe::port_open;
use crate::say;
use crate::settings::PortPlan;

use super::ports::{free_port, Claims};
use super::Native;

impl Native {
    /// Writes the members back: the ports file, and the proxy's configuration, so that a
    /// restarted proxy comes back with the pool as it is now.
    fn write_members(&self) -> anyhow::Result<()> {
        self.dir.write_ports(&self.ports.lines())?;
        fs::write(
            self.dir.path("proxy.toml"),
            render_proxy_config(
                &native_proxy_config(&self.ports),
                "the native lab on loopback",
            )?,
        )?;
        Ok(())
    }

    /// Grows or shrinks a pool to `n` replicas while it serves. New replicas take the lowest free
    /// numbers and the pool's next fixed (or a free) port, start, pass their own health check,
    /// are registered with the proxy and are waited for until the proxy routes to them. Shrinking
    /// removes the highest numbers: each is taken out of the proxy first (after `drain`, or at
    /// once), then stopped.
    pub async fn scale(
        &mut self,
        design: Design,
        n: u8,
        drain: Option<Duration>,
    ) -> anyhow::Result<Scaled> {
        check_scale(n)?;
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut members: Vec<Replica> = self
            .ports
            .members()
            .filter(|r| r.design == design)
            .collect();
        while members.len() < usize::from(n) {
            let index = (1..=MAX_REPLICAS_PER_POOL)
                .find(|i| !members.iter().any(|r| r.index == *i))
                .context("no free replica number")?;
            let r = Replica { design, index };
            let port = match self.settings.ports {
                PortPlan::Fixed => {
                    let port = r.fixed_port();
                    if port_open(port).await {
                        bail!("port {port} (for {r}) is already in use; see: ss -ltnp 'sport = :{port}'");
                    }
                    port
                }
                PortPlan::Free => {
                    let taken: Vec<u16> = self.ports.lines().iter().map(|(_, p)| *p).collect();
                    free_port(&taken, &Claims::new(&self.dir)).await?
                }
            };
            self.ports.replicas.insert(r, port);
            self.write_members()?;
            let part = Part::Replica(r);
            let mut child = self.launch(part)?;
            if let Err(e) = self.wait_healthy(part, &mut child).await {
                self.stop(part).await;
                self.ports.replicas.remove(&r);
                Claims::new(&self.dir).release([port]);
                self.write_members()?;
                return Err(e.context(format!("{r} did not become healthy")));
            }
            self.probe
                .add_replica(
                    self.ports.admin,
                    design.as_str(),
                    &r.to_string(),
                    &format!("127.0.0.1:{port}"),
                )
                .await?;
            self.probe
                .wait_routed(self.ports.admin, part, self.settings.up_timeout)
                .await?;
            say(format!("{r} added on 127.0.0.1:{port}"));
            added.push(r.to_string());
            members.push(r);
        }
        members.sort();
        while members.len() > usize::from(n) {
            let Some(r) = members.pop() else { break };
            let how = self
                .probe
                .remove_replica(self.ports.admin, &r.to_string(), drain)
                .await?;
            self.stop(Part::Replica(r)).await;
            if let Some(port) = self.ports.replicas.remove(&r) {
                Claims::new(&self.dir).release([port]);
            }
            self.write_members()?;
            // A server taken out of the pool goes with its disk: the files it stored are gone.
            if let Some(disk) = self.disk(r) {
                let _ = fs::remove_dir_all(disk);
            }
            say(format!("{r} removed ({how}) and stopped"));
            removed.push(r.to_string());
        }
        say(format!("{design}: {n} replica(s)"));
        Ok(Scaled {
            pool: design,
            replicas: members.iter().map(Replica::to_string).collect(),
            added,
            removed,
        })
    }
}

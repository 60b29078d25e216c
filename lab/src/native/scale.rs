//! The native lab's steps of `scale` ([`Scaling`]): a replica process started on its port, or
//! stopped with its disk; and the members written back.

use std::fs;

use anyhow::bail;

use crate::model::{native_proxy_config, render_proxy_config, Part, Replica};
use crate::probe::port_open;
use crate::scale::Scaling;
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
}

impl Scaling for Native {
    /// On the pool's next fixed port (or a free one); a replica that does not become healthy is
    /// stopped and forgotten again.
    async fn add(&mut self, r: Replica) -> anyhow::Result<String> {
        let port = match self.settings.ports {
            PortPlan::Fixed => {
                let port = r.fixed_port();
                if port_open(port).await {
                    bail!(
                        "port {port} (for {r}) is already in use; see: ss -ltnp 'sport = :{port}'"
                    );
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
        Ok(format!("127.0.0.1:{port}"))
    }

    /// A server taken out of the pool goes with its disk: the files it stored are gone.
    async fn remove(&mut self, r: Replica) -> anyhow::Result<&'static str> {
        self.stop(Part::Replica(r)).await;
        if let Some(port) = self.ports.replicas.remove(&r) {
            Claims::new(&self.dir).release([port]);
        }
        self.write_members()?;
        if let Some(disk) = self.disk(r) {
            let _ = fs::remove_dir_all(disk);
        }
        Ok("stopped")
    }
}

//! `up`, bringing every part up in order, and `down`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;

use statelab_formats::lab::Sizing;

use crate::cgroup::{CpuGroups, CGROUP_ROOT};
use crate::labdir::{random_hex, LabDir, Mode, StoreChoice};
use crate::model::{
    budget_words, native_proxy_config, render_proxy_config, NativePorts, Part, StoreNode,
};
use crate::probe::{admin_summary, proxy_up_line, wait_until, Probe};
use crate::say;
use crate::settings::{PortPlan, Settings};

use super::ports::{choose_ports, Claims};
use super::store::{node_dir, write_sentinel_config};
use super::{
    find_bin, redis_server, s3s_fs, Native, S3Keys, BINARIES, JWT_SECRET, OBJECTS_DIR, STOP_GRACE,
};

impl Native {
    /// Brings the lab up: ports, configuration, Redis, the replicas, the proxy; returns once the
    /// proxy sees every replica healthy. A failure stops whatever was started.
    pub async fn up(
        settings: Settings,
        dir: LabDir,
        store: StoreChoice,
        sizing: Sizing,
    ) -> anyhow::Result<()> {
        redis_server()?;
        s3s_fs(&settings)?;
        let bin_dirs = if settings.bin_dirs.is_empty() {
            vec![settings.cargo_lab_dir()]
        } else {
            settings.bin_dirs.clone()
        };
        for b in BINARIES {
            if find_bin(&bin_dirs, b).is_none() {
                let dirs: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
                bail!("binary '{b}' not found in: {}", dirs.join(" "));
            }
        }
        dir.create()?;
        // Budgets asked for and impossible stop `up` here, before anything runs.
        let cpu_groups = if sizing.bounded() {
            let name = format!("statelab-{}", std::process::id());
            let groups = CpuGroups::create(Path::new(CGROUP_ROOT), &name)?;
            dir.write_cgroup(groups.base())?;
            say(format!(
                "CPU budgets in control group {}: replicas {}, Redis nodes {}",
                groups.base().display(),
                budget_words(sizing.replica_cpu),
                budget_words(sizing.store_cpu)
            ));
            Some(groups)
        } else {
            None
        };
        dir.write_sizing(&sizing)?;
        let bin_dirs: Vec<PathBuf> = bin_dirs
            .iter()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
            .collect();
        dir.write_bin_dirs(&bin_dirs)?;
        let claims = Claims::new(&dir);
        let ports = choose_ports(&settings, store.store, &claims).await?;
        if let Err(e) = prepare(&dir, &settings, store, &ports) {
            // No lab runs: the ports go back, and `down` finds nothing to stop.
            claims.release(ports.lines().into_iter().map(|(_, p)| p));
            dir.clear();
            return Err(e);
        }
        dir.set_mode(Mode::Native)?;
        let lab = Native {
            probe: Probe::new(settings.admin_token.clone()),
            settings,
            store,
            sizing,
            cpu_groups,
            dir,
            ports,
            bin_dirs,
        };
        if let Err(e) = lab.start_all().await {
            lab.down().await;
            return Err(e);
        }
        let p = &lab.ports;
        say(proxy_up_line(p.proxy, p.admin));
        say("try: scripts/lab status; scripts/lab kill stateful-2; scripts/lab start stateful-2; scripts/lab down");
        Ok(())
    }

    async fn start_all(&self) -> anyhow::Result<()> {
        say(format!("logs in {}/", self.dir.logs().display()));
        self.start_store().await?;
        let mut objects = self.launch(Part::Objects)?;
        self.wait_healthy(Part::Objects, &mut objects)
            .await
            .context("the object store (s3s-fs) did not come up")?;
        let mut children = Vec::new();
        for r in self.ports.members() {
            children.push((Part::Replica(r), self.launch(Part::Replica(r))?));
        }
        for (part, child) in &mut children {
            self.wait_healthy(*part, child)
                .await
                .with_context(|| format!("{part} did not become healthy"))?;
        }
        if self.settings.ports == PortPlan::Free {
            say(format!(
                "replicas up on free ports (scripts/lab ports lists them; ports file {})",
                self.dir.path("ports").display()
            ));
        } else {
            say("replicas up: stateful 18001-18003, stateless 18011-18013, externalized 18021-18023");
        }
        let mut proxy = self.launch(Part::Proxy)?;
        self.wait_healthy(Part::Proxy, &mut proxy)
            .await
            .context("the proxy did not become ready")?;
        let names: Vec<String> = self.ports.members().map(|r| r.to_string()).collect();
        let waited = wait_until(
            "all nine replicas healthy in the proxy's admin status",
            self.settings.up_timeout,
            || self.probe.proxy_serves_all(self.ports.admin, &names),
        )
        .await;
        if let Err(e) = waited {
            eprint!(
                "{}",
                admin_summary(
                    self.ports.admin,
                    self.probe.admin_status(self.ports.admin).await.as_ref()
                )
            );
            return Err(e.context("the proxy does not see every replica healthy"));
        }
        Ok(())
    }

    /// Stops every part (SIGTERM, then SIGKILL after the grace) and forgets the running lab.
    pub async fn down(&self) {
        // The proxy first, Redis last (its Sentinels before its data nodes), so nothing logs a
        // flood of errors about what went before, and no Sentinel fails over during the stop.
        let mut nodes = self.store.store.nodes();
        nodes.sort_by_key(|n| !n.is_sentinel());
        let order = std::iter::once(Part::Proxy)
            .chain(self.ports.members().map(Part::Replica))
            .chain(std::iter::once(Part::Objects))
            .chain(nodes.into_iter().map(Part::Store));
        let mut stopping = Vec::new();
        for part in order {
            if let Some(id) = self.running(part) {
                id.signal(Signal::SIGTERM);
                stopping.push(id);
            }
            let _ = fs::remove_file(self.dir.pid_file(&part.to_string()));
        }
        for id in &stopping {
            let id = *id;
            let gone = wait_until(
                &format!("pid {} to stop", id.pid),
                STOP_GRACE,
                || async move { !id.alive() },
            )
            .await;
            if gone.is_err() {
                say(format!("pid {} ignored SIGTERM; sending SIGKILL", id.pid));
                id.signal(Signal::SIGKILL);
            }
        }
        if let Some(groups) = &self.cpu_groups {
            groups.remove();
        }
        Claims::new(&self.dir).release(self.ports.lines().into_iter().map(|(_, p)| p));
        self.dir.clear();
        say(format!(
            "stopped {} processes (logs kept in {}/)",
            stopping.len(),
            self.dir.logs().display()
        ));
    }
}

/// Writes what the lab's parts read before they start: its ports, store, data directories,
/// Sentinel configuration, keys and the proxy's configuration.
fn prepare(
    dir: &LabDir,
    settings: &Settings,
    store: StoreChoice,
    ports: &NativePorts,
) -> anyhow::Result<()> {
    dir.write_ports(&ports.lines())?;
    dir.write_store(store)?;
    // Each `up` starts the stateful replicas on empty disks and an empty object store: a new
    // lab's servers.
    let _ = fs::remove_dir_all(dir.path("data"));
    let _ = fs::remove_dir_all(dir.path(OBJECTS_DIR));
    fs::create_dir_all(dir.path(OBJECTS_DIR))?;
    S3Keys::create(dir)?;
    for n in store.store.nodes() {
        if let StoreNode::Cluster(_) | StoreNode::Data(_) | StoreNode::Sentinel(_) = n {
            // Sentinel and Cluster start empty at each `up`. A cluster's records (nodes.conf)
            // name the ports of the lab before, which a new `up` may not give again; and the
            // Sentinel topology always starts `redis-1` as the primary, whose data may be
            // older than a promoted replica's.
            let _ = fs::remove_dir_all(node_dir(dir, n));
        }
        fs::create_dir_all(node_dir(dir, n))?;
        if let StoreNode::Sentinel(_) = n {
            write_sentinel_config(dir, ports, n)?;
        }
    }
    // One signing key for every stateless replica: a token from one must verify on the others.
    if !fs::metadata(dir.path(JWT_SECRET)).is_ok_and(|m| m.len() > 0) {
        dir.write_private(JWT_SECRET, &random_hex(48)?)?;
    }
    // On loopback the proxy needs no token (its admin guard keeps web pages out); it gets one
    // when STATELAB_ADMIN_TOKEN asks for it.
    match &settings.admin_token {
        Some(token) => dir.write_admin_token(token)?,
        None => dir.remove_admin_token()?,
    }
    fs::write(
        dir.path("proxy.toml"),
        render_proxy_config(&native_proxy_config(ports), "the native lab on loopback")?,
    )?;
    Ok(())
}

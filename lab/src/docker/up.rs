//! `up --docker` and its failure handling, and `down`.

use std::fs;

use anyhow::bail;
use statelab_formats::lab::Sizing;

use crate::labdir::{random_admin_token, LabDir, Mode, StoreChoice};
use crate::model::{Part, Replica, Store, StoreNode};
use crate::probe::{admin_summary, port_open, proxy_up_line, wait_until, Probe};
use crate::redis_nodes;
use crate::say;
use crate::settings::{PortPlan, Settings, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT};

use super::images::images;
use super::{docker, need_docker, run, run_visible, stdout_of, Docker};

impl Docker {
    /// Brings the compose project up; returns once the proxy sees every replica healthy.
    pub async fn up(
        settings: Settings,
        dir: LabDir,
        store: StoreChoice,
        sizing: Sizing,
    ) -> anyhow::Result<()> {
        if settings.ports == PortPlan::Free {
            bail!("STATELAB_PORTS=free is for the native lab; in Docker mode set STATELAB_PROXY_PORT/STATELAB_ADMIN_PORT");
        }
        let compose = need_docker()?;
        let proxy_port = settings.proxy_port.unwrap_or(DEFAULT_PROXY_PORT);
        let admin_port = settings.admin_port.unwrap_or(DEFAULT_ADMIN_PORT);
        for port in [proxy_port, admin_port] {
            if port_open(port).await {
                bail!("port {port} is in use on the host; set STATELAB_PROXY_PORT/STATELAB_ADMIN_PORT");
            }
        }
        dir.create()?;
        dir.write_store(store)?;
        dir.write_sizing(&sizing)?;
        let proxy_config = dir.path("proxy.docker.toml");
        let _ = fs::remove_file(dir.path("members"));
        let redis_image = images(&settings)?;
        let admin_token = match (settings.admin_token.clone(), dir.admin_token()) {
            (Some(given), _) => given,
            (None, Some(recorded)) => recorded,
            (None, None) => random_admin_token()?,
        };
        dir.write_admin_token(&admin_token)?;
        let lab = Docker {
            compose,
            probe: Probe::new(Some(admin_token.clone())),
            admin_token,
            project: settings.project.clone(),
            image: settings.image.clone(),
            redis_image,
            proxy_port,
            admin_port,
            net_prefix: settings.net_prefix.clone(),
            proxy_config,
            members: Replica::initial().collect(),
            store,
            sizing,
            settings,
            dir,
        };
        lab.write_members()?;
        lab.dir.write_env(
            "docker.env",
            &[
                ("STATELAB_PROJECT", lab.project.clone()),
                ("STATELAB_IMAGE", lab.image.clone()),
                ("STATELAB_REDIS_IMAGE", lab.redis_image.clone()),
                ("STATELAB_PROXY_PORT", lab.proxy_port.to_string()),
                ("STATELAB_ADMIN_PORT", lab.admin_port.to_string()),
                ("STATELAB_NET_PREFIX", lab.net_prefix.clone()),
                (
                    "STATELAB_PROXY_CONFIG",
                    lab.proxy_config.display().to_string(),
                ),
            ],
        )?;
        // Only the proxy publishes ports on the host: the ports file names proxy and admin.
        lab.dir.write_ports(&lab.ports_lines())?;
        // Written before compose runs, so that `down` can clean up after an interrupted up.
        lab.dir.set_mode(Mode::Docker)?;
        say(format!(
            "compose project '{}' up (redis image {}, lab image {}, network {}.0/24)",
            lab.project, lab.redis_image, lab.image, lab.net_prefix
        ));
        // With another topology than the single Redis, the store comes first and is made ready
        // (the cluster created, the Sentinels able to fail over), then the replicas and the
        // proxy: named, with --no-deps leaving out the single `redis` the base file's
        // externalized replicas depend on.
        if store.store != Store::Single {
            let nodes: Vec<String> = store
                .store
                .nodes()
                .iter()
                .map(ToString::to_string)
                .collect();
            let mut up = lab.compose();
            up.args(["up", "-d", "--no-build", "--no-deps"])
                .args(&nodes);
            if run_visible(&mut up).is_err() {
                return lab.up_failed("compose up of the Redis nodes failed").await;
            }
            for n in store.store.nodes() {
                let Some(addr) = lab.node_addr(n) else {
                    continue;
                };
                let answered =
                    wait_until(&format!("{n} to answer"), lab.settings.up_timeout, || {
                        redis_nodes::answers(addr)
                    })
                    .await;
                if answered.is_err() {
                    return lab.up_failed(&format!("{n} does not answer")).await;
                }
            }
        }
        if store.store == Store::Cluster {
            if let Err(e) = lab.create_cluster().await {
                return lab.up_failed(&format!("{e:#}")).await;
            }
        }
        if store.store == Store::Sentinel {
            for n in store.store.nodes() {
                let Some(addr) = lab.node_addr(n) else {
                    continue;
                };
                let ready = match n {
                    StoreNode::Data(1) | StoreNode::Redis | StoreNode::Cluster(_) => continue,
                    StoreNode::Data(_) => {
                        wait_until(
                            &format!("{n} to hold a copy of redis-1"),
                            lab.settings.up_timeout,
                            || redis_nodes::replica_synced(addr),
                        )
                        .await
                    }
                    StoreNode::Sentinel(_) => {
                        wait_until(
                            &format!(
                                "{n} to see the primary, both replicas and both other sentinels"
                            ),
                            lab.settings.up_timeout,
                            || redis_nodes::sentinel_ready(addr),
                        )
                        .await
                    }
                };
                if ready.is_err() {
                    return lab.up_failed(&format!("{n} is not ready")).await;
                }
            }
        }
        // up -d returns once every service the proxy depends on is healthy and the proxy started.
        let mut up = lab.compose();
        up.args(["up", "-d", "--no-build"]);
        if store.store != Store::Single {
            up.arg("--no-deps").args(
                Part::initial(store.store)
                    .iter()
                    .filter(|p| !matches!(p, Part::Store(_)))
                    .map(Part::to_string),
            );
        }
        if run_visible(&mut up).is_err() {
            return lab.up_failed("compose up failed").await;
        }
        // Compose waits for it before the replicas that depend on it, except with --no-deps.
        if lab
            .wait_healthy(Part::Objects, lab.settings.up_timeout)
            .await
            .is_err()
        {
            return lab
                .up_failed(&format!("{} did not become healthy", Part::Objects))
                .await;
        }
        if let Err(e) = lab.apply_budgets() {
            return lab.up_failed(&format!("{e:#}")).await;
        }
        let admin = lab.admin_port;
        let names: Vec<String> = lab.members.iter().map(|r| r.to_string()).collect();
        if let Err(why) = lab
            .probe
            .wait_serving(admin, &names, lab.settings.up_timeout)
            .await
        {
            return lab.up_failed(why).await;
        }
        say(proxy_up_line(lab.proxy_port, admin));
        say(format!("logs: {} logs -f [NAME]", lab.compose_hint()));
        say(format!(
            "the admin API wants its token: curl -H \"Authorization: Bearer $(cat {})\" ...",
            lab.dir.path("admin-token").display()
        ));
        Ok(())
    }

    /// Shows what is not healthy, takes the project down again and forgets the mode.
    async fn up_failed(&self, why: &str) -> anyhow::Result<()> {
        say(why);
        let mut missing = Vec::new();
        let parts = Part::with(self.store.store, self.members.iter().copied());
        for part in parts.iter().copied() {
            match self.cid(part) {
                None => missing.push(part.to_string()),
                Some(cid) => {
                    let (state, health) = super::container_health(&cid);
                    if (state.as_str(), health.as_str()) != ("running", "healthy") {
                        say(format!("{part}: {state} {health}; last lines of its log:"));
                        let out = run(docker().args(["logs", "--tail", "10", &cid]));
                        if let Ok(o) = out {
                            for line in String::from_utf8_lossy(&o.stdout)
                                .lines()
                                .chain(String::from_utf8_lossy(&o.stderr).lines())
                            {
                                eprintln!("    {line}");
                            }
                        }
                    }
                }
            }
        }
        if missing.len() == parts.len() {
            say("no container was created");
        } else if !missing.is_empty() {
            say(format!("no container for: {}", missing.join(" ")));
        }
        eprint!(
            "{}",
            admin_summary(
                self.admin_port,
                self.probe.admin_status(self.admin_port).await.as_ref()
            )
        );
        say(format!(
            "taking project '{}' down again (its Redis and object store volumes are kept)",
            self.project
        ));
        let down = run(self.compose().args(["down", "--remove-orphans"]));
        if !down.is_ok_and(|o| o.status.success()) {
            say("compose down failed too; try: scripts/lab down");
        }
        self.dir.clear();
        let _ = fs::remove_file(self.dir.path("docker.env"));
        bail!("scripts/lab up --docker failed: {why}")
    }

    /// The project down (and its Redis and object store volumes with `volumes`), with any load
    /// generator it ran.
    pub fn down(&self, volumes: bool) -> anyhow::Result<()> {
        let ids = stdout_of(docker().args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=statelab.client={}", self.project),
        ])) + &stdout_of(docker().args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=statelab.scaled={}", self.project),
        ]));
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        if !ids.is_empty() {
            let _ = run(docker().args(["rm", "-f"]).args(&ids));
        }
        let mut cmd = self.compose();
        cmd.args(["down", "--remove-orphans"]);
        if volumes {
            cmd.arg("-v");
        }
        run_visible(&mut cmd)?;
        self.dir.clear();
        let _ = fs::remove_file(self.dir.path("members"));
        // A cut lived in its node's network namespace, gone with the container.
        let _ = fs::remove_file(self.dir.path("partition"));
        if volumes {
            say(format!(
                "compose project '{}' down, Redis and object store volumes deleted",
                self.project
            ));
        } else {
            say(format!("compose project '{}' down", self.project));
        }
        Ok(())
    }
}

//! The container lab: `deploy/compose.yaml` driven through the docker and compose CLIs.
//!
//! `up --docker` decides between the official images and offline stand-ins built from Debian
//! packages (`deploy/offline-images`), writes the proxy's configuration for the chosen network,
//! records its settings in `docker.env`, and brings the compose project up. Later commands find
//! containers by the project's compose labels; the in-network load generators it starts itself
//! carry `statelab.client=<project>`, so `down` finds them too.
//!
//! In the compose network the admin listener binds `0.0.0.0`, so the proxy always gets a token:
//! `STATELAB_ADMIN_TOKEN` when `up` is given one, else the one recorded before, else a random one;
//! `up` records it in the lab directory's `admin-token` and every compose command passes it on
//! (without one, the proxy would make its own and only log it).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use statelab_formats::Strategy;

use statelab_formats::lab::{Killed, LabStatus, PartStatus, Scaled, Started};

use crate::labdir::{random_admin_token, AdminToken, LabDir, Mode, StoreChoice};
use crate::model::{
    check_scale, docker_proxy_config_with, render_proxy_config, start_plan, Design, Part, Replica,
    Store, StoreNode, Target, CONTAINER_SERVICE_PORT, MAX_REPLICAS_PER_POOL, SENTINEL_MASTER_NAME,
};
use crate::probe::{admin_summary, port_open, wait_until, Probe};
use crate::redis_nodes;
use crate::say;
use crate::settings::{PortPlan, Registry, Settings, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT};

/// The Redis image used when a registry answers.
const REDIS_IMAGE: &str = "redis:7";
const RUNTIME_IMAGE: &str = "debian:bookworm-slim";
const RUST_IMAGE: &str = "rust:1-bookworm";

/// The container lab, with the settings `up --docker` recorded.
#[derive(Debug)]
pub struct Docker {
    settings: Settings,
    dir: LabDir,
    probe: Probe,
    compose: Vec<String>,
    project: String,
    image: String,
    redis_image: String,
    proxy_port: u16,
    admin_port: u16,
    net_prefix: String,
    proxy_config: PathBuf,
    /// The proxy's admin token, handed to compose as `STATELAB_ADMIN_TOKEN`.
    admin_token: AdminToken,
    /// The replicas the lab has now (the `members` file; the initial nine until `scale`).
    members: Vec<Replica>,
    /// The Redis topology `up` chose.
    store: StoreChoice,
}

/// The `members` file: one replica name a line.
fn read_members(dir: &LabDir) -> Vec<Replica> {
    let text = fs::read_to_string(dir.path("members")).unwrap_or_default();
    let members: Vec<Replica> = text
        .lines()
        .filter_map(|l| match l.trim().parse() {
            Ok(Part::Replica(r)) => Some(r),
            _ => None,
        })
        .collect();
    if members.is_empty() {
        Replica::initial().collect()
    } else {
        members
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))
}

/// Runs a command whose output the user should see; fails on a non-zero exit.
fn run_visible(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

fn stdout_of(cmd: &mut Command) -> String {
    run(cmd)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn docker() -> Command {
    Command::new("docker")
}

/// `docker compose` (v2) or `docker-compose` (1.29), whichever is here.
fn compose_cli() -> anyhow::Result<Vec<String>> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if v2 {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    let v1 = Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if v1 {
        return Ok(vec!["docker-compose".into()]);
    }
    bail!("no Docker Compose: apt-get install -y docker-compose (or the docker-compose-plugin)")
}

/// The engine answers, and a compose CLI is here.
fn need_docker() -> anyhow::Result<Vec<String>> {
    let answers = docker()
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match answers {
        Err(_) => bail!("docker is missing: apt-get install -y docker.io docker-compose"),
        Ok(s) if !s.success() => bail!(
            "the Docker engine does not answer (docker info failed): start it (service docker start) or check permissions"
        ),
        Ok(_) => compose_cli(),
    }
}

fn image_present(image: &str) -> bool {
    docker()
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Bytes in a `docker stats` size such as `12.5MiB` (binary units) or `13.1MB` (decimal).
pub fn size_to_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

impl Docker {
    /// The lab as `up --docker` recorded it in `docker.env`.
    pub fn load(settings: Settings, dir: LabDir) -> anyhow::Result<Docker> {
        let env = dir.read_env("docker.env");
        let get = |k: &str| env.get(k).cloned();
        let port = |k: &str, d: u16| get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        // A lab that `up` started without a token (an older one): a proxy that a compose command
        // creates again needs one all the same; the running one ignores the header.
        let admin_token = match dir.admin_token() {
            Some(t) => t,
            None => random_admin_token()?,
        };
        Ok(Docker {
            compose: compose_cli()?,
            probe: Probe::new(Some(admin_token.clone())),
            admin_token,
            project: get("STATELAB_PROJECT").unwrap_or_else(|| settings.project.clone()),
            image: get("STATELAB_IMAGE").unwrap_or_else(|| settings.image.clone()),
            redis_image: get("STATELAB_REDIS_IMAGE").unwrap_or_else(|| REDIS_IMAGE.into()),
            proxy_port: port("STATELAB_PROXY_PORT", DEFAULT_PROXY_PORT),
            admin_port: port("STATELAB_ADMIN_PORT", DEFAULT_ADMIN_PORT),
            net_prefix: get("STATELAB_NET_PREFIX").unwrap_or_else(|| settings.net_prefix.clone()),
            proxy_config: get("STATELAB_PROXY_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.path("proxy.docker.toml")),
            members: read_members(&dir),
            store: dir.store()?,
            settings,
            dir,
        })
    }

    pub fn proxy_port(&self) -> u16 {
        self.proxy_port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The compose command for this project, with the settings it was started with.
    fn compose(&self) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(self.settings.root.join("deploy/compose.yaml"));
        if let Some(file) = self.store_file() {
            cmd.arg("-f").arg(self.settings.root.join(file));
        }
        cmd.env("STATELAB_IMAGE", &self.image)
            .env("STATELAB_REDIS_WAIT", self.store.wait.to_string())
            .env("STATELAB_REDIS_IMAGE", &self.redis_image)
            .env("STATELAB_PROXY_PORT", self.proxy_port.to_string())
            .env("STATELAB_ADMIN_PORT", self.admin_port.to_string())
            .env("STATELAB_NET_PREFIX", &self.net_prefix)
            .env("STATELAB_PROXY_CONFIG", &self.proxy_config)
            .env("STATELAB_ADMIN_TOKEN", self.admin_token.as_str());
        cmd
    }

    /// The shell form of [`Self::compose`], for messages.
    fn compose_hint(&self) -> String {
        let extra = self
            .store_file()
            .map(|f| format!(" -f {f}"))
            .unwrap_or_default();
        format!(
            "{} -p {} -f deploy/compose.yaml{extra}",
            self.compose.join(" "),
            self.project
        )
    }

    /// The compose file that adds the store topology's nodes to the base file.
    fn store_file(&self) -> Option<&'static str> {
        match self.store.store {
            Store::Single => None,
            Store::Sentinel => Some("deploy/compose.sentinel.yaml"),
            Store::Cluster => Some("deploy/compose.cluster.yaml"),
        }
    }

    /// The running cluster nodes and their addresses.
    fn cluster_nodes(&self) -> Vec<(StoreNode, SocketAddr)> {
        Store::Cluster
            .nodes()
            .into_iter()
            .filter(|n| self.running_node(*n))
            .filter_map(|n| Some((n, self.node_addr(n)?)))
            .collect()
    }

    fn running_node(&self, n: StoreNode) -> bool {
        self.cid(Part::Store(n)).is_some_and(|cid| {
            stdout_of(docker().args(["inspect", "-f", "{{.State.Running}}", &cid])).trim() == "true"
        })
    }

    /// A Redis node's address in the lab network, which the host reaches directly.
    fn node_addr(&self, n: StoreNode) -> Option<SocketAddr> {
        format!(
            "{}.{}:{}",
            self.net_prefix,
            n.container_octet(),
            n.container_port()
        )
        .parse()
        .ok()
    }

    /// The data node that is primary now: the single Redis, or the one Sentinel names.
    async fn primary(&self) -> Option<StoreNode> {
        match self.store.store {
            Store::Single => Some(StoreNode::Redis),
            Store::Cluster => redis_nodes::fullest_primary(&self.cluster_nodes()).await,
            Store::Sentinel => {
                let sentinels: Vec<SocketAddr> = Store::Sentinel
                    .nodes()
                    .into_iter()
                    .filter(|n| n.is_sentinel())
                    .filter_map(|n| self.node_addr(n))
                    .collect();
                let addr = redis_nodes::sentinel_primary(&sentinels).await?;
                Store::Sentinel
                    .nodes()
                    .into_iter()
                    .find(|n| !n.is_sentinel() && self.node_addr(*n) == Some(addr))
            }
        }
    }

    /// `primaries`: the data nodes that are primary now and whose containers run.
    pub async fn primaries(&self) -> Vec<String> {
        if self.store.store == Store::Cluster {
            let mut names = Vec::new();
            for (n, addr) in self.cluster_nodes() {
                if redis_nodes::role(addr).await.as_deref() == Some("master") {
                    names.push(n.to_string());
                }
            }
            return names;
        }
        let Some(n) = self.primary().await else {
            return Vec::new();
        };
        if self.running_node(n) {
            vec![n.to_string()]
        } else {
            Vec::new()
        }
    }

    /// `redis-cli --cluster create` inside `redis-cluster-1`'s container, over the six nodes'
    /// lab addresses; then waits until the cluster is ok and every replica holds its copy.
    async fn create_cluster(&self) -> anyhow::Result<()> {
        let first = Part::Store(StoreNode::Cluster(1));
        let cid = self
            .cid(first)
            .with_context(|| format!("no container for {first}"))?;
        let addrs: Vec<SocketAddr> = Store::Cluster
            .nodes()
            .into_iter()
            .filter_map(|n| self.node_addr(n))
            .collect();
        let out = run(docker()
            .args(["exec", &cid, "redis-cli", "--cluster", "create"])
            .args(addrs.iter().map(ToString::to_string))
            .args(["--cluster-replicas", "1", "--cluster-yes"]))?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        redis_nodes::wait_cluster_ready(&addrs, self.settings.up_timeout).await
    }

    /// Brings the compose project up; returns once the proxy sees every replica healthy.
    pub async fn up(settings: Settings, dir: LabDir, store: StoreChoice) -> anyhow::Result<()> {
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
        let admin = lab.admin_port;
        if wait_until(
            &format!("the proxy's admin API on 127.0.0.1:{admin}"),
            lab.settings.up_timeout,
            || lab.probe.proxy_ready(admin),
        )
        .await
        .is_err()
        {
            return lab.up_failed("the proxy did not become ready").await;
        }
        let names: Vec<String> = lab.members.iter().map(|r| r.to_string()).collect();
        if wait_until(
            "all nine replicas healthy in the proxy's admin status",
            lab.settings.up_timeout,
            || lab.probe.proxy_serves_all(admin, &names),
        )
        .await
        .is_err()
        {
            return lab
                .up_failed("the proxy does not see every replica healthy")
                .await;
        }
        say(format!(
            "proxy up: http://127.0.0.1:{}/{{stateful,stateless,externalized}}/  admin: http://127.0.0.1:{admin}/admin/status",
            lab.proxy_port
        ));
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
        for part in Part::with(self.store.store, self.members.iter().copied()) {
            match self.cid(part) {
                None => missing.push(part.to_string()),
                Some(cid) => {
                    let (state, health) = self.container_health(&cid);
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
        if missing.len() == self.members.len() + 1 + self.store.store.nodes().len() {
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
            "taking project '{}' down again (its Redis volume is kept)",
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

    /// Writes the members back: the `members` file, and the proxy's configuration (written in
    /// place: the proxy container bind-mounts the file), so a restarted proxy comes back with the
    /// pools as they are now.
    fn write_members(&self) -> anyhow::Result<()> {
        let names: String = self.members.iter().map(|r| format!("{r}\n")).collect();
        fs::write(self.dir.path("members"), names)?;
        fs::write(
            &self.proxy_config,
            render_proxy_config(
                &docker_proxy_config_with(&self.net_prefix, &self.members),
                &format!("the compose network {}.0/24", self.net_prefix),
            )?,
        )?;
        Ok(())
    }

    /// Grows or shrinks a pool to `n` replicas: further containers of the lab image on the lab
    /// network at the addresses the model gives them (`.1k`, `.2k`, `.3k`), registered with the
    /// proxy; or the highest-numbered ones taken out of the proxy (after `drain`, or at once)
    /// and removed. They carry the compose project's labels, so `status`, `kill`, `start`, `mem`
    /// and `down` treat them like the rest.
    pub async fn scale(
        &mut self,
        design: Design,
        n: u8,
        drain: Option<Duration>,
    ) -> anyhow::Result<Scaled> {
        check_scale(n)?;
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let network = self.lab_network().with_context(|| {
            format!(
                "no lab network for project {}; is the Docker lab up?",
                self.project
            )
        })?;
        let mut count = self.members.iter().filter(|r| r.design == design).count();
        while count < usize::from(n) {
            let index = (1..=MAX_REPLICAS_PER_POOL)
                .find(|i| !self.members.contains(&Replica { design, index: *i }))
                .context("no free replica number")?;
            let r = Replica { design, index };
            let address = format!("{}.{}", self.net_prefix, r.container_octet());
            self.run_replica(&network, r, &address)?;
            self.members.push(r);
            self.members.sort();
            self.write_members()?;
            let part = Part::Replica(r);
            wait_until(
                &format!("{r} to be healthy"),
                self.settings.up_timeout,
                || async {
                    self.cid(part).is_some_and(|cid| {
                        self.container_health(&cid) == ("running".into(), "healthy".into())
                    })
                },
            )
            .await
            .with_context(|| format!("{r} did not become healthy; see: scripts/lab logs {r}"))?;
            self.probe
                .add_replica(
                    self.admin_port,
                    design.as_str(),
                    &r.to_string(),
                    &format!("{address}:{CONTAINER_SERVICE_PORT}"),
                )
                .await?;
            self.probe
                .wait_routed(self.admin_port, part, self.settings.up_timeout)
                .await?;
            say(format!("{r} added at {address}"));
            added.push(r.to_string());
            count += 1;
        }
        while count > usize::from(n) {
            let Some(r) = self
                .members
                .iter()
                .rev()
                .find(|r| r.design == design)
                .copied()
            else {
                break;
            };
            let how = self
                .probe
                .remove_replica(self.admin_port, &r.to_string(), drain)
                .await?;
            if let Some(cid) = self.cid(Part::Replica(r)) {
                let _ = run(docker().args(["rm", "-f", &cid]));
            }
            self.members.retain(|m| *m != r);
            self.write_members()?;
            say(format!("{r} removed ({how}) and its container deleted"));
            removed.push(r.to_string());
            count -= 1;
        }
        say(format!("{design}: {n} replica(s)"));
        Ok(Scaled {
            pool: design,
            replicas: self
                .members
                .iter()
                .filter(|r| r.design == design)
                .map(Replica::to_string)
                .collect(),
            added,
            removed,
        })
    }

    /// One more replica container, configured as compose configures the first three.
    fn run_replica(&self, network: &str, r: Replica, address: &str) -> anyhow::Result<()> {
        let name = r.to_string();
        let mut cmd = docker();
        cmd.args(["run", "-d", "--network", network, "--ip", address])
            .arg("--name")
            .arg(format!("{}-{name}-1", self.project))
            .arg("--label")
            .arg(format!("com.docker.compose.project={}", self.project))
            .arg("--label")
            .arg(format!("com.docker.compose.service={name}"))
            .arg("--label")
            .arg(format!("statelab.scaled={}", self.project))
            .args([
                "--health-cmd",
                &format!("statelab-healthcheck {CONTAINER_SERVICE_PORT} /health"),
            ])
            .args([
                "--health-interval",
                "2s",
                "--health-timeout",
                "3s",
                "--health-retries",
                "3",
            ])
            .args(["--health-start-period", "20s", "--stop-timeout", "10"])
            .arg("-e")
            .arg(format!("STATELAB_REPLICA={name}"));
        match r.design {
            Design::Stateful => {}
            Design::Stateless => {
                cmd.arg("--env-file")
                    .arg(self.settings.root.join("deploy/lab.env"));
            }
            Design::Externalized => {
                cmd.args(["-e", "STATELAB_REDIS_URL=redis://redis:6379"]);
                if self.store.store == Store::Cluster {
                    let nodes: Vec<String> = Store::Cluster
                        .nodes()
                        .into_iter()
                        .filter_map(|n| self.node_addr(n))
                        .map(|a| a.to_string())
                        .collect();
                    cmd.arg("-e")
                        .arg(format!("STATELAB_REDIS_CLUSTER={}", nodes.join(",")));
                }
                if self.store.store == Store::Sentinel {
                    let sentinels: Vec<String> = Store::Sentinel
                        .nodes()
                        .into_iter()
                        .filter(|n| n.is_sentinel())
                        .filter_map(|n| self.node_addr(n))
                        .map(|a| a.to_string())
                        .collect();
                    cmd.arg("-e")
                        .arg(format!("STATELAB_REDIS_SENTINEL={}", sentinels.join(",")))
                        .arg("-e")
                        .arg(format!("STATELAB_REDIS_MASTER_NAME={SENTINEL_MASTER_NAME}"))
                        .arg("-e")
                        .arg(format!("STATELAB_REDIS_WAIT={}", self.store.wait));
                }
            }
        }
        cmd.arg(&self.image).arg(r.design.as_str());
        let out = run(&mut cmd)?;
        if !out.status.success() {
            bail!(
                "docker run {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub fn ports_lines(&self) -> Vec<(String, u16)> {
        vec![
            ("proxy".into(), self.proxy_port),
            ("admin".into(), self.admin_port),
        ]
    }

    /// The container of a part in this project.
    fn cid(&self, part: Part) -> Option<String> {
        let out = stdout_of(docker().args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={part}"),
        ]));
        out.lines().next().map(str::to_string)
    }

    /// (state, health) of a container: e.g. ("running", "healthy"), ("exited", "-").
    fn container_health(&self, cid: &str) -> (String, String) {
        let out = stdout_of(docker().args([
            "inspect",
            "-f",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}",
            cid,
        ]));
        let mut words = out.split_whitespace();
        match (words.next(), words.next()) {
            (Some(s), Some(h)) => (s.to_string(), h.to_string()),
            _ => ("missing".into(), "-".into()),
        }
    }

    /// Each part, up or down and healthy or not, and the proxy's own view.
    pub async fn status(&self) -> LabStatus {
        let mut parts = Vec::new();
        for part in Part::with(self.store.store, self.members.iter().copied()) {
            let (cid, state, health) = match self.cid(part) {
                Some(cid) => {
                    let (s, h) = self.container_health(&cid);
                    (Some(cid.chars().take(12).collect::<String>()), s, h)
                }
                None => (None, "missing".to_string(), "-".to_string()),
            };
            let up = state == "running";
            let role = match part {
                Part::Store(n) if up => match self.node_addr(n) {
                    Some(addr) => redis_nodes::role(addr).await.map(redis_nodes::role_word),
                    None => None,
                },
                _ => None,
            };
            parts.push(PartStatus {
                name: part.to_string(),
                up,
                down: (!up).then_some(state),
                health: (up && health != "-").then_some(health),
                role,
                pid: None,
                container: cid,
            });
        }
        LabStatus {
            mode: Mode::Docker.as_str().to_string(),
            parts,
            admin_port: self.admin_port,
            proxy: self.probe.admin_status(self.admin_port).await,
        }
    }

    fn cid_or_err(&self, part: Part) -> anyhow::Result<String> {
        if let Part::Store(n) = part {
            if !self.store.store.nodes().contains(&n) {
                bail!(
                    "{part} is not a node of this lab's Redis ({}); scripts/lab status lists them",
                    self.store.store.name()
                );
            }
        }
        if let Part::Replica(r) = part {
            if !self.members.contains(&r) {
                bail!(
                    "{part} is not a member of the lab now (scripts/lab status lists them; scripts/lab scale {} N adds some)",
                    r.design
                );
            }
        }
        self.cid(part)
            .with_context(|| format!("no container for {part} in project {}", self.project))
    }

    pub async fn kill(&self, target: Target) -> anyhow::Result<Killed> {
        let part = target.resolve(|| self.primary()).await?;
        let cid = self.cid_or_err(part)?;
        let out = run(docker().args(["kill", &cid]))?;
        if !out.status.success() {
            bail!(
                "docker kill {part} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let short = &cid[..cid.len().min(12)];
        say(format!(
            "killed {part} (docker kill {short}; its restart policy is now off: scripts/lab start {part})"
        ));
        Ok(Killed {
            killed: part.to_string(),
            pid: None,
            container: Some(short.to_string()),
        })
    }

    /// Starts a stopped part. A Redis data node of the Sentinel topology is made a replica of the
    /// primary Sentinel names now as soon as it answers: its command line would bring an old
    /// primary back as a second, stale primary, which Sentinel converts only after some seconds;
    /// with no primary named, it is not started at all.
    pub async fn start(&self, target: Target) -> anyhow::Result<Started> {
        let (part, replica_of) = start_plan(target, || self.primary()).await?;
        let cid = self.cid_or_err(part)?;
        let out = run(docker().args(["start", &cid]))?;
        if !out.status.success() {
            bail!(
                "docker start {part} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let short = &cid[..cid.len().min(12)];
        let limit = self.settings.up_timeout;
        // A returning data node is made a replica the moment it answers, before its health check
        // comes round: until then it is a second, stale primary.
        let addrs = match (replica_of, part) {
            (Some(p), Part::Store(n)) => self.node_addr(n).zip(self.node_addr(p)),
            _ => None,
        };
        if let (Some(p), Some((addr, primary))) = (replica_of, addrs) {
            wait_until(&format!("{part} to answer"), limit, || {
                redis_nodes::answers(addr)
            })
            .await?;
            if !redis_nodes::replicate(addr, primary).await {
                bail!("{part} did not accept REPLICAOF {primary}");
            }
            wait_until(&format!("{part} to hold a copy of {p}"), limit, || {
                redis_nodes::replica_synced(addr)
            })
            .await?;
        }
        if part == Part::Proxy {
            wait_until("the proxy", limit, || {
                self.probe.proxy_ready(self.admin_port)
            })
            .await
            .context("the proxy did not become ready")?;
        } else {
            wait_until(&format!("{part} to be healthy"), limit, || async {
                self.container_health(&cid) == ("running".into(), "healthy".into())
            })
            .await
            .with_context(|| format!("{part} did not become healthy; see: docker logs {short}"))?;
        }
        let started = Started {
            started: part.to_string(),
            pid: None,
            container: Some(short.to_string()),
            replica_of: replica_of.map(|p| p.to_string()),
        };
        if let Some(p) = replica_of {
            say(format!(
                "started {part} (container {short}) as a replica of {p}, healthy"
            ));
            return Ok(started);
        }
        say(format!("started {part} (container {short}), healthy"));
        self.probe.wait_routed(self.admin_port, part, limit).await?;
        Ok(started)
    }

    /// The project down (and its Redis volume with `volumes`), with any load generator it ran.
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
        if volumes {
            say(format!(
                "compose project '{}' down, Redis volume deleted",
                self.project
            ));
        } else {
            say(format!("compose project '{}' down", self.project));
        }
        Ok(())
    }

    /// `NAME BYTES` for each running replica container, as `docker stats` reports its memory.
    pub fn mem(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut running = Vec::new();
        for r in self.members.iter().copied() {
            if let Some(cid) = self.cid(Part::Replica(r)) {
                let state = stdout_of(docker().args(["inspect", "-f", "{{.State.Running}}", &cid]));
                if state.trim() == "true" {
                    running.push((r, cid));
                }
            }
        }
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let out = run(docker()
            .args([
                "stats",
                "--no-stream",
                "--format",
                "{{.Container}} {{.MemUsage}}",
            ])
            .args(running.iter().map(|(_, c)| c)))?;
        if !out.status.success() {
            bail!("docker stats failed");
        }
        let usage: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (cid, rest) = l.split_once(' ')?;
                let used = rest.split('/').next()?.replace(char::is_whitespace, "");
                Some((cid.to_string(), used))
            })
            .collect();
        // A container that stopped meanwhile shows 0B: down, so omitted.
        Ok(running
            .into_iter()
            .filter_map(|(r, cid)| {
                let bytes = size_to_bytes(usage.get(&cid)?)?;
                (bytes > 0).then(|| (r.to_string(), bytes))
            })
            .collect())
    }

    /// Follows a part's container log.
    pub fn logs(&self, part: Part) -> anyhow::Result<()> {
        let cid = self.cid_or_err(part)?;
        run_visible(docker().args(["logs", "--tail", "50", "-f", &cid]))
    }

    fn lab_network(&self) -> Option<String> {
        stdout_of(docker().args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            "label=com.docker.compose.network=lab",
        ]))
        .lines()
        .next()
        .map(str::to_string)
    }

    /// `statelab-client` in a throwaway container on the lab network at `address` (inside the
    /// range whose `X-Forwarded-For` the proxy trusts): one request per client, the replicas that
    /// answered, one a line.
    fn client(&self, network: &str, address: &str, clients: &[String]) -> Vec<String> {
        let out = stdout_of(
            Command::new("timeout")
                .arg("60")
                .arg("docker")
                .args(["run", "--rm", "--network", network, "--ip", address])
                .args(["--label", &format!("statelab.client={}", self.project)])
                .arg(&self.image)
                .arg("statelab-client")
                .args(clients),
        );
        out.lines().map(str::to_string).collect()
    }

    /// One request as a fresh client from the host: the replica that answered.
    async fn ask_from_host(&self, forwarded_for: Option<&str>) -> Option<String> {
        let mut req = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/stateful/health",
                self.proxy_port
            ))
            .timeout(Duration::from_secs(3));
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        let resp = req.send().await.ok()?;
        let replica = resp.headers().get("x-replica")?.to_str().ok()?;
        Some(replica.to_string())
    }

    /// Shows the Docker NAT trap for ip-hash and the two ways around it.
    pub async fn iphash_demo(&self) -> anyhow::Result<()> {
        let network = self.lab_network().with_context(|| {
            format!(
                "no lab network for project {}; is the Docker lab up?",
                self.project
            )
        })?;
        let before = self
            .probe
            .admin_status(self.admin_port)
            .await
            .and_then(|s| s.pool("stateful").map(|p| p.strategy))
            .unwrap_or(Strategy::Cookie);
        self.probe
            .set_strategy(self.admin_port, "stateful", Strategy::IpHash)
            .await?;
        let result = self.iphash_steps(&network, before).await;
        let restored = self
            .probe
            .set_strategy(self.admin_port, "stateful", before)
            .await;
        result?;
        restored?;
        println!("\nstrategy of the stateful pool restored to {before}.");
        Ok(())
    }

    async fn iphash_steps(&self, network: &str, before: Strategy) -> anyhow::Result<()> {
        let clients: Vec<String> = (1..=12).map(|i| format!("198.51.100.{i}")).collect();
        println!("stateful pool switched to ip-hash (was {before}); 12 fresh clients each time:\n");
        println!("1. From the host. Docker NAT makes every client the bridge gateway, so one replica takes all:");
        let mut seen = Vec::new();
        for _ in 0..12 {
            seen.extend(self.ask_from_host(None).await);
        }
        println!("   {}", tally(&seen));
        println!("2. From the host with X-Forwarded-For: still one replica, the gateway is not a trusted proxy:");
        let mut seen = Vec::new();
        for c in &clients {
            seen.extend(self.ask_from_host(Some(c)).await);
        }
        println!("   {}", tally(&seen));
        println!("3. Workaround A, several source addresses: 6 containers on the lab network, one request each:");
        let mut seen = Vec::new();
        for i in 1..=6 {
            let address = format!("{}.{}", self.net_prefix, 200 + i);
            seen.extend(self.client(network, &address, &["-".to_string()]));
        }
        println!("   {}", tally(&seen));
        println!("4. Workaround B, a trusted in-network load generator naming 12 clients in X-Forwarded-For:");
        let first = self.client(network, &format!("{}.250", self.net_prefix), &clients);
        println!("   {}", tally(&first));
        println!("   ...and the same 12 clients sent again from another load generator land where they did:");
        let second = self.client(network, &format!("{}.251", self.net_prefix), &clients);
        if !first.is_empty() && first == second {
            println!("   same replicas, client by client");
        } else {
            println!("   MOVED (unexpected: was a replica killed or restarted meanwhile?)");
        }
        Ok(())
    }
}

/// `stateful-2 x12  stateful-3 x1` for the replica names seen.
fn tally(names: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    counts
        .iter()
        .map(|(n, c)| format!("{n} x{c}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Decides between the official images and the offline stand-ins, builds what is needed, and
/// returns the Redis image to run.
fn images(s: &Settings) -> anyhow::Result<String> {
    if registry_mode(s)? {
        let redis = env_or("STATELAB_REDIS_IMAGE", REDIS_IMAGE);
        if !s.skip_image_build || !image_present(&s.image) {
            say(format!(
                "building {} from source in the official Rust image (this compiles the workspace)",
                s.image
            ));
            let mut args: Vec<String> = Vec::new();
            for (var, arg) in [
                ("STATELAB_RUST_IMAGE", "RUST_IMAGE"),
                ("STATELAB_RUNTIME_IMAGE", "RUNTIME_IMAGE"),
            ] {
                if let Ok(v) = std::env::var(var) {
                    if !v.is_empty() {
                        args.extend(["--build-arg".into(), format!("{arg}={v}")]);
                    }
                }
            }
            let root = s.root.display().to_string();
            args.extend([
                "-f".into(),
                format!("{root}/deploy/Dockerfile"),
                "-t".into(),
                s.image.clone(),
                root.clone(),
            ]);
            // deploy/lib.sh picks the docker CLI that can build with BuildKit.
            run_visible(
                Command::new("bash")
                    .arg("-c")
                    .arg(r#". "$1/deploy/lib.sh" && shift && statelab_docker_build "$@""#)
                    .arg("statelab-build")
                    .arg(&root)
                    .args(&args),
            )?;
            let _ = run(docker().args([
                "image",
                "prune",
                "-f",
                "--filter",
                "label=statelab.image=lab",
            ]));
        }
        return Ok(redis);
    }
    let suite = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bookworm".into());
    let redis = env_or(
        "STATELAB_STANDIN_IMAGE",
        &format!("statelab-standin/debian:{suite}"),
    );
    if s.skip_image_build && image_present(&s.image) && image_present(&redis) {
        say(format!(
            "STATELAB_SKIP_IMAGE_BUILD=1: using the existing {} and {redis}",
            s.image
        ));
    } else {
        say("building images offline from Debian packages and host-built binaries (deploy/offline-images)");
        let mut cmd = Command::new(s.root.join("deploy/offline-images"));
        if !s.bin_dirs.is_empty() {
            cmd.arg("--no-cargo");
        }
        run_visible(&mut cmd)?;
    }
    Ok(redis)
}

/// True for the official images, false for the offline stand-ins. With every base image present,
/// online; otherwise the missing Redis and runtime images (small) are pulled, each bounded by
/// `STATELAB_PROBE_TIMEOUT`, and the first failure means offline. The Rust build image (about
/// 1.5 GB) is not probed: the build pulls it.
fn registry_mode(s: &Settings) -> anyhow::Result<bool> {
    match s.registry {
        Registry::Offline => {
            say("STATELAB_OFFLINE=1: offline images, no registry asked");
            return Ok(false);
        }
        Registry::Online => return Ok(true),
        Registry::Probe => {}
    }
    let rust = env_or("STATELAB_RUST_IMAGE", RUST_IMAGE);
    let wanted = [
        env_or("STATELAB_REDIS_IMAGE", REDIS_IMAGE),
        env_or("STATELAB_RUNTIME_IMAGE", RUNTIME_IMAGE),
        rust.clone(),
    ];
    let missing: Vec<&String> = wanted.iter().filter(|i| !image_present(i)).collect();
    if missing.is_empty() {
        return Ok(true);
    }
    let secs = s.probe_timeout.as_secs();
    for img in missing.iter().filter(|i| ***i != rust) {
        say(format!(
            "registry probe: docker pull {img} (at most {secs} s)"
        ));
        let out = run(Command::new("timeout").arg(secs.to_string()).args([
            "docker",
            "pull",
            "-q",
            img.as_str(),
        ]))?;
        if out.status.code() == Some(124) {
            say(format!("docker pull {img} did not finish in {secs} s; going offline (STATELAB_OFFLINE=0 insists on the registry, STATELAB_PROBE_TIMEOUT gives it longer)"));
            return Ok(false);
        }
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            say(format!(
                "no container registry reachable (docker pull {img}: {})",
                err.lines().last().unwrap_or("").trim()
            ));
            return Ok(false);
        }
    }
    if missing.contains(&&rust) {
        say(format!("registry answers; the build pulls {rust}"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_stats_sizes_in_both_unit_systems() {
        assert_eq!(size_to_bytes("12.5MiB"), Some(13_107_200));
        assert_eq!(size_to_bytes("13.1MB"), Some(13_100_000));
        assert_eq!(size_to_bytes("0B"), Some(0));
        assert_eq!(size_to_bytes("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(size_to_bytes("12 parsecs"), None);
        assert_eq!(size_to_bytes(""), None);
    }

    #[test]
    fn tally_counts_each_replica() {
        let seen: Vec<String> = ["stateful-2", "stateful-1", "stateful-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(tally(&seen), "stateful-1 x1  stateful-2 x2");
    }
}

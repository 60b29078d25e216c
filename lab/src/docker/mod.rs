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
//!
//! The lab's jobs, one a file: `up` (up, its failure handling, and `down`), `store` (the Redis
//! nodes: addresses, the primary, cluster creation), `parts` (status, kill, start, logs; the
//! object store `s3` among them, a compose service like Redis), `scale`, `partition` (a Redis
//! node cut off, and healed),
//! `mem`, `images` (official images or offline stand-ins) and `iphash` (the ip-hash demo); this
//! file holds the [`Docker`] handle, its loading, and the compose and docker commands they share.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use statelab_formats::lab::Sizing;

use crate::labdir::{random_admin_token, AdminToken, LabDir, StoreChoice};
use crate::model::{
    docker_proxy_config_with, render_proxy_config, Part, Replica, Store, CONTAINER_S3_PORT,
    CONTAINER_SERVICE_PORT,
};
use crate::probe::{wait_until, Probe};
use crate::settings::{Settings, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT};

pub(crate) mod budget;
pub(crate) mod images;
mod iphash;
pub(crate) mod mem;
mod partition;
pub(crate) mod parts;
mod scale;
mod store;
mod up;

pub use mem::size_to_bytes;

/// The Redis image used when a registry answers.
const REDIS_IMAGE: &str = "redis:7";

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
    /// The parts' CPU budgets and the replicas' work per request.
    sizing: Sizing,
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

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))
}

/// Runs a command whose output the user should see; fails on a non-zero exit.
pub(crate) fn run_visible(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

pub(crate) fn stdout_of(cmd: &mut Command) -> String {
    run(cmd)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub(crate) fn docker() -> Command {
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

/// (state, health) of a container: e.g. ("running", "healthy"), ("exited", "-").
pub(crate) fn container_health(cid: &str) -> (String, String) {
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

/// The engine answers.
pub(crate) fn need_engine() -> anyhow::Result<()> {
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
        Ok(_) => Ok(()),
    }
}

/// The engine answers, and a compose CLI is here.
fn need_docker() -> anyhow::Result<Vec<String>> {
    need_engine()?;
    compose_cli()
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
            sizing: dir.sizing()?,
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
            .env("STATELAB_WORK_US", self.sizing.work_us.to_string())
            .env("STATELAB_WORK_DIST", self.sizing.work_dist.as_str())
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

    pub fn ports_lines(&self) -> Vec<(String, u16)> {
        vec![
            ("proxy".into(), self.proxy_port),
            ("admin".into(), self.admin_port),
        ]
    }

    /// Where the host reaches each part: the published proxy and admin ports on loopback; the
    /// replicas, the Redis nodes and the object store at their addresses in the lab network
    /// (the host has an address on the lab's bridge).
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        let at = |octet: u16, port: u16| {
            format!("{}.{octet}:{port}", self.net_prefix)
                .parse::<SocketAddr>()
                .ok()
        };
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let replicas = self.members.iter().filter_map(|r| {
            Some((
                r.to_string(),
                at(r.container_octet(), CONTAINER_SERVICE_PORT)?,
            ))
        });
        let nodes = self
            .store
            .store
            .nodes()
            .into_iter()
            .filter_map(|n| Some((n.to_string(), self.node_addr(n)?)));
        let objects = at(Part::Objects.container_octet(), CONTAINER_S3_PORT)
            .map(|a| (Part::Objects.to_string(), a));
        nodes
            .chain(objects)
            .chain(replicas)
            .chain([
                ("proxy".to_string(), loopback(self.proxy_port)),
                ("admin".to_string(), loopback(self.admin_port)),
            ])
            .collect()
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

    /// Waits until the part's container runs and passes its healthcheck.
    async fn wait_healthy(&self, part: Part, limit: Duration) -> anyhow::Result<()> {
        wait_until(&format!("{part} to be healthy"), limit, || async {
            self.cid(part)
                .is_some_and(|cid| container_health(&cid) == ("running".into(), "healthy".into()))
        })
        .await
    }

    /// The object store's URL in the lab network, as the stateless and externalized replicas
    /// reach it (`STATELAB_S3_URL`).
    fn objects_url(&self) -> String {
        format!(
            "http://{}.{}:{CONTAINER_S3_PORT}",
            self.net_prefix,
            Part::Objects.container_octet()
        )
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
}

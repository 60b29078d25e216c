//! The native lab: Redis, nine replicas and the proxy as local processes on loopback.
//!
//! Each part runs in its own process group, so a Ctrl-C in the terminal that ran `up` does not
//! reach it, with its output appended to `logs/NAME.log`. A part's PID is recorded with the
//! process's start time (`/proc/PID/stat`), so a PID the kernel has since given to another process
//! is never mistaken for the part.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use statelab_formats::lab::{Killed, LabStatus, PartStatus, Scaled, Started};

use crate::labdir::{LabDir, Mode, StoreChoice};
use crate::model::{
    check_scale, native_proxy_config, render_proxy_config, start_plan, Design, NativePorts, Part,
    Replica, Store, StoreNode, Target, CLUSTER_NODE_TIMEOUT_MS, MAX_REPLICAS_PER_POOL,
    REDIS_MEMORY_FLAGS, REPLICATION_FLAGS, SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS,
    SENTINEL_MASTER_NAME, SENTINEL_QUORUM,
};
use crate::probe::{admin_summary, port_open, wait_until, Probe};
use crate::redis_nodes;
use crate::say;
use crate::settings::{PortPlan, Settings, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT};

/// The binaries the native lab runs.
pub const BINARIES: [&str; 4] = ["stateful", "stateless", "externalized", "statelab-proxy"];
/// How long a part gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Free ports are picked from here up to the kernel's ephemeral range.
const FREE_PORT_LOW: u16 = 10000;

/// The native lab as `up` recorded it.
#[derive(Debug)]
pub struct Native {
    settings: Settings,
    store: StoreChoice,
    dir: LabDir,
    probe: Probe,
    ports: NativePorts,
    bin_dirs: Vec<PathBuf>,
}

/// A process's identity: its PID and the kernel's start time for it (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcId {
    pid: i32,
    start: u64,
}

/// State and start time from `/proc/PID/stat`; `None` when there is no such process.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 is the state, field 22 the start time.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl ProcId {
    fn of(pid: u32) -> Option<ProcId> {
        let pid = i32::try_from(pid).ok()?;
        proc_stat(pid).map(|(_, start)| ProcId { pid, start })
    }

    /// Still the same process, and not a zombie.
    fn alive(self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start)) if start == self.start && state != 'Z')
    }

    fn signal(self, sig: Signal) -> bool {
        self.alive() && kill(Pid::from_raw(self.pid), sig).is_ok()
    }
}

/// The first folder's `name` that exists.
pub fn find_bin(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A program on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `redis-server` on the PATH.
fn redis_server() -> anyhow::Result<PathBuf> {
    on_path("redis-server")
        .context("redis-server is not on the PATH: apt-get install -y redis-server")
}

/// `redis-cli` on the PATH (Debian's redis-tools, which redis-server depends on).
fn redis_cli() -> anyhow::Result<PathBuf> {
    on_path("redis-cli").context("redis-cli is not on the PATH: apt-get install -y redis-tools")
}

/// The first port of the kernel's ephemeral range; free ports stay below it, where no outgoing
/// connection can hold one that nothing listens on.
fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .filter(|low: &u16| *low > FREE_PORT_LOW + 1000)
        .unwrap_or(32768)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_or(0, |()| u64::from_le_bytes(b))
}

/// A random loopback port below the ephemeral range that nothing listens on and `taken` lacks.
async fn free_port(taken: &[u16]) -> anyhow::Result<u16> {
    let high = ephemeral_low() - 1;
    for _ in 0..500 {
        let port = FREE_PORT_LOW + (random_u64() % u64::from(high - FREE_PORT_LOW + 1)) as u16;
        if !taken.contains(&port)
            && !port_open(port).await
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("found no free port in {FREE_PORT_LOW}-{high}")
}

/// The pinned port, or a free one that `taken` lacks; either way recorded in `taken`.
async fn pinned_or_free(pinned: Option<u16>, taken: &mut Vec<u16>) -> anyhow::Result<u16> {
    let port = match pinned {
        Some(p) => p,
        None => free_port(taken).await?,
    };
    taken.push(port);
    Ok(port)
}

/// The first port from `from` up that nothing listens on and `taken` lacks.
async fn first_free_from(from: u16, taken: &[u16]) -> u16 {
    let mut p = from;
    while taken.contains(&p) || port_open(p).await {
        p += 1;
    }
    p
}

/// Chooses every port `up` needs, per the port plan and the pinned variables.
async fn choose_ports(s: &Settings, store: Store) -> anyhow::Result<NativePorts> {
    let in_use = |port: u16, what: String| async move {
        if port_open(port).await {
            bail!("port {port} (for {what}) is already in use; see: ss -ltnp 'sport = :{port}'")
        }
        Ok(())
    };
    let ports = match s.ports {
        PortPlan::Fixed => {
            let mut replicas = BTreeMap::new();
            for r in Replica::initial() {
                in_use(r.fixed_port(), r.to_string()).await?;
                replicas.insert(r, r.fixed_port());
            }
            // Redis nodes from 16379 up, Sentinels from 26379 up, cluster buses from 17379 up;
            // STATELAB_REDIS_PORT pins the single Redis or the first data node.
            let mut nodes = BTreeMap::new();
            let mut buses = BTreeMap::new();
            let mut taken = Vec::new();
            for n in store.nodes() {
                let port = match (n, s.redis_port) {
                    (StoreNode::Redis | StoreNode::Data(1), Some(p)) => p,
                    (StoreNode::Sentinel(_), _) => first_free_from(26379, &taken).await,
                    _ => first_free_from(16379, &taken).await,
                };
                taken.push(port);
                nodes.insert(n, port);
                if let StoreNode::Cluster(_) = n {
                    let bus = first_free_from(17379, &taken).await;
                    taken.push(bus);
                    buses.insert(n, bus);
                }
            }
            NativePorts {
                store: nodes,
                buses,
                proxy: s.proxy_port.unwrap_or(DEFAULT_PROXY_PORT),
                admin: s.admin_port.unwrap_or(DEFAULT_ADMIN_PORT),
                replicas,
            }
        }
        PortPlan::Free => {
            // Pinned ports first, so that no random pick takes one of them.
            let mut taken: Vec<u16> = [s.proxy_port, s.admin_port, s.redis_port]
                .into_iter()
                .flatten()
                .collect();
            let mut replicas = BTreeMap::new();
            for r in Replica::initial() {
                replicas.insert(r, pinned_or_free(None, &mut taken).await?);
            }
            let proxy = pinned_or_free(s.proxy_port, &mut taken).await?;
            let admin = pinned_or_free(s.admin_port, &mut taken).await?;
            let mut nodes = BTreeMap::new();
            let mut buses = BTreeMap::new();
            for n in store.nodes() {
                let pinned = match n {
                    StoreNode::Redis | StoreNode::Data(1) => s.redis_port,
                    _ => None,
                };
                nodes.insert(n, pinned_or_free(pinned, &mut taken).await?);
                if let StoreNode::Cluster(_) = n {
                    buses.insert(n, pinned_or_free(None, &mut taken).await?);
                }
            }
            NativePorts {
                proxy,
                admin,
                store: nodes,
                buses,
                replicas,
            }
        }
    };
    for (port, what) in [(ports.proxy, "proxy"), (ports.admin, "admin")] {
        if port_open(port).await {
            bail!("port {port} ({what}) is in use; set STATELAB_PROXY_PORT/STATELAB_ADMIN_PORT");
        }
    }
    if let Some(p) = s.redis_port {
        if port_open(p).await {
            bail!("STATELAB_REDIS_PORT {p} is already in use");
        }
    }
    Ok(ports)
}

/// One signing key for every stateless replica (a token from one must verify on the others),
/// readable by the owner only.
fn ensure_jwt_secret(path: &Path) -> anyhow::Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        return Ok(());
    }
    let mut key = [0u8; 48];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no random bytes for the key: {e}"))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(hex.as_bytes())?;
    Ok(())
}

impl Native {
    /// The lab `up` recorded in the lab directory.
    pub fn load(settings: Settings, dir: LabDir) -> anyhow::Result<Native> {
        let ports = NativePorts::from_lines(&dir.ports()).with_context(|| {
            format!(
                "{} does not list every part's port; scripts/lab down, then up",
                dir.path("ports").display()
            )
        })?;
        let bin_dirs = if settings.bin_dirs.is_empty() {
            dir.bin_dirs()
        } else {
            settings.bin_dirs.clone()
        };
        Ok(Native {
            settings,
            store: dir.store()?,
            probe: Probe::new(dir.admin_token()),
            dir,
            ports,
            bin_dirs,
        })
    }

    pub fn ports(&self) -> &NativePorts {
        &self.ports
    }

    /// Brings the lab up: ports, configuration, Redis, the replicas, the proxy; returns once the
    /// proxy sees every replica healthy. A failure stops whatever was started.
    pub async fn up(settings: Settings, dir: LabDir, store: StoreChoice) -> anyhow::Result<()> {
        redis_server()?;
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
        let bin_dirs: Vec<PathBuf> = bin_dirs
            .iter()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
            .collect();
        dir.write_bin_dirs(&bin_dirs)?;
        let ports = choose_ports(&settings, store.store).await?;
        dir.write_ports(&ports.lines())?;
        dir.write_store(store)?;
        for n in store.store.nodes() {
            if let StoreNode::Cluster(_) | StoreNode::Data(_) | StoreNode::Sentinel(_) = n {
                // Sentinel and Cluster start empty at each `up`. A cluster's records (nodes.conf)
                // name the ports of the lab before, which a new `up` may not give again; and the
                // Sentinel topology always starts `redis-1` as the primary, whose data may be
                // older than a promoted replica's.
                let _ = fs::remove_dir_all(node_dir(&dir, n));
            }
            fs::create_dir_all(node_dir(&dir, n))?;
            if let StoreNode::Sentinel(_) = n {
                write_sentinel_config(&dir, &ports, n)?;
            }
        }
        ensure_jwt_secret(&dir.path("jwt-secret"))?;
        // On loopback the proxy needs no token (its admin guard keeps web pages out); it gets one
        // when STATELAB_ADMIN_TOKEN asks for it.
        match &settings.admin_token {
            Some(token) => dir.write_admin_token(token)?,
            None => dir.remove_admin_token()?,
        }
        fs::write(
            dir.path("proxy.toml"),
            render_proxy_config(&native_proxy_config(&ports), "the native lab on loopback")?,
        )?;
        dir.set_mode(Mode::Native)?;
        let lab = Native {
            probe: Probe::new(settings.admin_token.clone()),
            settings,
            store,
            dir,
            ports,
            bin_dirs,
        };
        if let Err(e) = lab.start_all().await {
            lab.down().await;
            return Err(e);
        }
        let p = &lab.ports;
        say(format!(
            "proxy up: http://127.0.0.1:{}/{{stateful,stateless,externalized}}/  admin: http://127.0.0.1:{}/admin/status",
            p.proxy, p.admin
        ));
        say("try: scripts/lab status; scripts/lab kill stateful-2; scripts/lab start stateful-2; scripts/lab down");
        Ok(())
    }

    async fn start_all(&self) -> anyhow::Result<()> {
        say(format!("logs in {}/", self.dir.logs().display()));
        self.start_store().await?;
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

    /// Starts the Redis nodes: the data nodes, then the Sentinels, waiting until each Sentinel
    /// knows the primary, its replicas and the other Sentinels, so that a kill right after `up`
    /// is already failed over.
    async fn start_store(&self) -> anyhow::Result<()> {
        let nodes = self.store.store.nodes();
        for group in [false, true] {
            let mut children = Vec::new();
            for n in nodes.iter().filter(|n| n.is_sentinel() == group) {
                children.push((Part::Store(*n), self.launch(Part::Store(*n))?));
            }
            for (part, child) in &mut children {
                self.wait_healthy(*part, child)
                    .await
                    .with_context(|| format!("{part} did not start"))?;
            }
        }
        if self.store.store == Store::Cluster {
            self.create_cluster(&nodes).await?;
        }
        if self.store.store == Store::Sentinel {
            for n in nodes
                .iter()
                .filter(|n| **n != StoreNode::Data(1) && !n.is_sentinel())
            {
                let addr = self.node_addr(*n);
                wait_until(
                    &format!("{n} to hold a copy of redis-1"),
                    self.settings.up_timeout,
                    || redis_nodes::replica_synced(addr),
                )
                .await?;
            }
            for n in nodes.iter().filter(|n| n.is_sentinel()) {
                let addr = self.node_addr(*n);
                wait_until(
                    &format!("{n} to see the primary, both replicas and both other sentinels"),
                    self.settings.up_timeout,
                    || redis_nodes::sentinel_ready(addr),
                )
                .await?;
            }
        }
        let list: Vec<String> = nodes
            .iter()
            .map(|n| format!("{n} :{}", self.ports.node(*n)))
            .collect();
        say(format!(
            "redis ({}) up: {} (data in {})",
            self.store.store.name(),
            list.join(", "),
            self.dir.path("redis*").display()
        ));
        Ok(())
    }

    /// `redis-cli --cluster create` over the six nodes (three primaries, a replica each), then
    /// waits until every node says the cluster is ok and every replica holds its copy.
    async fn create_cluster(&self, nodes: &[StoreNode]) -> anyhow::Result<()> {
        let addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| self.node_addr(*n)).collect();
        let log = self.dir.log("redis-cluster-create");
        let out = fs::File::create(&log)?;
        let mut create = tokio::process::Command::new(redis_cli()?);
        create
            .arg("--cluster")
            .arg("create")
            .args(addrs.iter().map(ToString::to_string))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        let status = tokio::time::timeout(self.settings.up_timeout, create.status())
            .await
            .with_context(|| {
                format!(
                    "redis-cli --cluster create did not finish in {} s; see {}",
                    self.settings.up_timeout.as_secs(),
                    log.display()
                )
            })?
            .context("cannot run redis-cli --cluster create")?;
        if !status.success() {
            bail!("redis-cli --cluster create failed; see {}", log.display());
        }
        redis_nodes::wait_cluster_ready(&addrs, self.settings.up_timeout).await
    }

    fn node_addr(&self, n: StoreNode) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.node(n)))
    }

    fn sentinels(&self) -> Vec<std::net::SocketAddr> {
        self.ports
            .store
            .keys()
            .filter(|n| n.is_sentinel())
            .map(|n| self.node_addr(*n))
            .collect()
    }

    /// The data node that is primary now: the single Redis, the one Sentinel names, or the
    /// cluster primary holding the most sessions.
    pub async fn primary(&self) -> Option<StoreNode> {
        match self.store.store {
            Store::Single => Some(StoreNode::Redis),
            Store::Cluster => {
                let nodes: Vec<(StoreNode, std::net::SocketAddr)> = self
                    .ports
                    .store
                    .keys()
                    .filter(|n| self.running(Part::Store(**n)).is_some())
                    .map(|n| (*n, self.node_addr(*n)))
                    .collect();
                redis_nodes::fullest_primary(&nodes).await
            }
            Store::Sentinel => {
                let addr = redis_nodes::sentinel_primary(&self.sentinels()).await?;
                self.ports
                    .store
                    .iter()
                    .find(|(n, p)| !n.is_sentinel() && **p == addr.port())
                    .map(|(n, _)| *n)
            }
        }
    }

    /// `primaries`: the data nodes that are primary now and running.
    pub async fn primaries(&self) -> Vec<String> {
        if self.store.store == Store::Cluster {
            let mut names = Vec::new();
            for n in self.ports.store.keys() {
                if self.running(Part::Store(*n)).is_some()
                    && redis_nodes::role(self.node_addr(*n)).await.as_deref() == Some("master")
                {
                    names.push(n.to_string());
                }
            }
            return names;
        }
        match self.primary().await {
            Some(n) if self.running(Part::Store(n)).is_some() => vec![n.to_string()],
            _ => Vec::new(),
        }
    }

    fn bin(&self, name: &str) -> anyhow::Result<PathBuf> {
        find_bin(&self.bin_dirs, name).with_context(|| {
            let dirs: Vec<String> = self
                .bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            format!("no binary '{name}' in: {}", dirs.join(" "))
        })
    }

    /// The command line of a part; a data node starts as a replica of `replica_of`.
    fn command(&self, part: Part, replica_of: Option<StoreNode>) -> anyhow::Result<Command> {
        let mut cmd;
        match part {
            Part::Store(n) if n.is_sentinel() => {
                cmd = Command::new(redis_server()?);
                cmd.arg(node_dir(&self.dir, n).join("sentinel.conf"))
                    .arg("--sentinel");
            }
            Part::Store(n) => {
                cmd = Command::new(redis_server()?);
                cmd.arg("--port")
                    .arg(self.ports.node(n).to_string())
                    .args(["--bind", "127.0.0.1", "--dir"])
                    .arg(node_dir(&self.dir, n))
                    .args(["--appendonly", "yes", "--appendfsync", "everysec"])
                    .args(REDIS_MEMORY_FLAGS)
                    .args(["--save", "", "--daemonize", "no"]);
                match n {
                    StoreNode::Data(_) => {
                        cmd.args(REPLICATION_FLAGS);
                    }
                    StoreNode::Cluster(_) => {
                        cmd.args(REPLICATION_FLAGS)
                            .args(["--cluster-enabled", "yes"])
                            .args(["--cluster-config-file", "nodes.conf"])
                            .arg("--cluster-node-timeout")
                            .arg(CLUSTER_NODE_TIMEOUT_MS.to_string())
                            .arg("--cluster-port")
                            .arg(self.ports.buses.get(&n).copied().unwrap_or(0).to_string());
                    }
                    _ => {}
                }
                if let Some(primary) = replica_of {
                    cmd.arg("--replicaof")
                        .arg("127.0.0.1")
                        .arg(self.ports.node(primary).to_string());
                }
            }
            Part::Proxy => {
                cmd = Command::new(self.bin("statelab-proxy")?);
                cmd.arg("--config").arg(self.dir.path("proxy.toml"));
                // The token `up` recorded, never one the caller's environment holds now.
                match self.dir.admin_token() {
                    Some(token) => cmd.env("STATELAB_ADMIN_TOKEN", token.as_str()),
                    None => cmd.env_remove("STATELAB_ADMIN_TOKEN"),
                };
            }
            Part::Replica(r) => {
                cmd = Command::new(self.bin(r.design.as_str())?);
                cmd.arg("--listen")
                    .arg(format!("127.0.0.1:{}", self.ports.replica(r)))
                    .arg("--replica")
                    .arg(r.to_string());
                match r.design {
                    Design::Stateful => {}
                    Design::Stateless => {
                        cmd.arg("--jwt-secret-file")
                            .arg(self.dir.path("jwt-secret"));
                    }
                    Design::Externalized => {
                        // Only the flags below choose the Redis: none from the caller's shell.
                        for var in [
                            "STATELAB_REDIS_URL",
                            "STATELAB_REDIS_SENTINEL",
                            "STATELAB_REDIS_CLUSTER",
                            "STATELAB_REDIS_WAIT",
                        ] {
                            cmd.env_remove(var);
                        }
                        match self.store.store {
                            Store::Single => cmd.arg("--redis-url").arg(format!(
                                "redis://127.0.0.1:{}",
                                self.ports.node(StoreNode::Redis)
                            )),
                            Store::Sentinel => {
                                let list: Vec<String> =
                                    self.sentinels().iter().map(ToString::to_string).collect();
                                cmd.arg("--redis-sentinel")
                                    .arg(list.join(","))
                                    .arg("--redis-master-name")
                                    .arg(SENTINEL_MASTER_NAME)
                            }
                            Store::Cluster => {
                                let list: Vec<String> = self
                                    .ports
                                    .store
                                    .keys()
                                    .map(|n| self.node_addr(*n).to_string())
                                    .collect();
                                cmd.arg("--redis-cluster").arg(list.join(","))
                            }
                        };
                        cmd.arg("--redis-wait").arg(self.store.wait.to_string());
                    }
                }
            }
        }
        Ok(cmd)
    }

    /// Starts a part in its own process group with its output in its log, and records it. The
    /// Sentinel topology's data nodes other than `redis-1` start as its replicas.
    fn launch(&self, part: Part) -> anyhow::Result<Child> {
        let replica_of = match part {
            Part::Store(StoreNode::Data(k)) if k > 1 => Some(StoreNode::Data(1)),
            _ => None,
        };
        self.launch_as(part, replica_of)
    }

    fn launch_as(&self, part: Part, replica_of: Option<StoreNode>) -> anyhow::Result<Child> {
        let name = part.to_string();
        let mut cmd = self.command(part, replica_of)?;
        let log_path = self.dir.log(&name);
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        writeln!(log, "=== start at unix {now}: {cmd:?}")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Plain log files: tracing-subscriber writes ANSI colours otherwise.
            .env("NO_COLOR", "1")
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let id = ProcId::of(child.id())
            .with_context(|| format!("{name} (pid {}) exited at once", child.id()))?;
        fs::write(
            self.dir.pid_file(&name),
            format!("{} {}\n", id.pid, id.start),
        )?;
        Ok(child)
    }

    /// The recorded process of a part, when it is still that process.
    fn running(&self, part: Part) -> Option<ProcId> {
        let text = fs::read_to_string(self.dir.pid_file(&part.to_string())).ok()?;
        let mut words = text.split_whitespace();
        let id = ProcId {
            pid: words.next()?.parse().ok()?,
            start: words.next()?.parse().ok()?,
        };
        id.alive().then_some(id)
    }

    async fn healthy(&self, part: Part) -> bool {
        match part {
            Part::Store(n) => redis_nodes::answers(self.node_addr(n)).await,
            Part::Proxy => self.probe.proxy_ready(self.ports.admin).await,
            Part::Replica(r) => self.probe.http_ok(self.ports.replica(r), "/health").await,
        }
    }

    /// Waits until the part is healthy; fails early, with its log's tail, if it exits.
    async fn wait_healthy(&self, part: Part, child: &mut Child) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.settings.up_timeout;
        let log = self.dir.log(&part.to_string());
        loop {
            if self.healthy(part).await {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let text = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                say(format!(
                    "{part} exited ({status}); last lines of {}:",
                    log.display()
                ));
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
                bail!("{part} exited");
            }
            if Instant::now() >= deadline {
                bail!(
                    "{part} not healthy after {}s; see {}",
                    self.settings.up_timeout.as_secs(),
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Each part, up or down and healthy or not, and the proxy's own view.
    pub async fn status(&self) -> LabStatus {
        let mut parts = Vec::new();
        for part in Part::with(self.store.store, self.ports.members()) {
            let role = match part {
                Part::Store(n) if self.running(part).is_some() => {
                    redis_nodes::role(self.node_addr(n))
                        .await
                        .map(redis_nodes::role_word)
                }
                _ => None,
            };
            let running = self.running(part);
            let health = match running {
                Some(_) if self.healthy(part).await => Some("healthy".to_string()),
                Some(_) => Some("unhealthy".to_string()),
                None => None,
            };
            parts.push(PartStatus {
                name: part.to_string(),
                up: running.is_some(),
                down: None,
                health,
                role,
                pid: running.and_then(|id| u32::try_from(id.pid).ok()),
                container: None,
            });
        }
        LabStatus {
            mode: Mode::Native.as_str().to_string(),
            parts,
            admin_port: self.ports.admin,
            proxy: self.probe.admin_status(self.ports.admin).await,
        }
    }

    /// A replica must be a member now, a Redis node one of the lab's topology; the proxy always
    /// is one.
    fn member(&self, part: Part) -> anyhow::Result<()> {
        match part {
            Part::Store(n) if !self.ports.store.contains_key(&n) => bail!(
                "{part} is not a node of this lab's Redis ({}); scripts/lab status lists them",
                self.store.store.name()
            ),
            Part::Replica(r) if !self.ports.replicas.contains_key(&r) => bail!(
                "{part} is not a member of the lab now (scripts/lab status lists them; scripts/lab scale {} N adds some)",
                r.design
            ),
            _ => Ok(()),
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(&self, target: Target) -> anyhow::Result<Killed> {
        let part = target.resolve(|| self.primary()).await?;
        self.member(part)?;
        let id = self
            .running(part)
            .with_context(|| format!("{part} is not running"))?;
        id.signal(Signal::SIGKILL);
        wait_until(
            &format!("{part} (pid {}) to exit", id.pid),
            Duration::from_secs(10),
            || async move { !id.alive() },
        )
        .await?;
        say(format!("killed {part} (pid {}, SIGKILL)", id.pid));
        Ok(Killed {
            killed: part.to_string(),
            pid: u32::try_from(id.pid).ok(),
            container: None,
        })
    }

    /// Starts a part that is down and waits until it is healthy. A data node of the Sentinel
    /// topology comes back as a replica of the primary Sentinel names now (Sentinel would convert
    /// it anyway, but not before it had served as a second, stale primary).
    pub async fn start(&self, target: Target) -> anyhow::Result<Started> {
        let (part, replica_of) = start_plan(target, || self.primary()).await?;
        // A cluster node rejoins by its own record (nodes.conf), as a replica of the node that
        // took its place.
        let mut child = self.launch_as(part, replica_of)?;
        self.wait_healthy(part, &mut child)
            .await
            .with_context(|| format!("{part} did not become healthy"))?;
        if let (Some(p), Part::Store(n)) = (replica_of, part) {
            let addr = self.node_addr(n);
            wait_until(
                &format!("{part} to hold a copy of {p}"),
                self.settings.up_timeout,
                || redis_nodes::replica_synced(addr),
            )
            .await?;
        }
        let pid = self.running(part).map_or(0, |id| id.pid);
        match replica_of {
            Some(p) => say(format!(
                "started {part} (pid {pid}) as a replica of {p}, healthy"
            )),
            None => say(format!("started {part} (pid {pid}), healthy")),
        }
        self.probe
            .wait_routed(self.ports.admin, part, self.settings.up_timeout)
            .await?;
        Ok(Started {
            started: part.to_string(),
            pid: u32::try_from(pid).ok(),
            container: None,
            replica_of: replica_of.map(|p| p.to_string()),
        })
    }

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
                    free_port(&taken).await?
                }
            };
            self.ports.replicas.insert(r, port);
            self.write_members()?;
            let part = Part::Replica(r);
            let mut child = self.launch(part)?;
            if let Err(e) = self.wait_healthy(part, &mut child).await {
                self.stop(part).await;
                self.ports.replicas.remove(&r);
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
            self.ports.replicas.remove(&r);
            self.write_members()?;
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

    /// SIGTERM one part and wait for it (SIGKILL after the grace); forget its PID.
    async fn stop(&self, part: Part) {
        if let Some(id) = self.running(part) {
            id.signal(Signal::SIGTERM);
            let gone = wait_until(&format!("{part} to stop"), STOP_GRACE, || async move {
                !id.alive()
            })
            .await;
            if gone.is_err() {
                id.signal(Signal::SIGKILL);
            }
        }
        let _ = fs::remove_file(self.dir.pid_file(&part.to_string()));
    }

    /// Stops every part (SIGTERM, then SIGKILL after the grace) and forgets the running lab.
    pub async fn down(&self) {
        // The proxy first, Redis last (its Sentinels before its data nodes), so nothing logs a
        // flood of errors about what went before, and no Sentinel fails over during the stop.
        let mut nodes = self.store.store.nodes();
        nodes.sort_by_key(|n| !n.is_sentinel());
        let order = std::iter::once(Part::Proxy)
            .chain(self.ports.members().map(Part::Replica))
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
        self.dir.clear();
        say(format!(
            "stopped {} processes (logs kept in {}/)",
            stopping.len(),
            self.dir.logs().display()
        ));
    }

    /// `NAME BYTES` for each running replica: its resident memory (`VmRSS`).
    pub fn mem(&self) -> Vec<(String, u64)> {
        self.ports
            .members()
            .filter_map(|r| {
                let id = self.running(Part::Replica(r))?;
                let status = fs::read_to_string(format!("/proc/{}/status", id.pid)).ok()?;
                let kb: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                Some((r.to_string(), kb * 1024))
            })
            .collect()
    }

    pub fn log_path(&self, part: Part) -> PathBuf {
        self.dir.log(&part.to_string())
    }
}

/// Where a Redis node keeps its data (and a Sentinel its configuration, which it rewrites).
fn node_dir(dir: &LabDir, n: StoreNode) -> PathBuf {
    dir.path(&n.to_string())
}

/// A Sentinel's configuration file, which it must be able to rewrite: it records there what it
/// learns (replicas, other Sentinels, the primary after a failover).
fn write_sentinel_config(dir: &LabDir, ports: &NativePorts, n: StoreNode) -> anyhow::Result<()> {
    let text = format!(
        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
         sentinel monitor {SENTINEL_MASTER_NAME} 127.0.0.1 {primary} {SENTINEL_QUORUM}\n\
         sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} {SENTINEL_DOWN_AFTER_MS}\n\
         sentinel failover-timeout {SENTINEL_MASTER_NAME} {SENTINEL_FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {SENTINEL_MASTER_NAME} 1\n",
        port = ports.node(n),
        dir = node_dir(dir, n).display(),
        primary = ports.node(StoreNode::Data(1)),
    );
    fs::write(node_dir(dir, n).join("sentinel.conf"), text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        let me = ProcId::of(std::process::id()).expect("this process has a /proc entry");
        assert!(me.alive());
        // The same PID with another start time is another process: a reused PID.
        let reused = ProcId {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.alive());
    }

    #[test]
    fn a_killed_child_is_not_alive() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let id = ProcId::of(child.id()).expect("the child exists");
        assert!(id.alive());
        assert!(id.signal(Signal::SIGKILL));
        child.wait().expect("reap the child");
        assert!(!id.alive());
    }
}

//! The container lab under test, isolated from any lab the user has up: its own lab directory
//! (a private temp dir), compose project, image tag, network and free host ports; and the
//! commands that drive it (`scripts/lab`, `docker`, compose), each with that isolation in its
//! environment.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde::de::DeserializeOwned;
use statelab_formats::lab::{Killed, LabStatus, Primaries, Scaled, Started};
use statelab_formats::{AdminToken, Design};
use statelab_lab::labdir::LabDir;
use statelab_test_support::{workspace_root, TempDir};
use tokio::process::Command;

use crate::checks::{say, Checks};

/// What a command printed, and whether it succeeded (`false` too when it could not run or was
/// stopped at its time limit).
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn of(result: std::io::Result<Output>) -> Ran {
        match result {
            Ok(out) => Ran {
                ok: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => Ran {
                ok: false,
                stdout: String::new(),
                stderr: format!("could not run: {e}"),
            },
        }
    }

    /// Standard output's non-empty lines.
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// The last line of standard error, for a FAIL line's detail.
    pub fn why(&self) -> String {
        let last = self.stderr.lines().rev().find(|l| !l.trim().is_empty());
        last.unwrap_or("no message").trim().to_string()
    }

    /// Both outputs, indented under the check they belong to.
    pub fn show(&self) {
        for line in self.stdout.lines().chain(self.stderr.lines()) {
            say(&format!("    {line}"));
        }
    }
}

/// What `scripts/lab up --docker` recorded for later commands: its settings (`docker.env`: image
/// names, ports, network prefix, the proxy's configuration) and the admin token it made.
#[derive(Debug)]
pub struct Recorded {
    pub env: BTreeMap<String, String>,
    pub token: AdminToken,
    pub net_prefix: String,
}

/// The lab under test.
#[derive(Debug)]
pub struct E2eLab {
    pub root: PathBuf,
    pub project: String,
    pub image: String,
    subnet: String,
    pub proxy_port: u16,
    pub admin_port: u16,
    lab_dir: PathBuf,
    bin_dir: PathBuf,
    /// `STATELAB_E2E_KEEP=1`: the lab stays up at the end, for debugging.
    pub keep: bool,
    recorded: OnceCell<Recorded>,
    /// The lab directory and the runs' files; declared last, so it goes after everything else.
    pub tmp: TempDir,
}

/// `NAME`'s value when set and not empty.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl E2eLab {
    /// The settings, each overridable as `STATELAB_E2E_*`: project `statelab-e2e`, image
    /// `statelab-e2e:latest`, subnet `10.231.9.0/24`, free host ports for the proxy and the admin
    /// API. `bin_dir` holds the lab's binaries (handed over as `STATELAB_BIN_DIR`, so nothing is
    /// built again).
    pub fn new(bin_dir: PathBuf) -> E2eLab {
        let tmp = TempDir::new("e2e");
        let proxy_port = env_port("STATELAB_E2E_PROXY_PORT").unwrap_or_else(|| free_port(&[]));
        let admin_port =
            env_port("STATELAB_E2E_ADMIN_PORT").unwrap_or_else(|| free_port(&[proxy_port]));
        E2eLab {
            root: workspace_root(),
            project: env_var("STATELAB_E2E_PROJECT").unwrap_or_else(|| "statelab-e2e".into()),
            image: env_var("STATELAB_E2E_IMAGE").unwrap_or_else(|| "statelab-e2e:latest".into()),
            subnet: env_var("STATELAB_E2E_SUBNET").unwrap_or_else(|| "10.231.9.0/24".into()),
            proxy_port,
            admin_port,
            lab_dir: tmp.join("lab"),
            bin_dir,
            keep: env_var("STATELAB_E2E_KEEP").as_deref() == Some("1"),
            recorded: OnceCell::new(),
            tmp,
        }
    }

    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The lab's binaries (`STATELAB_BIN_DIR`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn lab_script(&self) -> PathBuf {
        self.root.join("scripts/lab")
    }

    /// Reads what `up --docker` recorded; from then on every command carries it (as the user's
    /// shell would after sourcing `docker.env`). `None` when no admin token was recorded.
    pub fn adopt_recorded(&self) -> Option<&Recorded> {
        let dir = LabDir::new(self.lab_dir.clone());
        let token = dir.admin_token()?;
        let env = dir.read_env("docker.env");
        let net_prefix = env.get("STATELAB_NET_PREFIX").cloned().unwrap_or_default();
        Some(self.recorded.get_or_init(|| Recorded {
            env,
            token,
            net_prefix,
        }))
    }

    /// The lab network's address prefix (`10.231.9`), once `up` recorded it.
    pub fn net_prefix(&self) -> &str {
        self.recorded.get().map_or("", |r| r.net_prefix.as_str())
    }

    /// `PROGRAM` with the isolation settings and what `up` recorded in its environment.
    fn std_command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env("STATELAB_PROJECT", &self.project)
            .env("STATELAB_IMAGE", &self.image)
            .env("STATELAB_LAB_DIR", &self.lab_dir)
            .env("STATELAB_SUBNET", &self.subnet)
            .env("STATELAB_PROXY_PORT", self.proxy_port.to_string())
            .env("STATELAB_ADMIN_PORT", self.admin_port.to_string())
            .env("STATELAB_BIN_DIR", &self.bin_dir)
            .env_remove("STATELAB_PORTS")
            .stdin(Stdio::null());
        if let Some(rec) = self.recorded.get() {
            cmd.envs(&rec.env)
                .env("STATELAB_ADMIN_TOKEN", rec.token.as_str());
        }
        cmd
    }

    /// [`Self::std_command`] for the runtime, killed if the test stops waiting for it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::from(self.std_command(program));
        cmd.kill_on_drop(true);
        cmd
    }

    /// `scripts/lab ARGS...` for this lab, not yet run.
    pub fn lab_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(self.lab_script());
        cmd.args(args);
        cmd
    }

    /// Runs `scripts/lab ARGS...`, its output captured.
    pub async fn lab(&self, args: &[&str]) -> Ran {
        Ran::of(self.lab_command(args).output().await)
    }

    /// Runs `scripts/lab ARGS...` with `extra` environment, both outputs into `log` (in the
    /// order printed); true when it succeeded.
    pub async fn lab_logged(&self, args: &[&str], extra: &[(&str, &str)], log: &Path) -> bool {
        let mut cmd = self.lab_command(args);
        cmd.envs(extra.iter().copied());
        run_logged(cmd, log).await
    }

    /// Runs `scripts/lab VERB --json ARGS...`: its answer as `T` (`None` when standard output
    /// holds none), and what it ran; its messages for people are shown indented.
    pub async fn lab_json<T: DeserializeOwned>(
        &self,
        verb: &str,
        args: &[&str],
    ) -> (Ran, Option<T>) {
        let mut words = vec![verb, "--json"];
        words.extend(args);
        let ran = self.lab(&words).await;
        for line in ran.stderr.lines() {
            say(&format!("    {line}"));
        }
        let answer = serde_json::from_str(ran.stdout.trim()).ok();
        (ran, answer)
    }

    /// `--json`'s answer, or why there is none.
    async fn answer<T: DeserializeOwned>(&self, verb: &str, args: &[&str]) -> Result<T, String> {
        let (ran, answer) = self.lab_json(verb, args).await;
        match answer {
            Some(answer) if ran.ok => Ok(answer),
            _ if !ran.ok => Err(ran.why()),
            _ => Err(format!("no JSON answer: {:?}", ran.stdout.trim())),
        }
    }

    /// `scripts/lab kill NAME`: the part killed (an alias such as `redis-primary` resolved).
    pub async fn kill(&self, name: &str) -> Result<Killed, String> {
        self.answer("kill", &[name]).await
    }

    /// `scripts/lab start NAME`: the part started, healthy and routed to again.
    pub async fn start(&self, name: &str) -> Result<Started, String> {
        self.answer("start", &[name]).await
    }

    /// `scripts/lab scale POOL N`: the pool's replicas once it is done.
    pub async fn scale(&self, pool: Design, n: u8) -> Result<Scaled, String> {
        self.answer("scale", &[pool.as_str(), &n.to_string()]).await
    }

    /// `scripts/lab status`: each part of the lab (its exit status says whether all are up, which
    /// is not asked here).
    pub async fn status(&self) -> Option<LabStatus> {
        self.lab_json("status", &[]).await.1
    }

    /// `scripts/lab primaries`: the Redis nodes that are primary now (none during a failover).
    pub async fn primaries(&self) -> Vec<String> {
        let answer: Option<Primaries> = self.lab_json("primaries", &[]).await.1;
        answer.map(|p| p.primaries).unwrap_or_default()
    }

    /// `statelab-load run` on `design`'s pool through this lab's proxy and admin API, its faults
    /// carried out through this lab's `scripts/lab`, 20 sessions a second with 100 ms of think
    /// time, quiet; the caller adds its length, its fault and `--out`.
    pub fn load_command(&self, load: &Path, design: Design) -> Command {
        let mut cmd = self.command(load);
        cmd.arg("run")
            .args(["--service", design.as_str()])
            .arg("--target")
            .arg(format!("{}/{design}", self.proxy_url()))
            .arg("--admin")
            .arg(self.admin_url())
            .arg("--lab")
            .arg(self.lab_script())
            .args(["--quiet", "--rate", "20", "--think-ms", "100"]);
        cmd
    }

    /// A docker command with this lab's environment, not yet run.
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("docker");
        cmd.args(args);
        cmd
    }

    /// Runs `docker ARGS...`, stopped after `limit`.
    pub async fn docker(&self, args: &[&str], limit: Duration) -> Ran {
        let cmd = self.docker_command(args).output();
        match tokio::time::timeout(limit, cmd).await {
            Ok(result) => Ran::of(result),
            Err(_) => Ran {
                ok: false,
                stdout: String::new(),
                stderr: format!("docker {} did not finish in {limit:?}", args.join(" ")),
            },
        }
    }

    /// The ids `docker ps -aq` lists for `label=FILTER` (one filter each).
    pub async fn containers(&self, filters: &[String]) -> Vec<String> {
        self.ls_ids(&["ps", "-aq"], filters).await
    }

    /// The ids of the docker objects of one kind (`network`, `volume`) with the project's label.
    pub async fn project_objects(&self, kind: &str) -> Vec<String> {
        self.ls_ids(&[kind, "ls", "-q"], &[self.project_label()])
            .await
    }

    async fn ls_ids(&self, verb: &[&str], filters: &[String]) -> Vec<String> {
        let mut args: Vec<&str> = verb.to_vec();
        for f in filters {
            args.extend(["--filter", f]);
        }
        self.docker(&args, Duration::from_secs(30)).await.lines()
    }

    /// `label=com.docker.compose.project=PROJECT`.
    pub fn project_label(&self) -> String {
        format!("label=com.docker.compose.project={}", self.project)
    }

    /// `label=com.docker.compose.service=SERVICE`.
    pub fn service_label(service: &str) -> String {
        format!("label=com.docker.compose.service={service}")
    }

    /// `statelab.client=PROJECT`: the label of the in-network clients started for this lab,
    /// which `scripts/lab down` removes too.
    pub fn client_tag(&self) -> String {
        format!("statelab.client={}", self.project)
    }

    /// `label=statelab.client=PROJECT`, as a filter.
    pub fn client_label(&self) -> String {
        format!("label={}", self.client_tag())
    }

    /// The container of one compose service of the project, if any.
    pub async fn service_container(&self, service: &str) -> Option<String> {
        let filters = [self.project_label(), Self::service_label(service)];
        self.containers(&filters).await.into_iter().next()
    }

    /// The project's `lab` network.
    pub async fn network(&self) -> Option<String> {
        let filters = [
            self.project_label(),
            "label=com.docker.compose.network=lab".to_string(),
        ];
        self.ls_ids(&["network", "ls", "-q"], &filters)
            .await
            .into_iter()
            .next()
    }

    /// `COMPOSE -p PROJECT -f deploy/compose.yaml ARGS...` with the recorded settings (image
    /// names, ports, network), both outputs into `log`; true when it succeeded.
    pub async fn compose_logged(&self, args: &[&str], log: &Path) -> bool {
        let Some(cli) = compose_cli().await else {
            append(
                log,
                "no Docker Compose: neither `docker compose` nor docker-compose\n",
            );
            return false;
        };
        let mut cmd = self.command(&cli[0]);
        cmd.args(&cli[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(self.root.join("deploy/compose.yaml"))
            .args(args);
        run_logged(cmd, log).await
    }

    /// The services plain `COMPOSE config --services` lists from the repository root, as a user
    /// runs it (the root `.env` names the compose file; no project set).
    pub async fn root_compose_services(&self) -> Ran {
        let Some(cli) = compose_cli().await else {
            return Ran {
                ok: false,
                stdout: String::new(),
                stderr: "no Docker Compose: neither `docker compose` nor docker-compose".into(),
            };
        };
        let mut cmd = self.command(&cli[0]);
        cmd.args(&cli[1..])
            .args(["config", "--services"])
            .current_dir(&self.root)
            .env_remove("STATELAB_PROJECT");
        Ran::of(cmd.output().await)
    }

    /// The lab directory records a lab (`mode`): there is something to take down.
    fn is_up(&self) -> bool {
        self.lab_dir.join("mode").exists()
    }
}

/// The compose CLI: `docker compose` where the plugin answers, else `docker-compose`.
async fn compose_cli() -> Option<Vec<String>> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if plugin.is_ok_and(|s| s.success()) {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    let standalone = Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    standalone
        .is_ok_and(|s| s.success())
        .then(|| vec!["docker-compose".into()])
}

/// Runs `cmd` with both outputs appended to `log`; true when it succeeded.
pub async fn run_logged(mut cmd: Command, log: &Path) -> bool {
    let file = File::options().create(true).append(true).open(log);
    let Ok(file) = file else {
        return false;
    };
    let Ok(copy) = file.try_clone() else {
        return false;
    };
    cmd.stdout(Stdio::from(file)).stderr(Stdio::from(copy));
    match cmd.status().await {
        Ok(status) => status.success(),
        Err(e) => {
            append(log, &format!("could not run {cmd:?}: {e}\n"));
            false
        }
    }
}

fn append(log: &Path, text: &str) {
    use std::io::Write;
    if let Ok(mut f) = File::options().create(true).append(true).open(log) {
        let _ = f.write_all(text.as_bytes());
    }
}

/// The last `n` lines of a log file, indented, on standard error.
pub fn show_tail(log: &Path, n: usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(n)..] {
        say(&format!("    {line}"));
    }
}

/// The lines of a log file that contain one of `words`, indented, on standard error.
pub fn show_matching(log: &Path, words: &[&str]) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines().filter(|l| words.iter().any(|w| l.contains(w))) {
        say(&format!("    {line}"));
    }
}

fn env_port(name: &str) -> Option<u16> {
    let value = env_var(name)?;
    let port = value
        .parse()
        .unwrap_or_else(|_| panic!("{name}={value:?} is not a port number"));
    Some(port)
}

/// A loopback port below the kernel's ephemeral range that nothing listens on now and `taken`
/// lacks: Docker publishes it a while later, and below the ephemeral range no outgoing
/// connection can have taken it meanwhile.
fn free_port(taken: &[u16]) -> u16 {
    const LOW: u16 = 10_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|first| *first > LOW + 1000)
        .unwrap_or(32768)
        - 1;
    for _ in 0..500 {
        let mut bytes = [0u8; 2];
        getrandom::fill(&mut bytes).expect("random bytes for a port");
        let port = LOW + u16::from_le_bytes(bytes) % (high - LOW + 1);
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}-{high} after 500 tries");
}

/// Takes the lab down when dropped, whatever happened before (a failed check, a panic): unless
/// `STATELAB_E2E_KEEP=1`, `scripts/lab down -v`, then whatever a failed `up` or `down` left with
/// the project's labels (containers, in-network clients, networks, volumes). After a failure it
/// shows the proxy's last log lines first.
#[derive(Debug)]
pub struct Cleanup<'a> {
    pub lab: &'a E2eLab,
    pub checks: &'a Checks,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let lab = self.lab;
        if lab.keep {
            self.checks.log(format!(
                "STATELAB_E2E_KEEP=1: project {} left up (STATELAB_LAB_DIR={} scripts/lab down -v \
                 stops it)",
                lab.project,
                lab.lab_dir.display()
            ));
            return;
        }
        let docker = |args: &[&str]| {
            std::process::Command::new("docker")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        if lab.is_up() {
            if self.checks.failed() > 0 || std::thread::panicking() {
                let service = E2eLab::service_label("proxy");
                let ids = docker(&[
                    "ps",
                    "-aq",
                    "--filter",
                    &lab.project_label(),
                    "--filter",
                    &service,
                ]);
                if let Some(proxy) = ids.lines().next() {
                    self.checks
                        .log("the proxy's last log lines, for the failure above:");
                    let out = std::process::Command::new("docker")
                        .args(["logs", "--tail", "30", proxy])
                        .output();
                    if let Ok(out) = out {
                        Ran::of(Ok(out)).show();
                    }
                }
            }
            let _ = lab
                .std_command(lab.lab_script())
                .args(["down", "-v"])
                .output();
        }
        let mut ids = docker(&["ps", "-aq", "--filter", &lab.project_label()]);
        ids += &docker(&["ps", "-aq", "--filter", &lab.client_label()]);
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        if !ids.is_empty() {
            docker(&[&["rm", "-f"][..], &ids].concat());
        }
        for kind in ["network", "volume"] {
            let left = docker(&[kind, "ls", "-q", "--filter", &lab.project_label()]);
            let left: Vec<&str> = left.lines().filter(|l| !l.is_empty()).collect();
            if !left.is_empty() {
                docker(&[&[kind, "rm"][..], &left].concat());
            }
        }
        self.checks
            .log(format!("done in {} s", self.checks.elapsed_s()));
    }
}

//! `up --swarm`: the swarm joined or made, the images, the proxy's configuration, the stack
//! deployed and waited for; and `down`.

use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::bail;
use statelab_formats::lab::Sizing;

use crate::docker::images::images;
use crate::docker::{docker, need_engine, run, run_visible, stdout_of};
use crate::labdir::{random_admin_token, LabDir, Mode, StoreChoice};
use crate::model::{render_proxy_config, swarm_proxy_config, Replica, Store};
use crate::probe::{admin_summary, port_open, proxy_up_line, wait_until, Probe};
use crate::say;
use crate::settings::{PortPlan, Settings, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT};

use super::{Swarm, SWARM_ENV};

/// The network `swarm init` makes for its tasks' traffic to the outside, which `swarm leave`
/// leaves behind.
const GWBRIDGE: &str = "docker_gwbridge";

/// What this engine is in a swarm.
#[derive(Debug, PartialEq, Eq)]
enum Membership {
    None,
    Manager,
    Worker,
    /// Joining, or in error: the engine's word for it.
    Other(String),
}

fn membership() -> Membership {
    let out = stdout_of(docker().args([
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ]));
    let mut words = out.split_whitespace();
    match (words.next(), words.next()) {
        (Some("inactive"), _) => Membership::None,
        (Some("active"), Some("true")) => Membership::Manager,
        (Some("active"), _) => Membership::Worker,
        (state, _) => Membership::Other(state.unwrap_or("unknown").to_string()),
    }
}

/// A stack name Swarm takes for every service name the stack makes (`NAME_externalized`, at most
/// 63 characters), and that task names (`NAME_SERVICE.SLOT`) can be read back from.
fn check_stack_name(name: &str) -> anyhow::Result<()> {
    let longest = format!("{name}_externalized");
    let fine = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && longest.len() <= 63;
    if !fine {
        bail!(
            "STATELAB_PROJECT '{name}' cannot name a Swarm stack: letters, digits, '-' and '_', \
             beginning and ending with a letter or digit, at most {} characters",
            63 - "_externalized".len()
        );
    }
    Ok(())
}

/// The services of the stack `name`, when it is deployed.
fn stack_services(name: &str) -> Vec<String> {
    stdout_of(docker().args([
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.stack.namespace={name}"),
    ]))
    .lines()
    .map(str::to_string)
    .collect()
}

fn network_exists(name: &str) -> bool {
    run(docker().args(["network", "inspect", name])).is_ok_and(|o| o.status.success())
}

impl Swarm {
    /// Deploys the stack; returns once the proxy serves all nine replicas.
    pub async fn up(
        settings: Settings,
        dir: LabDir,
        store: StoreChoice,
        sizing: Sizing,
    ) -> anyhow::Result<()> {
        if store.store != Store::Single {
            bail!(
                "the Swarm lab runs the single Redis; Sentinel and Cluster run in the native and \
                 Docker labs (scripts/lab up [--docker] --redis {})",
                store.store.name()
            );
        }
        if sizing.bounded() {
            bail!("CPU budgets (--replica-cpu, --store-cpu) are for the native and Docker labs");
        }
        if settings.ports == PortPlan::Free {
            bail!("STATELAB_PORTS=free is for the native lab; in Swarm mode set STATELAB_PROXY_PORT/STATELAB_ADMIN_PORT");
        }
        check_stack_name(&settings.project)?;
        need_engine()?;
        let proxy_port = settings.proxy_port.unwrap_or(DEFAULT_PROXY_PORT);
        let admin_port = settings.admin_port.unwrap_or(DEFAULT_ADMIN_PORT);
        for port in [proxy_port, admin_port] {
            // Swarm publishes on every interface: the port must be free on all of them.
            if port_open(port).await || std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
                bail!("port {port} is in use on the host; set STATELAB_PROXY_PORT/STATELAB_ADMIN_PORT");
            }
        }
        if !stack_services(&settings.project).is_empty() {
            bail!(
                "a stack named {} is deployed already (docker stack ls); remove it (docker stack \
                 rm {}) or set STATELAB_PROJECT to another name",
                settings.project,
                settings.project
            );
        }
        // The lab directory is written before the engine is made a swarm, so that whatever fails
        // after that can be taken down, the swarm included.
        dir.create()?;
        dir.write_store(store)?;
        dir.write_sizing(&sizing)?;
        let admin_token = match (settings.admin_token.clone(), dir.admin_token()) {
            (Some(given), _) => given,
            (None, Some(recorded)) => recorded,
            (None, None) => random_admin_token()?,
        };
        dir.write_admin_token(&admin_token)?;
        let (made_swarm, made_gwbridge) = match membership() {
            Membership::Manager => {
                say("this engine is a manager of a swarm: the lab deploys its stack there");
                (false, false)
            }
            Membership::None => {
                let had_gwbridge = network_exists(GWBRIDGE);
                let out = run(docker().args(["swarm", "init", "--advertise-addr", "127.0.0.1"]))?;
                if !out.status.success() {
                    bail!(
                        "docker swarm init failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                say("made this engine a one-node swarm (docker swarm init); down leaves it again");
                (true, !had_gwbridge)
            }
            Membership::Worker => bail!(
                "this engine is a worker of a swarm, and a stack is deployed from a manager: run \
                 the lab on a manager node"
            ),
            Membership::Other(state) => bail!(
                "this engine's swarm is '{state}' (docker info); settle it first (docker swarm \
                 leave, or wait until it has joined)"
            ),
        };
        let proxy_config = dir.path("proxy.swarm.toml");
        let lab = Swarm {
            probe: Probe::new(Some(admin_token.clone())),
            admin_token,
            stack: settings.project.clone(),
            image: settings.image.clone(),
            redis_image: String::new(),
            proxy_port,
            admin_port,
            net_prefix: settings.net_prefix.clone(),
            proxy_config,
            made_swarm,
            made_gwbridge,
            sizing,
            settings,
            dir,
        };
        // Recorded and the mode written before anything is deployed, so that `down` can clean up
        // after an interrupted up, the swarm it made included.
        lab.record()?;
        lab.dir.set_mode(Mode::Swarm)?;
        let redis_image = match images(&lab.settings) {
            Ok(image) => image,
            Err(e) => return lab.up_failed(&format!("{e:#}")).await,
        };
        let lab = Swarm { redis_image, ..lab };
        lab.record()?;
        fs::write(
            &lab.proxy_config,
            render_proxy_config(
                &swarm_proxy_config(),
                "the Swarm stack, each pool following its service's tasks by DNS",
            )?,
        )?;
        lab.dir.write_ports(&lab.ports_lines())?;
        say(format!(
            "stack '{}' (redis image {}, lab image {}, overlay network {}.0/24)",
            lab.stack, lab.redis_image, lab.image, lab.net_prefix
        ));
        let mut deploy = lab.stack_command();
        deploy
            .args([
                "stack",
                "deploy",
                "--resolve-image",
                "never",
                "--detach=true",
                "-c",
            ])
            .arg(lab.settings.root.join("deploy/stack.yaml"))
            .arg(&lab.stack);
        if run_visible(&mut deploy).is_err() {
            return lab.up_failed("docker stack deploy failed").await;
        }
        let admin = lab.admin_port;
        let names: Vec<String> = Replica::initial().map(|r| r.to_string()).collect();
        if let Err(why) = lab
            .probe
            .wait_serving(admin, &names, lab.settings.up_timeout)
            .await
        {
            return lab.up_failed(why).await;
        }
        say(proxy_up_line(lab.proxy_port, admin));
        say(format!(
            "Swarm publishes the proxy's ports on every interface of this node; the admin API wants its token: curl -H \"Authorization: Bearer $(cat {})\" ...",
            lab.dir.path("admin-token").display()
        ));
        say(format!(
            "scale with scripts/lab scale POOL N (docker service scale {}_POOL=N); tasks: docker stack ps {}",
            lab.stack, lab.stack
        ));
        Ok(())
    }

    /// Writes what later commands read: `swarm.env`.
    fn record(&self) -> anyhow::Result<()> {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        self.dir.write_env(
            SWARM_ENV,
            &[
                ("STATELAB_STACK", self.stack.clone()),
                ("STATELAB_IMAGE", self.image.clone()),
                ("STATELAB_REDIS_IMAGE", self.redis_image.clone()),
                ("STATELAB_PROXY_PORT", self.proxy_port.to_string()),
                ("STATELAB_ADMIN_PORT", self.admin_port.to_string()),
                ("STATELAB_NET_PREFIX", self.net_prefix.clone()),
                (
                    "STATELAB_PROXY_CONFIG",
                    self.proxy_config.display().to_string(),
                ),
                ("STATELAB_MADE_SWARM", flag(self.made_swarm)),
                ("STATELAB_MADE_GWBRIDGE", flag(self.made_gwbridge)),
            ],
        )
    }

    /// `docker` with the stack file's variables set.
    fn stack_command(&self) -> Command {
        let mut cmd = docker();
        cmd.env("STATELAB_IMAGE", &self.image)
            .env("STATELAB_REDIS_IMAGE", &self.redis_image)
            .env("STATELAB_PROXY_PORT", self.proxy_port.to_string())
            .env("STATELAB_ADMIN_PORT", self.admin_port.to_string())
            .env("STATELAB_NET_PREFIX", &self.net_prefix)
            .env("STATELAB_PROXY_CONFIG", &self.proxy_config)
            .env("STATELAB_ADMIN_TOKEN", self.admin_token.as_str())
            .env("STATELAB_WORK_US", self.sizing.work_us.to_string())
            .env("STATELAB_WORK_DIST", self.sizing.work_dist.as_str());
        cmd
    }

    /// Shows what is not healthy, and takes everything down again.
    async fn up_failed(&self, why: &str) -> anyhow::Result<()> {
        say(why);
        let tasks = stdout_of(docker().args([
            "stack",
            "ps",
            "--no-trunc",
            "--format",
            "{{.Name}} {{.CurrentState}} {{.Error}}",
            &self.stack,
        ]));
        for line in tasks.lines() {
            eprintln!("    {line}");
        }
        eprint!(
            "{}",
            admin_summary(
                self.admin_port,
                self.probe.admin_status(self.admin_port).await.as_ref()
            )
        );
        if let Err(e) = self.down(false).await {
            say(format!("down failed too ({e:#}); try: scripts/lab down"));
        }
        bail!("scripts/lab up --swarm failed: {why}")
    }

    /// Removes the stack (and its volumes with `volumes`), and leaves the swarm when the lab made
    /// it.
    pub async fn down(&self, volumes: bool) -> anyhow::Result<()> {
        let out = run(docker().args(["stack", "rm", &self.stack]))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            // A stack that was never deployed, or an engine no longer in a swarm, has nothing to
            // remove.
            if !err.contains("Nothing found in stack") && !err.contains("not a swarm manager") {
                bail!("docker stack rm {} failed: {}", self.stack, err.trim());
            }
        }
        // `stack rm` returns before the containers and the network are gone; volumes in use
        // cannot be removed, and a swarm left too early keeps the network.
        let label = format!("label=com.docker.stack.namespace={}", self.stack);
        wait_until(
            &format!("the stack {}'s containers and network to go", self.stack),
            self.settings.up_timeout,
            || async {
                stdout_of(docker().args(["ps", "-aq", "--filter", &label]))
                    .trim()
                    .is_empty()
                    && stdout_of(docker().args(["network", "ls", "-q", "--filter", &label]))
                        .trim()
                        .is_empty()
            },
        )
        .await?;
        if volumes {
            let names = stdout_of(docker().args(["volume", "ls", "-q", "--filter", &label]));
            let names: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
            if !names.is_empty() {
                let out = run(docker().args(["volume", "rm"]).args(&names))?;
                if !out.status.success() {
                    bail!(
                        "docker volume rm failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        let others = stdout_of(docker().args(["service", "ls", "-q"]));
        if self.made_swarm && !others.trim().is_empty() {
            say(
                "the swarm the lab made now runs other services too (docker service ls): it is \
                 left as it is; docker swarm leave --force ends it",
            );
        } else if self.made_swarm {
            let out = run(docker().args(["swarm", "leave", "--force"]))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                if !err.contains("not part of a swarm") {
                    bail!("docker swarm leave failed: {}", err.trim());
                }
            }
            say("left the swarm the lab made");
            if self.made_gwbridge {
                // Its endpoints go with the swarm a moment after `leave` returns.
                let gone = wait_until(
                    &format!("{GWBRIDGE} to be removed"),
                    Duration::from_secs(15),
                    || async {
                        let _ = run(docker().args(["network", "rm", GWBRIDGE]));
                        !network_exists(GWBRIDGE)
                    },
                )
                .await;
                if gone.is_err() {
                    say(format!(
                        "{GWBRIDGE}, which swarm init made, is still there: docker network rm {GWBRIDGE}"
                    ));
                }
            }
        }
        self.dir.clear();
        let _ = fs::remove_file(self.dir.path(SWARM_ENV));
        say(format!(
            "stack '{}' removed{}",
            self.stack,
            if volumes {
                ", its Redis and object store volumes deleted"
            } else {
                ""
            }
        ));
        Ok(())
    }
}

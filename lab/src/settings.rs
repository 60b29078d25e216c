//! The `STATELAB_*` environment, read once at start into typed values; a bad value stops the
//! command before it does anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::labdir::AdminToken;
use crate::model::{net_prefix_of, DEFAULT_NET_PREFIX};

/// How the native lab picks its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPlan {
    /// The documented ports: replicas 18001-18023, the proxy 8080/8081, Redis from 16379.
    Fixed,
    /// A random free loopback port below the ephemeral range for every part not pinned.
    Free,
}

/// Whether Docker mode asks a registry for the official images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// `STATELAB_OFFLINE=1`: build the images from Debian packages, ask no registry.
    Offline,
    /// `STATELAB_OFFLINE=0`: the official images only.
    Online,
    /// Unset: use what is present, probe the registry for what is missing.
    Probe,
}

/// Everything the lab reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The repository root (where `deploy/` is).
    pub root: PathBuf,
    pub lab_dir: PathBuf,
    pub ports: PortPlan,
    /// `STATELAB_PROXY_PORT`, `STATELAB_ADMIN_PORT`, `STATELAB_REDIS_PORT` when set.
    pub proxy_port: Option<u16>,
    pub admin_port: Option<u16>,
    pub redis_port: Option<u16>,
    /// `STATELAB_BIN_DIR`, split at ':'; empty when unset (then cargo builds).
    pub bin_dirs: Vec<PathBuf>,
    /// `STATELAB_S3S_FS`: the object store's program, when not the one the lab finds.
    pub s3s_fs: Option<PathBuf>,
    pub up_timeout: Duration,
    pub project: String,
    /// First three octets of the compose network.
    pub net_prefix: String,
    pub subnet_set: bool,
    pub registry: Registry,
    pub probe_timeout: Duration,
    pub skip_image_build: bool,
    pub image: String,
    /// `STATELAB_ADMIN_TOKEN`: the proxy's admin token `up` starts it with (Docker mode makes one
    /// when unset). Later commands read the token `up` recorded in the lab directory.
    pub admin_token: Option<AdminToken>,
}

pub const DEFAULT_PROXY_PORT: u16 = 8080;
pub const DEFAULT_ADMIN_PORT: u16 = 8081;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn port_var(name: &str) -> anyhow::Result<Option<u16>> {
    var(name)
        .map(|v| match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => bail!("{name} must be a port number 1-65535 (got '{v}')"),
        })
        .transpose()
}

fn seconds_var(name: &str, default: u64) -> anyhow::Result<Duration> {
    match var(name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .with_context(|| format!("{name} must be a positive number of seconds (got '{v}')")),
    }
}

impl Settings {
    /// Reads the environment; `root` is the repository.
    pub fn from_env(root: &Path) -> anyhow::Result<Settings> {
        let cwd = std::env::current_dir().context("the current directory")?;
        let lab_dir = match var("STATELAB_LAB_DIR") {
            Some(d) => cwd.join(d),
            None => root.join(".lab"),
        };
        let ports = match var("STATELAB_PORTS").as_deref() {
            None | Some("fixed") => PortPlan::Fixed,
            Some("free") => PortPlan::Free,
            Some(other) => bail!("STATELAB_PORTS must be 'fixed' or 'free' (got '{other}')"),
        };
        let registry = match var("STATELAB_OFFLINE").as_deref() {
            None => Registry::Probe,
            Some("1") => Registry::Offline,
            Some("0") => Registry::Online,
            Some(other) => bail!("STATELAB_OFFLINE must be 1 or 0 (got '{other}')"),
        };
        let subnet = var("STATELAB_SUBNET");
        let net_prefix = match &subnet {
            Some(s) => net_prefix_of(s).map_err(anyhow::Error::msg)?,
            None => DEFAULT_NET_PREFIX.to_string(),
        };
        Ok(Settings {
            root: root.to_path_buf(),
            lab_dir,
            ports,
            proxy_port: port_var("STATELAB_PROXY_PORT")?,
            admin_port: port_var("STATELAB_ADMIN_PORT")?,
            redis_port: port_var("STATELAB_REDIS_PORT")?,
            bin_dirs: var("STATELAB_BIN_DIR")
                .map(|v| {
                    v.split(':')
                        .filter(|d| !d.is_empty())
                        .map(|d| cwd.join(d))
                        .collect()
                })
                .unwrap_or_default(),
            up_timeout: seconds_var("STATELAB_UP_TIMEOUT", 90)?,
            project: var("STATELAB_PROJECT").unwrap_or_else(|| "statelab".into()),
            net_prefix,
            subnet_set: subnet.is_some(),
            registry,
            probe_timeout: seconds_var("STATELAB_PROBE_TIMEOUT", 20)?,
            skip_image_build: var("STATELAB_SKIP_IMAGE_BUILD").as_deref() == Some("1"),
            image: var("STATELAB_IMAGE").unwrap_or_else(|| "statelab:latest".into()),
            admin_token: var("STATELAB_ADMIN_TOKEN").map(AdminToken::new),
            s3s_fs: var("STATELAB_S3S_FS").map(|p| cwd.join(p)),
        })
    }

    /// Cargo's folder for the `lab` profile, where `up` builds when `STATELAB_BIN_DIR` is unset.
    pub fn cargo_lab_dir(&self) -> PathBuf {
        self.cargo_target_dir().join("lab")
    }

    /// Where the scripts install the programs the lab runs beside its own (`s3s-fs`).
    pub fn cargo_tools_dir(&self) -> PathBuf {
        self.cargo_target_dir().join("tools")
    }

    fn cargo_target_dir(&self) -> PathBuf {
        match var("CARGO_TARGET_DIR") {
            Some(d) => self.root.join(d),
            None => self.root.join("target"),
        }
    }
}

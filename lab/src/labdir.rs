//! The lab directory: what `up` decided, for every later command to read.
//!
//! | file | holds |
//! |---|---|
//! | `mode` | `native`, `docker` or `swarm`: the lab is up (written first, removed last) |
//! | `ports` | `NAME PORT` lines: natively every part, in Docker and Swarm mode proxy and admin |
//! | `bin_dirs` | the binaries' folders `up` used, so `start` runs the same ones |
//! | `pids/NAME.pid` | `PID START_TIME` of a native part |
//! | `logs/NAME.log` | a native part's output |
//! | `proxy.toml`, `proxy.docker.toml`, `proxy.swarm.toml` | the generated proxy configuration |
//! | `docker.env` | the compose settings `up --docker` used (shell `KEY='value'` lines) |
//! | `swarm.env` | the stack's settings `up --swarm` used, and whether it made the swarm (and `docker_gwbridge`), which `down` then leaves |
//! | `store` | the Redis topology `up` chose (`--redis`) and its `--redis-wait` |
//! | `sizing` | the parts' CPU budgets and the replicas' work per request `up` chose (JSON, `statelab_formats::lab::Sizing`) |
//! | `cgroup` | native mode with budgets: the lab's control group, which `down` removes |
//! | `members` | Docker mode: the replicas now, after `scale` |
//! | `partition` | Docker mode: the Redis node `partition` cut off, until `heal` |
//! | `jwt-secret` | the stateless replicas' shared key |
//! | `s3-keys` | native mode: the object store's access key and secret key, one line each |
//! | `s3/` | native mode: the object store's data (`s3s-fs`), a folder per bucket; emptied at each `up` |
//! | `redis/`, `redis-N/`, `sentinel-N/`, `redis-cluster-N/` | a native Redis node's data (a Sentinel's rewritten configuration) |
//! | `data` | the native stateful replicas' own disks, `data/stateful-K/` each: the avatars it stores (`--data-dir`); emptied at each `up` |
//! | `admin-token` | the proxy's admin token, when the lab runs it with one (always in Docker and Swarm mode) |

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::model::Store;
use statelab_formats::lab::Sizing;

/// The file holding the proxy's admin token.
const ADMIN_TOKEN: &str = "admin-token";

pub use statelab_formats::AdminToken;

/// `bytes` random bytes from the system's source, hex.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut key = vec![0u8; bytes];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no random bytes for a key: {e}"))?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh admin token: 32 random bytes, hex.
pub fn random_admin_token() -> anyhow::Result<AdminToken> {
    random_hex(32).map(AdminToken::new)
}

/// How the lab is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Native,
    Docker,
    Swarm,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Docker => "docker",
            Mode::Swarm => "swarm",
        }
    }
}

/// The Redis topology of a lab, and the replicas the externalized services wait for on each
/// write (`--redis-wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreChoice {
    pub store: Store,
    pub wait: u32,
}

/// The lab directory's paths and its small files.
#[derive(Debug, Clone)]
pub struct LabDir {
    pub dir: PathBuf,
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

impl LabDir {
    pub fn new(dir: PathBuf) -> LabDir {
        LabDir { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn log(&self, part: &str) -> PathBuf {
        self.logs().join(format!("{part}.log"))
    }

    pub fn pid_file(&self, part: &str) -> PathBuf {
        self.dir.join("pids").join(format!("{part}.pid"))
    }

    pub fn create(&self) -> anyhow::Result<()> {
        for d in [self.dir.clone(), self.logs(), self.dir.join("pids")] {
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(())
    }

    /// The running mode, or `None` when the lab is not up.
    pub fn mode(&self) -> anyhow::Result<Option<Mode>> {
        match fs::read_to_string(self.path("mode")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read the lab's mode file"),
            Ok(text) => match text.trim() {
                "native" => Ok(Some(Mode::Native)),
                "docker" => Ok(Some(Mode::Docker)),
                "swarm" => Ok(Some(Mode::Swarm)),
                other => anyhow::bail!(
                    "{} says '{other}', not native, docker or swarm",
                    self.path("mode").display()
                ),
            },
        }
    }

    pub fn set_mode(&self, mode: Mode) -> anyhow::Result<()> {
        write_atomic(&self.path("mode"), &format!("{}\n", mode.as_str()))
    }

    /// Records the Redis topology `up` chose and the services' `--redis-wait`.
    pub fn write_store(&self, store: StoreChoice) -> anyhow::Result<()> {
        write_atomic(
            &self.path("store"),
            &format!("{} {}\n", store.store.name(), store.wait),
        )
    }

    /// The Redis topology `up` recorded; the single Redis when nothing is recorded.
    pub fn store(&self) -> anyhow::Result<StoreChoice> {
        let text = match fs::read_to_string(self.path("store")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreChoice::default()),
            other => other.context("cannot read the lab's store file")?,
        };
        let mut words = text.split_whitespace();
        let store = words
            .next()
            .unwrap_or("single")
            .parse()
            .map_err(anyhow::Error::msg)?;
        let wait = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        Ok(StoreChoice { store, wait })
    }

    /// Records the parts' size `up` chose.
    pub fn write_sizing(&self, sizing: &Sizing) -> anyhow::Result<()> {
        write_atomic(&self.path("sizing"), &serde_json::to_string(sizing)?)
    }

    /// The parts' size `up` recorded; unbounded and no work when nothing is recorded.
    pub fn sizing(&self) -> anyhow::Result<Sizing> {
        match fs::read_to_string(self.path("sizing")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sizing::default()),
            other => serde_json::from_str(&other.context("cannot read the lab's sizing file")?)
                .context("the lab's sizing file is garbled; scripts/lab down, then up"),
        }
    }

    /// Records the control group holding the native lab's budgeted parts.
    pub fn write_cgroup(&self, base: &Path) -> anyhow::Result<()> {
        write_atomic(&self.path("cgroup"), &format!("{}\n", base.display()))
    }

    /// The control group `up` made, if it made one.
    pub fn cgroup(&self) -> Option<PathBuf> {
        let text = fs::read_to_string(self.path("cgroup")).ok()?;
        let line = text.trim();
        (!line.is_empty()).then(|| PathBuf::from(line))
    }

    /// Forgets the running lab: mode, ports, binaries, store, sizing and control group (logs
    /// and data stay).
    pub fn clear(&self) {
        for f in ["mode", "ports", "bin_dirs", "store", "sizing", "cgroup"] {
            let _ = fs::remove_file(self.path(f));
        }
    }

    pub fn write_ports(&self, lines: &[(String, u16)]) -> anyhow::Result<()> {
        let text: String = lines.iter().map(|(n, p)| format!("{n} {p}\n")).collect();
        write_atomic(&self.path("ports"), &text)
    }

    /// The `NAME PORT` lines `up` wrote (empty when there are none).
    pub fn ports(&self) -> BTreeMap<String, u16> {
        fs::read_to_string(self.path("ports"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                Some((words.next()?.to_string(), words.next()?.parse().ok()?))
            })
            .collect()
    }

    pub fn write_bin_dirs(&self, dirs: &[PathBuf]) -> anyhow::Result<()> {
        let text: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
        write_atomic(&self.path("bin_dirs"), &text)
    }

    pub fn bin_dirs(&self) -> Vec<PathBuf> {
        fs::read_to_string(self.path("bin_dirs"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    /// `KEY='value'` lines a shell can source; values never hold a quote.
    pub fn write_env(&self, name: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
        let mut text = String::new();
        for (k, v) in vars {
            anyhow::ensure!(!v.contains('\''), "{k} must not contain a quote: {v}");
            text.push_str(&format!("{k}='{v}'\n"));
        }
        write_atomic(&self.path(name), &text)
    }

    /// The admin token the running lab's proxy wants, `None` when it wants none.
    pub fn admin_token(&self) -> Option<AdminToken> {
        fs::read_to_string(self.path(ADMIN_TOKEN))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(AdminToken::new)
    }

    /// Records the proxy's admin token, readable by the owner only (it is a secret).
    pub fn write_admin_token(&self, token: &AdminToken) -> anyhow::Result<()> {
        self.write_private(ADMIN_TOKEN, &format!("{}\n", token.as_str()))
    }

    /// Writes a file only its owner can read, in place of any before it.
    pub fn write_private(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let path = self.path(name);
        let _ = fs::remove_file(&path);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The lab runs its proxy without a token.
    pub fn remove_admin_token(&self) -> anyhow::Result<()> {
        match fs::remove_file(self.path(ADMIN_TOKEN)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("cannot remove the lab's admin-token file")
            }
            _ => Ok(()),
        }
    }

    pub fn read_env(&self, name: &str) -> BTreeMap<String, String> {
        fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                let v = v.strip_prefix('\'')?.strip_suffix('\'')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the lab's code names in its lab directory (`.path("NAME")`) is in the table at
    /// the top of this file.
    #[test]
    fn the_file_table_lists_every_file_the_lab_writes() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let table: String = include_str!("labdir.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect();
        let mut named = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).expect("a source folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = fs::read_to_string(&path).expect("a source file");
                for piece in text.split(".path(\"").skip(1) {
                    let name = piece.split('"').next().unwrap_or_default();
                    let literal = name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    });
                    if literal && !name.is_empty() {
                        named.push(name.to_owned());
                    }
                }
            }
        }
        assert!(
            named.iter().any(|n| n == "mode"),
            "the scan found the files"
        );
        for name in named {
            assert!(
                table.contains(&format!("`{name}`")),
                "{name} is written in the lab directory but not in labdir.rs's file table"
            );
        }
    }

    fn temp_dir(tag: &str) -> LabDir {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        let dir = std::env::temp_dir().join(format!(
            "statelab-labdir-{tag}-{}",
            u64::from_le_bytes(bytes)
        ));
        let lab = LabDir::new(dir);
        lab.create().expect("create the lab directory");
        lab
    }

    #[test]
    fn what_up_writes_later_commands_read() {
        let lab = temp_dir("files");
        assert_eq!(lab.mode().expect("no mode file is no error"), None);
        lab.set_mode(Mode::Docker).expect("write mode");
        assert_eq!(lab.mode().expect("read mode"), Some(Mode::Docker));
        lab.write_ports(&[("proxy".into(), 8080), ("admin".into(), 8081)])
            .expect("write ports");
        assert_eq!(lab.ports().get("admin"), Some(&8081));
        lab.write_env(
            "docker.env",
            &[("STATELAB_IMAGE", "statelab:latest".into())],
        )
        .expect("write env");
        assert_eq!(
            lab.read_env("docker.env")
                .get("STATELAB_IMAGE")
                .map(String::as_str),
            Some("statelab:latest")
        );
        assert!(lab.write_env("x.env", &[("K", "it's".into())]).is_err());
        assert_eq!(lab.admin_token(), None);
        let token = random_admin_token().expect("a token");
        assert_eq!(token.as_str().len(), 64);
        assert!(!format!("{token:?}").contains(token.as_str()));
        lab.write_admin_token(&token).expect("write the token");
        assert_eq!(lab.admin_token(), Some(token));
        let mode = fs::metadata(lab.path(ADMIN_TOKEN))
            .expect("stat")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        lab.remove_admin_token().expect("remove the token");
        lab.remove_admin_token()
            .expect("removing no token is no error");
        assert_eq!(lab.admin_token(), None);
        assert_eq!(lab.sizing().expect("no sizing is none"), Sizing::default());
        let sizing = Sizing {
            replica_cpu: Some(0.2),
            store_cpu: None,
            work_us: 1000,
            work_dist: statelab_formats::lab::WorkDist::Exp,
        };
        lab.write_sizing(&sizing).expect("write sizing");
        assert_eq!(lab.sizing().expect("read sizing"), sizing);
        lab.write_cgroup(Path::new("/sys/fs/cgroup/cpu/statelab-1"))
            .expect("write cgroup");
        assert_eq!(
            lab.cgroup(),
            Some(PathBuf::from("/sys/fs/cgroup/cpu/statelab-1"))
        );
        lab.clear();
        assert_eq!(lab.mode().expect("read mode"), None);
        assert!(lab.ports().is_empty());
        assert_eq!(lab.cgroup(), None);
        assert_eq!(lab.sizing().expect("cleared"), Sizing::default());
        fs::remove_dir_all(&lab.dir).expect("remove the test directory");
    }

    #[test]
    fn a_garbled_mode_file_is_an_error() {
        let lab = temp_dir("mode");
        fs::write(lab.path("mode"), "sideways\n").expect("write");
        assert!(lab.mode().is_err());
        fs::remove_dir_all(&lab.dir).expect("remove the test directory");
    }
}

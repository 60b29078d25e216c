//! A native lab driven through `scripts/lab`, as a user drives it: its own directory, free ports,
//! the binaries of the build profile the tests run in; taken down when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dirs::{lab_bin_dir, workspace_root, TempDir};

/// A native lab brought up by [`NativeLab::up`]. Dropping it runs `scripts/lab down -v` before
/// its directory goes.
#[derive(Debug)]
pub struct NativeLab {
    dir: PathBuf,
    bins: PathBuf,
    // Declared last: dropped after `drop` has taken the lab down.
    _tmp: TempDir,
}

impl NativeLab {
    /// `scripts/lab up` in a fresh private directory named after `tag`, on free ports.
    ///
    /// # Panics
    /// When the lab does not come up.
    pub fn up(tag: &str) -> NativeLab {
        NativeLab::up_with(tag, &[])
    }

    /// `scripts/lab up ARGS...` (e.g. `--redis sentinel`), as [`NativeLab::up`].
    ///
    /// # Panics
    /// When the lab does not come up.
    pub fn up_with(tag: &str, args: &[&str]) -> NativeLab {
        let tmp = TempDir::new(tag);
        let lab = NativeLab {
            dir: tmp.join("lab"),
            bins: lab_bin_dir(),
            _tmp: tmp,
        };
        let mut words = vec!["up"];
        words.extend(args);
        lab.ok(&words);
        lab
    }

    /// The lab directory (`STATELAB_LAB_DIR` for tools that call `scripts/lab` themselves).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `scripts/lab ARGS...` for this lab, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(workspace_root().join("scripts/lab"));
        cmd.args(args)
            .env("STATELAB_LAB_DIR", &self.dir)
            .env("STATELAB_PORTS", "free")
            .env("STATELAB_BIN_DIR", &self.bins)
            .env("STATELAB_UP_TIMEOUT", "60")
            .env_remove("STATELAB_PROXY_PORT")
            .env_remove("STATELAB_ADMIN_PORT")
            .env_remove("STATELAB_REDIS_PORT");
        cmd
    }

    /// Runs `scripts/lab ARGS...` and insists on success; returns its standard output.
    ///
    /// # Panics
    /// When the command cannot run or fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run scripts/lab");
        assert!(
            out.status.success(),
            "scripts/lab {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The port `scripts/lab ports` names for `name` (`proxy`, `admin`, `stateful-1`, ...).
    ///
    /// # Panics
    /// When the lab names no such port.
    pub fn port(&self, name: &str) -> u16 {
        self.ok(&["ports"])
            .lines()
            .find_map(|l| {
                let (n, p) = l.split_once(' ')?;
                (n == name).then(|| p.trim().parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("scripts/lab ports names no {name}"))
    }
}

impl Drop for NativeLab {
    fn drop(&mut self) {
        let _ = self.command(&["down", "-v"]).output();
    }
}

//! CPU budgets for the native lab's parts: one control group per part, under one group per lab.
//!
//! cgroup v2 (`cpu.max`) where the unified hierarchy has the `cpu` controller, else cgroup v1's
//! `cpu` controller (`cpu.cfs_quota_us` over `cpu.cfs_period_us`). The period is 10 ms
//! ([`cpu_period_us`]: longer only where a budget under 0.1 core needs it for a 1 ms quota). A part's process joins its group right after it starts, so
//! the budget holds from its first request; the group goes at `down`. Where no controller can
//! be used, [`CpuGroups::create`] says why, and `up` stops: a lab asked for budgets never runs
//! without them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use statelab_formats::lab::{cpu_period_us, cpu_quota_us};

/// Where the kernel's control groups are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The CPU controller found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Controller {
    /// The unified hierarchy, at this root.
    V2(PathBuf),
    /// cgroup v1's `cpu` hierarchy, mounted here.
    V1(PathBuf),
}

impl Controller {
    /// The controller under `root`: v2 when its `cgroup.controllers` lists `cpu`, else v1's
    /// `cpu` mount. The error names what is missing.
    pub fn detect(root: &Path) -> anyhow::Result<Controller> {
        let unified = root.join("cgroup.controllers");
        if let Ok(list) = fs::read_to_string(&unified) {
            if list.split_whitespace().any(|c| c == "cpu") {
                return Ok(Controller::V2(root.to_path_buf()));
            }
        }
        let v1 = root.join("cpu");
        if v1.join("cpu.cfs_quota_us").is_file() {
            return Ok(Controller::V1(v1));
        }
        bail!(
            "no CPU controller to set a budget with: neither {} lists 'cpu' (cgroup v2) nor is \
             {}/cpu.cfs_quota_us there (cgroup v1); run without --replica-cpu/--store-cpu, or \
             in Docker mode (--docker)",
            unified.display(),
            v1.display()
        )
    }

    fn dir(&self) -> &Path {
        match self {
            Controller::V2(p) | Controller::V1(p) => p,
        }
    }
}

/// The lab's groups: one directory holding a group per budgeted part.
#[derive(Debug, Clone)]
pub struct CpuGroups {
    controller: Controller,
    /// The lab's own group.
    base: PathBuf,
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write '{text}' to {}", path.display()))
}

impl CpuGroups {
    /// Creates the lab's group `name` under the controller found in `root`. Fails, naming the
    /// reason, where the controller is missing or the group cannot be made (not root).
    pub fn create(root: &Path, name: &str) -> anyhow::Result<CpuGroups> {
        let controller = Controller::detect(root)?;
        let base = controller.dir().join(name);
        fs::create_dir_all(&base).with_context(|| {
            format!(
                "cannot create the control group {} for the CPU budgets (they need root, or a \
                 cgroup delegated to this user)",
                base.display()
            )
        })?;
        let groups = CpuGroups { controller, base };
        if let Controller::V2(root) = &groups.controller {
            // Children get the cpu controller only where each parent enables it.
            write(&root.join("cgroup.subtree_control"), "+cpu")?;
            write(&groups.base.join("cgroup.subtree_control"), "+cpu")?;
        }
        Ok(groups)
    }

    /// The groups a lab recorded (`base`, a path [`CpuGroups::base`] gave).
    pub fn open(base: PathBuf) -> anyhow::Result<CpuGroups> {
        let parent = base.parent().context("a control group has a parent")?;
        let controller = if parent.join("cgroup.controllers").is_file() {
            Controller::V2(parent.to_path_buf())
        } else {
            Controller::V1(parent.to_path_buf())
        };
        Ok(CpuGroups { controller, base })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    fn group(&self, part: &str) -> PathBuf {
        self.base.join(part)
    }

    /// Gives `part` a group whose budget is `cores` of a core.
    pub fn limit(&self, part: &str, cores: f64) -> anyhow::Result<()> {
        let group = self.group(part);
        fs::create_dir_all(&group).with_context(|| format!("cannot create {}", group.display()))?;
        let (quota, period) = (cpu_quota_us(cores), cpu_period_us(cores));
        match &self.controller {
            Controller::V2(_) => write(&group.join("cpu.max"), &format!("{quota} {period}")),
            Controller::V1(_) => {
                // A quota larger than the period before it is refused: unlimit first.
                write(&group.join("cpu.cfs_quota_us"), "-1")?;
                write(&group.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&group.join("cpu.cfs_quota_us"), &quota.to_string())
            }
        }
    }

    /// Moves process `pid` (all its threads) into `part`'s group.
    pub fn place(&self, part: &str, pid: u32) -> anyhow::Result<()> {
        write(&self.group(part).join("cgroup.procs"), &pid.to_string())
    }

    /// The budget `part`'s group enforces now, in cores; `None` when it has none.
    pub fn budget(&self, part: &str) -> Option<f64> {
        let group = self.group(part);
        let (quota, period) = match &self.controller {
            Controller::V2(_) => {
                let text = fs::read_to_string(group.join("cpu.max")).ok()?;
                let mut words = text.split_whitespace();
                (words.next()?.to_string(), words.next()?.to_string())
            }
            Controller::V1(_) => (
                fs::read_to_string(group.join("cpu.cfs_quota_us")).ok()?,
                fs::read_to_string(group.join("cpu.cfs_period_us")).ok()?,
            ),
        };
        let quota: f64 = quota.trim().parse().ok().filter(|q: &f64| *q > 0.0)?;
        let period: f64 = period.trim().parse().ok().filter(|p: &f64| *p > 0.0)?;
        Some(quota / period)
    }

    /// Removes every part's group and the lab's (a group still holding a process stays, and
    /// is named).
    pub fn remove(&self) {
        if let Ok(entries) = fs::read_dir(&self.base) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    if let Err(err) = fs::remove_dir(e.path()) {
                        crate::say(format!("cannot remove {}: {err}", e.path().display()));
                    }
                }
            }
        }
        let _ = fs::remove_dir(&self.base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("statelab-cg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn no_controller_is_a_refusal_that_names_both() {
        let root = temp_root("none");
        let err = Controller::detect(&root).expect_err("an empty root has no controller");
        let text = format!("{err:#}");
        assert!(
            text.contains("cgroup v2") && text.contains("cgroup v1"),
            "{text}"
        );
        // A unified hierarchy without the cpu controller is no controller either.
        fs::write(root.join("cgroup.controllers"), "memory pids\n").expect("write");
        assert!(Controller::detect(&root).is_err());
    }

    #[test]
    fn the_controller_is_found_by_its_files() {
        let root = temp_root("found");
        fs::create_dir_all(root.join("cpu")).expect("mkdir");
        fs::write(root.join("cpu/cpu.cfs_quota_us"), "-1\n").expect("write");
        assert_eq!(
            Controller::detect(&root).expect("v1"),
            Controller::V1(root.join("cpu"))
        );
        fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory\n").expect("write");
        assert_eq!(
            Controller::detect(&root).expect("v2"),
            Controller::V2(root.clone())
        );
    }

    #[test]
    fn a_v1_budget_reads_back_as_written() {
        // A directory standing for the v1 hierarchy: the files are plain files here, so this
        // checks what is written and read, not the kernel.
        let root = temp_root("v1");
        fs::create_dir_all(root.join("cpu")).expect("mkdir");
        fs::write(root.join("cpu/cpu.cfs_quota_us"), "-1\n").expect("write");
        let groups = CpuGroups::create(&root, "lab").expect("create");
        groups.limit("stateless-1", 0.3).expect("limit");
        assert_eq!(
            fs::read_to_string(root.join("cpu/lab/stateless-1/cpu.cfs_quota_us")).expect("read"),
            "3000"
        );
        assert_eq!(groups.budget("stateless-1"), Some(0.3));
        assert_eq!(groups.budget("proxy"), None);
        let reopened = CpuGroups::open(groups.base().to_path_buf()).expect("open");
        assert_eq!(reopened.budget("stateless-1"), Some(0.3));
    }
}

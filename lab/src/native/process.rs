//! A part as a process: launching it, its PID record, its health, signals.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::model::{Part, StoreNode};
use crate::probe::wait_until;
use crate::redis_nodes;
use crate::say;

use super::{Native, STOP_GRACE};

/// A process's identity: its PID and the kernel's start time for it (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcId {
    pub(super) pid: i32,
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
    pub(super) fn alive(self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start)) if start == self.start && state != 'Z')
    }

    pub(super) fn signal(self, sig: Signal) -> bool {
        self.alive() && kill(Pid::from_raw(self.pid), sig).is_ok()
    }
}

impl Native {
    /// Starts a part in its own process group with its output in its log, and records it. The
    /// Sentinel topology's data nodes other than `redis-1` start as its replicas.
    pub(super) fn launch(&self, part: Part) -> anyhow::Result<Child> {
        let replica_of = match part {
            Part::Store(StoreNode::Data(k)) if k > 1 => Some(StoreNode::Data(1)),
            _ => None,
        };
        self.launch_as(part, replica_of)
    }

    pub(super) fn launch_as(
        &self,
        part: Part,
        replica_of: Option<StoreNode>,
    ) -> anyhow::Result<Child> {
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
        if let Err(e) = self.confine(part, child.id()) {
            let _ = id.signal(Signal::SIGKILL);
            return Err(e);
        }
        fs::write(
            self.dir.pid_file(&name),
            format!("{} {}\n", id.pid, id.start),
        )?;
        Ok(child)
    }

    /// Puts a part's new process into its control group, with its budget.
    fn confine(&self, part: Part, pid: u32) -> anyhow::Result<()> {
        let (Some(cores), Some(groups)) = (part.budget(&self.sizing), &self.cpu_groups) else {
            return Ok(());
        };
        let name = part.to_string();
        groups.limit(&name, cores)?;
        groups.place(&name, pid)
    }

    /// The recorded process of a part, when it is still that process.
    pub(super) fn running(&self, part: Part) -> Option<ProcId> {
        let text = fs::read_to_string(self.dir.pid_file(&part.to_string())).ok()?;
        let mut words = text.split_whitespace();
        let id = ProcId {
            pid: words.next()?.parse().ok()?,
            start: words.next()?.parse().ok()?,
        };
        id.alive().then_some(id)
    }

    pub(super) async fn healthy(&self, part: Part) -> bool {
        match part {
            Part::Store(n) => redis_nodes::answers(self.node_addr(n)).await,
            Part::Objects => self.probe.http_answers(self.ports.objects).await,
            Part::Proxy => self.probe.proxy_ready(self.ports.admin).await,
            Part::Replica(r) => self.probe.http_ok(self.ports.replica(r), "/health").await,
        }
    }

    /// Waits until the part is healthy; fails early, with its log's tail, if it exits.
    pub(super) async fn wait_healthy(&self, part: Part, child: &mut Child) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.settings.up_timeout;
        let log = self.dir.log(&part.to_string());
        loop {
            if self.healthy(part).await {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let text = fs::read_to_string(&log).unwrap_or_default();
                // The error, not the backtrace that follows it when RUST_BACKTRACE is set.
                let text = text
                    .rsplit_once("\nStack backtrace:")
                    .map_or(text.as_str(), |(error, _)| error);
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

    /// SIGTERM one part and wait for it (SIGKILL after the grace); forget its PID.
    pub(super) async fn stop(&self, part: Part) {
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
}

#[cfg(test)]
mod tests {
    use std::process::Command;

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

//! `partition` and `heal` in the Docker lab: a Redis node cut off from the other Redis nodes and
//! the Sentinels (and from chosen externalized replicas), while every other part still reaches
//! it. The cut is a packet filter chain in that node's own network namespace, entered from the
//! host (`nsenter --net` into the container's process, then `iptables`), dropping every packet to
//! or from the cut-off addresses, as a failed link does: nothing outside the lab's own containers
//! is touched, and a container started again comes back in a new namespace, without the chain.
//!
//! The lab directory's `partition` file names the nodes cut off, so `heal` (and `down`) know where
//! the chains are.

use std::fs;
use std::net::IpAddr;
use std::process::Command;

use anyhow::{bail, Context};
use statelab_formats::lab::{Healed, Partitioned};

use crate::model::{Part, Replica, StoreNode, Target};
use crate::topology;

use super::budget::inspect_cpu;
use super::Docker;

/// The chain the cut lives in, in the node's namespace.
const CHAIN: &str = "STATELAB-PARTITION";

/// `iptables ARGS...` in the network namespace of the process `pid`.
fn iptables_in(pid: u32, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["iptables", "-w"])
        .args(args)
        .output()
        .context(
            "cannot run nsenter (util-linux) with iptables: apt-get install -y util-linux iptables",
        )
}

/// Runs `iptables ARGS...` in the namespace; fails with its message.
fn must(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let out = iptables_in(pid, args)?;
    if !out.status.success() {
        bail!(
            "iptables {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The rules of `CHAIN` in the namespace (`-A` lines of `iptables -S`), read from the whole
/// table; `None` when the namespace has no such chain. (`iptables -S CHAIN` of a missing chain
/// fails with a message that differs between iptables' backends, so the table is read instead.)
/// A failure to read it (no iptables, no permission) is an error, never "none".
pub(crate) fn chain_rules(pid: u32) -> anyhow::Result<Option<Vec<String>>> {
    let out = iptables_in(pid, &["-S"])?;
    if !out.status.success() {
        bail!(
            "iptables -S failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.lines().any(|l| l == format!("-N {CHAIN}")) {
        return Ok(None);
    }
    let rule = format!("-A {CHAIN} ");
    Ok(Some(
        text.lines()
            .filter(|l| l.starts_with(&rule))
            .map(str::to_string)
            .collect(),
    ))
}

/// Removes the cut from the namespace; each step undoes one of `partition`'s, and one that finds
/// nothing to undo is fine. Fails when the chain is still there after.
fn uncut(pid: u32) -> anyhow::Result<()> {
    for args in [
        ["-D", "INPUT", "-j", CHAIN].as_slice(),
        &["-D", "OUTPUT", "-j", CHAIN],
        &["-F", CHAIN],
        &["-X", CHAIN],
    ] {
        iptables_in(pid, args)?;
    }
    if chain_rules(pid)?.is_some() {
        bail!("the chain {CHAIN} is still there after it was removed");
    }
    Ok(())
}

/// Entering another process's network namespace takes root.
fn need_root() -> anyhow::Result<()> {
    // `/proc/self` belongs to the process's effective user.
    let root = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self")?) == 0;
    if !root {
        bail!(
            "partition and heal enter a Redis container's network namespace from the host: run \
             them as root"
        );
    }
    Ok(())
}

impl Docker {
    /// The process on the host whose network namespace is the part's container's.
    fn netns_pid(&self, part: Part) -> anyhow::Result<u32> {
        let cid = self
            .cid(part)
            .with_context(|| format!("no container for {part} in project {}", self.project))?;
        inspect_cpu(&cid)
            .1
            .with_context(|| format!("{part} is not running"))
    }

    /// The address of a part in the lab network.
    fn lab_ip(&self, part: Part) -> anyhow::Result<IpAddr> {
        format!("{}.{}", self.net_prefix, part.container_octet())
            .parse()
            .with_context(|| format!("no address for {part}"))
    }

    /// Cuts `target` off from the lab's other Redis nodes and Sentinels and from `from` (the
    /// externalized replicas that lose it too).
    pub async fn partition(&self, target: Target, from: &[Part]) -> anyhow::Result<Partitioned> {
        let part = target.resolve(|| topology::primary(self)).await?;
        let Part::Store(node) = part else {
            bail!("a partition cuts off a Redis node (scripts/lab status lists them), not {part}");
        };
        crate::parts::check_member(self, part)?;
        for f in from {
            match f {
                Part::Replica(Replica { design, .. })
                    if *design == statelab_formats::Design::Externalized =>
                {
                    crate::parts::check_member(self, *f)?
                }
                other => bail!(
                    "--from takes externalized replicas (the ones that lose {part} too), not {other}"
                ),
            }
        }
        if let Some(cut) = self.partitioned().first() {
            bail!("{cut} is cut off already: scripts/lab heal first");
        }
        let peers: Vec<Part> = self
            .store
            .store
            .nodes()
            .into_iter()
            .filter(|n| *n != node)
            .map(Part::Store)
            .chain(from.iter().copied())
            .collect();
        if peers.is_empty() {
            bail!("{part} has no other Redis node to be cut off from; add --from externalized-K");
        }
        need_root()?;
        let pid = self.netns_pid(part)?;
        let ips = peers
            .iter()
            .map(|p| self.lab_ip(*p).map(|ip| ip.to_string()))
            .collect::<anyhow::Result<Vec<String>>>()?;
        fs::write(self.dir.path("partition"), format!("{node}\n"))?;
        let cut = || -> anyhow::Result<()> {
            must(pid, &["-N", CHAIN])?;
            for ip in &ips {
                must(pid, &["-A", CHAIN, "-s", ip, "-j", "DROP"])?;
                must(pid, &["-A", CHAIN, "-d", ip, "-j", "DROP"])?;
            }
            must(pid, &["-I", "INPUT", "1", "-j", CHAIN])?;
            must(pid, &["-I", "OUTPUT", "1", "-j", CHAIN])
        };
        if let Err(e) = cut() {
            // Half a cut is worse than none: undone, and forgotten.
            let undone = uncut(pid);
            if undone.is_ok() {
                let _ = fs::remove_file(self.dir.path("partition"));
            }
            return Err(e.context(format!("{part} was not cut off")));
        }
        let cut_off: Vec<String> = peers.iter().map(Part::to_string).collect();
        crate::say(format!(
            "{part} cut off from {} (packets dropped in its network namespace); scripts/lab heal ends it",
            cut_off.join(" ")
        ));
        Ok(Partitioned {
            node: part.to_string(),
            cut_off,
        })
    }

    /// The nodes the lab has cut off now.
    fn partitioned(&self) -> Vec<StoreNode> {
        let text = fs::read_to_string(self.dir.path("partition")).unwrap_or_default();
        text.lines()
            .filter_map(|l| match l.trim().parse() {
                Ok(Part::Store(n)) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// Removes every cut the lab made; a node whose container is gone or was started again since
    /// has none (its namespace went with it). The record stays until every cut is gone.
    pub fn heal(&self) -> anyhow::Result<Healed> {
        let nodes = self.partitioned();
        if !nodes.is_empty() {
            need_root()?;
        }
        let mut healed = Vec::new();
        for node in nodes {
            let part = Part::Store(node);
            // No running container: its namespace, and the cut, are gone.
            if let Ok(pid) = self.netns_pid(part) {
                if chain_rules(pid)?.is_some() {
                    uncut(pid).with_context(|| format!("the cut of {part} is still there"))?;
                }
            }
            healed.push(part.to_string());
        }
        let _ = fs::remove_file(self.dir.path("partition"));
        if healed.is_empty() {
            crate::say("no partition to heal");
        } else {
            crate::say(format!("healed: {} reached again", healed.join(" ")));
        }
        Ok(Healed { healed })
    }
}

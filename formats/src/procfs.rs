//! CPU time as the kernel writes it in `/proc`: a process's (`/proc/PID/stat`) and the whole
//! host's (`/proc/stat`). The lab reads both for `scripts/lab cpu`, the load generator its own.

use std::fs;

/// The kernel's unit for the times in `/proc` (`USER_HZ`), 100 on every architecture Linux
/// builds for.
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of process `pid` so far, in seconds; `None` when it is gone.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_seconds(&stat)
}

/// `utime + stime` of one `/proc/PID/stat` line, in seconds.
fn stat_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, fields 14 and 15 (utime, stime) are the 12th and 13th.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// The host's busy CPU time so far, in seconds: every state of `/proc/stat`'s `cpu` line but
/// idle and iowait (guest time is already inside user time).
pub fn host_busy_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    busy_of(stat.lines().next()?)
}

fn busy_of(line: &str) -> Option<f64> {
    let mut words = line.split_whitespace();
    if words.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / TICKS_PER_SEC)
}

/// The CPU budget of this process's control group, in cores; `None` when it has none or the
/// group cannot be read. cgroup v2's `cpu.max`, else v1's `cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`; in a container, whose own group is mounted as the root, the root's.
pub fn own_cpu_budget() -> Option<f64> {
    let groups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let (v2, v1) = cpu_group_paths(&groups);
    let read = |p: &str| fs::read_to_string(p).ok();
    if let Some(path) = v2 {
        for dir in [format!("/sys/fs/cgroup{path}"), "/sys/fs/cgroup".into()] {
            if let Some(max) = read(&format!("{dir}/cpu.max")) {
                return quota_of_max(&max);
            }
        }
    }
    if let Some(path) = v1 {
        for dir in [
            format!("/sys/fs/cgroup/cpu{path}"),
            "/sys/fs/cgroup/cpu".into(),
        ] {
            if let (Some(q), Some(p)) = (
                read(&format!("{dir}/cpu.cfs_quota_us")),
                read(&format!("{dir}/cpu.cfs_period_us")),
            ) {
                let (q, p): (f64, f64) = (q.trim().parse().ok()?, p.trim().parse().ok()?);
                return (q > 0.0 && p > 0.0).then(|| q / p);
            }
        }
    }
    None
}

/// From `/proc/self/cgroup`: the v2 group's path, and the path of the v1 hierarchy holding the
/// `cpu` controller.
fn cpu_group_paths(text: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "cpu") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// `cpu.max` (`QUOTA PERIOD` or `max PERIOD`) as cores.
fn quota_of_max(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let quota: f64 = words.next()?.parse().ok()?;
    let period: f64 = words.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// The cores this host has.
pub fn host_cores() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_user_plus_system_time() {
        let line = "4242 (a (strange) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    3 0 12345 0 0";
        assert_eq!(stat_seconds(line), Some(3.0));
    }

    #[test]
    fn the_host_line_leaves_out_idle_and_iowait() {
        let line = "cpu  100 20 30 5000 400 6 4 2 0 0";
        assert_eq!(busy_of(line), Some(1.62));
        assert_eq!(busy_of("intr 1 2 3"), None);
    }

    #[test]
    fn the_cpu_group_is_found_in_either_hierarchy() {
        let v1 = "9:name=systemd:/\n2:cpuacct:/\n1:cpu:/statelab-7/stateless-1\n0::/\n";
        assert_eq!(
            cpu_group_paths(v1),
            (Some("/".into()), Some("/statelab-7/stateless-1".into()))
        );
        let joined = "4:cpu,cpuacct:/docker/abc\n";
        assert_eq!(cpu_group_paths(joined).1.as_deref(), Some("/docker/abc"));
        assert_eq!(quota_of_max("20000 100000\n"), Some(0.2));
        assert_eq!(quota_of_max("max 100000\n"), None);
    }

    #[test]
    fn this_process_has_spent_some_cpu() {
        let mine = process_seconds(std::process::id()).expect("this process has a /proc entry");
        assert!(mine >= 0.0);
        assert!(host_busy_seconds().is_some_and(|s| s > 0.0));
        assert!(host_cores() >= 1);
    }
}

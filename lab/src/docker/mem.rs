//! `mem`: the replica containers' memory, as `docker stats` reports it.

use std::collections::BTreeMap;

use anyhow::bail;

use crate::model::Part;

use super::{docker, run, stdout_of, Docker};

/// Bytes in a `docker stats` size such as `12.5MiB` (binary units) or `13.1MB` (decimal).
pub fn size_to_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

impl Docker {
    /// `NAME BYTES` for each running replica container, as `docker stats` reports its memory.
    pub fn mem(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let containers = self
            .members
            .iter()
            .filter_map(|r| Some((r.to_string(), self.cid(Part::Replica(*r))?)));
        containers_mem(containers)
    }
}

/// `NAME BYTES` for each of these containers that runs, as `docker stats` reports its memory.
pub(crate) fn containers_mem(
    containers: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Vec<(String, u64)>> {
    let running: Vec<(String, String)> = containers
        .into_iter()
        .filter(|(_, cid)| {
            stdout_of(docker().args(["inspect", "-f", "{{.State.Running}}", cid])).trim() == "true"
        })
        .collect();
    if running.is_empty() {
        return Ok(Vec::new());
    }
    let out = run(docker()
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.Container}} {{.MemUsage}}",
        ])
        .args(running.iter().map(|(_, c)| c)))?;
    if !out.status.success() {
        bail!("docker stats failed");
    }
    let usage: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (cid, rest) = l.split_once(' ')?;
            let used = rest.split('/').next()?.replace(char::is_whitespace, "");
            Some((cid.to_string(), used))
        })
        .collect();
    // A container that stopped meanwhile shows 0B: down, so omitted.
    Ok(running
        .into_iter()
        .filter_map(|(name, cid)| {
            let bytes = size_to_bytes(usage.get(&cid)?)?;
            (bytes > 0).then_some((name, bytes))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_stats_sizes_in_both_unit_systems() {
        assert_eq!(size_to_bytes("12.5MiB"), Some(13_107_200));
        assert_eq!(size_to_bytes("13.1MB"), Some(13_100_000));
        assert_eq!(size_to_bytes("0B"), Some(0));
        assert_eq!(size_to_bytes("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(size_to_bytes("12 parsecs"), None);
        assert_eq!(size_to_bytes(""), None);
    }
}

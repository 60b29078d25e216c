//! `iphash-demo`: the Docker NAT trap for ip-hash, and the two ways around it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use statelab_formats::Strategy;

use super::{stdout_of, Docker};

impl Docker {
    /// `statelab-client` in a throwaway container on the lab network at `address` (inside the
    /// range whose `X-Forwarded-For` the proxy trusts): one request per client, the replicas that
    /// answered, one a line.
    fn client(&self, network: &str, address: &str, clients: &[String]) -> Vec<String> {
        let out = stdout_of(
            Command::new("timeout")
                .arg("60")
                .arg("docker")
                .args(["run", "--rm", "--network", network, "--ip", address])
                .args(["--label", &format!("statelab.client={}", self.project)])
                .arg(&self.image)
                .arg("statelab-client")
                .args(clients),
        );
        out.lines().map(str::to_string).collect()
    }

    /// One request as a fresh client from the host: the replica that answered.
    async fn ask_from_host(&self, forwarded_for: Option<&str>) -> Option<String> {
        let mut req = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/stateful/health",
                self.proxy_port
            ))
            .timeout(Duration::from_secs(3));
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        let resp = req.send().await.ok()?;
        let replica = resp.headers().get("x-replica")?.to_str().ok()?;
        Some(replica.to_string())
    }

    /// Shows the Docker NAT trap for ip-hash and the two ways around it.
    pub async fn iphash_demo(&self) -> anyhow::Result<()> {
        let network = self.lab_network().with_context(|| {
            format!(
                "no lab network for project {}; is the Docker lab up?",
                self.project
            )
        })?;
        let before = self
            .probe
            .admin_status(self.admin_port)
            .await
            .and_then(|s| s.pool("stateful").map(|p| p.strategy))
            .unwrap_or(Strategy::Cookie);
        self.probe
            .set_strategy(self.admin_port, "stateful", Strategy::IpHash)
            .await?;
        let result = self.iphash_steps(&network, before).await;
        let restored = self
            .probe
            .set_strategy(self.admin_port, "stateful", before)
            .await;
        result?;
        restored?;
        println!("\nstrategy of the stateful pool restored to {before}.");
        Ok(())
    }

    async fn iphash_steps(&self, network: &str, before: Strategy) -> anyhow::Result<()> {
        let clients: Vec<String> = (1..=12).map(|i| format!("198.51.100.{i}")).collect();
        println!("stateful pool switched to ip-hash (was {before}); 12 fresh clients each time:\n");
        println!("1. From the host. Docker NAT makes every client the bridge gateway, so one replica takes all:");
        let mut seen = Vec::new();
        for _ in 0..12 {
            seen.extend(self.ask_from_host(None).await);
        }
        println!("   {}", tally(&seen));
        println!("2. From the host with X-Forwarded-For: still one replica, the gateway is not a trusted proxy:");
        let mut seen = Vec::new();
        for c in &clients {
            seen.extend(self.ask_from_host(Some(c)).await);
        }
        println!("   {}", tally(&seen));
        println!("3. Workaround A, several source addresses: 6 containers on the lab network, one request each:");
        let mut seen = Vec::new();
        for i in 1..=6 {
            let address = format!("{}.{}", self.net_prefix, 200 + i);
            seen.extend(self.client(network, &address, &["-".to_string()]));
        }
        println!("   {}", tally(&seen));
        println!("4. Workaround B, a trusted in-network load generator naming 12 clients in X-Forwarded-For:");
        let first = self.client(network, &format!("{}.250", self.net_prefix), &clients);
        println!("   {}", tally(&first));
        println!("   ...and the same 12 clients sent again from another load generator land where they did:");
        let second = self.client(network, &format!("{}.251", self.net_prefix), &clients);
        if !first.is_empty() && first == second {
            println!("   same replicas, client by client");
        } else {
            println!("   MOVED (unexpected: was a replica killed or restarted meanwhile?)");
        }
        Ok(())
    }
}

/// `stateful-2 x12  stateful-3 x1` for the replica names seen.
fn tally(names: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    counts
        .iter()
        .map(|(n, c)| format!("{n} x{c}"))
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_each_replica() {
        let seen: Vec<String> = ["stateful-2", "stateful-1", "stateful-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(tally(&seen), "stateful-1 x1  stateful-2 x2");
    }
}

//! The lab as the soak reads it: `scripts/lab` run from async code, the PIDs and the proxy
//! configuration the lab recorded, the proxy's count of open client connections, the three
//! pools, and the JSON error body every part of the lab answers a refusal with.

use std::net::SocketAddr;

use http::Method;
use statelab_formats::config::ConfigFile;
use statelab_load::client::{Client, Target};
use statelab_test_support::NativeLab;

use crate::REQUEST_TIMEOUT;

/// `scripts/lab ARGS...` from async code, insisting on success.
pub async fn lab_ok_async(lab: &NativeLab, args: &[&str]) {
    let out = tokio::process::Command::from(lab.command(args))
        .output()
        .await
        .expect("run scripts/lab");
    assert!(
        out.status.success(),
        "scripts/lab {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The PID the lab recorded for a part (`pids/NAME.pid`: `PID START_TIME`).
pub fn lab_pid(lab: &NativeLab, part: &str) -> u32 {
    let path = lab.dir().join("pids").join(format!("{part}.pid"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{} holds no PID: {text:?}", path.display()))
}

/// The configuration the lab gave its proxy.
pub fn lab_proxy_config(lab: &NativeLab) -> ConfigFile {
    let path = lab.dir().join("proxy.toml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pool {
    Stateful,
    Stateless,
    Externalized,
}

impl Pool {
    pub const ALL: [Pool; 3] = [Pool::Stateful, Pool::Stateless, Pool::Externalized];

    pub fn name(self) -> &'static str {
        match self {
            Pool::Stateful => "stateful",
            Pool::Stateless => "stateless",
            Pool::Externalized => "externalized",
        }
    }

    pub fn of_replica(replica: &str) -> Pool {
        Pool::ALL
            .into_iter()
            .find(|p| {
                replica
                    .strip_prefix(p.name())
                    .is_some_and(|r| r.starts_with('-'))
            })
            .unwrap_or_else(|| panic!("{replica} is in no pool"))
    }
}

/// The `error` field of a JSON error body.
pub fn json_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["message"].as_str()?;
    value["error"].as_str().map(str::to_owned)
}

/// The proxy's count of open client connections, from its admin `/metrics`.
pub async fn client_connections(admin: SocketAddr) -> Option<u64> {
    let target = Target::parse(&format!("http://{admin}")).expect("the admin target");
    let mut client = Client::new(target, None, REQUEST_TIMEOUT);
    let answer = client
        .send(Method::GET, "/metrics", None)
        .await
        .result
        .ok()?;
    String::from_utf8_lossy(&answer.body)
        .lines()
        .find_map(|l| l.strip_prefix("statelab_proxy_client_connections "))
        .and_then(|v| v.trim().parse().ok())
}

//! The proxy's configuration file as written on disk: TOML with these sections and fields.
//!
//! Every field has a default, so an empty file gives the lab's standard layout (three pools on
//! 127.0.0.1:18001-18023). These types are only the file's shape; the proxy validates a
//! [`ConfigFile`] into its runtime configuration and refuses anything that cannot work. The lab
//! builds one for each mode and writes it with `toml`, so no configuration is written by hand.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{lab, BalanceFactor, Design, Strategy};

/// The most replicas the proxy takes in one pool, from its file or its admin API. (The lab
/// scales a pool to at most [`lab::MAX_REPLICAS_PER_POOL`].)
pub const MAX_REPLICAS_PER_POOL: usize = 64;

/// The whole file. `pool` is absent for the default pools.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub health: HealthSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default, rename = "pool", skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<PoolSection>>,
}

/// `[server]`: the listeners and process-wide settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: String,
    pub admin_listen: String,
    /// When set, the admin API wants `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Further names the admin API answers to in `Host`, besides loopback names and addresses and
    /// the address a client connected to (e.g. a compose service name). Any other name is refused:
    /// a DNS-rebinding page can only reach the admin API under a name of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_hosts: Vec<String>,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub shutdown_timeout_seconds: u64,
    /// Keys the affinity-cookie tokens; random per process when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_secret: Option<String>,
    pub upstream_keepalive: usize,
    /// A client connection idle this long between requests is closed: idle connections cost
    /// memory and a file descriptor each, and nothing else would ever close them.
    pub client_keepalive_timeout_ms: u64,
    /// A client must send a complete request header within this long (counted from its first
    /// byte, or from the connection's accept for its first request); a per-read timeout alone
    /// never ends a client that trickles a byte at a time.
    pub client_header_timeout_ms: u64,
    /// Largest request header (request line and header fields) a client may send.
    pub max_request_header_bytes: usize,
    /// Client connections open at once; one more is answered `503` and closed, so a flood of
    /// connections meets a known ceiling instead of the process's file-descriptor limit.
    pub max_client_connections: usize,
    /// A request body of at most `max_buffered_body_bytes` is read whole before a replica is
    /// chosen, within this long of the header's end; else the client gets `408` and no replica
    /// ever sees the request.
    pub client_body_timeout_ms: u64,
    /// Largest request body read whole before a replica is chosen (its chunked framing included);
    /// a larger one is streamed to the replica as it arrives.
    pub max_buffered_body_bytes: usize,
    /// Connections open at once on the admin listener, which has the client limits above too.
    pub max_admin_connections: usize,
    /// An open socket (an upgraded connection) is closed when either direction has carried
    /// nothing for this long: a socket's peers keep it alive with pings (a statelab service pings
    /// its chat sockets every 20 s), and one whose peer vanished is not kept for ever.
    pub socket_idle_timeout_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            admin_token: None,
            admin_hosts: Vec::new(),
            threads: 1,
            grace_period_seconds: 5,
            shutdown_timeout_seconds: 1,
            affinity_secret: None,
            upstream_keepalive: 256,
            client_keepalive_timeout_ms: 60_000,
            client_header_timeout_ms: 10_000,
            max_request_header_bytes: 32 * 1024,
            max_client_connections: 10_000,
            client_body_timeout_ms: 10_000,
            max_buffered_body_bytes: 64 * 1024,
            max_admin_connections: 64,
            socket_idle_timeout_ms: 300_000,
        }
    }
}

/// The secrets never reach a log or `--check`'s output.
impl fmt::Debug for ServerSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| if s.is_some() { "<redacted>" } else { "<unset>" };
        f.debug_struct("ServerSection")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("admin_token", &redacted(&self.admin_token))
            .field("admin_hosts", &self.admin_hosts)
            .field("threads", &self.threads)
            .field("grace_period_seconds", &self.grace_period_seconds)
            .field("shutdown_timeout_seconds", &self.shutdown_timeout_seconds)
            .field("affinity_secret", &redacted(&self.affinity_secret))
            .field("upstream_keepalive", &self.upstream_keepalive)
            .field(
                "client_keepalive_timeout_ms",
                &self.client_keepalive_timeout_ms,
            )
            .field("client_header_timeout_ms", &self.client_header_timeout_ms)
            .field("max_request_header_bytes", &self.max_request_header_bytes)
            .field("max_client_connections", &self.max_client_connections)
            .field("client_body_timeout_ms", &self.client_body_timeout_ms)
            .field("max_buffered_body_bytes", &self.max_buffered_body_bytes)
            .field("max_admin_connections", &self.max_admin_connections)
            .field("socket_idle_timeout_ms", &self.socket_idle_timeout_ms)
            .finish()
    }
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("server", &self.server)
            .field("health", &self.health)
            .field("retry", &self.retry)
            .field("pools", &self.pools)
            .finish()
    }
}

/// `[health]`: the active checks every replica gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Passing checks in a row that mark a replica up.
    pub rise: u32,
    /// Failing checks in a row that mark it down.
    pub fall: u32,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval_ms: 250,
            timeout_ms: 500,
            rise: 2,
            fall: 2,
        }
    }
}

/// `[retry]`: retries, passive ejection and the timeouts towards replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    pub max_retries: u32,
    pub eject_ms: u64,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            max_retries: 2,
            eject_ms: 2000,
            connect_timeout_ms: 1000,
            read_timeout_ms: 30_000,
        }
    }
}

/// One `[[pool]]`: a path prefix routed to a set of named replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub name: String,
    /// `/<name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Round-robin when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Consistent hashing with bounded loads for `ip-hash` and `cookie` (a percentage, at least
    /// 100); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_factor: Option<BalanceFactor>,
    /// Peers whose `X-Forwarded-For` names the client (CIDR blocks).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Replica name to `IP:port`.
    #[serde(default)]
    pub replicas: BTreeMap<String, String>,
    /// `HOST:PORT` whose addresses are the pool's replicas, instead of `replicas` (e.g.
    /// `tasks.stateless:8000` in a Docker Swarm): resolved every `discover_interval_ms`, each new
    /// address named by its own `x-replica`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover: Option<String>,
    /// Milliseconds between two resolutions of `discover`; 1000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover_interval_ms: Option<u64>,
    /// Seconds a replica whose address left the answer may drain before it is removed; 10 when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover_drain_seconds: Option<u64>,
}

impl ConfigFile {
    /// The pools this file configures: its own, or the defaults when it names none.
    pub fn pools_or_default(&self) -> Vec<PoolSection> {
        self.pools.clone().unwrap_or_else(default_pools)
    }
}

/// The lab's standard pools on loopback: one per [`Design`], with its default strategy and
/// [`lab::REPLICAS_PER_POOL`] replicas on their fixed ports (18001-18003, 18011-18013,
/// 18021-18023).
pub fn default_pools() -> Vec<PoolSection> {
    Design::ALL
        .into_iter()
        .map(|design| PoolSection {
            name: design.as_str().into(),
            prefix: None,
            strategy: Some(design.default_strategy()),
            balance_factor: None,
            trusted_proxies: Vec::new(),
            replicas: (1..=lab::REPLICAS_PER_POOL)
                .map(|k| {
                    (
                        format!("{design}-{k}"),
                        format!("127.0.0.1:{}", lab::fixed_port(design, k)),
                    )
                })
                .collect(),
            discover: None,
            discover_interval_ms: None,
            discover_drain_seconds: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_the_same() {
        let mut file = ConfigFile::default();
        file.server.admin_token = Some("t0ken".into());
        file.pools = Some(default_pools());
        let text = toml::to_string(&file).expect("serialise");
        let back: ConfigFile = toml::from_str(&text).expect("parse what was written");
        assert_eq!(back, file);
        assert!(text.contains("[[pool]]"), "{text}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut file = ConfigFile::default();
        file.server.admin_token = Some("t0ken".into());
        let shown = format!("{file:?}");
        assert!(
            !shown.contains("t0ken") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<ConfigFile>("[server]\nlisten_addr = \"x\"\n")
            .expect_err("an unknown field is an error");
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }
}

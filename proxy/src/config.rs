//! The proxy's configuration: a TOML file parsed once at start-up into typed values.
//!
//! The file's shape ([`ConfigFile`]) lives in `statelab-formats`, shared with the lab that
//! generates it; this module turns it into the validated [`Config`] the proxy runs with.
//!
//! Every field has a default, so an absent file (or an empty one) gives the lab's standard layout:
//! three pools on 127.0.0.1:18001-18023. Anything that cannot work (a bad address, an unknown
//! strategy, two pools on one prefix, a replica name used twice) is rejected here with a message
//! naming the field, never discovered on the first request.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use statelab_formats::config::default_pools;
use statelab_formats::ConfigFile;

use crate::strategy::{BalanceFactor, Strategy, MAX_REPLICAS_PER_POOL};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("{field} = {addr} cannot be bound: {source}")]
    Bind {
        field: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub health: HealthConfig,
    pub retry: RetryConfig,
    pub pools: Vec<PoolConfig>,
}

/// Debug output (`--check` prints it) shows whether a secret is set, never its value.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    /// Names besides loopback's and the connection's own address that the admin API accepts in
    /// `Host` (lowercase; see [`crate::admin`]).
    pub admin_hosts: Vec<String>,
    pub threads: usize,
    pub grace_period: Duration,
    /// How long runtimes get to finish after the grace period before tasks are dropped.
    pub shutdown_timeout: Duration,
    /// Keys the affinity-cookie tokens; random per process when unset, so cookies stop matching
    /// after a restart (clients are then re-pinned, which is harmless).
    pub affinity_secret: Option<String>,
    /// Idle upstream connections kept per proxy thread.
    pub upstream_keepalive: usize,
    /// What a client connection may cost: see [`ClientLimits`].
    pub client: ClientLimits,
    /// The admin listener's connection cap; its other bounds are `client`'s.
    pub max_admin_connections: usize,
    /// Longest silence in either direction of an open socket before it is closed.
    pub socket_idle_timeout: Duration,
}

/// The bounds on client connections, enforced below pingora's HTTP layer by
/// [`crate::front::FrontDoor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Idle time between two requests on one connection before it is closed.
    pub keepalive_timeout: Duration,
    /// Total time to receive a request header, from its first byte (from accept for a
    /// connection's first request): a client trickling bytes cannot hold a connection longer.
    pub header_timeout: Duration,
    /// Largest request header accepted.
    pub max_header_bytes: usize,
    /// Client connections open at once.
    pub max_connections: usize,
    /// Time for a buffered request body to arrive whole, from the end of its header.
    pub body_timeout: Duration,
    /// Largest request body read whole before a replica is chosen; larger ones are streamed.
    pub max_buffered_body: usize,
}

impl ClientLimits {
    /// pingora refuses request headers beyond about 1 MiB itself; a larger limit would be a lie.
    pub const MAX_HEADER_BYTES_CEILING: usize = 1024 * 1024 - 1;
    /// The smallest header limit that still fits ordinary requests with a few cookies.
    pub const MAX_HEADER_BYTES_FLOOR: usize = 1024;
    /// The largest body the front door buffers per connection: 16 MiB, the services' own
    /// largest body limit.
    pub const MAX_BUFFERED_BODY_CEILING: usize = 16 * 1024 * 1024;

    /// The same bounds with another connection cap (the admin listener's).
    pub fn with_max_connections(self, max_connections: usize) -> Self {
        Self {
            max_connections,
            ..self
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| if s.is_some() { "<redacted>" } else { "<unset>" };
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field(
                "admin_token",
                &format_args!("{}", redacted(&self.admin_token)),
            )
            .field("admin_hosts", &self.admin_hosts)
            .field("threads", &self.threads)
            .field("grace_period", &self.grace_period)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field(
                "affinity_secret",
                &format_args!("{}", redacted(&self.affinity_secret)),
            )
            .field("upstream_keepalive", &self.upstream_keepalive)
            .field("client", &self.client)
            .field("max_admin_connections", &self.max_admin_connections)
            .field("socket_idle_timeout", &self.socket_idle_timeout)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub max_retries: u32,
    pub eject: Duration,
    pub connect_timeout: Duration,
    /// Longest wait for a replica to accept written request bytes or to send response bytes; a
    /// replica that accepts and then says nothing fails the attempt after this instead of holding
    /// the request forever.
    pub read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub prefix: String,
    pub strategy: Strategy,
    /// Bounded loads for ip-hash and for cookie's new clients; off when `None`.
    pub balance_factor: Option<BalanceFactor>,
    pub trusted_proxies: Vec<IpNet>,
    /// Replicas in name order (stable, so selection rings are identical across restarts).
    pub replicas: Vec<(String, SocketAddr)>,
    /// The DNS name the pool follows instead of a replica list.
    pub discover: Option<Discover>,
}

/// A pool's replicas found by DNS: see [`crate::discovery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    /// `HOST:PORT`, resolved as the system resolver resolves it.
    pub target: String,
    pub interval: Duration,
    /// How long a replica whose address left the answer drains before it goes.
    pub drain: Duration,
}

impl Discover {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
    pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
    /// Bounds on the interval: a resolver asked more often than every 100 ms is a load of its
    /// own, and one asked less often than hourly follows nothing.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
    pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
}

/// `HOST:PORT` for `discover`: a DNS name or an IP address (IPv6 in brackets) and a port.
fn discover_target(pool: &str, value: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError::Invalid(format!(
            "pool {pool:?}: discover = {value:?} {why}; give HOST:PORT, e.g. \"tasks.stateless:8000\""
        ))
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("has no port from 1 to 65535")),
    }
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host_ok = match bracketed {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            // A fully qualified name may end in a dot; digits and dots alone must be an IPv4
            // address (the resolver would read "10.1" as 10.0.0.1).
            let name = host.strip_suffix('.').unwrap_or(host);
            let numeric = name.chars().all(|c| c.is_ascii_digit() || c == '.');
            host.parse::<std::net::Ipv4Addr>().is_ok()
                || (!numeric
                    && !name.is_empty()
                    && name.len() <= 253
                    && name.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    }))
        }
    };
    if !host_ok {
        return Err(bad("names no host"));
    }
    Ok(value.to_string())
}

impl Config {
    /// Reads `path`, or returns the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::from_toml_str(""),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::parse_named(&text, &path.display().to_string())
            }
        }
    }

    /// Binds both listener addresses at once and releases them, so a busy port is a start-up
    /// error naming the field rather than a panic inside the server.
    pub fn check_listeners(&self) -> Result<(), ConfigError> {
        let bind = |field: &'static str, addr: SocketAddr| {
            std::net::TcpListener::bind(addr).map_err(|source| ConfigError::Bind {
                field,
                addr,
                source,
            })
        };
        let _listen = bind("server.listen", self.server.listen)?;
        let _admin = bind("server.admin_listen", self.server.admin_listen)?;
        Ok(())
    }

    /// Replaces `server.admin_token` with `token` when one is given: how a container gets its
    /// token from the environment (`STATELAB_ADMIN_TOKEN`) instead of from the mounted file, which
    /// is committed. An empty value counts as none: compose passes an empty value when the user
    /// gave none, and [`Config::ensure_admin_token`] then makes one.
    pub fn override_admin_token(&mut self, token: Option<String>) {
        if let Some(t) = token.filter(|t| !t.trim().is_empty()) {
            self.server.admin_token = Some(t);
        }
    }

    /// An admin API that listens beyond loopback without a token gets a random one, which the
    /// caller must show its user (the proxy logs it once at start). Without this, plain
    /// `docker compose up` would leave the API open to the whole lab network, or, refusing to
    /// start, not come up at all; a token written into the committed files would be no secret.
    /// Returns the token made, if one was.
    pub fn ensure_admin_token(&mut self) -> Result<Option<String>, ConfigError> {
        if self.server.admin_listen.ip().is_loopback() || self.server.admin_token.is_some() {
            return Ok(None);
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|e| ConfigError::Invalid(format!("no randomness for the admin token: {e}")))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.server.admin_token = Some(token.clone());
        Ok(Some(token))
    }

    /// The admin API (which can drain replicas and switch strategies) is reachable from other
    /// hosts with no token; allowed, but worth a warning at start.
    pub fn admin_open_to_network(&self) -> bool {
        !self.server.admin_listen.ip().is_loopback() && self.server.admin_token.is_none()
    }

    /// Parses TOML text (empty text gives the defaults).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse_named(text, "<inline>")
    }

    fn parse_named(text: &str, name: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: name.to_string(),
            source: Box::new(source),
        })?;
        Self::from_file(file)
    }
}

fn parse_addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "{field} = {value:?} is not an IP socket address like \"127.0.0.1:8080\""
        ))
    })
}

/// A replica's address, checked and in canonical form: an IPv4-mapped IPv6 address becomes its
/// IPv4 address, so one socket has one spelling. Refused, with the reason: port 0, the unspecified
/// address (`0.0.0.0`, `::`), broadcast and multicast addresses, none of which is one server that
/// the proxy could connect to.
pub fn replica_addr(value: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| format!("address {value:?} is not IP:port, e.g. \"127.0.0.1:18004\""))?;
    let ip = addr.ip().to_canonical();
    let why = if addr.port() == 0 {
        Some("port 0 is no port a replica listens on")
    } else if ip.is_unspecified() {
        Some("an unspecified address names no one host")
    } else if ip.is_multicast() {
        Some("a multicast address names no one host")
    } else if matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("the broadcast address names no one host")
    } else {
        None
    };
    match (why, addr) {
        (Some(why), _) => Err(format!("address {value:?}: {why}")),
        // An IPv6 address keeps its scope id (a link-local address needs it) and flow info.
        (None, SocketAddr::V6(_)) if ip.is_ipv6() => Ok(addr),
        (None, _) => Ok(SocketAddr::new(ip, addr.port())),
    }
}

/// One `server.admin_hosts` entry: a DNS name or an IP address, without a port (any port is
/// accepted: published ports differ from the listener's), lowercased as `Host` is compared.
fn admin_host(entry: &str) -> Result<String, ConfigError> {
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(bare.to_ascii_lowercase());
    }
    let name_ok = !entry.is_empty()
        && entry.len() <= 253
        && entry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !entry.starts_with(['.', '-'])
        && !entry.ends_with(['.', '-']);
    if name_ok {
        Ok(entry.to_ascii_lowercase())
    } else {
        Err(ConfigError::Invalid(format!(
            "server.admin_hosts entry {entry:?} is not a host name or an IP address (no port, no scheme)"
        )))
    }
}

impl Config {
    /// Validates the file's values into the configuration the proxy runs with.
    pub fn from_file(file: ConfigFile) -> Result<Config, ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let s = file.server;
        if s.threads == 0 {
            return invalid("server.threads must be at least 1".into());
        }
        if s.admin_token.as_deref() == Some("") {
            return invalid(
                "server.admin_token must not be empty (omit it to disable auth)".into(),
            );
        }
        let admin_hosts = s
            .admin_hosts
            .iter()
            .map(|h| admin_host(h))
            .collect::<Result<Vec<_>, _>>()?;
        let listen = parse_addr("server.listen", &s.listen)?;
        let admin_listen = parse_addr("server.admin_listen", &s.admin_listen)?;
        if listen == admin_listen {
            return invalid(format!(
                "server.listen and server.admin_listen are both {listen}; they need different addresses"
            ));
        }
        if s.client_keepalive_timeout_ms == 0
            || s.client_header_timeout_ms == 0
            || s.client_body_timeout_ms == 0
            || s.socket_idle_timeout_ms == 0
        {
            return invalid(
                "server.client_keepalive_timeout_ms, server.client_header_timeout_ms, \
                 server.client_body_timeout_ms and server.socket_idle_timeout_ms must be positive"
                    .into(),
            );
        }
        if s.max_buffered_body_bytes > ClientLimits::MAX_BUFFERED_BODY_CEILING {
            return invalid(format!(
                "server.max_buffered_body_bytes = {} exceeds {}",
                s.max_buffered_body_bytes,
                ClientLimits::MAX_BUFFERED_BODY_CEILING
            ));
        }
        let header_range =
            ClientLimits::MAX_HEADER_BYTES_FLOOR..=ClientLimits::MAX_HEADER_BYTES_CEILING;
        if !header_range.contains(&s.max_request_header_bytes) {
            return invalid(format!(
                "server.max_request_header_bytes = {} must be between {} and {}",
                s.max_request_header_bytes,
                header_range.start(),
                header_range.end()
            ));
        }
        if s.max_client_connections == 0 || s.max_admin_connections == 0 {
            return invalid(
                "server.max_client_connections and server.max_admin_connections must be at least 1"
                    .into(),
            );
        }
        let server = ServerConfig {
            listen,
            admin_listen,
            admin_token: s.admin_token,
            admin_hosts,
            threads: s.threads,
            grace_period: Duration::from_secs(s.grace_period_seconds),
            shutdown_timeout: Duration::from_secs(s.shutdown_timeout_seconds),
            affinity_secret: s.affinity_secret,
            upstream_keepalive: s.upstream_keepalive,
            client: ClientLimits {
                keepalive_timeout: Duration::from_millis(s.client_keepalive_timeout_ms),
                header_timeout: Duration::from_millis(s.client_header_timeout_ms),
                max_header_bytes: s.max_request_header_bytes,
                max_connections: s.max_client_connections,
                body_timeout: Duration::from_millis(s.client_body_timeout_ms),
                max_buffered_body: s.max_buffered_body_bytes,
            },
            max_admin_connections: s.max_admin_connections,
            socket_idle_timeout: Duration::from_millis(s.socket_idle_timeout_ms),
        };

        let h = file.health;
        if !h.path.starts_with('/') {
            return invalid(format!("health.path = {:?} must start with '/'", h.path));
        }
        if h.interval_ms == 0 || h.timeout_ms == 0 {
            return invalid("health.interval_ms and health.timeout_ms must be positive".into());
        }
        if h.rise == 0 || h.fall == 0 {
            return invalid("health.rise and health.fall must be at least 1".into());
        }
        let health = HealthConfig {
            path: h.path,
            interval: Duration::from_millis(h.interval_ms),
            timeout: Duration::from_millis(h.timeout_ms),
            rise: h.rise,
            fall: h.fall,
        };

        let r = file.retry;
        if r.connect_timeout_ms == 0 {
            return invalid("retry.connect_timeout_ms must be positive".into());
        }
        if r.read_timeout_ms == 0 {
            return invalid("retry.read_timeout_ms must be positive".into());
        }
        let retry = RetryConfig {
            max_retries: r.max_retries,
            eject: Duration::from_millis(r.eject_ms),
            connect_timeout: Duration::from_millis(r.connect_timeout_ms),
            read_timeout: Duration::from_millis(r.read_timeout_ms),
        };

        let raw_pools = file.pools.unwrap_or_else(default_pools);
        if raw_pools.is_empty() {
            return invalid("at least one [[pool]] is required".into());
        }
        let mut pools = Vec::with_capacity(raw_pools.len());
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        let mut replica_names = HashSet::new();
        let mut targets = HashSet::new();
        for p in raw_pools {
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return invalid(format!(
                    "pool name {:?} must be non-empty and use only letters, digits, '-' and '_'",
                    p.name
                ));
            }
            if !names.insert(p.name.clone()) {
                return invalid(format!("pool {:?} is defined twice", p.name));
            }
            let prefix = p.prefix.unwrap_or_else(|| format!("/{}", p.name));
            if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
                return invalid(format!(
                    "pool {:?}: prefix {prefix:?} must look like \"/name\" (leading '/', no trailing '/')",
                    p.name
                ));
            }
            if !prefixes.insert(prefix.clone()) {
                return invalid(format!("prefix {prefix:?} is used by two pools"));
            }
            let strategy = p.strategy.unwrap_or(Strategy::RoundRobin);
            let trusted_proxies = p
                .trusted_proxies
                .iter()
                .map(|c| {
                    c.parse::<IpNet>()
                        .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            ConfigError::Invalid(format!(
                                "pool {:?}: trusted_proxies entry {c:?} is not a CIDR like \"172.16.0.0/12\"",
                                p.name
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let discover = match p.discover.as_deref() {
                None => None,
                Some(_) if !p.replicas.is_empty() => {
                    return invalid(format!(
                        "pool {:?} both lists replicas and discovers them: give one of replicas and discover",
                        p.name
                    ));
                }
                Some(target) => {
                    let interval = p
                        .discover_interval_ms
                        .map_or(Discover::DEFAULT_INTERVAL, Duration::from_millis);
                    if !(Discover::MIN_INTERVAL..=Discover::MAX_INTERVAL).contains(&interval) {
                        return invalid(format!(
                            "pool {:?}: discover_interval_ms must be from {} to {}",
                            p.name,
                            Discover::MIN_INTERVAL.as_millis(),
                            Discover::MAX_INTERVAL.as_millis()
                        ));
                    }
                    let drain = p
                        .discover_drain_seconds
                        .map_or(Discover::DEFAULT_DRAIN, Duration::from_secs);
                    if drain > crate::pool::Pools::MAX_DRAIN {
                        return invalid(format!(
                            "pool {:?}: discover_drain_seconds must be at most {}",
                            p.name,
                            crate::pool::Pools::MAX_DRAIN.as_secs()
                        ));
                    }
                    let target = discover_target(&p.name, target)?;
                    // Two pools on one name would fight over every replica's name.
                    if !targets.insert(target.to_ascii_lowercase()) {
                        return invalid(format!(
                            "pool {:?}: discover = {target:?} is another pool's name too",
                            p.name
                        ));
                    }
                    Some(Discover {
                        target,
                        interval,
                        drain,
                    })
                }
            };
            if discover.is_none()
                && (p.discover_interval_ms.is_some() || p.discover_drain_seconds.is_some())
            {
                return invalid(format!(
                    "pool {:?}: discover_interval_ms and discover_drain_seconds need discover",
                    p.name
                ));
            }
            if p.replicas.is_empty() && discover.is_none() {
                return invalid(format!(
                    "pool {:?} has no replicas (list them, or discover = \"HOST:PORT\")",
                    p.name
                ));
            }
            if p.replicas.len() > MAX_REPLICAS_PER_POOL {
                return invalid(format!(
                    "pool {:?} has more than {MAX_REPLICAS_PER_POOL} replicas",
                    p.name
                ));
            }
            let mut replicas = Vec::with_capacity(p.replicas.len());
            let mut addrs = HashSet::new();
            for (name, addr) in p.replicas {
                let addr = replica_addr(&addr).map_err(|why| {
                    ConfigError::Invalid(format!("pool {:?} replica {name:?}: {why}", p.name))
                })?;
                if !replica_names.insert(name.clone()) {
                    return invalid(format!("replica name {name:?} is used twice"));
                }
                if !addrs.insert(addr) {
                    return invalid(format!("pool {:?}: address {addr} is listed twice", p.name));
                }
                replicas.push((name, addr));
            }
            pools.push(PoolConfig {
                name: p.name,
                prefix,
                strategy,
                balance_factor: p.balance_factor,
                trusted_proxies,
                replicas,
                discover,
            });
        }
        Ok(Config {
            server,
            health,
            retry,
            pools,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Config::from_toml_str(text) {
            Ok(_) => panic!("config should have been rejected:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_gives_the_lab_layout() -> Result<(), ConfigError> {
        let c = Config::from_toml_str("")?;
        assert_eq!(
            c.server.listen,
            "127.0.0.1:8080"
                .parse::<SocketAddr>()
                .expect("a socket address")
        );
        assert_eq!(c.server.admin_listen.port(), 8081);
        assert_eq!(c.server.grace_period, Duration::from_secs(5));
        assert_eq!(c.retry.read_timeout, Duration::from_secs(30));
        assert_eq!(c.server.client.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(c.server.client.header_timeout, Duration::from_secs(10));
        assert_eq!(c.server.client.max_header_bytes, 32 * 1024);
        assert_eq!(c.server.client.max_connections, 10_000);
        let names: Vec<_> = c
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p.prefix.as_str(), p.strategy))
            .collect();
        assert_eq!(
            names,
            [
                ("stateful", "/stateful", Strategy::Cookie),
                ("stateless", "/stateless", Strategy::RoundRobin),
                ("externalized", "/externalized", Strategy::RoundRobin)
            ]
        );
        let ext = &c.pools[2].replicas;
        assert_eq!(ext[2].0, "externalized-3");
        assert_eq!(ext[2].1.port(), 18023);
        assert_eq!(c.pools[0].replicas[0].1.port(), 18001);
        Ok(())
    }

    #[test]
    fn a_pool_discovers_its_replicas_or_lists_them() -> Result<(), ConfigError> {
        let pool = |rest: &str| format!("[[pool]]\nname = \"stateless\"\n{rest}");
        let c = Config::from_toml_str(&pool("discover = \"tasks.stateless:8000\"\n"))?;
        assert_eq!(
            c.pools[0].discover,
            Some(Discover {
                target: "tasks.stateless:8000".into(),
                interval: Discover::DEFAULT_INTERVAL,
                drain: Discover::DEFAULT_DRAIN,
            })
        );
        assert!(c.pools[0].replicas.is_empty());
        let c = Config::from_toml_str(&pool(
            "discover = \"[::1]:8000\"\ndiscover_interval_ms = 250\ndiscover_drain_seconds = 0\n",
        ))?;
        let d = c.pools[0].discover.clone().expect("discover");
        assert_eq!((d.interval.as_millis(), d.drain.as_secs()), (250, 0));
        Config::from_toml_str(&pool("discover = \"10.0.0.7:8000\"\n"))?;
        Config::from_toml_str(&pool(
            "discover = \"stateless.lab.svc.cluster.local.:8000\"\n",
        ))?;
        let twice = format!(
            "{}{}",
            pool("discover = \"tasks.x:8000\"\n"),
            "[[pool]]\nname = \"other\"\ndiscover = \"TASKS.x:8000\"\n"
        );
        assert!(err(&twice).contains("another pool's name too"));

        for (rest, says) in [
            (
                "discover = \"tasks.stateless:8000\"\n[pool.replicas]\nstateless-1 = \"127.0.0.1:18011\"\n",
                "both lists replicas and discovers",
            ),
            ("discover = \"tasks.stateless\"\n", "has no port"),
            ("discover = \"tasks.stateless:0\"\n", "no port from 1"),
            ("discover = \":8000\"\n", "names no host"),
            ("discover = \"http://x:8000\"\n", "names no host"),
            ("discover = \"a..b:8000\"\n", "names no host"),
            ("discover = \"[nope]:8000\"\n", "names no host"),
            ("discover = \"10.1:8000\"\n", "names no host"),
            (
                "discover = \"x:1\"\ndiscover_interval_ms = 50\n",
                "discover_interval_ms must be",
            ),
            (
                "discover = \"x:1\"\ndiscover_drain_seconds = 601\n",
                "discover_drain_seconds must be at most 600",
            ),
            ("discover_interval_ms = 500\n", "need discover"),
            ("", "has no replicas"),
        ] {
            let e = err(&pool(rest));
            assert!(e.contains(says), "{rest:?}: {e}");
        }
        Ok(())
    }

    #[test]
    fn documented_example_parses() -> Result<(), ConfigError> {
        let c = Config::from_toml_str(
            r#"
            [server]
            listen = "127.0.0.1:9080"
            admin_listen = "127.0.0.1:9081"
            admin_token = "s3cret"
            threads = 2
            grace_period_seconds = 3

            [health]
            path = "/health"
            interval_ms = 100
            timeout_ms = 200
            rise = 1
            fall = 3

            [retry]
            max_retries = 1
            eject_ms = 500

            [[pool]]
            name = "stateful"
            prefix = "/stateful"
            strategy = "ip-hash"
            balance_factor = 125
            trusted_proxies = ["172.16.0.0/12", "10.0.0.1"]
            [pool.replicas]
            stateful-1 = "127.0.0.1:18001"
            stateful-2 = "127.0.0.1:18002"
            "#,
        )?;
        assert_eq!(c.server.threads, 2);
        assert_eq!(c.server.admin_token.as_deref(), Some("s3cret"));
        assert_eq!(c.health.fall, 3);
        assert_eq!(c.retry.eject, Duration::from_millis(500));
        assert_eq!(c.pools.len(), 1);
        assert_eq!(c.pools[0].strategy, Strategy::IpHash);
        assert_eq!(
            c.pools[0].balance_factor.map(BalanceFactor::percent),
            Some(125)
        );
        assert_eq!(c.pools[0].trusted_proxies.len(), 2);
        assert_eq!(c.pools[0].replicas.len(), 2);
        Ok(())
    }

    #[test]
    fn a_busy_listen_port_is_an_error_naming_the_field() -> Result<(), Box<dyn std::error::Error>> {
        let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
        let c = Config::from_toml_str(&format!(
            "[server]\nlisten = \"{}\"\nadmin_listen = \"127.0.0.1:0\"",
            busy.local_addr()?
        ))?;
        let e = c
            .check_listeners()
            .err()
            .ok_or("a bound port was accepted")?;
        assert!(e.to_string().starts_with("server.listen = "), "{e}");
        drop(busy);
        c.check_listeners()?;
        Ok(())
    }

    #[test]
    fn an_exposed_admin_listener_without_token_is_flagged() -> Result<(), ConfigError> {
        assert!(!Config::from_toml_str("")?.admin_open_to_network());
        let open = "[server]\nadmin_listen = \"0.0.0.0:9081\"\n";
        assert!(Config::from_toml_str(open)?.admin_open_to_network());
        let guarded = format!("{open}admin_token = \"t\"");
        assert!(!Config::from_toml_str(&guarded)?.admin_open_to_network());
        let v6 = "[server]\nadmin_listen = \"[::1]:9081\"\n";
        assert!(!Config::from_toml_str(v6)?.admin_open_to_network());
        Ok(())
    }

    #[test]
    fn admin_hosts_are_names_or_addresses_without_a_port() -> Result<(), ConfigError> {
        let c = Config::from_toml_str(
            "[server]\nadmin_hosts = [\"Proxy\", \"statelab-proxy\", \"10.0.0.2\", \"[::1]\"]",
        )?;
        assert_eq!(
            c.server.admin_hosts,
            ["proxy", "statelab-proxy", "10.0.0.2", "::1"]
        );
        assert!(Config::from_toml_str("")?.server.admin_hosts.is_empty());
        for bad in ["proxy:8081", "http://proxy", "", "a b", ".proxy"] {
            let e = err(&format!("[server]\nadmin_hosts = [{bad:?}]"));
            assert!(e.contains("server.admin_hosts"), "{bad}: {e}");
        }
        Ok(())
    }

    #[test]
    fn the_environments_token_replaces_the_files() -> Result<(), ConfigError> {
        let mut c = Config::from_toml_str("[server]\nadmin_token = \"from-file\"")?;
        c.override_admin_token(None);
        assert_eq!(c.server.admin_token.as_deref(), Some("from-file"));
        c.override_admin_token(Some(" ".into()));
        assert_eq!(
            c.server.admin_token.as_deref(),
            Some("from-file"),
            "empty is none"
        );
        c.override_admin_token(Some("from-env".into()));
        assert_eq!(c.server.admin_token.as_deref(), Some("from-env"));
        Ok(())
    }

    #[test]
    fn an_admin_api_beyond_loopback_always_has_a_token() -> Result<(), ConfigError> {
        let mut local = Config::from_toml_str("")?;
        assert_eq!(local.ensure_admin_token()?, None, "loopback may stay open");
        assert!(local.server.admin_token.is_none());
        let open = "[server]\nadmin_listen = \"0.0.0.0:8081\"";
        let mut c = Config::from_toml_str(open)?;
        let made = c.ensure_admin_token()?.expect("a token made");
        assert_eq!(made.len(), 48);
        assert_eq!(c.server.admin_token.as_deref(), Some(made.as_str()));
        assert!(!c.admin_open_to_network());
        let mut other = Config::from_toml_str(open)?;
        assert_ne!(other.ensure_admin_token()?, Some(made), "random per start");
        let mut given = Config::from_toml_str(open)?;
        given.override_admin_token(Some("chosen".into()));
        assert_eq!(given.ensure_admin_token()?, None, "a given token is kept");
        Ok(())
    }

    #[test]
    fn debug_output_redacts_the_secrets() -> Result<(), ConfigError> {
        let c = Config::from_toml_str(
            "[server]\nadmin_token = \"tok-4f9a1c\"\naffinity_secret = \"aff-7d3e2b\"",
        )?;
        for text in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(!text.contains("tok-4f9a1c"), "{text}");
            assert!(!text.contains("aff-7d3e2b"), "{text}");
            assert!(text.contains("admin_token: <redacted>"), "{text}");
            assert!(text.contains("127.0.0.1:8080"), "{text}");
        }
        let unset = format!("{:?}", Config::from_toml_str("")?);
        assert!(unset.contains("affinity_secret: <unset>"), "{unset}");
        Ok(())
    }

    #[test]
    fn bad_files_are_rejected_with_the_field_named() {
        assert!(err("[server]\nlisten = \"localhost\"").contains("server.listen"));
        assert!(err("[server]\nlistne = \"127.0.0.1:1\"").contains("listne"));
        assert!(err(
            "[[pool]]\nname = \"a\"\nstrategy = \"sticky\"\n[pool.replicas]\na-1 = \"127.0.0.1:1\""
        )
        .contains("sticky"));
        assert!(err(
            "[[pool]]\nname = \"a\"\nbalance_factor = 90\n[pool.replicas]\na-1 = \"127.0.0.1:1\""
        )
        .contains("balance factor"));
        assert!(err("[[pool]]\nname = \"a\"").contains("no replicas"));
        assert!(err(
            "[[pool]]\nname = \"a\"\nprefix = \"/x\"\n[pool.replicas]\na-1 = \"127.0.0.1:1\"\n\
             [[pool]]\nname = \"b\"\nprefix = \"/x\"\n[pool.replicas]\nb-1 = \"127.0.0.1:2\""
        )
        .contains("/x"));
        assert!(err("[[pool]]\nname = \"a\"\ntrusted_proxies = [\"nope\"]\n[pool.replicas]\na-1 = \"127.0.0.1:1\"")
            .contains("nope"));
        assert!(
            err("[[pool]]\nname = \"a\"\n[pool.replicas]\na-1 = \"127.0.0.1\"").contains("a-1")
        );
        assert!(err("[health]\nrise = 0").contains("rise"));
        assert!(err("[server]\nthreads = 0").contains("threads"));
        assert!(
            err("[server]\nlisten = \"127.0.0.1:9000\"\nadmin_listen = \"127.0.0.1:9000\"")
                .contains("server.admin_listen")
        );
        assert!(err("[retry]\nread_timeout_ms = 0").contains("retry.read_timeout_ms"));
        assert!(err("[server]\nclient_header_timeout_ms = 0").contains("client_header_timeout_ms"));
        assert!(err("[server]\nmax_request_header_bytes = 10").contains("max_request_header_bytes"));
        assert!(err("[server]\nmax_client_connections = 0").contains("max_client_connections"));
        assert!(err("[server]\nmax_admin_connections = 0").contains("max_admin_connections"));
        assert!(err("[server]\nclient_body_timeout_ms = 0").contains("client_body_timeout_ms"));
        assert!(err("[server]\nsocket_idle_timeout_ms = 0").contains("socket_idle_timeout_ms"));
        assert!(err("[server]\nmax_buffered_body_bytes = 999999999").contains("max_buffered_body"));
        assert!(err("this is not toml").contains("invalid config file"));
        assert!(
            err("[[pool]]\nname = \"a\"\n[pool.replicas]\na-1 = \"0.0.0.0:1\"\n")
                .contains("unspecified")
        );
    }

    #[test]
    fn replica_addresses_are_one_server_in_canonical_form() {
        assert_eq!(
            replica_addr("[::ffff:127.0.0.1]:18011"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 18011)))
        );
        let scoped = replica_addr("[fe80::1%2]:80").expect("a link-local address");
        assert!(matches!(scoped, SocketAddr::V6(v6) if v6.scope_id() == 2));
        assert_eq!(
            replica_addr("[::1]:80"),
            Ok(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 80)))
        );
        for bad in [
            "127.0.0.1:0",
            "0.0.0.0:80",
            "[::]:80",
            "[::ffff:0.0.0.0]:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
            "[::ffff:224.0.0.1]:80",
            "localhost:80",
            "127.0.0.1",
        ] {
            assert!(replica_addr(bad).is_err(), "{bad}");
        }
    }
}

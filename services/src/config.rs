//! Configuration: command-line flags with `STATELAB_*` environment fallbacks, parsed once.
//!
//! [`CommonArgs`] is what every service takes; each binary flattens in the arguments of its
//! own backend ([`MemoryArgs`], [`RedisArgs`], [`JwtArgs`]), so `--help` lists only what applies. Everything is
//! checked before the listener is bound: a bad value is a start-up error with a clear message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::store::{JwtKey, MemoryConfig, RedisConfig, Topology, WaitConfig};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Settings every service shares.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// Address to listen on.
    #[arg(long, env = "STATELAB_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Name this replica reports in the `x-replica` header and in bodies (defaults to the
    /// service's kind, e.g. `stateful`).
    #[arg(long, env = "STATELAB_REPLICA")]
    pub replica: Option<String>,

    /// Idle time, in seconds, after which a session expires.
    #[arg(long, env = "STATELAB_SESSION_TTL", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    pub session_ttl: u64,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "STATELAB_BODY_LIMIT", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u64).range(64..=16 * 1024 * 1024))]
    pub body_limit: u64,

    /// How long, in seconds, in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "STATELAB_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,

    /// CPU work, in microseconds, done for every API request (not `/health` or `/metrics`): a
    /// hash chain standing for page rendering and business logic, calibrated at start on this
    /// machine (see docs/capacity.md). 0, the default, does none.
    #[arg(long, env = "STATELAB_WORK_US", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::work::MAX_WORK_US)))]
    pub work_us: u32,

    /// How each request's work varies: `fixed` (every request costs --work-us) or `exp` (drawn
    /// from an exponential distribution of mean --work-us, capped at 20 times it).
    #[arg(long, env = "STATELAB_WORK_DIST", default_value = "fixed")]
    pub work_dist: crate::work::WorkDist,

    /// Log format: `plain` for people, `json` for machines.
    #[arg(long, env = "STATELAB_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,
}

impl CommonArgs {
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl)
    }
}

/// Where the stateful service keeps avatars: its own disk.
#[derive(Clone, Debug, clap::Args)]
pub struct DiskArgs {
    /// Directory for this replica's avatars (created when the first is stored). Default: a
    /// directory named after the replica in the system's temporary directory, so that a
    /// replica started again finds its files, as a server finds its disk after a restart.
    #[arg(long, env = "STATELAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DiskArgs {
    pub fn files(&self, replica: &str) -> crate::files::Files {
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("statelab-files-{replica}")));
        crate::files::Files::Disk(crate::files::DiskFiles::new(dir))
    }
}

/// Where the stateless and externalized services' chat rooms live: fanned out through a Redis
/// broker, or, without one, in each replica's memory (rooms of one name on two replicas are then
/// two rooms).
#[derive(Clone, Debug, clap::Args)]
pub struct ChatArgs {
    /// The Redis that fans chat messages out to every replica and keeps each room's latest
    /// messages (externalized: its own Redis otherwise, in whichever topology). Empty names none.
    #[arg(long, env = "STATELAB_CHAT_REDIS_URL")]
    pub chat_redis_url: Option<String>,

    /// Prefix of the broker's channels and history keys.
    #[arg(long, env = "STATELAB_CHAT_PREFIX", default_value = "statelab:")]
    pub chat_prefix: String,

    /// Upper bound on one call to the broker, in milliseconds.
    #[arg(long, env = "STATELAB_CHAT_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub chat_timeout_ms: u64,
}

impl ChatArgs {
    /// The rooms: through the broker `--chat-redis-url` names, else through `fallback` (the
    /// externalized service's own Redis, in whichever topology), else in this replica's memory.
    pub fn rooms(&self, fallback: Option<&Topology>) -> anyhow::Result<crate::chat::Rooms> {
        let named = self
            .chat_redis_url
            .as_deref()
            .filter(|url| !url.is_empty())
            .map(|url| Topology::Single {
                url: url.to_owned(),
            });
        match named.as_ref().or(fallback) {
            Some(topology) => Ok(crate::chat::Rooms::Broker(Box::new(
                crate::chat::BrokerRooms::new(
                    topology,
                    &self.chat_prefix,
                    Duration::from_millis(self.chat_timeout_ms),
                )?,
            ))),
            None => Ok(crate::chat::Rooms::default()),
        }
    }
}

/// Where the stateless and externalized services keep avatars: an S3-compatible object store.
/// Without `--s3-url` the file routes answer `503`; sessions work either way.
#[derive(Clone, clap::Args)]
pub struct ObjectStoreArgs {
    /// The object store's base URL, e.g. http://127.0.0.1:9000 (path-style buckets).
    #[arg(long, env = "STATELAB_S3_URL")]
    pub s3_url: Option<url::Url>,

    /// The bucket avatars go in; created on the first upload if it does not exist.
    #[arg(long, env = "STATELAB_S3_BUCKET", default_value = "statelab-avatars")]
    pub s3_bucket: String,

    /// The region requests are signed for.
    #[arg(long, env = "STATELAB_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// The access key id. Better from the environment than a flag.
    #[arg(long, env = "STATELAB_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<String>,

    /// The secret key. Better from the environment: a flag shows in the process list.
    #[arg(long, env = "STATELAB_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
}

impl std::fmt::Debug for ObjectStoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreArgs")
            .field("s3_url", &self.s3_url.as_ref().map(url::Url::as_str))
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key", &self.s3_access_key)
            .finish_non_exhaustive()
    }
}

impl ObjectStoreArgs {
    /// The object store, or none without `--s3-url`; with it, both keys are required.
    pub fn files(&self) -> anyhow::Result<crate::files::Files> {
        let Some(endpoint) = self.s3_url.clone() else {
            return Ok(crate::files::Files::None);
        };
        let (Some(access_key), Some(secret_key)) =
            (self.s3_access_key.clone(), self.s3_secret_key.clone())
        else {
            bail!("--s3-url needs --s3-access-key and --s3-secret-key (or STATELAB_S3_ACCESS_KEY and STATELAB_S3_SECRET_KEY)");
        };
        if !matches!(endpoint.scheme(), "http" | "https") {
            bail!("--s3-url must be an http:// or https:// URL, got {endpoint}");
        }
        let files = crate::files::S3Files::new(crate::files::S3Config {
            endpoint,
            bucket: self.s3_bucket.clone(),
            region: self.s3_region.clone(),
            access_key,
            secret_key,
        })?;
        Ok(crate::files::Files::S3(Box::new(files)))
    }
}

/// How much the stateful service may hold in memory.
#[derive(Clone, Debug, clap::Args)]
pub struct MemoryArgs {
    /// Most sessions this replica holds at once. Past it a login gets 503 `session_capacity`
    /// while the sessions held keep working. A session costs about 235 bytes with a short
    /// username and an empty cart (the default, 1,000,000, is about 235 MB) and up to about
    /// 4.5 KB with a full cart; see docs/limits.md.
    #[arg(long, env = "STATELAB_MAX_SESSIONS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SESSIONS_CEILING))]
    pub max_sessions: u64,
}

/// Highest `--max-sessions` accepted: at a few hundred bytes each, more would need tens of GB,
/// so a larger value is a typo, not a plan.
const MAX_SESSIONS_CEILING: u64 = 100_000_000;

impl MemoryArgs {
    pub fn config(&self, ttl: Duration) -> MemoryConfig {
        MemoryConfig {
            ttl,
            // At most MAX_SESSIONS_CEILING, which fits every usize this builds for.
            max_sessions: usize::try_from(self.max_sessions).unwrap_or(usize::MAX),
        }
    }
}

/// How the externalized service reaches Redis: `--redis-sentinel` (the primary Sentinel names),
/// else `--redis-cluster`, else `--redis-url` (one Redis, the default). The first one set wins and
/// an empty value counts as unset, so that a compose file can layer a topology over the default
/// one through the environment.
#[derive(Clone, Debug, clap::Args)]
pub struct RedisArgs {
    /// Redis URL of a single Redis (default redis://127.0.0.1:6379).
    #[arg(long, env = "STATELAB_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Sentinels to ask for the primary, as host:port,host:port,...; the service follows each
    /// failover Sentinel makes.
    #[arg(long, env = "STATELAB_REDIS_SENTINEL", value_name = "HOST:PORT,...")]
    pub redis_sentinel: Option<String>,

    /// The name Sentinel monitors the primary under.
    #[arg(long, env = "STATELAB_REDIS_MASTER_NAME", default_value = "statelab")]
    pub redis_master_name: String,

    /// Seed nodes of a Redis Cluster, as host:port,host:port,...
    #[arg(long, env = "STATELAB_REDIS_CLUSTER", value_name = "HOST:PORT,...")]
    pub redis_cluster: Option<String>,

    /// Prefix for every key this service writes, so several labs can share one Redis.
    #[arg(long, env = "STATELAB_REDIS_PREFIX", default_value = "statelab:")]
    pub redis_prefix: String,

    /// Longest wait, in milliseconds, for any one Redis call before answering 503.
    #[arg(long, env = "STATELAB_REDIS_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub redis_timeout_ms: u64,

    /// Replicas that must hold each session write before it is acknowledged (Redis `WAIT`);
    /// 0, the default, acknowledges a write once the primary has it. A write fewer replicas
    /// acknowledged in time is answered 503. Not with --redis-cluster.
    #[arg(long, env = "STATELAB_REDIS_WAIT", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=8))]
    pub redis_wait: u32,

    /// `WAIT`'s timeout in milliseconds. It must stay below --redis-timeout-ms, so that a short
    /// acknowledgement is reported as such rather than as a timeout; the lab's proxy gives a
    /// replica 2000 ms.
    #[arg(long, env = "STATELAB_REDIS_WAIT_TIMEOUT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_wait_timeout_ms: u64,

    /// Connections this replica keeps for waiting writes: `WAIT` holds its connection until the
    /// replicas answer, so each waiting write has one to itself, and at most this many wait at
    /// once; the rest queue for one within --redis-timeout-ms.
    #[arg(long, env = "STATELAB_REDIS_WAIT_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub redis_wait_connections: u64,
}

/// The default single Redis.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `host:port,host:port` → each `host:port`, checked.
fn node_list(flag: &str, text: &str) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() {
        bail!("{flag}: give at least one host:port");
    }
    for node in &nodes {
        let ok = node.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            bail!("{flag}: '{node}' is not host:port");
        }
    }
    Ok(nodes)
}

impl RedisArgs {
    /// The store's configuration; fails on a node list that is not `host:port,...`, or a wait
    /// timeout that would not fit in a call's.
    pub fn config(&self, ttl: Duration) -> anyhow::Result<RedisConfig> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let topology = match (set(&self.redis_sentinel), set(&self.redis_cluster)) {
            (Some(sentinels), _) => Topology::Sentinel {
                sentinels: node_list("--redis-sentinel", &sentinels)?,
                master: self.redis_master_name.clone(),
            },
            (None, Some(nodes)) => Topology::Cluster {
                nodes: node_list("--redis-cluster", &nodes)?,
            },
            (None, None) => Topology::Single {
                url: set(&self.redis_url).unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
            },
        };
        let wait = (self.redis_wait > 0)
            .then(|| -> anyhow::Result<WaitConfig> {
                if self.redis_wait_timeout_ms >= self.redis_timeout_ms {
                    bail!(
                        "--redis-wait-timeout-ms ({}) must be below --redis-timeout-ms ({})",
                        self.redis_wait_timeout_ms,
                        self.redis_timeout_ms
                    );
                }
                Ok(WaitConfig {
                    replicas: self.redis_wait,
                    timeout: Duration::from_millis(self.redis_wait_timeout_ms),
                    connections: usize::try_from(self.redis_wait_connections).unwrap_or(256),
                })
            })
            .transpose()?;
        Ok(RedisConfig {
            topology,
            wait,
            key_prefix: self.redis_prefix.clone(),
            ttl,
            timeout: Duration::from_millis(self.redis_timeout_ms),
        })
    }
}

/// Where the stateless service gets its signing keys.
#[derive(Clone, Debug, clap::Args)]
pub struct JwtArgs {
    /// File holding the HS256 secret (at least 32 bytes; one trailing newline is ignored).
    /// Without it, the secret is read from the environment variable `STATELAB_JWT_SECRET`;
    /// there is deliberately no flag for the secret itself, since argv is visible to `ps`.
    #[arg(long, env = "STATELAB_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// File holding the previous secret: tokens it signed still verify, new ones use the
    /// current secret. For key rotation.
    #[arg(long, env = "STATELAB_JWT_PREVIOUS_SECRET_FILE")]
    pub jwt_previous_secret_file: Option<PathBuf>,

    /// Development mode: without a secret, sign with a fixed, public development key (logged
    /// as a warning). Never use it outside the lab. `STATELAB_DEV=1` (or true/yes/on) enables it.
    #[arg(long, env = "STATELAB_DEV", value_parser = clap::builder::FalseyValueParser::new())]
    pub dev: bool,
}

/// The development key: public by design, used only with `--dev`.
const DEV_SECRET: &[u8] = b"statelab-dev-only-secret-do-not-use-in-production";

impl JwtArgs {
    /// The current key and any previous key. Without a secret this fails unless `--dev`.
    pub fn keys(&self) -> anyhow::Result<(JwtKey, Vec<JwtKey>)> {
        let from_env = std::env::var_os("STATELAB_JWT_SECRET").filter(|s| !s.is_empty());
        let current = match (&self.jwt_secret_file, from_env) {
            (Some(path), _) => read_secret(path)?,
            (None, Some(secret)) => secret.into_encoded_bytes(),
            (None, None) if self.dev => {
                tracing::warn!(
                    "--dev: signing tokens with the public development key; anyone can forge them"
                );
                DEV_SECRET.to_vec()
            }
            (None, None) => bail!(
                "no JWT secret: set STATELAB_JWT_SECRET or --jwt-secret-file (at least 32 bytes), \
                 or pass --dev to use the public development key"
            ),
        };
        let current = JwtKey::from_secret(&current).map_err(anyhow::Error::msg)?;
        let previous = match &self.jwt_previous_secret_file {
            Some(path) => {
                vec![JwtKey::from_secret(&read_secret(path)?).map_err(anyhow::Error::msg)?]
            }
            None => Vec::new(),
        };
        Ok((current, previous))
    }
}

fn read_secret(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)
        .with_context(|| format!("reading the JWT secret from {}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_chat_broker_url_names_none() {
        let args = ChatArgs {
            chat_redis_url: Some(String::new()),
            chat_prefix: "statelab:".into(),
            chat_timeout_ms: 1000,
        };
        let rooms = args.rooms(None).expect("rooms");
        assert_eq!(rooms.kind(), "local");
    }
}

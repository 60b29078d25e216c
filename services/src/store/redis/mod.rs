//! Sessions in Redis: the externalized design.
//!
//! A session is one hash, `{prefix}session:{id}`, with fields `u` (user), `c` (created, ms),
//! `r` (requests) and one `i:{sku}` field per cart line. Every change runs as one Lua script on
//! that one key, so it is atomic in Redis however many replicas race on a session, one round
//! trip, and in one hash slot, as Redis Cluster requires. Every touch re-arms the key's TTL
//! (sliding expiry).
//!
//! Redis is this design's dependency, so its failure is handled deliberately: the store connects
//! lazily and heals itself ([`link`]: one Redis, the primary Sentinel names, or a Cluster), every
//! call is bounded by a timeout, and a failure is a 503 to the client — never a hang — until a
//! writable primary answers again.
//!
//! Redis is meant to run with `maxmemory` and `maxmemory-policy noeviction` (the lab does): once
//! full it answers `OOM` to commands that could grow it, and that is [`StoreError::Full`], a 503
//! `store_full`. A login's script is refused at its first write, so nothing of the new session is
//! written and the session it replaces is not deleted either. A change to a
//! held session still runs, because its script starts with a `PEXPIRE`, which Redis allows when
//! full, and Redis lets a script that has written once finish; what that can add is bounded by
//! the cart limits. An evicting policy would instead make room by deleting live sessions.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use redis::Script;

pub mod link;

use self::link::{Link, Topology, WaitConfig, WriteError};

use crate::metrics::Metrics;
use statelab_formats::Design;

use crate::session::{
    random_id, Applied, Cart, Change, Issued, Session, SessionStore, StoreError, StoreFigures,
    MAX_CART_LINES, MAX_LINE_QTY,
};

/// Fields every session hash has besides its cart lines.
const FIXED_FIELDS: usize = 3;

/// Applies one change. `KEYS[1]` the session; ARGV: ttl ms, op (touch|add|checkout), sku, qty,
/// max lines, max qty per line, fields a hash has besides its lines. Returns nil for no session,
/// `full` when the cart limit would be broken, else `ok`, then field and value after field and
/// value of the hash as it was before a checkout emptied it, all joined by newlines. One string
/// rather than an array: parsing the reply element by element was a fifth of the service's work
/// per request, and no field or value can hold a newline (usernames refuse control characters,
/// SKUs are `[A-Za-z0-9._-]`, the rest are numbers).
const APPLY_LUA: &str = r"
local key = KEYS[1]
if redis.call('PEXPIRE', key, ARGV[1]) == 0 then return false end
if ARGV[2] == 'add' then
  local field = 'i:' .. ARGV[3]
  local have = tonumber(redis.call('HGET', key, field) or '0')
  if have == 0 and redis.call('HLEN', key) - tonumber(ARGV[7]) >= tonumber(ARGV[5]) then return 'full' end
  if have + tonumber(ARGV[4]) > tonumber(ARGV[6]) then return 'full' end
  redis.call('HINCRBY', key, field, ARGV[4])
end
redis.call('HINCRBY', key, 'r', 1)
local all = redis.call('HGETALL', key)
if ARGV[2] == 'checkout' then
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'i:' then redis.call('HDEL', key, all[i]) end
  end
end
table.insert(all, 1, 'ok')
return table.concat(all, '\n')
";

/// Creates a session and, given `KEYS[2]`, deletes the session it replaces: one atomic step. ARGV:
/// ttl ms, user, created ms, requests. A cluster cannot take both keys in one command (two ids,
/// two hash slots: `CROSSSLOT`), so there the replaced session is deleted on its own afterwards.
const CREATE_LUA: &str = r"
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'c', ARGV[3], 'r', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if KEYS[2] then redis.call('DEL', KEYS[2]) end
return 1
";

/// How to reach Redis and how long to wait for it.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    pub topology: Topology,
    /// `--redis-wait`: replicas that must hold each session write before it is acknowledged.
    pub wait: Option<WaitConfig>,
    pub key_prefix: String,
    pub ttl: Duration,
    /// Upper bound on any one Redis call, so a dead Redis costs a request this much at most.
    pub timeout: Duration,
}

/// The Redis session store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    link: Arc<Link>,
    prefix: String,
    ttl_ms: u64,
    timeout: Duration,
    apply: Script,
    create: Script,
    errors: IntCounter,
    /// When a refused write was last logged. Under a flood of logins every one is refused;
    /// a line each would bury the log, so refusals are logged at most every [`FULL_LOG_EVERY`].
    full_logged: Arc<Mutex<Option<Instant>>>,
}

/// The link bounds every call by the timeout itself, and when the primary was the silent one it
/// drops it; the store's own bound is only a backstop, a little later, so that it never fires
/// first and keeps the link from noticing.
const BACKSTOP_MARGIN: Duration = Duration::from_millis(100);

/// Least time between two log lines about Redis refusing writes.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("link", &self.link)
            .field("prefix", &self.prefix)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Builds the store without connecting: a replica starts even while Redis is down, answers
    /// 503 meanwhile, and recovers by itself when Redis comes up. Fails only on a bad address,
    /// or on `--redis-wait` with a cluster.
    pub fn new(config: &RedisConfig, metrics: &Metrics) -> anyhow::Result<Self> {
        let link = Link::new(config.topology.clone(), config.timeout, config.wait)?;
        let errors = IntCounter::new(
            "statelab_store_errors_total",
            "Redis calls that failed or timed out",
        )?;
        metrics.registry().register(Box::new(errors.clone()))?;
        Ok(RedisStore {
            link: Arc::new(link),
            prefix: config.key_prefix.clone(),
            ttl_ms: u64::try_from(config.ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            timeout: config.timeout,
            apply: Script::new(APPLY_LUA),
            create: Script::new(CREATE_LUA),
            errors,
            full_logged: Arc::new(Mutex::new(None)),
        })
    }

    /// The Redis key of a session; `None` for credentials that cannot be ours, so garbage
    /// never reaches Redis.
    pub fn key(&self, credential: &str) -> Option<String> {
        let ok = credential.len() == 32 && credential.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| format!("{}session:{}", self.prefix, credential))
    }

    /// Runs one Redis call under the timeout, counting and describing failures.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, WriteError>>,
    ) -> Result<T, StoreError> {
        let outcome = match tokio::time::timeout(self.timeout + BACKSTOP_MARGIN, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(WriteError::Redis(e))) if is_oom(&e) => {
                self.errors.inc();
                self.log_full(what, &e);
                return Err(StoreError::Full(format!("{what}: {e}")));
            }
            Ok(Err(WriteError::Redis(e))) => format!("{what}: {e}"),
            Ok(Err(WriteError::WaitShort(w))) => format!(
                "{what}: written on the primary, but {} of {} replica(s) acknowledged it within {:?}",
                w.acked, w.wanted, w.timeout
            ),
            Err(_) => format!("{what}: no answer within {:?}", self.timeout),
        };
        self.errors.inc();
        Err(StoreError::Unavailable(outcome))
    }

    fn log_full(&self, what: &str, e: &redis::RedisError) {
        let mut last = self
            .full_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= FULL_LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                call = what, error = %e,
                "redis is at maxmemory and refuses new sessions (logged at most every {FULL_LOG_EVERY:?})"
            );
        }
    }
}

/// Whether Redis refused the call for want of memory (`OOM`), also inside a `MULTI` that it
/// then discarded (`EXECABORT`, whose own message does not say why).
fn is_oom(e: &redis::RedisError) -> bool {
    e.clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, server)| server.code() == "OOM"))
}

/// Rebuilds a session from the script's `field\nvalue\n...` text; `None` if the hash is not
/// one of ours.
fn parse_session(text: &str) -> Option<Session> {
    let mut session = Session {
        username: String::new(),
        created_ms: 0,
        requests: 0,
        cart: Cart::new(),
    };
    let mut have_user = false;
    let mut parts = text.split('\n');
    while let Some(k) = parts.next() {
        let v = parts.next()?;
        match k {
            "u" => {
                session.username = v.to_owned();
                have_user = true;
            }
            "c" => session.created_ms = v.parse().ok()?,
            "r" => session.requests = v.parse().ok()?,
            _ => {
                let sku = k.strip_prefix("i:")?;
                session.cart.insert(sku.to_owned(), v.parse().ok()?);
            }
        }
    }
    have_user.then_some(session)
}

impl SessionStore for RedisStore {
    const DESIGN: Design = Design::Externalized;
    const CREDENTIAL_IN_BODY: bool = false;

    async fn create(&self, username: &str, replaces: Option<&str>) -> Result<Issued, StoreError> {
        let credential = random_id()?;
        let key = self
            .key(&credential)
            .ok_or_else(|| StoreError::Unavailable("bad id".into()))?;
        let session = Session::new(username);
        let old = replaces.and_then(|c| self.key(c));
        let together = old.as_ref().filter(|_| self.link.spans_slots());
        let mut invocation = self.create.key(&key);
        if let Some(old) = together {
            invocation.key(old);
        }
        invocation
            .arg(self.ttl_ms)
            .arg(&session.username)
            .arg(session.created_ms)
            .arg(session.requests);
        let invocation = &invocation;
        self.call(
            "create",
            self.link
                .write(|mut conn| async move { invocation.invoke_async::<()>(&mut conn).await }),
        )
        .await?;
        // In a cluster the old session goes once the new one exists, on its own and in the
        // background, so that the login answers within one call's bound. Should the delete fail,
        // the old session lingers until its TTL; the user already holds the new one.
        if let (Some(old), false) = (old.clone(), self.link.spans_slots()) {
            let store = self.clone();
            tokio::spawn(async move {
                if let Err(e) = store.delete("replace", &old).await {
                    tracing::warn!(error = %e, "the replaced session could not be deleted; it expires by its TTL");
                }
            });
        }
        Ok(Issued {
            credential,
            session,
        })
    }

    async fn apply(
        &self,
        credential: &str,
        change: Change<'_>,
    ) -> Result<Option<Applied>, StoreError> {
        let Some(key) = self.key(credential) else {
            return Ok(None);
        };
        let (op, sku, qty) = match change {
            Change::Touch => ("touch", "", 0),
            Change::AddItem { sku, qty } => ("add", sku, qty),
            Change::Checkout => ("checkout", "", 0),
        };
        let mut invocation = self.apply.key(&key);
        invocation
            .arg(self.ttl_ms)
            .arg(op)
            .arg(sku)
            .arg(qty)
            .arg(MAX_CART_LINES)
            .arg(MAX_LINE_QTY)
            .arg(FIXED_FIELDS);
        let invocation = &invocation;
        let reply: Option<String> = self
            .call(
                "apply",
                self.link
                    .write(|mut conn| async move { invocation.invoke_async(&mut conn).await }),
            )
            .await?;
        let Some(reply) = reply else {
            return Ok(None);
        };
        let (status, rest) = reply.split_once('\n').unwrap_or((reply.as_str(), ""));
        match status {
            "ok" => {
                let mut session = parse_session(rest).ok_or_else(|| {
                    self.errors.inc();
                    StoreError::Unavailable("malformed session hash".into())
                })?;
                let taken = if change == Change::Checkout {
                    std::mem::take(&mut session.cart)
                } else {
                    Cart::new()
                };
                Ok(Some(Applied {
                    session,
                    reissued: None,
                    taken,
                }))
            }
            "full" => Err(StoreError::CartFull),
            _ => {
                self.errors.inc();
                Err(StoreError::Unavailable("unexpected script reply".into()))
            }
        }
    }

    async fn destroy(&self, credential: &str) -> Result<(), StoreError> {
        match self.key(credential) {
            Some(key) => self.delete("destroy", &key).await,
            None => Ok(()),
        }
    }

    /// `ROLE` on the primary (or `CLUSTER INFO`), not `PING`: a demoted primary still answers a
    /// `PING`, and a replica that can only answer 503 must not look healthy to the proxy.
    async fn check(&self) -> Result<(), StoreError> {
        let checked = tokio::time::timeout(self.timeout + BACKSTOP_MARGIN, self.link.check()).await;
        match checked {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => {
                self.errors.inc();
                Err(StoreError::Unavailable(format!("check: {why}")))
            }
            Err(_) => {
                self.errors.inc();
                Err(StoreError::Unavailable(format!(
                    "check: no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// `DBSIZE` after the check: one O(1) command that counts the keys (summed over a cluster's
    /// primaries). The lab's Redis holds nothing but sessions (one key each), so that is the
    /// sessions stored; a Redis shared with other data would count that data too.
    async fn figures(&self) -> Result<StoreFigures, StoreError> {
        self.check().await?;
        let keys = self
            .call(
                "dbsize",
                self.link.read(|mut conn| async move {
                    redis::cmd("DBSIZE").query_async::<u64>(&mut conn).await
                }),
            )
            .await?;
        Ok(StoreFigures {
            store_sessions: Some(keys),
            ..StoreFigures::default()
        })
    }
}

impl RedisStore {
    /// Deletes one session key: a write like any other, so with `--redis-wait` it waits too.
    async fn delete(&self, what: &str, key: &str) -> Result<(), StoreError> {
        self.call(
            what,
            self.link.write(|mut conn| async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut conn)
                    .await
            }),
        )
        .await
    }

    /// The topology the store was started with: `single`, `sentinel` or `cluster`.
    pub fn topology(&self) -> &'static str {
        self.link.topology().name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_hashes_parse_and_reject_foreign_fields() {
        let s = parse_session("u\nalice\nc\n5\nr\n2\ni:apple\n3").expect("parses");
        assert_eq!(
            (s.username.as_str(), s.created_ms, s.requests),
            ("alice", 5, 2)
        );
        assert_eq!(s.cart.get("apple"), Some(&3));

        assert!(
            parse_session("u\na\nzzz\n1").is_none(),
            "a field that is not ours"
        );
        assert!(
            parse_session("u\na\nc").is_none(),
            "a field without a value"
        );
        assert!(parse_session("c\n5").is_none(), "no user");
    }
}

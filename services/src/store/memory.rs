//! Sessions in process memory: the stateful design.
//!
//! A session is an entry in one of [`SHARDS`] mutex-guarded maps, keyed by its 128-bit id. A
//! request holds the shard lock only while it applies its change — no `.await` under the lock —
//! so concurrent requests on one session serialise and never lose a cart update. Idle sessions
//! expire after the TTL: lazily when touched, and in bulk by a sweeper task that stops by itself
//! once the store is dropped.
//!
//! The store holds at most [`MemoryConfig::max_sessions`] sessions. Without a cap, a flood of
//! logins grows the process until the kernel kills it and every user's session with it; with
//! one, only the logins past the cap are refused ([`StoreError::AtCapacity`]) and the sessions
//! held keep working. A slot is reserved before a session is inserted, so concurrent logins on
//! different shards cannot overshoot the cap between them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::time::Instant;

use crate::metrics::Metrics;
use statelab_formats::Design;

use crate::session::{
    random_id, Applied, Change, Issued, Session, SessionStore, StoreError, StoreFigures,
};

/// Number of independent lock domains; enough that two cores rarely contend.
const SHARDS: usize = 16;

type Id = [u8; 16];

/// Hashes a session id by taking 8 of its bytes. Ids come from the OS RNG, so they are already
/// uniform: SipHash's protection against chosen keys buys nothing here (clients can only look
/// ids up, never choose the ones inserted) and costs a measurable share of each request.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 16]` hashes as a length prefix then the bytes; fold them in 8 at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

type Shard = HashMap<Id, Entry, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
struct Entry {
    session: Session,
    last_seen: Instant,
}

#[derive(Debug)]
struct Inner {
    shards: Vec<Mutex<Shard>>,
    ttl: Duration,
    max_sessions: usize,
    /// Slots taken: sessions held plus logins between reserving a slot and inserting. The
    /// gauge mirrors the sessions held; this is the number the cap is checked against.
    taken: AtomicUsize,
    /// Whether reaching the cap has been logged since the store last had room to spare.
    warned_full: AtomicBool,
    live: IntGauge,
}

/// How many sessions the store holds, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Idle time after which a session expires.
    pub ttl: Duration,
    /// Most sessions held at once; a login past it is refused with [`StoreError::AtCapacity`].
    pub max_sessions: usize,
}

/// In-memory session store. Cheap to clone; clones share the sessions.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl MemoryStore {
    /// Creates the store and starts its sweeper on the current Tokio runtime.
    pub fn new(config: MemoryConfig, metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let live = IntGauge::new(
            "statelab_sessions_live",
            "Sessions held in this process's memory",
        )?;
        metrics.registry().register(Box::new(live.clone()))?;
        let max = IntGauge::new(
            "statelab_sessions_max",
            "Most sessions this process holds; logins past it get 503 session_capacity",
        )?;
        max.set(i64::try_from(config.max_sessions).unwrap_or(i64::MAX));
        metrics.registry().register(Box::new(max))?;
        let inner = Arc::new(Inner {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            ttl: config.ttl,
            max_sessions: config.max_sessions,
            taken: AtomicUsize::new(0),
            warned_full: AtomicBool::new(false),
            live,
        });
        tokio::spawn(sweep(Arc::downgrade(&inner), sweep_interval(config.ttl)));
        Ok(MemoryStore { inner })
    }

    /// Sessions currently held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session now; returns how many.
    pub fn sweep_now(&self) -> usize {
        self.inner.sweep(Instant::now())
    }
}

impl Inner {
    fn shard(&self, id: &Id) -> MutexGuard<'_, Shard> {
        lock(&self.shards[usize::from(id[0]) % SHARDS])
    }

    fn sweep(&self, now: Instant) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, e| now.duration_since(e.last_seen) < self.ttl);
            let gone = before - map.len();
            drop(map);
            self.release(gone);
            removed += gone;
        }
        removed
    }

    /// Removes a session and frees its slot.
    fn remove(&self, id: &Id) {
        let removed = self.shard(id).remove(id).is_some();
        if removed {
            self.release(1);
        }
    }

    /// Takes one slot for a new session, or refuses when every slot is taken.
    fn reserve(&self) -> Result<(), StoreError> {
        let max = self.max_sessions;
        let reserved = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if reserved.is_err() {
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_sessions = max,
                    "session capacity reached: refusing new logins until sessions end"
                );
            }
            return Err(StoreError::AtCapacity(max));
        }
        self.live.inc();
        Ok(())
    }

    /// Frees `n` slots of sessions that are gone.
    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.taken.fetch_sub(n, Ordering::AcqRel);
        self.live.sub(i64::try_from(n).unwrap_or(i64::MAX));
        // Log the next time the cap is reached only once there has been real room again, so a
        // store hovering at its cap logs once, not once per login.
        if before.saturating_sub(n) < self.max_sessions - self.max_sessions / 10 {
            self.warned_full.store(false, Ordering::Relaxed);
        }
    }
}

/// Locks a shard, recovering from poisoning: a panic elsewhere must not take every session
/// in the shard down with it, and the maps hold no invariant a half-done update could break.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

async fn sweep(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let removed = inner.sweep(Instant::now());
        if removed > 0 {
            tracing::debug!(removed, "swept idle sessions");
        }
    }
}

fn parse_id(credential: &str) -> Option<Id> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes: &[u8; 32] = credential.as_bytes().try_into().ok()?;
    let mut id = [0u8; 16];
    for (out, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(id)
}

impl SessionStore for MemoryStore {
    const DESIGN: Design = Design::Stateful;
    const CREDENTIAL_IN_BODY: bool = false;

    async fn create(&self, username: &str, replaces: Option<&str>) -> Result<Issued, StoreError> {
        let credential = random_id()?;
        let id = parse_id(&credential).ok_or_else(|| StoreError::Unavailable("bad id".into()))?;
        // A login that replaces a session this store holds takes over its slot: re-logging in
        // never fails for want of room, and no other login can take the slot in between.
        let old = replaces.and_then(parse_id);
        let taken_over = old.is_some_and(|old| self.inner.shard(&old).remove(&old).is_some());
        if !taken_over {
            self.inner.reserve()?;
        }
        let session = Session::new(username);
        let entry = Entry {
            session: session.clone(),
            last_seen: Instant::now(),
        };
        if self.inner.shard(&id).insert(id, entry).is_some() {
            // A 128-bit random id collided: one session replaced another, one slot is free.
            self.inner.release(1);
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
        let Some(id) = parse_id(credential) else {
            return Ok(None);
        };
        let now = Instant::now();
        let mut shard = self.inner.shard(&id);
        let Some(entry) = shard.get_mut(&id) else {
            return Ok(None);
        };
        if now.duration_since(entry.last_seen) >= self.inner.ttl {
            shard.remove(&id);
            drop(shard);
            self.inner.release(1);
            return Ok(None);
        }
        let taken = entry.session.apply(&change)?;
        entry.last_seen = now;
        Ok(Some(Applied {
            session: entry.session.clone(),
            reissued: None,
            taken,
        }))
    }

    async fn destroy(&self, credential: &str) -> Result<(), StoreError> {
        if let Some(id) = parse_id(credential) {
            self.inner.remove(&id);
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn figures(&self) -> Result<StoreFigures, StoreError> {
        // The gauge, not `len()`: it is kept current without taking the shards' locks.
        Ok(StoreFigures {
            sessions_held: Some(self.inner.live.get().max(0) as u64),
            ..StoreFigures::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ttl: Duration) -> MemoryStore {
        capped(ttl, 1_000)
    }

    fn capped(ttl: Duration, max_sessions: usize) -> MemoryStore {
        let metrics = Metrics::new("stateful", "test").expect("metrics");
        MemoryStore::new(MemoryConfig { ttl, max_sessions }, &metrics).expect("store")
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_expire_and_activity_slides_the_ttl() {
        let s = store(Duration::from_secs(60));
        let a = s.create("alice", None).await.expect("create").credential;
        let b = s.create("bob", None).await.expect("create").credential;

        tokio::time::advance(Duration::from_secs(45)).await;
        assert!(s.apply(&a, Change::Touch).await.expect("apply").is_some());

        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(
            s.apply(&b, Change::Touch).await.expect("apply").is_none(),
            "bob idled 75 s"
        );
        assert!(
            s.apply(&a, Change::Touch).await.expect("apply").is_some(),
            "alice idled 30 s"
        );

        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(s.sweep_now(), 1);
        assert!(s.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_runs_by_itself() {
        let s = store(Duration::from_secs(4));
        s.create("alice", None).await.expect("create");
        assert_eq!(s.len(), 1);
        // Advance in steps so the sweeper task gets to run between them.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
        }
        assert!(s.is_empty());
        assert_eq!(s.inner.live.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_refuses_new_sessions_and_keeps_the_held_ones() {
        let s = capped(Duration::from_secs(60), 2);
        let a = s.create("alice", None).await.expect("create").credential;
        let b = s.create("bob", None).await.expect("create").credential;
        assert!(matches!(
            s.create("carol", None).await,
            Err(StoreError::AtCapacity(2))
        ));
        assert_eq!(s.len(), 2, "a refused login inserts nothing");
        for held in [&a, &b] {
            let applied = s.apply(held, Change::Touch).await.expect("apply");
            assert!(applied.is_some(), "a held session keeps working at the cap");
        }

        // Re-logging in replaces a held session in its own slot.
        let a2 = s
            .create("alice", Some(&a))
            .await
            .expect("re-login at the cap");
        assert!(s.apply(&a, Change::Touch).await.expect("apply").is_none());
        assert_eq!(s.len(), 2);

        // Logout, lazy expiry and the sweep all give slots back.
        s.destroy(&a2.credential).await.expect("destroy");
        let c = s.create("carol", None).await.expect("room after a logout");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(s
            .apply(&c.credential, Change::Touch)
            .await
            .expect("apply")
            .is_none());
        s.create("dave", None)
            .await
            .expect("room after a lazy expiry");
        assert_eq!(s.sweep_now(), 1, "bob expired");
        s.create("erin", None).await.expect("room after a sweep");
        assert!(s.create("frank", None).await.is_err(), "full again");
        assert_eq!(s.inner.live.get(), 2);
        assert_eq!(s.inner.taken.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_logins_never_overshoot_the_cap() {
        let s = capped(Duration::from_secs(60), 100);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..400 {
            let s = s.clone();
            tasks.spawn(async move { s.create(&format!("u{i}"), None).await.is_ok() });
        }
        let mut admitted = 0;
        while let Some(ok) = tasks.join_next().await {
            admitted += usize::from(ok.expect("task"));
        }
        assert_eq!(admitted, 100);
        assert_eq!(s.len(), 100);
    }

    #[test]
    fn malformed_ids_are_unknown_not_errors() {
        for bad in [
            "",
            "zz",
            &"g".repeat(32),
            &"a".repeat(31),
            &"a".repeat(33),
            "é".repeat(16).as_str(),
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
        assert!(parse_id(&"0f".repeat(16)).is_some());
    }
}

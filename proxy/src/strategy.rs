//! Routing strategies as types.
//!
//! [`Strategy`] is the name a pool is configured with and can be switched to at runtime. Behind
//! each name is a type implementing [`Route`] (read the request's key, pick, pin):
//! - [`RoundRobin`] wraps pingora's `RoundRobin` selection;
//! - [`IpHash`] wraps pingora's `Consistent` (Ketama) ring, so adding a replica moves only
//!   about 1/(N+1) of the clients;
//! - [`Cookie`] is sticky: [`CookieAffinity`] names replicas by opaque tokens and pins clients
//!   that present one; new clients are placed by round-robin and pinned where they land.
//!
//! [`Routes`] holds one of each per pool. Strategies never decide health: they offer replicas in
//! their own order through one selection walk (`walk`) and ask the caller's `accept` closure, so
//! a down, ejected or draining replica is skipped without rebuilding anything. Replicas are named
//! by [`ReplicaId`]; a request's tried replicas are a [`Tried`] set, which caps a pool at
//! [`MAX_REPLICAS_PER_POOL`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent};
use pingora::lb::Backend;
use sha2::{Digest, Sha256};

pub use statelab_formats::{Strategy, UnknownStrategy};

/// Compact form of a [`Strategy`] for storing in an atomic.
pub(crate) fn strategy_to_u8(s: Strategy) -> u8 {
    match s {
        Strategy::Cookie => 0,
        Strategy::IpHash => 1,
        Strategy::IpModulo => 2,
        Strategy::RoundRobin => 3,
    }
}

pub(crate) fn strategy_from_u8(v: u8) -> Strategy {
    match v {
        0 => Strategy::Cookie,
        1 => Strategy::IpHash,
        2 => Strategy::IpModulo,
        _ => Strategy::RoundRobin,
    }
}

/// A replica's place in its pool: what selection, the tried set and the in-flight guard name it
/// by. It indexes the pool's replica list and is stored in pingora's `Backend::ext`, so a selection
/// result maps back to the replica without a lookup by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId(usize);

impl ReplicaId {
    pub fn new(index: usize) -> Self {
        ReplicaId(index)
    }

    pub fn index(self) -> usize {
        self.0
    }
}

/// The most replicas one pool may have; the configuration and the admin API refuse more.
pub use statelab_formats::config::MAX_REPLICAS_PER_POOL;
// [`Tried`] is one 64-bit word, a bit per replica, so that a request's retry bookkeeping costs no
// allocation.
const _: () = assert!(MAX_REPLICAS_PER_POOL <= u64::BITS as usize);

/// The replicas one request has tried already and must not be sent to again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    pub fn insert(&mut self, r: ReplicaId) {
        self.0 |= Self::bit(r);
    }

    pub fn contains(self, r: ReplicaId) -> bool {
        self.0 & Self::bit(r) != 0
    }

    /// Every replica of an `n`-replica pool is in the set.
    fn covers(self, n: usize) -> bool {
        let all = if n >= MAX_REPLICAS_PER_POOL {
            u64::MAX
        } else {
            (1u64 << n) - 1
        };
        self.0 & all == all
    }

    fn bit(r: ReplicaId) -> u64 {
        // Ids beyond the cap cannot exist (the configuration refuses such pools); were one to,
        // it would share the last bit rather than overflow.
        1u64 << r.0.min(MAX_REPLICAS_PER_POOL - 1)
    }
}

/// Which kind of request a replica is asked to take: a client pinned to it may still use a
/// draining replica, a new client may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Pinned,
    New,
}

/// What a request is placed by, read once when it arrives: the replica its affinity cookie names
/// (cookie strategy) or its client address as hash key (ip-hash). Kept inline: no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteKey {
    pub pinned: Option<ReplicaId>,
    hash: [u8; 16],
    hash_len: u8,
}

impl RouteKey {
    /// The key of a client pinned to `r` (what a valid affinity cookie yields).
    pub fn pinned_to(r: ReplicaId) -> Self {
        RouteKey {
            pinned: Some(r),
            ..RouteKey::default()
        }
    }

    fn hash_key(&self) -> &[u8] {
        &self.hash[..usize::from(self.hash_len)]
    }

    fn for_client(ip: &IpAddr) -> Self {
        let mut key = RouteKey::default();
        key.hash_len = key_bytes(ip, &mut key.hash) as u8;
        key
    }
}

/// Who sent a request, as far as the proxy can tell.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted: &'a [IpNet],
}

/// A routing strategy: reads what it places a request by, picks its replica, and pins the client
/// to it when the strategy is sticky. The proxy's filters call these three and nothing
/// strategy-specific.
pub trait Route: Send + Sync + fmt::Debug {
    /// What this strategy places the request by (nothing, for round-robin).
    fn key(&self, req: &RequestHeader, client: Client<'_>) -> RouteKey;

    /// The first replica, in this strategy's order for `key`, that `accept` takes. Every replica
    /// is offered at most once, and every one is offered before `None` (see `walk`).
    fn pick(
        &self,
        key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId>;

    /// A `Set-Cookie` value pinning the client to `chosen`, when this strategy pins and the
    /// client is not pinned there already.
    fn pin(&self, _key: &RouteKey, _chosen: ReplicaId) -> Option<&HeaderValue> {
        None
    }
}

/// Where a replica sits on the selection rings: an address derived from its name alone. pingora's
/// Ketama ring hashes the backend's address; keyed by the name instead, a replica keeps its place
/// wherever it listens (an ephemeral test port, a container's new address), so which clients move
/// when a pool grows depends only on the names. Nothing connects to it: requests go to the
/// replica's real address through its own peer.
fn ring_addr(name: &str) -> std::net::SocketAddr {
    let digest = Sha256::digest(name.as_bytes());
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&digest[..16]);
    std::net::SocketAddr::from((std::net::Ipv6Addr::from(ip), 0))
}

fn backends_for(names: &[String]) -> BTreeSet<Backend> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut b = Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(ring_addr(name)),
                weight: 1,
                ext: Default::default(),
            };
            b.ext.insert(ReplicaId(i));
            b
        })
        .collect()
}

/// The one selection walk. It follows pingora's order for the key, offering each replica at most
/// once, and stops early once all `n` were offered; pingora's fallback order is pseudo-random and
/// may repeat or miss some, so the walk then offers the ones not yet seen in index order. The
/// guarantee: every replica is offered to `accept` exactly once unless one is accepted first, so
/// a usable replica is found whenever one exists, and none is tried twice.
fn walk<I: BackendIter>(
    mut iter: I,
    n: usize,
    accept: &mut dyn FnMut(ReplicaId) -> bool,
) -> Option<ReplicaId> {
    let mut seen = Tried::default();
    for _ in 0..(4 * n + 4) {
        let Some(b) = iter.next() else { break };
        let Some(&id) = b.ext.get::<ReplicaId>() else {
            continue;
        };
        if id.0 >= n || seen.contains(id) {
            continue;
        }
        seen.insert(id);
        if accept(id) {
            return Some(id);
        }
        if seen.covers(n) {
            return None;
        }
    }
    (0..n)
        .map(ReplicaId)
        .find(|&id| !seen.contains(id) && accept(id))
}

/// A pingora selection algorithm over a pool's replicas.
pub struct Picker<S> {
    inner: Arc<S>,
    n: usize,
}

impl<S> fmt::Debug for Picker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("algorithm", &std::any::type_name::<S>())
            .field("replicas", &self.n)
            .finish()
    }
}

impl<S> Picker<S>
where
    S: BackendSelection + Send + Sync,
    S::Iter: BackendIter,
{
    /// The selection over replicas named `names`, in pool order.
    pub fn new(names: &[String]) -> Self {
        Self {
            inner: Arc::new(S::build(&backends_for(names))),
            n: names.len(),
        }
    }

    fn pick(&self, key: &[u8], accept: &mut dyn FnMut(ReplicaId) -> bool) -> Option<ReplicaId> {
        walk(self.inner.iter(key), self.n, accept)
    }
}

/// Even spread over the replicas that take new clients (pingora's `RoundRobin`).
pub type RoundRobin = Picker<pingora::lb::selection::RoundRobin>;

/// Consistent hashing on the client address (pingora's Ketama `Consistent`): a client keeps its
/// replica while that replica is usable, and adding a replica moves only about 1/(N+1) of them.
pub type IpHash = Picker<Consistent>;

impl Route for RoundRobin {
    fn key(&self, _req: &RequestHeader, _client: Client<'_>) -> RouteKey {
        RouteKey::default()
    }

    fn pick(
        &self,
        _key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        Picker::pick(self, b"", &mut |id| accept(id, Admission::New))
    }
}

impl IpHash {
    /// The client address as hash key: the peer, or the client a trusted peer names.
    fn key_of(req: &RequestHeader, client: Client<'_>) -> RouteKey {
        match client.peer {
            Some(peer) => RouteKey::for_client(&client_key(
                peer,
                req.headers.get_all("x-forwarded-for").iter(),
                client.trusted,
            )),
            None => RouteKey::default(),
        }
    }
}

impl Route for IpHash {
    fn key(&self, req: &RequestHeader, client: Client<'_>) -> RouteKey {
        IpHash::key_of(req, client)
    }

    fn pick(
        &self,
        key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        Picker::pick(self, key.hash_key(), &mut |id| accept(id, Admission::New))
    }
}

/// The naive hash: the client key's hash modulo the number of replicas, then the next ones in
/// order when that one cannot take it. Growing a pool from N to N+1 moves about N/(N+1) of the
/// clients; it exists to be compared with [`IpHash`].
#[derive(Debug)]
pub struct IpModulo {
    n: usize,
}

impl Route for IpModulo {
    fn key(&self, req: &RequestHeader, client: Client<'_>) -> RouteKey {
        IpHash::key_of(req, client)
    }

    fn pick(
        &self,
        key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        if self.n == 0 {
            return None;
        }
        let digest = Sha256::digest(key.hash_key());
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        let start = (u64::from_le_bytes(word) % self.n as u64) as usize;
        (0..self.n)
            .map(|k| ReplicaId((start + k) % self.n))
            .find(|&id| accept(id, Admission::New))
    }
}

/// Sticky sessions: a client whose affinity cookie names a replica that can still serve it goes
/// there (a draining one included); any other client is placed by round-robin and pinned to
/// where it landed.
#[derive(Debug)]
pub struct Cookie {
    affinity: CookieAffinity,
    spread: RoundRobin,
}

impl Cookie {
    pub fn new(affinity: CookieAffinity, spread: RoundRobin) -> Self {
        Cookie { affinity, spread }
    }
}

impl Route for Cookie {
    fn key(&self, req: &RequestHeader, _client: Client<'_>) -> RouteKey {
        match self.affinity.pinned(req.headers.get_all("cookie").iter()) {
            Some(r) => RouteKey::pinned_to(r),
            None => RouteKey::default(),
        }
    }

    fn pick(
        &self,
        key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        if let Some(pinned) = key.pinned {
            if accept(pinned, Admission::Pinned) {
                return Some(pinned);
            }
        }
        // The pinned replica was offered already; the walk may offer it again as a new client's,
        // where a draining one is refused.
        Route::pick(&self.spread, key, accept)
    }

    fn pin(&self, key: &RouteKey, chosen: ReplicaId) -> Option<&HeaderValue> {
        if key.pinned == Some(chosen) {
            return None;
        }
        self.affinity.set_cookie(chosen)
    }
}

/// A membership's strategies, built once per membership; the pool's current [`Strategy`] says
/// which one routes.
#[derive(Debug)]
pub struct Routes {
    cookie: Cookie,
    ip_hash: IpHash,
    ip_modulo: IpModulo,
    round_robin: RoundRobin,
}

impl Routes {
    /// The strategies over replicas named `names`, in pool order.
    pub fn new(secret: &[u8], pool: &str, names: &[String]) -> Self {
        Routes {
            cookie: Cookie::new(
                CookieAffinity::new(secret, pool, names),
                RoundRobin::new(names),
            ),
            ip_hash: IpHash::new(names),
            ip_modulo: IpModulo { n: names.len() },
            round_robin: RoundRobin::new(names),
        }
    }

    pub fn get(&self, strategy: Strategy) -> &dyn Route {
        match strategy {
            Strategy::Cookie => &self.cookie,
            Strategy::IpHash => &self.ip_hash,
            Strategy::IpModulo => &self.ip_modulo,
            Strategy::RoundRobin => &self.round_robin,
        }
    }

    /// The affinity cookie's name for this pool.
    pub fn cookie_name(&self) -> &str {
        self.cookie.affinity.cookie_name()
    }
}

/// The sticky layer: an opaque token per replica, and the `Set-Cookie` header that pins to it.
///
/// Tokens are a keyed SHA-256 of the pool and replica name, truncated: they reveal neither the
/// address nor the name, and a value that matches no token is treated as no cookie at all.
#[derive(Debug)]
pub struct CookieAffinity {
    name: String,
    tokens: Vec<String>,
    set_cookie: Vec<HeaderValue>,
}

impl CookieAffinity {
    /// Cookie name prefix; the pool name is appended so pools never overwrite each other's pin.
    pub const COOKIE_PREFIX: &'static str = "statelab_affinity_";

    pub fn new(secret: &[u8], pool: &str, replicas: &[String]) -> Self {
        let name = format!("{}{pool}", Self::COOKIE_PREFIX);
        let tokens: Vec<String> = replicas
            .iter()
            .map(|r| {
                let mut h = Sha256::new();
                h.update(secret);
                h.update(pool.as_bytes());
                h.update([0u8]);
                h.update(r.as_bytes());
                h.finalize()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        let set_cookie = tokens
            .iter()
            .map(|t| {
                HeaderValue::from_str(&format!("{name}={t}; Path=/; HttpOnly; SameSite=Lax"))
                    .unwrap_or_else(|_| HeaderValue::from_static(""))
            })
            .collect();
        Self {
            name,
            tokens,
            set_cookie,
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The replica a request's `Cookie` headers pin it to, if any token is valid.
    pub fn pinned<'a>(
        &self,
        cookie_headers: impl Iterator<Item = &'a HeaderValue>,
    ) -> Option<ReplicaId> {
        for header in cookie_headers {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k != self.name {
                    continue;
                }
                if let Some(i) = self.tokens.iter().position(|t| t == v.trim_matches('"')) {
                    return Some(ReplicaId(i));
                }
            }
        }
        None
    }

    /// The `Set-Cookie` value pinning to a replica.
    pub fn set_cookie(&self, r: ReplicaId) -> Option<&HeaderValue> {
        self.set_cookie.get(r.0)
    }
}

/// The ip-hash key of a request: the peer address, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not itself trusted (walking from the right, as
/// each proxy appends; the left part of the header is client-supplied and cannot be trusted).
/// `xff` is every `X-Forwarded-For` line in order: several lines form one list.
pub fn client_key<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &[IpNet],
) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let mut last_trusted = peer;
    for line in xff.rev() {
        let Ok(text) = line.to_str() else {
            return last_trusted;
        };
        for part in text.rsplit(',') {
            let Ok(ip) = part.trim().parse::<IpAddr>() else {
                // Garbage in the chain: stop at the last address we could vouch for.
                return last_trusted;
            };
            if !trusted.iter().any(|n| n.contains(&ip)) {
                return ip;
            }
            last_trusted = ip;
        }
    }
    last_trusted
}

/// Bytes of an address used as the hash key (no allocation).
pub fn key_bytes(ip: &IpAddr, buf: &mut [u8; 16]) -> usize {
    match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf.copy_from_slice(&v6.octets());
            16
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("stateful-{i}")).collect()
    }

    fn first<S>(p: &Picker<S>, key: &[u8]) -> Option<usize>
    where
        S: BackendSelection + Send + Sync,
        S::Iter: BackendIter,
    {
        p.pick(key, &mut |_| true).map(ReplicaId::index)
    }

    /// A selection order that repeats some replicas and never yields others, like pingora's
    /// pseudo-random fallbacks can.
    struct Scripted(Vec<Backend>);

    impl BackendIter for Scripted {
        fn next(&mut self) -> Option<&Backend> {
            if self.0.is_empty() {
                return None;
            }
            // Yield from the back, keeping a copy around so the order repeats.
            let b = self.0.remove(0);
            self.0.push(b);
            self.0.last()
        }
    }

    #[test]
    fn the_walk_offers_every_replica_exactly_once() {
        let backends = backends_for(&names(5));
        let backend = |i: usize| {
            backends
                .iter()
                .find(|b| b.ext.get::<ReplicaId>() == Some(&ReplicaId(i)))
                .cloned()
                .expect("a backend per replica")
        };
        // pingora yields replicas 3, 3, 1, 3, 3, 1, ... and never 0, 2 or 4.
        let order = vec![backend(3), backend(3), backend(1)];
        let mut offered = Vec::new();
        let none = walk(Scripted(order.clone()), 5, &mut |id| {
            offered.push(id.index());
            false
        });
        assert_eq!(none, None);
        assert_eq!(offered, [3, 1, 0, 2, 4], "each once, pingora's order first");
        // The first acceptable one in that order wins.
        let mut offered = Vec::new();
        let got = walk(Scripted(order), 5, &mut |id| {
            offered.push(id.index());
            id.index() == 2
        });
        assert_eq!(got, Some(ReplicaId(2)));
        assert_eq!(offered, [3, 1, 0, 2]);
    }

    #[test]
    fn tried_holds_every_id_up_to_the_cap() {
        let mut t = Tried::default();
        for i in [0, 5, MAX_REPLICAS_PER_POOL - 1] {
            assert!(!t.contains(ReplicaId(i)));
            t.insert(ReplicaId(i));
            assert!(t.contains(ReplicaId(i)));
        }
        assert!(!t.contains(ReplicaId(1)));
        assert!(!t.covers(2));
        t.insert(ReplicaId(1));
        assert!(t.covers(2));
    }

    #[test]
    fn strategy_names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
            assert_eq!(strategy_from_u8(strategy_to_u8(s)), s);
        }
        assert!("sticky".parse::<Strategy>().is_err());
    }

    #[test]
    fn round_robin_cycles_and_skips_rejected() {
        let rr = RoundRobin::new(&names(3));
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            counts[first(&rr, b"").expect("a replica")] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        // With replica 1 refused, the other two share the load roughly evenly.
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            let id = rr.pick(b"", &mut |id| id.index() != 1).expect("a replica");
            counts[id.index()] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[0].abs_diff(counts[2]) < 300, "{counts:?}");
        // Nothing acceptable: None, not a panic.
        assert_eq!(rr.pick(b"", &mut |_| false), None);
    }

    #[test]
    fn hash_is_stable_and_falls_over_to_one_other_replica() {
        let h = IpHash::new(&names(3));
        for k in 0..100u32 {
            let key = k.to_be_bytes();
            let a = first(&h, &key).expect("a replica");
            assert_eq!(Some(a), first(&h, &key));
            let b = h.pick(&key, &mut |id| id.index() != a);
            assert!(b.is_some() && b != Some(ReplicaId(a)));
            assert_eq!(
                b,
                h.pick(&key, &mut |id| id.index() != a),
                "fallback must be stable too"
            );
        }
        assert_eq!(h.pick(b"x", &mut |_| false), None);
    }

    /// Adding a replica to N moves at most about 1/(N+1) of the keys (checked over 2000 keys).
    #[test]
    fn ip_hash_remap_fraction_on_adding_a_replica() {
        for n in [2usize, 3, 5] {
            let before = IpHash::new(&names(n));
            let after = IpHash::new(&names(n + 1));
            let keys = 2000u32;
            let mut moved = 0;
            for k in 0..keys {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k * 7919));
                let key = RouteKey::for_client(&ip);
                let a = first(&before, key.hash_key());
                let b = first(&after, key.hash_key());
                if a != b {
                    // A key may only move to the new replica.
                    assert_eq!(b, Some(n), "key moved between old replicas");
                    moved += 1;
                }
            }
            let frac = moved as f64 / keys as f64;
            let bound = 1.0 / (n as f64 + 1.0) + 0.05;
            assert!(frac <= bound, "n={n}: moved {frac:.3} > {bound:.3}");
            assert!(frac > 0.0, "the new replica must take some keys");
        }
    }

    fn request(cookie: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/me", None).expect("a request header");
        if let Some(c) = cookie {
            req.insert_header("cookie", c).expect("a cookie header");
        }
        req
    }

    fn stateful_pool() -> Vec<String> {
        names(3)
    }

    #[test]
    fn cookie_pins_new_clients_and_keeps_pinned_ones() {
        let routes = Routes::new(b"k", "stateful", &stateful_pool());
        let cookie = routes.get(Strategy::Cookie);
        let client = Client {
            peer: None,
            trusted: &[],
        };
        // A new client: placed by round-robin, and pinned where it landed.
        let key = cookie.key(&request(None), client);
        assert_eq!(key.pinned, None);
        let landed = cookie
            .pick(&key, &mut |_, how| how == Admission::New)
            .expect("a replica");
        let set = cookie
            .pin(&key, landed)
            .and_then(|v| v.to_str().ok())
            .expect("a Set-Cookie for a new client")
            .to_string();
        let token = set.split(';').next().expect("name=value");
        // Back with that cookie: pinned, offered as such, and not pinned again.
        let key = cookie.key(&request(Some(token)), client);
        assert_eq!(key.pinned, Some(landed));
        let mut offers = Vec::new();
        let again = cookie.pick(&key, &mut |id, how| {
            offers.push((id, how));
            true
        });
        assert_eq!(again, Some(landed));
        assert_eq!(offers, [(landed, Admission::Pinned)]);
        assert_eq!(cookie.pin(&key, landed), None);
        // Its replica refuses (down): another one, as a new client, pinned anew.
        let moved = cookie
            .pick(&key, &mut |id, _| id != landed)
            .expect("another replica");
        assert_ne!(moved, landed);
        assert!(cookie.pin(&key, moved).is_some());
        // Round-robin and ip-hash never pin.
        for s in [Strategy::RoundRobin, Strategy::IpHash] {
            assert_eq!(routes.get(s).pin(&key, moved), None, "{s}");
        }
    }

    /// Growing 3 -> 4 moves about a quarter of the clients under ip-hash and about three quarters
    /// under ip-modulo (2000 client addresses).
    #[test]
    fn modulo_moves_most_clients_where_the_ring_moves_few() {
        let (three, four) = (names(3), names(4));
        let moved = |strategy: Strategy| {
            let before = Routes::new(b"k", "stateful", &three);
            let after = Routes::new(b"k", "stateful", &four);
            let mut moved = 0;
            for k in 0..2000u32 {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k * 7919));
                let key = RouteKey::for_client(&ip);
                let pick = |r: &Routes| r.get(strategy).pick(&key, &mut |_, _| true);
                if pick(&before) != pick(&after) {
                    moved += 1;
                }
            }
            f64::from(moved) / 2000.0
        };
        let ring = moved(Strategy::IpHash);
        let modulo = moved(Strategy::IpModulo);
        assert!(ring <= 0.30, "ip-hash moved {ring:.3}");
        assert!(modulo >= 0.6, "ip-modulo moved {modulo:.3}");
    }

    #[test]
    fn ip_hash_keys_by_the_client() {
        let routes = Routes::new(b"k", "stateful", &stateful_pool());
        let hash = routes.get(Strategy::IpHash);
        let key_of = |ip: [u8; 4]| {
            hash.key(
                &request(None),
                Client {
                    peer: Some(IpAddr::from(ip)),
                    trusted: &[],
                },
            )
        };
        let a = key_of([127, 0, 0, 9]);
        assert_eq!(a, key_of([127, 0, 0, 9]));
        assert_ne!(a, key_of([127, 0, 0, 10]));
        let pick = |k: &RouteKey| hash.pick(k, &mut |_, how| how == Admission::New);
        assert_eq!(pick(&a), pick(&a));
    }

    #[test]
    fn affinity_tokens_are_opaque_and_validated() {
        let names: Vec<String> = ["stateful-1", "stateful-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = CookieAffinity::new(b"k1", "stateful", &names);
        let sc = a
            .set_cookie(ReplicaId(1))
            .and_then(|v| v.to_str().ok())
            .expect("a cookie for replica 1");
        assert!(sc.starts_with("statelab_affinity_stateful="));
        assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Lax") && sc.contains("Path=/"));
        assert!(!sc.contains("stateful-2") && !sc.contains("127.0.0.1"));
        let token = sc.split(';').next().expect("name=value").to_string();
        let hv = |s: &str| HeaderValue::from_str(s).expect("a valid header value");
        let cookie = hv(&format!("statelab_session=abc; {token}"));
        assert_eq!(a.pinned([&cookie].into_iter()), Some(ReplicaId(1)));
        // Forged or garbage values are absent.
        for bad in [
            "statelab_affinity_stateful=stateful-2",
            "statelab_affinity_stateful=00000000000000000000000000000000",
            "statelab_affinity_stateful=",
            "statelab_affinity_stateful",
            "other=1",
        ] {
            assert_eq!(a.pinned([&hv(bad)].into_iter()), None, "{bad}");
        }
        // Another secret gives other tokens: a cookie from elsewhere does not pin.
        let b = CookieAffinity::new(b"k2", "stateful", &names);
        assert_eq!(b.pinned([&cookie].into_iter()), None);
    }

    #[test]
    fn client_key_trusts_only_configured_proxies() {
        let trusted: Vec<IpNet> = vec!["172.16.0.0/12".parse().expect("a CIDR")];
        let gw: IpAddr = [172, 17, 0, 1].into();
        let direct: IpAddr = [127, 0, 0, 5].into();
        let hv = |s: &'static str| HeaderValue::from_static(s);
        let xff = hv("203.0.113.9");
        assert_eq!(
            client_key(direct, [&xff].into_iter(), &trusted),
            direct,
            "untrusted peer: XFF ignored"
        );
        assert_eq!(
            client_key(gw, [&xff].into_iter(), &trusted),
            IpAddr::from([203, 0, 113, 9])
        );
        assert_eq!(client_key(gw, std::iter::empty(), &trusted), gw);
        let chain = hv("198.51.100.1, 203.0.113.9, 172.18.0.2");
        assert_eq!(
            client_key(gw, [&chain].into_iter(), &trusted),
            IpAddr::from([203, 0, 113, 9])
        );
        let garbage = hv("nonsense");
        assert_eq!(client_key(gw, [&garbage].into_iter(), &trusted), gw);
        assert_eq!(client_key(gw, [&xff].into_iter(), &[]), gw);
        // Several header lines are one list, in order: the last line holds the nearest hops.
        let (first, second) = (hv("198.51.100.1, 203.0.113.9"), hv("172.18.0.2"));
        assert_eq!(
            client_key(gw, [&first, &second].into_iter(), &trusted),
            IpAddr::from([203, 0, 113, 9])
        );
        let (first, second) = (hv("203.0.113.9"), hv("198.51.100.77, 172.18.0.3"));
        assert_eq!(
            client_key(gw, [&first, &second].into_iter(), &trusted),
            IpAddr::from([198, 51, 100, 77])
        );
        let all_trusted = (hv("172.18.0.9"), hv("172.18.0.2"));
        assert_eq!(
            client_key(gw, [&all_trusted.0, &all_trusted.1].into_iter(), &trusted),
            IpAddr::from([172, 18, 0, 9])
        );
    }
}

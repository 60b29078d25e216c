//! Routing strategies as types.
//!
//! [`Strategy`] is the name a pool is configured with and can be switched to at runtime. Behind it:
//! - [`RoundRobinPick`] wraps pingora's `RoundRobin` selection;
//! - [`HashPick`] wraps pingora's `Consistent` (Ketama) ring, so adding a replica moves only
//!   about 1/(N+1) of the keys;
//! - [`CookieAffinity`] is the sticky layer: it names replicas by opaque tokens and pins clients
//!   that present one; new clients are placed by round-robin.
//!
//! Pickers never decide health: they walk candidates in their own order and ask the caller's
//! `accept` closure, so a down, ejected or draining replica is skipped without rebuilding anything.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use ipnet::IpNet;
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, RoundRobin};
use pingora::lb::Backend;
use sha2::{Digest, Sha256};

pub use statelab_proxy_api::{Strategy, UnknownStrategy};

/// Compact form of a [`Strategy`] for storing in an atomic.
pub(crate) fn strategy_to_u8(s: Strategy) -> u8 {
    match s {
        Strategy::Cookie => 0,
        Strategy::IpHash => 1,
        Strategy::RoundRobin => 2,
    }
}

pub(crate) fn strategy_from_u8(v: u8) -> Strategy {
    match v {
        0 => Strategy::Cookie,
        1 => Strategy::IpHash,
        _ => Strategy::RoundRobin,
    }
}

/// Index of a replica inside its pool, stored in pingora's `Backend::ext` so a selection result
/// maps back to our replica state without a lookup by address.
#[derive(Debug, Clone, Copy)]
struct ReplicaIdx(usize);

/// Orders candidates for a key; the first accepted one wins.
pub trait Pick: Send + Sync {
    /// Returns the index of the first candidate `accept` takes, or `None` when it takes none.
    fn pick(&self, key: &[u8], accept: &mut dyn FnMut(usize) -> bool) -> Option<usize>;
}

fn backends_for(addrs: &[std::net::SocketAddr]) -> BTreeSet<Backend> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let mut b = Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(*addr),
                weight: 1,
                ext: Default::default(),
            };
            b.ext.insert(ReplicaIdx(i));
            b
        })
        .collect()
}

/// Walks a pingora iterator, visiting each replica at most once, then falls back to a linear scan
/// so a usable replica is always found if one exists (pingora's fallback order is pseudo-random
/// and may repeat).
fn walk<I: BackendIter>(
    mut iter: I,
    n: usize,
    start: usize,
    accept: &mut dyn FnMut(usize) -> bool,
) -> Option<usize> {
    let mut seen: u64 = 0;
    let all: u64 = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    for _ in 0..(4 * n + 4) {
        let Some(b) = iter.next() else { break };
        let Some(&ReplicaIdx(i)) = b.ext.get::<ReplicaIdx>() else {
            continue;
        };
        let bit = 1u64 << i;
        if seen & bit != 0 {
            continue;
        }
        seen |= bit;
        if accept(i) {
            return Some(i);
        }
        if seen == all {
            return None;
        }
    }
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| seen & (1u64 << i) == 0 && accept(i))
}

/// A pingora selection algorithm over a pool's replicas.
pub struct Picker<S> {
    inner: Arc<S>,
    n: usize,
}

/// Round-robin over the pool (pingora's `RoundRobin`).
pub type RoundRobinPick = Picker<RoundRobin>;

/// Consistent hashing (pingora's Ketama `Consistent`): a key keeps its replica while that replica
/// is usable, and only keys of a removed/added replica move.
pub type HashPick = Picker<Consistent>;

impl<S> fmt::Debug for Picker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("algorithm", &std::any::type_name::<S>())
            .field("replicas", &self.n)
            .finish()
    }
}

impl<S: BackendSelection> Picker<S> {
    pub fn new(addrs: &[std::net::SocketAddr]) -> Self {
        Self {
            inner: Arc::new(S::build(&backends_for(addrs))),
            n: addrs.len(),
        }
    }
}

impl<S> Pick for Picker<S>
where
    S: BackendSelection + Send + Sync,
    S::Iter: BackendIter,
{
    fn pick(&self, key: &[u8], accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        walk(self.inner.iter(key), self.n, 0, accept)
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
    ) -> Option<usize> {
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
                    return Some(i);
                }
            }
        }
        None
    }

    /// The `Set-Cookie` value pinning to replica `i`.
    pub fn set_cookie(&self, i: usize) -> Option<&HeaderValue> {
        self.set_cookie.get(i)
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
    use std::net::{Ipv4Addr, SocketAddr};

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, i as u8 + 1], 8000)))
            .collect()
    }

    fn first(p: &dyn Pick, key: &[u8]) -> Option<usize> {
        p.pick(key, &mut |_| true)
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
        let rr = RoundRobinPick::new(&addrs(3));
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            counts[first(&rr, b"").unwrap_or(99)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        // With replica 1 refused, the other two share the load roughly evenly.
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            let i = rr.pick(b"", &mut |i| i != 1).unwrap_or(99);
            counts[i] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[0].abs_diff(counts[2]) < 300, "{counts:?}");
        // Nothing acceptable: None, not a panic.
        assert_eq!(rr.pick(b"", &mut |_| false), None);
    }

    #[test]
    fn hash_is_stable_and_falls_over_to_one_other_replica() {
        let h = HashPick::new(&addrs(3));
        for k in 0..100u32 {
            let key = k.to_be_bytes();
            let a = first(&h, &key);
            assert!(a.is_some());
            assert_eq!(a, first(&h, &key));
            let a = a.unwrap_or(0);
            let b = h.pick(&key, &mut |i| i != a);
            assert!(b.is_some() && b != Some(a));
            assert_eq!(
                b,
                h.pick(&key, &mut |i| i != a),
                "fallback must be stable too"
            );
        }
        assert_eq!(h.pick(b"x", &mut |_| false), None);
    }

    /// Adding a replica to N moves at most about 1/(N+1) of the keys (checked over 2000 keys).
    #[test]
    fn ip_hash_remap_fraction_on_adding_a_replica() {
        for n in [2usize, 3, 5] {
            let before = HashPick::new(&addrs(n));
            let after = HashPick::new(&addrs(n + 1));
            let keys = 2000u32;
            let mut moved = 0;
            for k in 0..keys {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k * 7919));
                let mut buf = [0u8; 16];
                let len = key_bytes(&ip, &mut buf);
                let a = first(&before, &buf[..len]);
                let b = first(&after, &buf[..len]);
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

    #[test]
    fn affinity_tokens_are_opaque_and_validated() {
        let names: Vec<String> = ["stateful-1", "stateful-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = CookieAffinity::new(b"k1", "stateful", &names);
        let sc = a.set_cookie(1).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(sc.starts_with("statelab_affinity_stateful="));
        assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Lax") && sc.contains("Path=/"));
        assert!(!sc.contains("stateful-2") && !sc.contains("127.0.0.1"));
        let token = sc.split(';').next().unwrap_or("").to_string();
        let hv = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
        let cookie = hv(&format!("statelab_session=abc; {token}"));
        assert_eq!(a.pinned([&cookie].into_iter()), Some(1));
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
        let trusted: Vec<IpNet> = vec!["172.16.0.0/12"
            .parse()
            .unwrap_or_else(|_| IpNet::from(IpAddr::from([0, 0, 0, 0])))];
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

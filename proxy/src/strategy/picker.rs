//! The one selection walk over a pingora selection algorithm, shared by every strategy that
//! picks among all replicas.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;
use sha2::{Digest, Sha256};

use super::{ReplicaId, Tried};

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

pub(super) fn backends_for(names: &[String]) -> BTreeSet<Backend> {
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
pub(super) fn walk<I: BackendIter>(
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

    pub(super) fn pick(
        &self,
        key: &[u8],
        accept: &mut dyn FnMut(ReplicaId) -> bool,
    ) -> Option<ReplicaId> {
        walk(self.inner.iter(key), self.n, accept)
    }
}

//! ip-modulo: the naive hash, kept to be compared with consistent hashing.

use pingora::http::RequestHeader;
use sha2::{Digest, Sha256};

use super::{Admission, Client, IpHash, ReplicaId, Route, RouteKey};

/// The naive hash: the client key's hash modulo the number of replicas, then the next ones in
/// order when that one cannot take it. Growing a pool from N to N+1 moves about N/(N+1) of the
/// clients; it exists to be compared with [`IpHash`].
#[derive(Debug)]
pub struct IpModulo {
    n: usize,
}

impl IpModulo {
    /// Over `n` replicas.
    pub fn new(n: usize) -> Self {
        IpModulo { n }
    }
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

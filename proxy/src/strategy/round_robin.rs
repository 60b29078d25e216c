//! Round-robin: even spread.

use pingora::http::RequestHeader;

use super::{Admission, Client, Picker, ReplicaId, Route, RouteKey};

/// Even spread over the replicas that take new clients (pingora's `RoundRobin`).
pub type RoundRobin = Picker<pingora::lb::selection::RoundRobin>;

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

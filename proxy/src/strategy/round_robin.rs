//! Round-robin: even spread.

use super::{Admission, Picker, ReplicaId, Route, RouteKey};

/// Even spread over the replicas that take new clients (pingora's `RoundRobin`).
pub type RoundRobin = Picker<pingora::lb::selection::RoundRobin>;

impl Route for RoundRobin {
    fn pick(
        &self,
        _key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        Picker::pick(self, b"", &mut |id| accept(id, Admission::New))
    }
}

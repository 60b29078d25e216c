//! least-requests: the power of two choices over requests in flight.

use pingora::lb::selection::Random;

use super::{Admission, Loads, Picker, ReplicaId, Route, RouteKey};

/// Two replicas drawn at random (pingora's `Random` selection, walked as every strategy is),
/// and the one with fewer requests in flight takes the request; a tie goes to the first drawn.
/// Like Envoy's `LEAST_REQUEST`, it needs no global scan and avoids the herd that "always the
/// least loaded" sends to one replica between two updates of the counts.
#[derive(Debug)]
pub struct LeastRequests {
    draw: Picker<Random>,
    loads: Loads,
}

impl LeastRequests {
    /// Over replicas named `names`, reading their requests in flight from `loads`.
    pub fn new(names: &[String], loads: Loads) -> Self {
        LeastRequests {
            draw: Picker::new(names),
            loads,
        }
    }
}

impl Route for LeastRequests {
    fn pick(
        &self,
        _key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        let mut first = None;
        let second = self.draw.pick(b"", &mut |id| {
            if !accept(id, Admission::New) {
                return false;
            }
            if first.is_none() {
                first = Some(id);
                return false;
            }
            true
        });
        match (first, second) {
            (Some(a), Some(b)) if self.loads.get(b) < self.loads.get(a) => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }
}

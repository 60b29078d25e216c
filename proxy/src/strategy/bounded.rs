//! Consistent hashing with bounded loads, over any strategy's order.

use statelab_formats::BalanceFactor;

use super::{Admission, Loads, ReplicaId, Route, RouteKey};

/// Bounded loads (Mirrokni, Thorup and Zadimoghaddam; HAProxy's `hash-balance-factor`, Envoy's
/// `hash_balance_factor`): a strategy's order is walked as it is, but a replica is passed over
/// for a new client while taking the request would put more in flight on it than the
/// [`BalanceFactor`]'s limit. Load is requests in flight, from the proxy's in-flight guards.
///
/// A pinned client (cookie) is never moved. When every replica that could take the request is
/// at the limit (possible only when the loads counted and the replicas offered differ), the
/// strategy's own choice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedLoad {
    factor: BalanceFactor,
}

/// What a bounded pick chose, and whether the bound moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded {
    pub chosen: Option<ReplicaId>,
    /// The strategy alone would have chosen another replica.
    pub moved: bool,
}

impl BoundedLoad {
    pub fn new(factor: BalanceFactor) -> Self {
        BoundedLoad { factor }
    }

    /// The most a replica may hold after taking a request, when the `eligible` replicas that
    /// take new requests hold `in_flight` between them.
    pub fn limit(self, in_flight: u64, eligible: usize) -> u64 {
        self.factor.limit(in_flight, eligible)
    }

    /// `route`'s pick for `key`, passing over new-client replicas whose load is at `limit`.
    pub fn pick(
        self,
        route: &dyn Route,
        key: &RouteKey,
        loads: &Loads,
        limit: u64,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Bounded {
        let mut unbounded = None;
        let chosen = route.pick(key, &mut |id, how| {
            if !accept(id, how) {
                return false;
            }
            if unbounded.is_none() {
                unbounded = Some(id);
            }
            how == Admission::Pinned || loads.get(id) < limit
        });
        match chosen {
            Some(id) => Bounded {
                chosen: Some(id),
                moved: unbounded != Some(id),
            },
            None => Bounded {
                chosen: unbounded,
                moved: false,
            },
        }
    }
}

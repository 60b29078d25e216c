//! The replica faults: a stateless and an externalized replica killed and started again through
//! `scripts/lab` on a fixed schedule, each kill opening its pool's failover window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use statelab_test_support::NativeLab;

use crate::lab::lab_ok_async;

/// The replica faults: (replica, killed at, started again at), from the soak's start.
const FAULTS: [(&str, Duration, Duration); 2] = [
    (
        "stateless-2",
        Duration::from_secs(7),
        Duration::from_secs(11),
    ),
    (
        "externalized-2",
        Duration::from_secs(16),
        Duration::from_secs(20),
    ),
];

/// A replica fault as it happened: when the kill was issued, when the failover window it opens
/// ends, and when the replica was routed to again.
#[derive(Debug)]
pub struct Fault {
    pub replica: &'static str,
    pub killed: Instant,
    pub window_end: Instant,
    pub started: Instant,
}

/// Kills and starts the replicas of [`FAULTS`] at their times, through `scripts/lab`.
pub async fn faults(lab: Arc<NativeLab>, begin: Instant, window: Duration) -> Vec<Fault> {
    let mut done = Vec::new();
    for (replica, kill_at, start_at) in FAULTS {
        tokio::time::sleep_until((begin + kill_at).into()).await;
        let killed = Instant::now();
        lab_ok_async(&lab, &["kill", replica]).await;
        let window_end = Instant::now() + window;
        tokio::time::sleep_until((begin + start_at).into()).await;
        // `start` returns once the proxy routes to the replica again.
        lab_ok_async(&lab, &["start", replica]).await;
        done.push(Fault {
            replica,
            killed,
            window_end,
            started: Instant::now(),
        });
    }
    done
}

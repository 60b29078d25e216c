//! Adding a replica at the peak: a pool of three, already past its capacity with long sessions,
//! grows to four while it serves. Where sessions are pinned (stateful, cookie), the newcomer gets
//! only new sessions and the pinned users stay on the overloaded three; where nothing is pinned
//! (stateless, round-robin), every next request may go to the newcomer. The figure is how long
//! p99 stays above the SLO after the scale.

use serde::{Deserialize, Serialize};
use statelab_formats::Design;

use crate::report::RunReport;
use crate::stats::SecondStats;

/// Consecutive seconds within the SLO that count as recovered.
pub const RECOVERED_SECONDS: usize = 3;

/// One design's run of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationRun {
    pub service: Design,
    pub strategy: String,
    /// The pool's capacity at three replicas, measured first (2xx a second).
    pub capacity3_rps: f64,
    /// The offered load, as a multiple of that capacity.
    pub overload: f64,
    /// Sessions started a second, and the requests each makes.
    pub rate: f64,
    pub requests_per_session: u32,
    /// When the pool grew from three to four, seconds since the run's start.
    pub scale_at_s: f64,
    /// p99 over the seconds before the scale, and over the ten after it.
    pub p99_before_ms: f64,
    pub p99_after_ms: f64,
    /// Seconds from the scale until the first of [`RECOVERED_SECONDS`] seconds in a row with
    /// p99 within the SLO; `None` when that never happened before the run ended.
    pub over_slo_after_scale_s: Option<f64>,
    /// The newcomer's share of the requests in the ten seconds after the scale.
    pub newcomer_share: f64,
    pub failed_requests: u64,
    /// Per second: p99, for the chart.
    pub p99_per_second: Vec<f64>,
}

/// p99 of the seconds in `range` (the largest second's p99: a conservative summary).
fn worst_p99(series: &[SecondStats], from: u64, to: u64) -> f64 {
    series
        .iter()
        .filter(|s| s.t >= from && s.t < to && s.requests > 0)
        .map(|s| s.p99_ms)
        .fold(0.0, f64::max)
}

/// Seconds from `scale_at` until the first of `RECOVERED_SECONDS` seconds in a row whose p99
/// is within `slo_ms`; `None` when the run ended first.
pub fn recovery(series: &[SecondStats], scale_at: f64, slo_ms: f64) -> Option<f64> {
    let after: Vec<&SecondStats> = series
        .iter()
        .filter(|s| s.t as f64 >= scale_at.floor())
        .collect();
    after
        .windows(RECOVERED_SECONDS)
        .find(|w| w.iter().all(|s| s.requests > 0 && s.p99_ms <= slo_ms))
        .map(|w| (w[0].t as f64 - scale_at).max(0.0))
}

/// The figures of one run of the experiment.
#[allow(clippy::too_many_arguments)]
pub fn summarise(
    run: &RunReport,
    strategy: &str,
    capacity3_rps: f64,
    overload: f64,
    requests_per_session: u32,
    scale_at_s: f64,
    newcomer: &str,
    slo_ms: f64,
) -> SaturationRun {
    let at = scale_at_s.floor() as u64;
    let window: Vec<&SecondStats> = run
        .timeline
        .iter()
        .filter(|s| s.t >= at && s.t < at + 10)
        .collect();
    let total: u64 = window
        .iter()
        .map(|s| s.per_replica.values().sum::<u64>())
        .sum();
    let newcomer_n: u64 = window
        .iter()
        .map(|s| s.per_replica.get(newcomer).copied().unwrap_or(0))
        .sum();
    SaturationRun {
        service: run.service,
        strategy: strategy.to_owned(),
        capacity3_rps,
        overload,
        rate: run.rate.unwrap_or(0.0),
        requests_per_session,
        scale_at_s,
        p99_before_ms: worst_p99(&run.timeline, 2, at),
        p99_after_ms: worst_p99(&run.timeline, at, at + 10),
        over_slo_after_scale_s: recovery(&run.timeline, scale_at_s, slo_ms),
        newcomer_share: newcomer_n as f64 / total.max(1) as f64,
        failed_requests: run.failed_requests,
        p99_per_second: run.timeline.iter().map(|s| s.p99_ms).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(t: u64, p99: f64) -> SecondStats {
        SecondStats {
            t,
            requests: 10,
            ok: 10,
            failed: 0,
            errors: Default::default(),
            session_losses: 0,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            per_replica: Default::default(),
            sessions_per_replica: Default::default(),
        }
    }

    #[test]
    fn recovery_is_the_first_run_of_good_seconds_after_the_scale() {
        let p99 = [
            20.0, 300.0, 400.0, 350.0, 40.0, 200.0, 30.0, 30.0, 30.0, 30.0,
        ];
        let series: Vec<SecondStats> = p99
            .iter()
            .enumerate()
            .map(|(t, p)| second(t as u64, *p))
            .collect();
        // Scaled at 2.5 s: second 4 is good but alone; 6, 7, 8 are the first three in a row.
        assert_eq!(recovery(&series, 2.5, 50.0), Some(3.5));
        assert_eq!(recovery(&series, 2.5, 10.0), None);
        assert_eq!(worst_p99(&series, 1, 4), 400.0);
    }
}

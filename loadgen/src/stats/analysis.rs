//! Analysis: the pure figures built on a run's record — percentiles, the per-second series the
//! reports show, and the pre-kill band and the recovery into it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::moves::MoveCounts;
use super::ErrorCounts;

/// A histogram's value at percentile `p` (0..=100), in milliseconds; 0 when it is empty.
pub fn percentile_ms(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(p / 100.0) as f64 / 1000.0
}

/// One second of the run: what completed in `[t, t+1)` seconds after the start.
///
/// Not the recording tally: this is the form `run.json`'s `timeline` holds and the analysis
/// reads, with the second's histogram reduced to p50/p99 and `failed` spelled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondStats {
    pub t: u64,
    pub requests: u64,
    /// Requests answered 2xx; the throughput of this second.
    pub ok: u64,
    pub failed: u64,
    pub errors: ErrorCounts,
    pub session_losses: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub per_replica: BTreeMap<String, u64>,
}

/// Everything a run recorded, merged.
#[derive(Debug)]
pub struct Measured {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub series: Vec<SecondStats>,
    /// Per replica, the latest answer it gave, in seconds since the start.
    pub last_seen: BTreeMap<String, f64>,
    /// Per replica, the first answer it gave, in seconds since the start.
    pub first_seen: BTreeMap<String, f64>,
    /// Per scale epoch (index 0: before any scale event), the sessions it carried, moved and lost.
    pub moves: Vec<MoveCounts>,
    pub loss_unauthorized: u64,
    pub loss_cart: u64,
    /// Requests sent more than [`LATE_THRESHOLD`](super::LATE_THRESHOLD) after their think
    /// time ended, and the largest such lag: the generator's own lateness.
    pub steps_late: u64,
    pub max_step_lag_ms: f64,
}

/// The band the run's steady state stayed in before the fault, and when the run got back into it:
/// throughput and p99, and failures too, so that a second of errors after the kill
/// is not "recovered" just because throughput held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Pre-kill throughput band (2xx per second): the lowest and highest whole pre-kill second
    /// after the first, widened by [`BAND_SLACK`].
    pub throughput_low: f64,
    pub throughput_high: f64,
    /// Pre-kill p99 ceiling: the highest pre-kill second's p99, widened by [`P99_SLACK`].
    pub p99_high_ms: f64,
    /// Pre-kill failures ceiling: the most failed requests of any whole pre-kill second.
    pub failed_high: u64,
    /// Seconds from the kill until the first of [`STABLE_SECONDS`] consecutive seconds inside
    /// the band (0 when the kill never left it); `None` when the run ended before that.
    pub recovered_after_s: Option<f64>,
    /// The second (since the start) the run was back inside the band.
    pub recovered_at_second: Option<u64>,
}

/// How far outside the pre-kill extremes a second may be and still count as inside the band.
pub const BAND_SLACK: f64 = 0.10;
/// The same for the p99 ceiling: a second's p99 rests on its few slowest requests (the second
/// slowest of 200), so it wanders more than throughput; 10% flagged ordinary seconds as outside.
pub const P99_SLACK: f64 = 0.25;
/// How many consecutive seconds must be inside the band to call the run recovered.
pub const STABLE_SECONDS: usize = 3;

/// When did throughput, p99 and failures return to the pre-kill band? `series` is the per-second record,
/// `kill_at` the kill's time in seconds since the start. The first second is left out of the
/// band (connections and sessions are still ramping up), and so is the second the kill falls in.
/// `None` when fewer than two whole seconds precede the kill: there is no band to return to.
pub fn recovery(series: &[SecondStats], kill_at: f64) -> Option<Recovery> {
    let kill_second = kill_at.max(0.0).floor() as usize;
    let pre = series.get(1..kill_second.min(series.len()))?;
    if pre.len() < 2 {
        return None;
    }
    let low = pre.iter().map(|s| s.ok).min()? as f64 * (1.0 - BAND_SLACK);
    let high = pre.iter().map(|s| s.ok).max()? as f64 * (1.0 + BAND_SLACK);
    let p99_high = pre.iter().map(|s| s.p99_ms).fold(0.0, f64::max) * (1.0 + P99_SLACK);
    let failed_high = pre.iter().map(|s| s.failed).max()?;
    let inside = |s: &SecondStats| {
        (low..=high).contains(&(s.ok as f64)) && s.p99_ms <= p99_high && s.failed <= failed_high
    };
    let after = &series[kill_second.min(series.len())..];
    let recovered_at = after
        .windows(STABLE_SECONDS)
        .position(|w| w.iter().all(inside))
        .map(|i| kill_second + i);
    Some(Recovery {
        throughput_low: low,
        throughput_high: high,
        p99_high_ms: p99_high,
        failed_high,
        recovered_after_s: recovered_at.map(|at| (at as f64 - kill_at).max(0.0)),
        recovered_at_second: recovered_at.map(|at| at as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn percentiles_of_known_inputs() {
        let mut h = new_histogram(3);
        for ms in 1..=1000u64 {
            h.record(ms * 1000).expect("valid test input");
        }
        // hdrhistogram with 3 significant digits: within 0.1 %.
        for (p, want) in [(50.0, 500.0), (90.0, 900.0), (99.0, 990.0), (100.0, 1000.0)] {
            let got = percentile_ms(&h, p);
            assert!((got - want).abs() <= want * 0.001, "p{p}: {got} vs {want}");
        }
        assert_eq!(percentile_ms(&new_histogram(3), 99.0), 0.0);

        // A skewed input: 990 fast requests and 10 slow ones put p99 on the fast side, p99.9 on
        // the slow one.
        let mut h = new_histogram(3);
        for _ in 0..990 {
            h.record(2_000).expect("valid test input");
        }
        for _ in 0..10 {
            h.record(800_000).expect("valid test input");
        }
        assert!((percentile_ms(&h, 99.0) - 2.0).abs() < 0.01);
        assert!((percentile_ms(&h, 99.9) - 800.0).abs() < 1.0);
    }

    fn steady(t: u64, ok: u64, p99: f64) -> SecondStats {
        SecondStats {
            t,
            requests: ok,
            ok,
            failed: 0,
            errors: ErrorCounts::default(),
            session_losses: 0,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            per_replica: BTreeMap::new(),
        }
    }

    #[test]
    fn recovery_is_the_first_stable_return_to_the_band() {
        // Ramp-up second, four steady seconds, the kill at 5.5, two bad seconds, then steady.
        let mut series = vec![steady(0, 10, 50.0)];
        series.extend((1..5).map(|t| steady(t, 100 + t, 4.0)));
        series.push(steady(5, 60, 900.0));
        series.push(steady(6, 95, 30.0));
        series.extend((7..12).map(|t| steady(t, 101, 4.1)));
        let r = recovery(&series, 5.5).expect("valid test input");
        assert!((r.throughput_low - 101.0 * 0.9).abs() < 1e-9);
        assert!((r.throughput_high - 104.0 * 1.1).abs() < 1e-9);
        assert!((r.p99_high_ms - 5.0).abs() < 1e-9);
        assert_eq!(r.recovered_after_s, Some(1.5));
        assert_eq!((r.recovered_at_second, r.failed_high), (Some(7), 0));

        // Throughput and p99 held, but a second of failures after the kill is not recovered:
        // the failures delay the return to the band.
        let mut failing = series.clone();
        failing[7].failed = 3;
        let r = recovery(&failing, 5.5).expect("valid test input");
        assert_eq!(r.recovered_at_second, Some(8));

        // Never back inside: no recovery time, but the band is still reported.
        let mut broken = series.clone();
        for s in &mut broken[7..] {
            s.p99_ms = 100.0;
        }
        assert_eq!(
            recovery(&broken, 5.5)
                .expect("valid test input")
                .recovered_after_s,
            None
        );

        // Undisturbed: recovered at once.
        let calm: Vec<_> = (0..10).map(|t| steady(t, 100, 4.0)).collect();
        assert_eq!(
            recovery(&calm, 5.0)
                .expect("valid test input")
                .recovered_after_s,
            Some(0.0)
        );

        // A kill before there is a band.
        assert_eq!(recovery(&calm, 2.0), None);
    }
}

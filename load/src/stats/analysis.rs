//! Analysis: the pure figures built on a run's record — percentiles, the per-second series the
//! reports show, the pre-kill band and the recovery into it, the window of failures after a kill
//! and the latency of the answers on either side of it.

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
    /// The sessions each replica answered in this second: its live sessions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions_per_replica: BTreeMap<String, u64>,
}

/// Everything a run recorded, merged.
#[derive(Debug)]
pub struct Measured {
    pub latency: Histogram<u64>,
    /// The heavy users' latency alone (empty unless the run marked some).
    pub heavy_latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub series: Vec<SecondStats>,
    /// Per replica, the latest answer it gave, in seconds since the start.
    pub last_seen: BTreeMap<String, f64>,
    /// Per replica, the first answer it gave, in seconds since the start.
    pub first_seen: BTreeMap<String, f64>,
    /// Per scale epoch (index 0: before any scale event), the sessions it carried, moved and lost.
    pub moves: Vec<MoveCounts>,
    /// Sessions on the killed replica at its kill ([`super::KillMark`]); `None` without one.
    pub on_killed: Option<u64>,
    pub loss_unauthorized: u64,
    pub loss_cart: u64,
    /// Requests sent more than [`LATE_THRESHOLD`](super::LATE_THRESHOLD) after their think
    /// time ended, and the largest such lag: the generator's own lateness.
    pub steps_late: u64,
    pub max_step_lag_ms: f64,
    /// One entry per second, like `series`: what the failover figures read beyond the timeline.
    pub detail: Vec<SecondDetail>,
    /// The millisecond of every answer, for the failure window's times.
    pub moments: Moments,
}

/// A second's figures that the timeline does not write but the failover account reads.
#[derive(Debug, Clone)]
pub struct SecondDetail {
    /// Latency of the second's 2xx answers alone (two significant digits): the latency on either
    /// side of a failure window is that of the requests that worked.
    pub ok_latency: Histogram<u64>,
    pub acknowledged: Acknowledged,
    pub files: FileCounts,
}

/// Avatars stored and read back (`--avatar`), in a second or over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCounts {
    /// Uploads answered 200: files the service said it stored.
    pub stored: u64,
    /// Reads of a stored avatar by its owner's name.
    pub read: u64,
    /// Of those, reads answered 404, or with other bytes than were stored: files lost.
    pub lost: u64,
    /// Uploads and reads answered 503 `files_unavailable` (the object store away).
    pub unavailable: u64,
}

impl FileCounts {
    pub fn merge(&mut self, other: &FileCounts) {
        self.stored += other.stored;
        self.read += other.read;
        self.lost += other.lost;
        self.unavailable += other.unavailable;
    }
}

/// What one avatar request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEvent {
    Stored,
    /// Read back whole.
    Found,
    /// Read back missing or changed.
    Lost,
    Unavailable,
}

impl FileCounts {
    pub fn count(&mut self, event: FileEvent) {
        match event {
            FileEvent::Stored => self.stored += 1,
            FileEvent::Found => self.read += 1,
            FileEvent::Lost => {
                self.read += 1;
                self.lost += 1;
            }
            FileEvent::Unavailable => self.unavailable += 1,
        }
    }
}

/// Writes the server confirmed, and those a later answer showed it had lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acknowledged {
    /// Cart adds answered 200.
    pub adds: u64,
    /// Of those, adds a later read of the cart no longer showed
    /// ([`ExpectedCart::acknowledged_adds_lost`](crate::workflow::ExpectedCart::acknowledged_adds_lost)).
    pub adds_lost: u64,
    /// Logins answered 200 whose session was later answered 401.
    pub logins_lost: u64,
}

impl Acknowledged {
    pub fn merge(&mut self, other: &Acknowledged) {
        self.adds += other.adds;
        self.adds_lost += other.adds_lost;
        self.logins_lost += other.logins_lost;
    }
}

/// When answers came, to the millisecond since the start: a bit per millisecond in which a 2xx
/// came, and the millisecond of each failure (failures are few, and their number counts).
/// Bounded by the run's length, not its request count, on the success side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moments {
    ok: Vec<u64>,
    failed: Vec<u32>,
}

impl Moments {
    /// A 2xx answer came in millisecond `ms`.
    pub fn ok(&mut self, ms: u32) {
        let (word, bit) = ((ms / 64) as usize, ms % 64);
        if self.ok.len() <= word {
            self.ok.resize(word + 1, 0);
        }
        self.ok[word] |= 1 << bit;
    }

    /// A request failed in millisecond `ms`.
    pub fn failed(&mut self, ms: u32) {
        self.failed.push(ms);
    }

    pub fn merge(&mut self, other: &Moments) {
        if self.ok.len() < other.ok.len() {
            self.ok.resize(other.ok.len(), 0);
        }
        for (mine, theirs) in self.ok.iter_mut().zip(&other.ok) {
            *mine |= theirs;
        }
        self.failed.extend_from_slice(&other.failed);
    }

    /// Sorts the failures and drops everything from millisecond `end` on (a run cut short).
    pub fn finish(&mut self, end: Option<u32>) {
        self.failed.sort_unstable();
        if let Some(end) = end {
            self.failed.retain(|ms| *ms < end);
            let words = end.div_ceil(64) as usize;
            self.ok.truncate(words);
            if let Some(last) = self.ok.last_mut().filter(|_| end % 64 != 0) {
                *last &= (1u64 << (end % 64)) - 1;
            }
        }
    }

    /// The first millisecond from `from` on in which a 2xx came.
    fn first_ok_from(&self, from: u32) -> Option<u32> {
        let mut word = (from / 64) as usize;
        let mut bits = *self.ok.get(word)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(word as u32 * 64 + bits.trailing_zeros());
            }
            word += 1;
            bits = *self.ok.get(word)?;
        }
    }
}

/// The failed requests after a kill, to the millisecond, in seconds since the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureWindow {
    /// The first failed request from the kill on; `null` when none failed.
    pub first_failed_s: Option<f64>,
    /// The first 2xx answer in a later millisecond than that first failure: when requests worked
    /// again; `null` when none failed, or nothing worked after.
    pub first_ok_after_s: Option<f64>,
    /// The last failed request of the run after the kill; `null` when none failed.
    pub last_failed_s: Option<f64>,
    /// Requests failed from the kill on, until the end of the run.
    pub failed: u64,
}

/// The failure window of a kill at `kill_at` seconds since the start: failures are the run's
/// failed requests (no answer, or not 2xx), taken from the kill's millisecond on.
pub fn failure_window(moments: &Moments, kill_at: f64) -> FailureWindow {
    let kill_ms = (kill_at.max(0.0) * 1000.0).floor() as u32;
    let after = &moments.failed[moments.failed.partition_point(|ms| *ms < kill_ms)..];
    let seconds = |ms: u32| f64::from(ms) / 1000.0;
    let first = after.first().copied();
    FailureWindow {
        first_failed_s: first.map(seconds),
        first_ok_after_s: first
            .and_then(|ms| moments.first_ok_from(ms + 1))
            .map(seconds),
        last_failed_s: after.last().copied().map(seconds),
        failed: after.len() as u64,
    }
}

/// The latency of the 2xx answers completed within whole seconds `[from_s, to_s)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OkLatency {
    pub from_s: u64,
    pub to_s: u64,
    pub ok_requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The latency of the 2xx answers of seconds `[from, to)`, their per-second histograms merged
/// (two significant digits); `None` when no 2xx answer completed in them.
pub fn ok_latency(detail: &[SecondDetail], from: usize, to: usize) -> Option<OkLatency> {
    let seconds = detail.get(from..to.min(detail.len()))?;
    let mut merged = seconds.first()?.ok_latency.clone();
    for s in &seconds[1..] {
        // Same bounds everywhere, so adding cannot fail.
        let _ = merged.add(&s.ok_latency);
    }
    (!merged.is_empty()).then(|| OkLatency {
        from_s: from as u64,
        to_s: (from + seconds.len()) as u64,
        ok_requests: merged.len(),
        p50_ms: percentile_ms(&merged, 50.0),
        p99_ms: percentile_ms(&merged, 99.0),
    })
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

    #[test]
    fn the_failure_window_runs_from_the_kills_millisecond() {
        let mut m = Moments::default();
        for ms in (0..12_000).step_by(7) {
            // Successes throughout, except from 5.1 s to 6.4 s.
            if !(5_100..6_400).contains(&ms) {
                m.ok(ms);
            }
        }
        // A failure before the kill (in the kill's own second), then the outage, then one
        // stray failure later on.
        for ms in [4_900, 5_120, 5_100, 6_399, 6_000, 9_050] {
            m.failed(ms);
        }
        m.finish(None);
        let w = failure_window(&m, 5.0005);
        assert_eq!(w.first_failed_s, Some(5.1));
        // The first 2xx after 5.1 s: 6.4 s rounded up to the 7 ms step.
        assert_eq!(w.first_ok_after_s, Some(6.405));
        assert_eq!(w.last_failed_s, Some(9.05));
        assert_eq!(w.failed, 5);

        // A kill nothing failed after.
        let w = failure_window(&m, 9.5);
        assert_eq!(
            (
                w.first_failed_s,
                w.first_ok_after_s,
                w.last_failed_s,
                w.failed
            ),
            (None, None, None, 0)
        );
        // Failures with no success after them.
        let mut dead = Moments::default();
        dead.ok(100);
        dead.failed(3_000);
        dead.finish(None);
        let w = failure_window(&dead, 2.0);
        assert_eq!((w.first_failed_s, w.first_ok_after_s), (Some(3.0), None));
    }

    #[test]
    fn moments_merge_and_a_cut_run_drops_what_came_after_its_end() {
        let (mut a, mut b) = (Moments::default(), Moments::default());
        a.ok(10);
        b.ok(1_999);
        b.ok(2_000);
        a.failed(2_500);
        b.failed(1_500);
        a.merge(&b);
        let mut cut = a.clone();
        cut.finish(Some(2_000));
        assert_eq!(cut.first_ok_from(11), Some(1_999));
        assert_eq!(cut.first_ok_from(2_000), None);
        assert_eq!(failure_window(&cut, 0.0).last_failed_s, Some(1.5));
        a.finish(None);
        assert_eq!(a.first_ok_from(2_000), Some(2_000));
        assert_eq!(failure_window(&a, 0.0).failed, 2);
    }

    fn second(latencies_ms: &[u64]) -> SecondDetail {
        let mut ok_latency = new_histogram(2);
        for ms in latencies_ms {
            ok_latency.record(ms * 1000).expect("valid test input");
        }
        SecondDetail {
            ok_latency,
            acknowledged: Acknowledged::default(),
            files: FileCounts::default(),
        }
    }

    #[test]
    fn ok_latency_merges_the_seconds_of_a_span() {
        // Two fast seconds, a slow one, an empty one.
        let fast: Vec<u64> = (1..=100).collect();
        let detail = vec![
            second(&fast),
            second(&fast),
            second(&[900; 50]),
            second(&[]),
        ];
        let before = ok_latency(&detail, 0, 2).expect("2xx answers");
        assert_eq!(
            (before.from_s, before.to_s, before.ok_requests),
            (0, 2, 200)
        );
        assert!((before.p50_ms - 50.0).abs() <= 0.5, "{before:?}");
        assert!((before.p99_ms - 99.0).abs() <= 1.0, "{before:?}");
        // The slow second moves the percentiles of a span that includes it.
        let all = ok_latency(&detail, 1, 4).expect("2xx answers");
        assert_eq!((all.from_s, all.to_s, all.ok_requests), (1, 4, 150));
        assert!((all.p50_ms - 75.0).abs() <= 0.75, "{all:?}");
        assert!((all.p99_ms - 900.0).abs() <= 9.0, "{all:?}");
        // A span clipped to the run, one with no 2xx, and empty or inverted spans.
        assert_eq!(ok_latency(&detail, 2, 99).map(|l| l.to_s), Some(4));
        assert_eq!(ok_latency(&detail, 3, 4), None);
        assert_eq!(ok_latency(&detail, 2, 2), None);
        assert_eq!(ok_latency(&detail, 5, 4), None);
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
            sessions_per_replica: BTreeMap::new(),
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

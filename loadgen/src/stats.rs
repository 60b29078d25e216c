//! Measurement: what every request and session loss adds to the run's record, and the figures
//! the reports are made of.
//!
//! Latency is measured from the moment a request was *meant* to be sent, not from when it was
//! sent: a generator that falls behind (or a server that stalls the generator) would otherwise
//! hide the wait it caused — coordinated omission. The time from the actual send is kept as well,
//! as service time. Both go into HdrHistograms.
//!
//! Recording is sharded (one mutex per shard, a user always records into the same shard) so a
//! fast run does not serialise on one lock; [`Recorder::finish`] merges the shards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::ErrorKind;

/// Highest latency the histograms hold, in microseconds (larger values are clamped to it).
const MAX_LATENCY_US: u64 = 120_000_000;
const SHARDS: usize = 8;
/// A start or step sent later than this after its time counts as late.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(5);

/// Failed requests by kind; the JSON form of [`ErrorKind`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub connect: u64,
    pub timeout: u64,
    pub io: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
}

impl ErrorCounts {
    fn add(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Io => self.io += 1,
            ErrorKind::Status4xx => self.status_4xx += 1,
            ErrorKind::Status5xx => self.status_5xx += 1,
        }
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.io += other.io;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
    }

    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.io + self.status_4xx + self.status_5xx
    }
}

/// How a session was found lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// A 401 after this user had logged in successfully.
    Unauthorized,
    /// The server's cart differs from what this user put in.
    CartMismatch,
}

/// One finished request, as the user saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// When the request should have been sent (its scheduled time).
    pub intended: Instant,
    /// When it was actually handed to the connection.
    pub sent: Instant,
    /// When the answer (or the failure) arrived.
    pub done: Instant,
    /// `None` for success, else why it failed.
    pub error: Option<ErrorKind>,
    /// The `x-replica` header of the answer, if any.
    pub replica: Option<&'a [u8]>,
}

impl Sample<'_> {
    /// Latency as the user experienced it: from the intended send time to the answer.
    pub fn latency(&self) -> Duration {
        self.done.saturating_duration_since(self.intended)
    }

    /// Service time: from the actual send to the answer.
    pub fn service_time(&self) -> Duration {
        self.done.saturating_duration_since(self.sent)
    }

    /// Whether the latency histograms include this request: every request that got an HTTP
    /// answer, and timeouts (a stall is exactly what latency must show); not connect or I/O
    /// failures, whose "latency" is only how fast the failure came.
    fn has_latency(&self) -> bool {
        !matches!(self.error, Some(ErrorKind::Connect | ErrorKind::Io))
    }
}

fn new_histogram(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants within hdrhistogram's limits, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).unwrap_or_else(|_| unreachable!())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

/// A histogram's value at percentile `p` (0..=100), in milliseconds; 0 when it is empty.
pub fn percentile_ms(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(p / 100.0) as f64 / 1000.0
}

#[derive(Debug)]
struct Second {
    requests: u64,
    ok: u64,
    errors: ErrorCounts,
    losses: u64,
    /// Of `losses`, those found by a wrong cart (the rest were 401s).
    loss_cart: u64,
    latency: Histogram<u64>,
    /// Requests by replica, indexed like the shard's `names`.
    per_replica: Vec<u64>,
}

impl Second {
    fn new() -> Self {
        Second {
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            losses: 0,
            loss_cart: 0,
            // Two significant digits are enough for a per-second p99 and keep each second small.
            latency: new_histogram(2),
            per_replica: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Shard {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    seconds: Vec<Second>,
    names: Vec<Box<[u8]>>,
    /// Latest answer from each replica (same index as `names`), as time since the start.
    last_seen: Vec<Duration>,
}

impl Shard {
    fn new() -> Self {
        Shard {
            latency: new_histogram(3),
            service: new_histogram(3),
            seconds: Vec::new(),
            names: Vec::new(),
            last_seen: Vec::new(),
        }
    }

    fn second(&mut self, index: usize) -> &mut Second {
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, Second::new);
        }
        &mut self.seconds[index]
    }

    fn replica_index(&mut self, name: &[u8]) -> usize {
        match self.names.iter().position(|n| &n[..] == name) {
            Some(i) => i,
            None => {
                self.names.push(name.into());
                self.last_seen.push(Duration::ZERO);
                self.names.len() - 1
            }
        }
    }
}

/// Collects every request of a run. Shared by all virtual users.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    /// Answers after this do not move a replica's `last_seen` (the planned restart: the question
    /// is when the killed replica stopped answering, not that it answered again later).
    seen_until: Instant,
    shards: Vec<Mutex<Shard>>,
    steps_late: AtomicU64,
    max_step_lag_us: AtomicU64,
}

impl Recorder {
    /// A recorder for a run starting at `start`, whose `last_seen` ignores answers from
    /// `seen_until` after the start on (the planned restart, else the run's end).
    pub fn new(start: Instant, seen_until: Duration) -> Self {
        Recorder {
            start,
            seen_until: start + seen_until,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            steps_late: AtomicU64::new(0),
            max_step_lag_us: AtomicU64::new(0),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    fn shard(&self, user: u64) -> std::sync::MutexGuard<'_, Shard> {
        let shard = &self.shards[(user as usize) % SHARDS];
        // A panic while holding the lock cannot leave a shard half-updated in a way that
        // matters for counting, so a poisoned lock is used as it is.
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn second_of(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    /// Records one request of user `user`. An answer that arrives after the run's end is kept
    /// too ([`Recorder::finish`] counts it in the last second): it was asked for within the run.
    pub fn record(&self, user: u64, sample: &Sample<'_>) {
        let second = self.second_of(sample.done);
        let since_start = sample.done.saturating_duration_since(self.start);
        let mut shard = self.shard(user);
        let replica = sample.replica.map(|name| shard.replica_index(name));
        if let Some(i) = replica.filter(|_| sample.done < self.seen_until) {
            if shard.last_seen[i] < since_start {
                shard.last_seen[i] = since_start;
            }
        }
        let latency = micros(sample.latency());
        if sample.has_latency() {
            // In range by construction (micros clamps), so recording cannot fail.
            let _ = shard.latency.record(latency);
            let _ = shard.service.record(micros(sample.service_time()));
        }
        let s = shard.second(second);
        s.requests += 1;
        match sample.error {
            None => s.ok += 1,
            Some(kind) => s.errors.add(kind),
        }
        if sample.has_latency() {
            let _ = s.latency.record(latency);
        }
        if let Some(i) = replica {
            if s.per_replica.len() <= i {
                s.per_replica.resize(i + 1, 0);
            }
            s.per_replica[i] += 1;
        }
    }

    /// Records how late a request went out after its think time ended (the generator's own lag).
    pub fn record_step_lag(&self, lag: Duration) {
        self.max_step_lag_us
            .fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
        if lag > LATE_THRESHOLD {
            self.steps_late.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records that user `user` found its session lost at `at`.
    pub fn record_loss(&self, user: u64, at: Instant, kind: LossKind) {
        let second = self.second_of(at);
        let mut shard = self.shard(user);
        let s = shard.second(second);
        s.losses += 1;
        if kind == LossKind::CartMismatch {
            s.loss_cart += 1;
        }
    }

    /// A cheap running total for the progress line: (requests, failed, losses, latest second's
    /// p99 in ms).
    pub fn snapshot(&self, now: Instant) -> Progress {
        let mut p = Progress::default();
        let current = self.second_of(now);
        let mut last = new_histogram(2);
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (i, s) in shard.seconds.iter().enumerate() {
                p.requests += s.requests;
                p.failed += s.errors.total();
                p.losses += s.losses;
                if i + 1 == current {
                    p.last_second_ok += s.ok;
                    let _ = last.add(&s.latency);
                }
            }
        }
        p.last_second_p99_ms = percentile_ms(&last, 99.0);
        p
    }

    /// Merges the shards into the run's figures; `seconds` is how many whole seconds the run
    /// lasted (the series has one entry per second). What finished after that is counted in the
    /// last second when `keep_tail` (answers to requests sent before a normal end), and left out
    /// otherwise (a run cut short by Ctrl-C: its last second is incomplete, and shown as a whole
    /// second it would look like a throughput drop).
    ///
    /// Safe to call while aborted tasks are still being dropped.
    pub fn finish(&self, seconds: usize, keep_tail: bool) -> Measured {
        let mut latency = new_histogram(3);
        let mut service = new_histogram(3);
        let mut series: Vec<SecondAcc> = (0..seconds).map(|_| SecondAcc::new()).collect();
        let mut last_seen: BTreeMap<String, f64> = BTreeMap::new();
        let (mut loss_unauthorized, mut loss_cart) = (0, 0);
        let seconds = seconds.max(1);
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = latency.add(&shard.latency);
            let _ = service.add(&shard.service);
            let names: Vec<String> = shard
                .names
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            for (name, seen) in names.iter().zip(&shard.last_seen) {
                let entry = last_seen.entry(name.clone()).or_insert(0.0);
                *entry = entry.max(seen.as_secs_f64());
            }
            for (i, s) in shard.seconds.iter().enumerate() {
                if i >= seconds && !keep_tail {
                    continue;
                }
                let Some(acc) = series.get_mut(i.min(seconds - 1)) else {
                    continue;
                };
                loss_unauthorized += s.losses - s.loss_cart;
                loss_cart += s.loss_cart;
                acc.requests += s.requests;
                acc.ok += s.ok;
                acc.errors.merge(&s.errors);
                acc.losses += s.losses;
                let _ = acc.latency.add(&s.latency);
                for (name, n) in names.iter().zip(&s.per_replica) {
                    if *n > 0 {
                        *acc.per_replica.entry(name.clone()).or_insert(0) += n;
                    }
                }
            }
        }
        let series = series
            .into_iter()
            .enumerate()
            .map(|(t, acc)| acc.into_stats(t as u64))
            .collect();
        Measured {
            latency,
            service,
            series,
            last_seen,
            loss_unauthorized,
            loss_cart,
            steps_late: self.steps_late.load(Ordering::Relaxed),
            max_step_lag_ms: self.max_step_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// Running totals for the progress line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub requests: u64,
    pub failed: u64,
    pub losses: u64,
    pub last_second_ok: u64,
    pub last_second_p99_ms: f64,
}

#[derive(Debug)]
struct SecondAcc {
    requests: u64,
    ok: u64,
    errors: ErrorCounts,
    losses: u64,
    latency: Histogram<u64>,
    per_replica: BTreeMap<String, u64>,
}

impl SecondAcc {
    fn new() -> Self {
        SecondAcc {
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            losses: 0,
            latency: new_histogram(2),
            per_replica: BTreeMap::new(),
        }
    }

    fn into_stats(self, t: u64) -> SecondStats {
        SecondStats {
            t,
            requests: self.requests,
            ok: self.ok,
            failed: self.errors.total(),
            errors: self.errors,
            session_losses: self.losses,
            p50_ms: percentile_ms(&self.latency, 50.0),
            p99_ms: percentile_ms(&self.latency, 99.0),
            per_replica: self.per_replica,
        }
    }
}

/// One second of the run: what completed in `[t, t+1)` seconds after the start.
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
    pub loss_unauthorized: u64,
    pub loss_cart: u64,
    /// Requests sent more than [`LATE_THRESHOLD`] after their think time ended, and the largest
    /// such lag: the generator's own lateness.
    pub steps_late: u64,
    pub max_step_lag_ms: f64,
}

/// The band the run's steady state stayed in before the fault, and when the run got back into it:
/// throughput and p99 as the issue asks, and failures, so that a second of errors after the kill
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

    fn sample(intended: Instant, sent_ms: u64, done_ms: u64) -> Sample<'static> {
        Sample {
            intended,
            sent: intended + Duration::from_millis(sent_ms),
            done: intended + Duration::from_millis(done_ms),
            error: None,
            replica: Some(b"r-1"),
        }
    }

    #[test]
    fn latency_counts_from_the_intended_send_time() {
        let t0 = Instant::now();
        // Meant for t0, sent 100 ms late (the generator or a stalled connection held it),
        // answered 5 ms after it went out.
        let s = sample(t0, 100, 105);
        assert_eq!(s.latency(), Duration::from_millis(105));
        assert_eq!(s.service_time(), Duration::from_millis(5));

        let rec = Recorder::new(t0, Duration::from_secs(2));
        rec.record(1, &s);
        let m = rec.finish(2, true);
        assert!((percentile_ms(&m.latency, 50.0) - 105.0).abs() < 0.2);
        assert!((percentile_ms(&m.service, 50.0) - 5.0).abs() < 0.01);
    }

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
    fn series_counts_per_second_replica_and_kind() {
        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(3));
        rec.record(1, &sample(t0, 0, 10));
        rec.record(2, &sample(t0 + Duration::from_millis(1500), 0, 10));
        let mut failed = sample(t0 + Duration::from_millis(1600), 0, 20);
        failed.error = Some(ErrorKind::Status5xx);
        failed.replica = None;
        rec.record(3, &failed);
        let mut refused = failed;
        refused.error = Some(ErrorKind::Connect);
        rec.record(3, &refused);
        rec.record_loss(4, t0 + Duration::from_millis(2100), LossKind::Unauthorized);
        rec.record_loss(4, t0 + Duration::from_millis(2200), LossKind::CartMismatch);
        // Answered after the end: counted in the last second of a run that ran its course,
        // left out of one cut short.
        let mut late = sample(t0 + Duration::from_millis(2900), 0, 1200);
        late.error = Some(ErrorKind::Timeout);
        rec.record(5, &late);

        let cut = rec.finish(2, false);
        assert_eq!(cut.series.len(), 2);
        assert_eq!(cut.series.iter().map(|s| s.requests).sum::<u64>(), 4);
        assert_eq!((cut.loss_unauthorized, cut.loss_cart), (0, 0));

        let m = rec.finish(3, true);
        assert_eq!(m.series.len(), 3);
        assert_eq!((m.series[0].requests, m.series[0].ok), (1, 1));
        assert_eq!(
            (m.series[1].requests, m.series[1].ok, m.series[1].failed),
            (3, 1, 2)
        );
        assert_eq!(m.series[1].errors.status_5xx, 1);
        assert_eq!(m.series[1].errors.connect, 1);
        assert_eq!(m.series[1].per_replica.get("r-1"), Some(&1));
        assert_eq!(m.series[2].session_losses, 2);
        assert_eq!((m.loss_unauthorized, m.loss_cart), (1, 1));
        assert_eq!((m.series[2].requests, m.series[2].errors.timeout), (1, 1));
        // Connect failures are not latency samples; the 5xx and the timeout are.
        assert_eq!(m.latency.len(), 4);
        assert!((m.last_seen["r-1"] - 1.51).abs() < 0.001);
    }

    #[test]
    fn last_seen_stops_at_the_restart() {
        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(5));
        rec.record(1, &sample(t0 + Duration::from_millis(3000), 0, 10));
        // Answers again after its restart at 5 s: not "still answering after the kill".
        rec.record(1, &sample(t0 + Duration::from_millis(7000), 0, 10));
        let m = rec.finish(10, true);
        assert!((m.last_seen["r-1"] - 3.01).abs() < 0.001);
        assert_eq!(m.series[7].per_replica.get("r-1"), Some(&1));
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

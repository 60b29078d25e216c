//! Recording: what the virtual users touch on every request ([`Recorder::record`]) and every
//! session loss, and the merge of it all into the run's record when the run ends
//! ([`Recorder::finish`]).
//!
//! Recording is sharded (one mutex per shard, a user always records into the same shard) so a
//! fast run does not serialise on one lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::analysis::{
    percentile_ms, Acknowledged, FileCounts, FileEvent, Measured, Moments, SecondDetail,
    SecondStats,
};
use super::moves::{Epochs, KillMark};
use super::{new_histogram, ErrorCounts, MAX_LATENCY_US};
use crate::client::ErrorKind;

const SHARDS: usize = 8;
/// A start or step sent later than this after its time counts as late.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(5);

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

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

/// What one second of the run counted while it happened. One type for both places a second is
/// counted, generic over how requests per replica are kept: on the hot path, a `Vec` indexed like
/// the shard's replica names ([`ShardSecond`]: no string lookup or allocation per request); once
/// the shards are merged, by name ([`MergedSecond`]: each shard numbers its replicas in its own
/// order). [`SecondStats`] is the reduced form the reports hold.
#[derive(Debug)]
struct Tally<R> {
    requests: u64,
    ok: u64,
    errors: ErrorCounts,
    losses: u64,
    /// Of `losses`, those found by a wrong cart (the rest were 401s).
    loss_cart: u64,
    /// Cart adds answered 200, and those a later answer no longer showed.
    acknowledged_adds: u64,
    acknowledged_adds_lost: u64,
    files: FileCounts,
    /// Latency of the 2xx answers; the timeline's p50/p99 add `latency_failed` to it.
    latency_ok: Histogram<u64>,
    /// Latency of the other answers and timeouts: made on the second's first, as most seconds
    /// have none and a histogram is kilobytes.
    latency_failed: Option<Histogram<u64>>,
    per_replica: R,
    /// Sessions answered by each replica in this second (each counted once a replica).
    sessions_per_replica: R,
}

/// A second as a shard records it.
type ShardSecond = Tally<Vec<u64>>;
/// A second of the whole run, the shards merged.
type MergedSecond = Tally<BTreeMap<String, u64>>;

impl<R: Default> Tally<R> {
    fn new() -> Self {
        Tally {
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            losses: 0,
            loss_cart: 0,
            acknowledged_adds: 0,
            acknowledged_adds_lost: 0,
            files: FileCounts::default(),
            // Two significant digits are enough for a per-second p99 and keep each second small.
            latency_ok: new_histogram(2),
            latency_failed: None,
            per_replica: R::default(),
            sessions_per_replica: R::default(),
        }
    }

    fn record_latency(&mut self, ok: bool, micros: u64) {
        let h = if ok {
            &mut self.latency_ok
        } else {
            self.latency_failed.get_or_insert_with(|| new_histogram(2))
        };
        // In range by construction (micros clamps), so recording cannot fail.
        let _ = h.record(micros);
    }

    /// Every answer's latency: the 2xx ones and the others.
    fn latency(&self) -> Histogram<u64> {
        let mut all = self.latency_ok.clone();
        if let Some(failed) = &self.latency_failed {
            // Same bounds, so adding cannot fail.
            let _ = all.add(failed);
        }
        all
    }
}

impl MergedSecond {
    /// Adds a shard's second, whose replicas are numbered like `names`.
    fn add(&mut self, s: &ShardSecond, names: &[String]) {
        self.requests += s.requests;
        self.ok += s.ok;
        self.errors.merge(&s.errors);
        self.losses += s.losses;
        self.loss_cart += s.loss_cart;
        self.acknowledged_adds += s.acknowledged_adds;
        self.acknowledged_adds_lost += s.acknowledged_adds_lost;
        self.files.merge(&s.files);
        // All histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_ok.add(&s.latency_ok);
        if let Some(failed) = &s.latency_failed {
            let mine = self.latency_failed.get_or_insert_with(|| new_histogram(2));
            let _ = mine.add(failed);
        }
        for (name, n) in names.iter().zip(&s.per_replica) {
            if *n > 0 {
                *self.per_replica.entry(name.clone()).or_insert(0) += n;
            }
        }
        for (name, n) in names.iter().zip(&s.sessions_per_replica) {
            if *n > 0 {
                *self.sessions_per_replica.entry(name.clone()).or_insert(0) += n;
            }
        }
    }

    fn into_stats(self, t: u64) -> (SecondStats, SecondDetail) {
        let latency = self.latency();
        let stats = SecondStats {
            t,
            requests: self.requests,
            ok: self.ok,
            failed: self.errors.total(),
            errors: self.errors,
            session_losses: self.losses,
            p50_ms: percentile_ms(&latency, 50.0),
            p99_ms: percentile_ms(&latency, 99.0),
            per_replica: self.per_replica,
            sessions_per_replica: self.sessions_per_replica,
        };
        let detail = SecondDetail {
            ok_latency: self.latency_ok,
            acknowledged: Acknowledged {
                adds: self.acknowledged_adds,
                adds_lost: self.acknowledged_adds_lost,
                logins_lost: self.losses - self.loss_cart,
            },
            files: self.files,
        };
        (stats, detail)
    }
}

#[derive(Debug)]
struct Shard {
    latency: Histogram<u64>,
    /// The heavy users' latency (users below [`Recorder::set_heavy`]'s bound).
    heavy: Histogram<u64>,
    service: Histogram<u64>,
    seconds: Vec<ShardSecond>,
    names: Vec<Box<[u8]>>,
    /// Latest answer from each replica (same index as `names`), as time since the start.
    last_seen: Vec<Duration>,
    /// First answer from each replica (same index as `names`), as time since the start.
    first_seen: Vec<Duration>,
    moments: Moments,
}

impl Shard {
    fn new() -> Self {
        Shard {
            latency: new_histogram(3),
            heavy: new_histogram(3),
            service: new_histogram(3),
            seconds: Vec::new(),
            names: Vec::new(),
            last_seen: Vec::new(),
            first_seen: Vec::new(),
            moments: Moments::default(),
        }
    }

    fn second(&mut self, index: usize) -> &mut ShardSecond {
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, Tally::new);
        }
        &mut self.seconds[index]
    }

    /// The index of replica `name`, which answered `at` after the start.
    fn replica_index(&mut self, name: &[u8], at: Duration) -> usize {
        match self.names.iter().position(|n| &n[..] == name) {
            Some(i) => {
                if self.first_seen[i] > at {
                    self.first_seen[i] = at;
                }
                i
            }
            None => {
                self.names.push(name.into());
                self.last_seen.push(Duration::ZERO);
                self.first_seen.push(at);
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
    epochs: Epochs,
    kill: KillMark,
    /// Users whose id is below this are the heavy users, whose latency is kept apart too.
    heavy_below: AtomicU64,
    /// Every avatar the service said it stored, for the read-back after the run: 16 bytes each,
    /// one at most per session.
    stored: Mutex<Vec<StoredFile>>,
}

/// An avatar the service said it stored: the user and its session, which name the account and
/// give the bytes again (`workflow::username`, `workflow::avatar_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFile {
    pub user: u64,
    pub session: u64,
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
            epochs: Epochs::default(),
            kill: KillMark::default(),
            heavy_below: AtomicU64::new(0),
            stored: Mutex::new(Vec::new()),
        }
    }

    /// Keeps an avatar the service said it stored, for the read-back after the run.
    pub fn keep_stored(&self, file: StoredFile) {
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(file);
    }

    /// The avatars stored over the run, in the order they were.
    pub fn take_stored(&self) -> Vec<StoredFile> {
        std::mem::take(&mut *self.stored.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Users 0..`n` are the heavy ones (a skewed run's heaviest users).
    pub fn set_heavy(&self, n: u64) {
        self.heavy_below.store(n, Ordering::Relaxed);
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// The run's scale events as sessions see them (what moved, what was lost).
    pub fn epochs(&self) -> &Epochs {
        &self.epochs
    }

    /// The run's replica kill as sessions see it (which were on the killed replica).
    pub fn kill(&self) -> &KillMark {
        &self.kill
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
        let replica = sample
            .replica
            .map(|name| shard.replica_index(name, since_start));
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
            if user < self.heavy_below.load(Ordering::Relaxed) {
                let _ = shard.heavy.record(latency);
            }
        }
        let ms = u32::try_from(since_start.as_millis()).unwrap_or(u32::MAX);
        match sample.error {
            None => shard.moments.ok(ms),
            Some(_) => shard.moments.failed(ms),
        }
        let s = shard.second(second);
        s.requests += 1;
        match sample.error {
            None => s.ok += 1,
            Some(kind) => s.errors.add(kind),
        }
        if sample.has_latency() {
            s.record_latency(sample.error.is_none(), latency);
        }
        if let Some(i) = replica {
            if s.per_replica.len() <= i {
                s.per_replica.resize(i + 1, 0);
            }
            s.per_replica[i] += 1;
        }
    }

    /// Records that a session of user `user` had an answer from `replica` at `at`: the caller
    /// calls this once per session, replica and second (the user keeps what it counted last).
    pub fn record_session_seen(&self, user: u64, at: Instant, replica: &[u8]) {
        let second = self.second_of(at);
        let since_start = at.saturating_duration_since(self.start);
        let mut shard = self.shard(user);
        let i = shard.replica_index(replica, since_start);
        let s = shard.second(second);
        if s.sessions_per_replica.len() <= i {
            s.sessions_per_replica.resize(i + 1, 0);
        }
        s.sessions_per_replica[i] += 1;
    }

    /// The second of the run `at` falls in.
    pub fn second_at(&self, at: Instant) -> u64 {
        self.second_of(at) as u64
    }

    /// Records how late a request went out after its think time ended (the generator's own lag).
    pub fn record_step_lag(&self, lag: Duration) {
        self.max_step_lag_us
            .fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
        if lag > LATE_THRESHOLD {
            self.steps_late.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records that user `user`'s cart add was answered 200 at `at`.
    pub fn record_acknowledged_add(&self, user: u64, at: Instant) {
        let second = self.second_of(at);
        self.shard(user).second(second).acknowledged_adds += 1;
    }

    /// Records that a cart user `user` read at `at` no longer showed `adds` of its acknowledged
    /// adds.
    pub fn record_acknowledged_adds_lost(&self, user: u64, at: Instant, adds: u64) {
        let second = self.second_of(at);
        self.shard(user).second(second).acknowledged_adds_lost += adds;
    }

    /// Records what an avatar request of user `user` found at `at`.
    pub fn record_file(&self, user: u64, at: Instant, event: FileEvent) {
        let second = self.second_of(at);
        self.shard(user).second(second).files.count(event);
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
                    let _ = last.add(&s.latency_ok);
                    if let Some(failed) = &s.latency_failed {
                        let _ = last.add(failed);
                    }
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
        let mut heavy = new_histogram(3);
        let mut service = new_histogram(3);
        let mut series: Vec<MergedSecond> = (0..seconds).map(|_| Tally::new()).collect();
        let mut last_seen: BTreeMap<String, f64> = BTreeMap::new();
        let mut first_seen: BTreeMap<String, f64> = BTreeMap::new();
        let mut moments = Moments::default();
        let seconds = seconds.max(1);
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = latency.add(&shard.latency);
            let _ = heavy.add(&shard.heavy);
            let _ = service.add(&shard.service);
            moments.merge(&shard.moments);
            let names: Vec<String> = shard
                .names
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            for (name, seen) in names.iter().zip(&shard.last_seen) {
                let entry = last_seen.entry(name.clone()).or_insert(0.0);
                *entry = entry.max(seen.as_secs_f64());
            }
            for (name, seen) in names.iter().zip(&shard.first_seen) {
                let entry = first_seen.entry(name.clone()).or_insert(f64::INFINITY);
                *entry = entry.min(seen.as_secs_f64());
            }
            for (i, s) in shard.seconds.iter().enumerate() {
                if i >= seconds && !keep_tail {
                    continue;
                }
                let Some(acc) = series.get_mut(i.min(seconds - 1)) else {
                    continue;
                };
                acc.add(s, &names);
            }
        }
        let loss_cart = series.iter().map(|s| s.loss_cart).sum();
        let loss_unauthorized = series.iter().map(|s| s.losses - s.loss_cart).sum();
        let (series, detail) = series
            .into_iter()
            .enumerate()
            .map(|(t, acc)| acc.into_stats(t as u64))
            .unzip();
        moments.finish((!keep_tail).then(|| (seconds * 1000) as u32));
        Measured {
            latency,
            heavy_latency: heavy,
            service,
            series,
            last_seen,
            first_seen,
            moves: self.epochs.counts(),
            on_killed: self.kill.on_killed(),
            loss_unauthorized,
            loss_cart,
            steps_late: self.steps_late.load(Ordering::Relaxed),
            max_step_lag_ms: self.max_step_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
            detail,
            moments,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Acknowledged;

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
    fn live_sessions_merge_per_second_and_replica_across_shards() {
        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(3));
        rec.set_heavy(1);
        rec.record(0, &sample(t0, 0, 10));
        rec.record(9, &sample(t0, 0, 30));
        rec.record_session_seen(1, t0 + Duration::from_millis(10), b"r-1");
        rec.record_session_seen(2, t0 + Duration::from_millis(20), b"r-1");
        rec.record_session_seen(3, t0 + Duration::from_millis(1500), b"r-2");
        let m = rec.finish(2, true);
        assert_eq!(m.series[0].sessions_per_replica.get("r-1"), Some(&2));
        assert_eq!(m.series[1].sessions_per_replica.get("r-2"), Some(&1));
        assert_eq!(rec.second_at(t0 + Duration::from_millis(1500)), 1);
        // Only user 0 is heavy: one latency sample apart.
        assert_eq!(m.heavy_latency.len(), 1);
        assert_eq!(m.latency.len(), 2);
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
        assert!((m.first_seen["r-1"] - 0.01).abs() < 0.001);
    }

    #[test]
    fn ok_latency_moments_and_acknowledged_writes_are_kept_per_second() {
        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(3));
        rec.record(1, &sample(t0, 0, 10));
        let mut slow_5xx = sample(t0 + Duration::from_millis(200), 0, 500);
        slow_5xx.error = Some(ErrorKind::Status5xx);
        rec.record(2, &slow_5xx);
        rec.record(3, &sample(t0 + Duration::from_millis(1_000), 0, 20));
        rec.record_acknowledged_add(1, t0 + Duration::from_millis(1_100));
        rec.record_acknowledged_add(2, t0 + Duration::from_millis(1_200));
        rec.record_acknowledged_adds_lost(2, t0 + Duration::from_millis(2_100), 2);
        rec.record_loss(2, t0 + Duration::from_millis(2_100), LossKind::CartMismatch);
        rec.record_loss(3, t0 + Duration::from_millis(2_200), LossKind::Unauthorized);
        let m = rec.finish(3, true);
        // The timeline's latency has both answers of second 0; the 2xx latency only the 2xx.
        assert!((m.series[0].p99_ms - 500.0).abs() < 5.0);
        assert_eq!(m.detail[0].ok_latency.len(), 1);
        assert!((percentile_ms(&m.detail[0].ok_latency, 99.0) - 10.0).abs() < 0.1);
        assert_eq!(m.detail[1].acknowledged.adds, 2);
        assert_eq!(
            m.detail[2].acknowledged,
            Acknowledged {
                adds: 0,
                adds_lost: 2,
                logins_lost: 1
            }
        );
        let w = super::super::failure_window(&m.moments, 0.0);
        assert_eq!(
            (w.first_failed_s, w.first_ok_after_s),
            (Some(0.7), Some(1.02))
        );
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
}

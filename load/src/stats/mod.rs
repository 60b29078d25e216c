//! Measurement: what every request and session loss adds to the run's record ([`record`]), and
//! the figures the reports are made of ([`analysis`]).
//!
//! Latency is measured from the moment a request was *meant* to be sent, not from when it was
//! sent: a generator that falls behind (or a server that stalls the generator) would otherwise
//! hide the wait it caused — coordinated omission. The time from the actual send is kept as well,
//! as service time. Both go into HdrHistograms.
//!
//! This module holds what both halves share: the error counts and the histograms' bounds.

pub mod analysis;
pub mod moves;
pub mod record;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use analysis::{
    failure_window, ok_latency, percentile_ms, recovery, Acknowledged, FailureWindow, FileCounts,
    FileEvent, Measured, Moments, OkLatency, Recovery, SecondDetail, SecondStats, BAND_SLACK,
    P99_SLACK, STABLE_SECONDS,
};
pub use moves::{Epochs, KillMark, MoveCounts, SessionTrack};
pub use record::{LossKind, Progress, Recorder, Sample, StoredFile, LATE_THRESHOLD};

use crate::client::ErrorKind;

/// Highest latency the histograms hold, in microseconds (larger values are clamped to it).
const MAX_LATENCY_US: u64 = 120_000_000;

pub(crate) fn new_histogram(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants within hdrhistogram's limits, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).unwrap_or_else(|_| unreachable!())
}

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

//! The work knob: CPU spent on every API request, standing for the page rendering and business
//! logic a real service does, so that a replica with a CPU budget has a capacity to measure.
//!
//! The work is a chain of 64-bit mixes (the SplitMix64 finaliser) seeded from the request's
//! path: each step needs the one before, so it can neither be skipped nor run in parallel, and
//! it touches no memory. At start the service times the chain on this machine and turns
//! `--work-us N` into a number of steps; after that every request runs that same number of steps,
//! whatever the CPU budget does to its wall time. The timing takes the fastest of several short
//! bursts, so a burst that a CPU quota or another process interrupted does not skew it.

use std::hint::black_box;
use std::time::Instant;

/// Steps in one calibration burst: about 30-100 µs on current x86-64 machines, short enough
/// that most bursts run inside one CPU-quota period without being throttled.
const BURST_STEPS: u64 = 50_000;
/// Calibration bursts; the fastest one counts.
const BURSTS: u32 = 25;
pub use statelab_formats::lab::MAX_WORK_US;

/// The CPU work done for each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    /// The work asked for, in microseconds of CPU on this machine.
    pub us: u32,
    /// The chain's length that takes `us` here.
    pub steps: u64,
}

/// One step of the chain.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs the chain `steps` long from `seed`.
pub fn chain(seed: u64, steps: u64) -> u64 {
    let mut h = seed;
    for _ in 0..steps {
        h = mix(black_box(h));
    }
    h
}

/// Steps for `us` microseconds at `steps_per_sec`.
pub fn steps_for(us: u32, steps_per_sec: f64) -> u64 {
    (f64::from(us) * steps_per_sec / 1e6).round() as u64
}

/// How many steps a second this machine runs: the fastest of several short bursts.
pub fn steps_per_sec() -> f64 {
    let mut best = f64::INFINITY;
    for i in 0..BURSTS {
        let started = Instant::now();
        black_box(chain(u64::from(i), BURST_STEPS));
        best = best.min(started.elapsed().as_secs_f64());
    }
    BURST_STEPS as f64 / best.max(1e-9)
}

impl Work {
    /// No work: the service answers as fast as it can.
    pub const NONE: Work = Work { us: 0, steps: 0 };

    /// `us` microseconds a request, calibrated on this machine (no calibration for 0).
    pub fn calibrated(us: u32) -> Work {
        if us == 0 {
            return Work::NONE;
        }
        Work {
            us,
            steps: steps_for(us, steps_per_sec()),
        }
    }

    /// Does one request's work over `path`.
    pub fn spend(&self, path: &str) {
        if self.steps == 0 {
            return;
        }
        // FNV-1a of the path: the chain's seed differs by route, as rendering would.
        let seed = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        black_box(chain(seed, self.steps));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_work_is_no_work() {
        assert_eq!(Work::calibrated(0), Work::NONE);
    }

    #[test]
    fn steps_scale_with_the_time_asked() {
        assert_eq!(steps_for(1000, 2e8), 200_000);
        assert_eq!(steps_for(250, 2e8), 50_000);
        assert_eq!(steps_for(0, 2e8), 0);
    }

    #[test]
    fn the_chain_depends_on_every_step() {
        assert_ne!(chain(1, 10), chain(1, 11));
        assert_ne!(chain(1, 10), chain(2, 10));
        assert_eq!(chain(7, 0), 7);
    }

    #[test]
    fn calibration_gives_a_plausible_rate() {
        // Any machine this builds on mixes more than 10 million and fewer than 100 billion
        // steps a second; outside that the timing, not the machine, is wrong.
        let rate = steps_per_sec();
        assert!((1e7..1e11).contains(&rate), "{rate} steps/s");
        let work = Work::calibrated(1000);
        assert_eq!(work.us, 1000);
        assert!(work.steps > 10_000, "{work:?}");
    }
}

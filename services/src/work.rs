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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Steps in one calibration burst: about 30-100 µs on current x86-64 machines, short enough
/// that most bursts run inside one CPU-quota period without being throttled.
const BURST_STEPS: u64 = 50_000;
/// Calibration bursts; the fastest one counts.
const BURSTS: u32 = 25;
pub use statelab_formats::lab::{WorkDist, MAX_WORK_DRAW, MAX_WORK_US};

/// The CPU work done for each request.
#[derive(Clone, Debug)]
pub struct Work {
    /// The work asked for, in microseconds of CPU on this machine: each request's, or with
    /// [`WorkDist::Exp`] their mean.
    pub us: u32,
    /// The chain's length that takes `us` here.
    pub steps: u64,
    pub dist: WorkDist,
    /// Requests drawn so far: the draws' sequence, shared by the service's threads.
    draws: Arc<AtomicU64>,
}

impl PartialEq for Work {
    fn eq(&self, other: &Work) -> bool {
        (self.us, self.steps, self.dist) == (other.us, other.steps, other.dist)
    }
}

/// The `n`-th draw of an exponential distribution of mean 1, capped at [`MAX_WORK_DRAW`]: the
/// inverse of its distribution function at a uniform number made from `n` by the chain's mix.
pub fn exp_draw(n: u64) -> f64 {
    // 53 bits of the mix as a uniform number in (0, 1].
    let u = ((mix(n) >> 11) + 1) as f64 / (1u64 << 53) as f64;
    (-u.ln()).min(MAX_WORK_DRAW)
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
    pub fn none() -> Work {
        Work {
            us: 0,
            steps: 0,
            dist: WorkDist::Fixed,
            draws: Arc::default(),
        }
    }

    /// `us` microseconds a request, calibrated on this machine (no calibration for 0), each
    /// request's varying as `dist` says.
    pub fn calibrated(us: u32, dist: WorkDist) -> Work {
        if us == 0 {
            return Work::none();
        }
        Work {
            us,
            steps: steps_for(us, steps_per_sec()),
            dist,
            draws: Arc::default(),
        }
    }

    /// The steps of the next request's work.
    fn next_steps(&self) -> u64 {
        match self.dist {
            WorkDist::Fixed => self.steps,
            WorkDist::Exp => {
                let n = self.draws.fetch_add(1, Ordering::Relaxed);
                (self.steps as f64 * exp_draw(n)).round() as u64
            }
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
        black_box(chain(seed, self.next_steps()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_work_is_no_work() {
        assert_eq!(Work::calibrated(0, WorkDist::Exp), Work::none());
    }

    #[test]
    fn exponential_draws_have_mean_one_and_a_long_capped_tail() {
        let draws: Vec<f64> = (0..200_000).map(exp_draw).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        // P(X > 3) = e^-3, about 5%; P(X < 0.1) = 1 - e^-0.1, about 9.5%.
        let share = |f: &dyn Fn(f64) -> bool| {
            draws.iter().filter(|&&d| f(d)).count() as f64 / draws.len() as f64
        };
        assert!((share(&|d| d > 3.0) - (-3f64).exp()).abs() < 0.005);
        assert!((share(&|d| d < 0.1) - (1.0 - (-0.1f64).exp())).abs() < 0.005);
        assert!(draws.iter().all(|&d| (0.0..=MAX_WORK_DRAW).contains(&d)));
        let work = Work {
            us: 1000,
            steps: 1000,
            dist: WorkDist::Exp,
            draws: Arc::default(),
        };
        let steps: Vec<u64> = (0..100).map(|_| work.next_steps()).collect();
        assert!(steps.iter().any(|&s| s < 500) && steps.iter().any(|&s| s > 1500));
        let fixed = Work {
            dist: WorkDist::Fixed,
            ..work
        };
        assert!((0..10).all(|_| fixed.next_steps() == 1000));
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
        let work = Work::calibrated(1000, WorkDist::Fixed);
        assert_eq!(work.us, 1000);
        assert!(work.steps > 10_000, "{work:?}");
    }
}

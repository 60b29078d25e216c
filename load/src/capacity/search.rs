//! The search for a pool's capacity: the highest open-model arrival rate whose step meets the
//! SLO. A ramp doubles the rate from the start rate while steps pass; the first failure brackets
//! the capacity between the last pass and it, and a bisection narrows the bracket. A step in
//! which the generator itself lagged proves nothing about the pool: the search stops there and
//! says so.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a step must meet to pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// The highest p99 latency, in milliseconds.
    pub p99_ms: f64,
    /// The highest share of failed requests, from 0 to 1.
    pub errors: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            p99_ms: 50.0,
            errors: 0.001,
        }
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p99={}ms,errors={}%", self.p99_ms, self.errors * 100.0)
    }
}

/// `p99=50ms,errors=0.1%`, either part alone, in any order.
impl FromStr for Slo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut slo = Slo::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not KEY=VALUE (p99=50ms, errors=0.1%)"))?;
            match key.trim() {
                "p99" => {
                    let ms = value.trim().strip_suffix("ms").unwrap_or(value.trim());
                    slo.p99_ms = ms
                        .parse()
                        .ok()
                        .filter(|v: &f64| v.is_finite() && *v > 0.0)
                        .ok_or_else(|| {
                            format!("p99 must be a positive number of ms, got '{value}'")
                        })?;
                }
                "errors" => {
                    let pct = value.trim().strip_suffix('%').unwrap_or(value.trim());
                    let share: f64 = pct
                        .parse()
                        .ok()
                        .filter(|v: &f64| (0.0..=100.0).contains(v))
                        .ok_or_else(|| {
                            format!("errors must be a percentage 0-100, got '{value}'")
                        })?;
                    slo.errors = share / 100.0;
                }
                other => return Err(format!("unknown SLO key '{other}': expected p99 or errors")),
            }
        }
        Ok(slo)
    }
}

/// What one step measured, as the search judges it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub rate: f64,
    pub p99_ms: f64,
    pub error_share: f64,
    /// The generator fell behind its own schedule.
    pub generator_lagged: bool,
}

impl Verdict {
    pub fn passes(&self, slo: &Slo) -> bool {
        !self.generator_lagged && self.p99_ms <= slo.p99_ms && self.error_share <= slo.errors
    }
}

/// How the search is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchPlan {
    /// The first rate tried (sessions a second).
    pub start_rate: f64,
    /// No rate above this is tried; a pool passing it has at least this capacity.
    pub max_rate: f64,
    /// Bisection steps after the ramp's first failure.
    pub bisections: u32,
}

/// Why the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// Bracketed and narrowed: the capacity lies between the best pass and the lowest failure.
    Bracketed,
    /// Even the start rate failed: the capacity is below it.
    BelowStart,
    /// The largest rate allowed passed: the capacity is at least that.
    AtMaxRate,
    /// The generator lagged at a step: no capacity above the last pass can be claimed.
    GeneratorLimited,
}

/// The search's state: feed it each step's verdict, ask it for the next rate.
#[derive(Debug, Clone)]
pub struct Search {
    plan: SearchPlan,
    slo: Slo,
    best_pass: Option<f64>,
    lowest_fail: Option<f64>,
    bisections_done: u32,
    next: Option<f64>,
    ending: Option<Ending>,
}

impl Search {
    pub fn new(plan: SearchPlan, slo: Slo) -> Search {
        Search {
            plan,
            slo,
            best_pass: None,
            lowest_fail: None,
            bisections_done: 0,
            next: Some(plan.start_rate.min(plan.max_rate)),
            ending: None,
        }
    }

    /// The next rate to try; `None` once the search has ended.
    pub fn next_rate(&self) -> Option<f64> {
        self.next
    }

    /// The best passing rate, if any passed.
    pub fn best(&self) -> Option<f64> {
        self.best_pass
    }

    pub fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// Takes a step's verdict and chooses the next rate.
    pub fn record(&mut self, v: Verdict) {
        if v.generator_lagged {
            self.finish(Ending::GeneratorLimited);
            return;
        }
        if v.passes(&self.slo) {
            self.best_pass = Some(self.best_pass.map_or(v.rate, |b| b.max(v.rate)));
        } else {
            self.lowest_fail = Some(self.lowest_fail.map_or(v.rate, |f| f.min(v.rate)));
        }
        self.next = match (self.best_pass, self.lowest_fail) {
            (None, Some(_)) => {
                self.finish(Ending::BelowStart);
                return;
            }
            (Some(pass), None) => {
                if pass >= self.plan.max_rate {
                    self.finish(Ending::AtMaxRate);
                    return;
                }
                Some((pass * 2.0).min(self.plan.max_rate))
            }
            (Some(pass), Some(fail)) => {
                if self.bisections_done >= self.plan.bisections {
                    self.finish(Ending::Bracketed);
                    return;
                }
                self.bisections_done += 1;
                Some((pass + fail) / 2.0)
            }
            (None, None) => self.next,
        };
    }

    fn finish(&mut self, ending: Ending) {
        self.ending = Some(ending);
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service whose p99 stays low up to its capacity and climbs past it.
    fn synthetic(capacity: f64) -> impl Fn(f64) -> Verdict {
        move |rate| Verdict {
            rate,
            p99_ms: if rate <= capacity {
                10.0 + 20.0 * rate / capacity
            } else {
                200.0
            },
            error_share: 0.0,
            generator_lagged: false,
        }
    }

    fn run(plan: SearchPlan, service: impl Fn(f64) -> Verdict) -> (Search, Vec<f64>) {
        let mut search = Search::new(plan, Slo::default());
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.record(service(rate));
            assert!(tried.len() < 50, "the search does not end: {tried:?}");
        }
        (search, tried)
    }

    const PLAN: SearchPlan = SearchPlan {
        start_rate: 10.0,
        max_rate: 1000.0,
        bisections: 4,
    };

    #[test]
    fn the_ramp_then_the_bisection_close_in_on_the_capacity() {
        let (search, tried) = run(PLAN, synthetic(100.0));
        assert_eq!(&tried[..5], &[10.0, 20.0, 40.0, 80.0, 160.0]);
        assert_eq!(search.ending(), Some(Ending::Bracketed));
        let best = search.best().expect("a pass");
        // Bracketed in [80, 160] and halved four times: within 5 of the truth.
        assert!((95.0..=100.0).contains(&best), "{best} after {tried:?}");
    }

    #[test]
    fn a_pool_that_fails_at_once_has_no_capacity_claimed() {
        let (search, tried) = run(PLAN, synthetic(5.0));
        assert_eq!(tried, vec![10.0]);
        assert_eq!(search.best(), None);
        assert_eq!(search.ending(), Some(Ending::BelowStart));
    }

    #[test]
    fn the_search_stops_at_the_largest_rate() {
        let (search, tried) = run(PLAN, synthetic(1e9));
        assert_eq!(tried.last(), Some(&1000.0));
        assert_eq!(search.best(), Some(1000.0));
        assert_eq!(search.ending(), Some(Ending::AtMaxRate));
    }

    #[test]
    fn a_lagging_generator_ends_the_search_without_a_claim_beyond_it() {
        let service = |rate: f64| Verdict {
            generator_lagged: rate > 30.0,
            ..synthetic(100.0)(rate)
        };
        let (search, tried) = run(PLAN, service);
        assert_eq!(tried, vec![10.0, 20.0, 40.0]);
        assert_eq!(search.best(), Some(20.0));
        assert_eq!(search.ending(), Some(Ending::GeneratorLimited));
    }

    #[test]
    fn errors_fail_a_step_as_latency_does() {
        let slo = Slo::default();
        let mut v = synthetic(100.0)(50.0);
        assert!(v.passes(&slo));
        v.error_share = 0.002;
        assert!(!v.passes(&slo));
    }

    #[test]
    fn an_slo_reads_from_its_flag() {
        let slo: Slo = "p99=80ms,errors=0.5%".parse().expect("parse");
        assert_eq!(slo.p99_ms, 80.0);
        assert!((slo.errors - 0.005).abs() < 1e-12);
        assert_eq!("errors=1%".parse::<Slo>().expect("parse").p99_ms, 50.0);
        assert!("p99=fast".parse::<Slo>().is_err());
        assert!("latency=5ms".parse::<Slo>().is_err());
        assert!("errors=200%".parse::<Slo>().is_err());
    }
}

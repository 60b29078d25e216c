//! The capacity record (`capacity.json`) and its terminal table.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use statelab_formats::Design;

use super::bottleneck::{Bottleneck, PartUse};
use super::search::{Ending, SearchPlan, Slo};
use super::usl::Usl;

/// One step of a search: a rate held for the step's seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Sessions started a second (the open model's arrival rate).
    pub rate: f64,
    /// 2xx answers a second.
    pub throughput_rps: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed requests over all requests.
    pub error_share: f64,
    /// The generator fell behind its own schedule (late or dropped starts, late steps).
    pub generator_lagged: bool,
    pub passed: bool,
    /// Every part's CPU over the step, the generator's included.
    pub cpu: Vec<PartUse>,
    /// The host's busy cores over the step.
    pub host_busy_cores: f64,
    pub bottleneck: Bottleneck,
}

/// The capacity at one replica count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub replicas: u8,
    /// Why the search ended: a capacity is claimed only when `bracketed` or `at-max-rate`.
    pub ending: Ending,
    /// The best passing step, if one passed.
    pub best: Option<Step>,
    /// Every step tried, in order.
    pub steps: Vec<Step>,
}

impl Point {
    /// The capacity in requests a second: the best step's throughput.
    pub fn capacity_rps(&self) -> Option<f64> {
        self.best.as_ref().map(|s| s.throughput_rps)
    }
}

/// The fit on the first replica counts only, and what it predicted for the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    pub fitted_on: Vec<u8>,
    pub model: Usl,
    pub predictions: Vec<Prediction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub replicas: u8,
    pub predicted_rps: f64,
    pub measured_rps: f64,
    /// (predicted − measured) / measured.
    pub error: f64,
}

/// A whole capacity run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityReport {
    pub label: String,
    pub service: Design,
    pub strategy: Option<String>,
    pub slo: Slo,
    pub search: SearchPlan,
    pub step_secs: u64,
    /// The host's cores: every figure is from this machine, in this run.
    pub host_cores: u32,
    pub started_unix_ms: u64,
    pub points: Vec<Point>,
    /// The USL fitted to every point with a capacity.
    pub fit: Option<Usl>,
    /// Fitted on the first points only, tested on the rest.
    pub holdout: Option<Holdout>,
    /// One sentence: did adding replicas help, and what limited it.
    pub verdict: String,
}

impl CapacityReport {
    /// `(N, X(N))` of every point with a capacity.
    pub fn measured(&self) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .filter_map(|p| Some((f64::from(p.replicas), p.capacity_rps()?)))
            .collect()
    }
}

/// The speed-up X(N)/X(n) and the efficiency X(N)/((N/n)·X(n)) from the point `(n, X(n))` to
/// `(N, X(N))`; `None` when the first point has no capacity.
pub fn speedup_and_efficiency((n1, x1): (f64, f64), (n2, x2): (f64, f64)) -> Option<(f64, f64)> {
    (x1 > 0.0 && n1 > 0.0).then(|| {
        let speedup = x2 / x1;
        (speedup, speedup / (n2 / n1))
    })
}

/// The verdict: speed-up and efficiency at the largest count against the smallest, and the
/// bottleneck there.
pub fn verdict(points: &[Point]) -> String {
    let measured: Vec<(&Point, f64)> = points
        .iter()
        .filter_map(|p| Some((p, p.capacity_rps()?)))
        .collect();
    let (Some((first, x1)), Some((last, xn))) = (measured.first(), measured.last()) else {
        return "no replica count met the SLO: no capacity to compare".into();
    };
    if first.replicas == last.replicas {
        return format!(
            "{x1:.0} req/s at {} replica(s); one count only",
            first.replicas
        );
    }
    let speedup = xn / x1;
    let ideal = f64::from(last.replicas) / f64::from(first.replicas);
    let efficiency = speedup / ideal;
    let limit = last
        .best
        .as_ref()
        .map(|s| {
            format!(
                "{} ({:.0}% of {:.2} cores)",
                s.bottleneck.name,
                s.bottleneck.utilisation * 100.0,
                s.bottleneck.cap
            )
        })
        .unwrap_or_default();
    let how = if efficiency >= 0.8 {
        "adding replicas helped"
    } else if speedup >= 1.1 {
        "adding replicas helped less and less"
    } else {
        "adding replicas did not help"
    };
    format!(
        "{how}: {} → {} replicas gave ×{speedup:.2} the capacity ({x1:.0} → {xn:.0} req/s, \
         efficiency {:.0}%); at {} the limit was {limit}",
        first.replicas,
        last.replicas,
        efficiency * 100.0,
        last.replicas
    )
}

/// The terminal table.
pub fn text(r: &CapacityReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "capacity of {} ({}), SLO {}, {} s steps, {} cores",
        r.service,
        r.strategy.as_deref().unwrap_or("?"),
        r.slo,
        r.step_secs,
        r.host_cores
    );
    let _ = writeln!(
        o,
        "{:>3} {:>10} {:>9} {:>8} {:>8} {:>7}  {:<28} ending",
        "N", "sessions/s", "req/s", "p50 ms", "p99 ms", "errors", "bottleneck"
    );
    for p in &r.points {
        match &p.best {
            Some(s) => {
                let _ = writeln!(
                    o,
                    "{:>3} {:>10.1} {:>9.1} {:>8.1} {:>8.1} {:>6.2}%  {:<28} {:?}",
                    p.replicas,
                    s.rate,
                    s.throughput_rps,
                    s.p50_ms,
                    s.p99_ms,
                    s.error_share * 100.0,
                    format!(
                        "{} {:.0}% of {:.2}",
                        s.bottleneck.name,
                        s.bottleneck.utilisation * 100.0,
                        s.bottleneck.cap
                    ),
                    p.ending
                );
            }
            None => {
                let _ = writeln!(o, "{:>3} no step met the SLO ({:?})", p.replicas, p.ending);
            }
        }
    }
    if let Some(m) = &r.fit {
        let peak = m
            .peak()
            .map_or_else(|| "none (κ = 0)".into(), |n| format!("{n:.1}"));
        let _ = writeln!(
            o,
            "USL: λ = {:.1} req/s, σ = {:.4}, κ = {:.5}, R² = {:.3}, peak N* = {peak}",
            m.lambda, m.sigma, m.kappa, m.r_squared
        );
    }
    if let Some(h) = &r.holdout {
        let _ = writeln!(o, "fitted on N = {:?} only:", h.fitted_on);
        for p in &h.predictions {
            let _ = writeln!(
                o,
                "  N = {}: predicted {:.1}, measured {:.1} req/s ({:+.0}%)",
                p.replicas,
                p.predicted_rps,
                p.measured_rps,
                p.error * 100.0
            );
        }
    }
    let _ = writeln!(o, "{}", r.verdict);
    o
}

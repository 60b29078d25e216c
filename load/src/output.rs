//! The files a run and a comparison leave: `run.json` + `run.html` in a run's directory,
//! `report.json` + `report.html` for several runs, `capacity.json` + `capacity.html` for a
//! capacity measurement, `evidence.json` + `evidence.html` for the evidence.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::capacity::report::CapacityReport;
use crate::capacity::scenarios::CapacitySuite;
use crate::html;
use crate::report::{self, Comparison, RunReport};

/// Writes `dir/run.json` and `dir/run.html`.
pub fn write_run(dir: &Path, report: &RunReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    report::write_json(&dir.join("run.json"), report)?;
    let page = html::render(&report.label, std::slice::from_ref(report));
    std::fs::write(dir.join("run.html"), page)
        .with_context(|| format!("cannot write {}", dir.join("run.html").display()))?;
    Ok(())
}

/// Writes `dir/capacity.json` and `dir/capacity.html`.
pub fn write_capacity(dir: &Path, report: &CapacityReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    report::write_json(&dir.join("capacity.json"), report)?;
    std::fs::write(dir.join("capacity.html"), html::capacity::render(report))
        .with_context(|| format!("cannot write {}", dir.join("capacity.html").display()))?;
    Ok(())
}

/// Writes `dir/capacity-report.json` and `dir/capacity-report.html` for the capacity suite.
pub fn write_capacity_suite(dir: &Path, suite: &CapacitySuite) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    report::write_json(&dir.join("capacity-report.json"), suite)?;
    std::fs::write(
        dir.join("capacity-report.html"),
        html::capacity::render_suite(suite),
    )
    .with_context(|| {
        format!(
            "cannot write {}",
            dir.join("capacity-report.html").display()
        )
    })?;
    Ok(())
}

/// The capacity suite's headline table for the terminal.
pub fn capacity_suite_text(suite: &CapacitySuite) -> String {
    let mut o = format!("{}\n", suite.title);
    for c in &suite.curves {
        o.push_str(&format!(
            "- {} ({}): {}\n",
            c.name, c.title, c.report.verdict
        ));
    }
    if let Some(s) = &suite.saturation {
        o.push_str(&format!("- saturation: {}\n", s.verdict));
    }
    o
}

/// Writes `out/report.json` and `out/report.html` for `runs`, in their order; returns the
/// comparison written.
pub fn write_comparison(
    out: &Path,
    title: &str,
    runs: Vec<RunReport>,
) -> anyhow::Result<Comparison> {
    let comparison = Comparison {
        title: title.to_owned(),
        generated_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        runs,
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    report::write_json(&out.join("report.json"), &comparison)?;
    std::fs::write(
        out.join("report.html"),
        html::render(&comparison.title, &comparison.runs),
    )
    .with_context(|| format!("cannot write into {}", out.display()))?;
    Ok(comparison)
}

/// The comparison table, and the scaling table when a run scaled a pool.
pub fn comparison_text(comparison: &Comparison) -> String {
    let mut text = report::comparison_table(&comparison.runs);
    if comparison.runs.iter().any(|r| !r.scaling.is_empty()) {
        text.push('\n');
        text.push_str(&report::scaling_table(&comparison.runs));
    }
    if comparison.runs.iter().any(|r| r.skew.is_some()) {
        text.push('\n');
        text.push_str(&report::skew_table(&comparison.runs));
    }
    if comparison.runs.iter().any(|r| r.chat.is_some()) {
        text.push('\n');
        text.push_str(&report::chat_table(&comparison.runs));
    }
    if comparison.runs.iter().any(|r| r.files.is_some()) {
        text.push('\n');
        text.push_str(&report::files_table(&comparison.runs));
    }
    text
}

/// Writes `out/evidence.json` and `out/evidence.html`.
pub fn write_evidence(
    out: &Path,
    evidence: &crate::evidence::claims::Evidence,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    report::write_json(&out.join("evidence.json"), evidence)?;
    std::fs::write(out.join("evidence.html"), html::evidence::render(evidence))
        .with_context(|| format!("cannot write {}", out.join("evidence.html").display()))?;
    Ok(())
}

/// The claims table for the terminal: each claim, its verdict and its reason.
pub fn evidence_text(evidence: &crate::evidence::claims::Evidence) -> String {
    let mut o = String::new();
    for c in &evidence.claims {
        o.push_str(&format!(
            "{:<32} {:<13} {}\n",
            c.id,
            c.verdict.as_str(),
            c.reason
        ));
    }
    o
}

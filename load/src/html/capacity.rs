//! The capacity page (`capacity.html`): the verdict, the table of capacities with their
//! bottlenecks, throughput against replicas with the linear ideal and the USL curve, p99
//! against replicas, each part's CPU at each capacity point, and the USL figures with the
//! held-out prediction. Self-contained like the run report.

use std::fmt::Write as _;

use super::svg::{draw, line, Chart};
use super::{escape, num, CSS};
use crate::capacity::report::CapacityReport;

/// Renders the capacity record as one HTML5 document.
pub fn render(r: &CapacityReport) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let t = escape(&format!("statelab capacity: {}", r.label));
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    w!(
        o,
        "<title>{t}</title><style>{CSS}</style></head><body>\n<h1>{t}</h1>"
    );
    w!(
        o,
        "<p class=\"note\">{} pool, strategy {}, SLO {}, {} s steps, on a host of {} cores; every \
         figure below was measured in this run.</p>",
        r.service,
        escape(r.strategy.as_deref().unwrap_or("?")),
        escape(&r.slo.to_string()),
        r.step_secs,
        r.host_cores
    );
    w!(o, "<p><b>{}</b></p>", escape(&r.verdict));
    o.push_str(
        "<p class=\"how\"><b>How to read this.</b> The capacity at N replicas is the highest \
         arrival rate (sessions a second, open model) whose step met the SLO, and its throughput \
         in 2xx answers a second. The bottleneck is the part whose CPU was closest to what it can \
         have: its budget, one core for a Redis node without one, or, for the rest, the host's \
         cores. The Universal Scalability Law X(N) = λN / (1 + σ(N−1) + κN(N−1)) is fitted to \
         the capacities: σ is contention (a share of the work that queues for one thing), κ is \
         crosstalk (coordination that grows with every pair), N* = √((1−σ)/κ) the count where \
         throughput peaks.</p>\n",
    );
    table(&mut o, r);
    charts(&mut o, r);
    cpu_table(&mut o, r);
    o.push_str("</body></html>\n");
    o
}

fn table(o: &mut String, r: &CapacityReport) {
    o.push_str(
        "<div class=\"scroll\"><table><tr><th>replicas</th><th>sessions/s</th><th>req/s</th>\
         <th>×X(1)</th><th>efficiency</th><th>p50 ms</th><th>p99 ms</th><th>errors</th>\
         <th class=\"l\">bottleneck</th><th class=\"l\">search</th></tr>\n",
    );
    let x1 = r
        .points
        .first()
        .and_then(|p| Some((p.replicas, p.capacity_rps()?)));
    for p in &r.points {
        let ending = escape(&format!("{:?}", p.ending));
        match &p.best {
            Some(s) => {
                let (speedup, eff) = match x1 {
                    Some((n1, x)) if x > 0.0 => {
                        let sp = s.throughput_rps / x;
                        (sp, sp / (f64::from(p.replicas) / f64::from(n1)))
                    }
                    _ => (f64::NAN, f64::NAN),
                };
                w!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}%</td><td>{}</td>\
                     <td>{}</td><td>{}%</td><td class=\"l\">{} at {}% of {} cores</td>\
                     <td class=\"l\">{ending}, {} steps</td></tr>",
                    p.replicas,
                    num(s.rate, 1),
                    num(s.throughput_rps, 0),
                    num(speedup, 2),
                    num(eff * 100.0, 0),
                    num(s.p50_ms, 1),
                    num(s.p99_ms, 1),
                    num(s.error_share * 100.0, 2),
                    escape(&s.bottleneck.name),
                    num(s.bottleneck.utilisation * 100.0, 0),
                    num(s.bottleneck.cap, 2),
                    p.steps.len()
                );
            }
            None => w!(
                o,
                "<tr><td>{}</td><td colspan=\"8\" class=\"bad\">no step met the SLO</td>\
                 <td class=\"l\">{ending}</td></tr>",
                p.replicas
            ),
        }
    }
    o.push_str("</table></div>\n");
    if let Some(m) = &r.fit {
        let peak = m.peak().map_or_else(
            || "none (κ = 0: no retrograde region)".into(),
            |n| num(n, 1),
        );
        w!(
            o,
            "<p>USL fitted to every point: λ = {} req/s, σ = {}, κ = {}, R² = {}, peak N* = {}.</p>",
            num(m.lambda, 1),
            num(m.sigma, 4),
            num(m.kappa, 5),
            num(m.r_squared, 3),
            peak
        );
    }
    if let Some(h) = &r.holdout {
        w!(
            o,
            "<p>Fitted on N = {:?} only (σ = {}, κ = {}), the model predicted:</p><table>\
             <tr><th>replicas</th><th>predicted req/s</th><th>measured req/s</th><th>error</th></tr>",
            h.fitted_on,
            num(h.model.sigma, 4),
            num(h.model.kappa, 5)
        );
        for p in &h.predictions {
            w!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:+.0}%</td></tr>",
                p.replicas,
                num(p.predicted_rps, 0),
                num(p.measured_rps, 0),
                p.error * 100.0
            );
        }
        o.push_str("</table>\n");
    }
}

fn charts(o: &mut String, r: &CapacityReport) {
    let measured = r.measured();
    let xs: Vec<f64> = measured.iter().map(|(n, _)| *n).collect();
    let x_max = xs.iter().copied().fold(1.0, f64::max) + 0.5;
    let per_replica = measured.first().map_or(0.0, |(n, x)| x / n);
    let mut lines = vec![
        line(
            "measured",
            0,
            "",
            measured.iter().map(|p| Some(p.1)).collect(),
        ),
        line(
            "linear ideal N·X(1)",
            6,
            "2 3",
            xs.iter().map(|n| Some(n * per_replica)).collect(),
        ),
    ];
    if let Some(m) = &r.fit {
        lines.push(line(
            "USL fit",
            1,
            "7 4",
            xs.iter().map(|n| Some(m.at(*n))).collect(),
        ));
    }
    o.push_str("<div class=\"charts\">\n");
    draw(
        o,
        &Chart {
            caption: "Capacity against replicas",
            x_label: "replicas",
            y_label: "2xx answers a second",
            xs: &xs,
            x_max,
            lines,
            band: None,
            markers: &[],
        },
    );
    let p99: Vec<Option<f64>> = r
        .points
        .iter()
        .filter(|p| p.best.is_some())
        .map(|p| p.best.as_ref().map(|s| s.p99_ms))
        .collect();
    draw(
        o,
        &Chart {
            caption: "p99 latency at capacity",
            x_label: "replicas",
            y_label: "ms",
            xs: &xs,
            x_max,
            lines: vec![
                line("p99 at the capacity point", 1, "", p99),
                line(
                    "SLO",
                    6,
                    "2 3",
                    xs.iter().map(|_| Some(r.slo.p99_ms)).collect(),
                ),
            ],
            band: None,
            markers: &[],
        },
    );
    o.push_str("</div>\n");
}

/// Each part's cores at each capacity point, as a bar of stacked shares of the host.
fn cpu_table(o: &mut String, r: &CapacityReport) {
    o.push_str(
        "<h2>CPU at each capacity point</h2><p class=\"note\">Mean cores each part used during \
         the best passing step, against its budget; the bar stacks them against the host's \
         cores.</p><div class=\"scroll\"><table><tr><th>replicas</th><th class=\"l\">parts \
         (cores used / budget)</th><th class=\"l\">host</th></tr>\n",
    );
    let colours = [
        "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
    ];
    for p in &r.points {
        let Some(s) = &p.best else { continue };
        let mut cells = Vec::new();
        let mut bar = String::new();
        let host = f64::from(r.host_cores).max(1.0);
        let mut x = 0.0;
        for (i, part) in s.cpu.iter().filter(|c| c.cores >= 0.005).enumerate() {
            let budget = part
                .budget
                .map_or_else(String::new, |b| format!(" / {}", num(b, 2)));
            cells.push(format!(
                "{} {}{budget}",
                escape(&part.name),
                num(part.cores, 2)
            ));
            let w = part.cores / host * 300.0;
            let c = colours[i % colours.len()];
            w!(
                bar,
                "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"14\" fill=\"{c}\"><title>{} {}</title></rect>",
                escape(&part.name),
                num(part.cores, 2)
            );
            x += w;
        }
        w!(
            o,
            "<tr><td>{}</td><td class=\"l w\">{}</td><td class=\"l\"><svg width=\"300\" \
             height=\"14\" viewBox=\"0 0 300 14\" style=\"width:300px;background:#eee\">{bar}\
             </svg> {} of {} cores busy</td></tr>",
            p.replicas,
            cells.join(", "),
            num(s.host_busy_cores, 2),
            r.host_cores
        );
    }
    o.push_str("</table></div>\n");
}

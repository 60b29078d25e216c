//! The capacity page (`capacity.html`): the verdict, the table of capacities with their
//! bottlenecks, throughput against replicas with the linear ideal and the USL curve, p99
//! against replicas, each part's CPU at each capacity point, and the USL figures with the
//! held-out prediction. Self-contained like the run report.

use std::fmt::Write as _;

use super::svg::{draw, line, Chart, Marker};
use super::{escape, num, CSS};
use crate::capacity::report::{speedup_and_efficiency, CapacityReport};
use crate::capacity::scenarios::CapacitySuite;

const HOW: &str = "<p class=\"how\"><b>How to read this.</b> The capacity at N replicas is the \
    highest arrival rate (sessions a second, open model) whose step met the SLO, and its \
    throughput in 2xx answers a second. The bottleneck is the part whose CPU was closest to what \
    it can have: its budget, one core for a Redis node without one, or, for the rest, the \
    host's cores. The Universal Scalability Law X(N) = λN / (1 + σ(N−1) + κN(N−1)) is fitted \
    to the capacities: σ is contention (a share of the work that queues for one thing), κ is \
    crosstalk (coordination that grows with every pair), N* = √((1−σ)/κ) the count where \
    throughput peaks.</p>\n";

fn head(o: &mut String, title: &str) {
    let t = escape(title);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    w!(
        o,
        "<title>{t}</title><style>{CSS}</style></head><body>\n<h1>{t}</h1>"
    );
}

/// The capacity suite (`compare --capacity`) as one HTML5 document: the headline table of the
/// scenarios, then each one's figures.
pub fn render_suite(s: &CapacitySuite) -> String {
    let mut o = String::with_capacity(96 * 1024);
    head(&mut o, &s.title);
    w!(
        o,
        "<p class=\"note\">{} lab on a host of {} cores; every figure below was measured in this \
         run.</p>",
        escape(&s.mode),
        s.host_cores
    );
    o.push_str(
        "<h2>Does another replica help?</h2><div class=\"scroll\"><table><tr>\
         <th class=\"l\">scenario</th><th class=\"l\">lab</th><th>X(first)</th><th>X(last)</th>\
         <th>×</th><th>efficiency</th><th class=\"l w\">verdict</th></tr>\n",
    );
    for c in &s.curves {
        let m = c.report.measured();
        let (first, last) = (m.first(), m.last());
        let (sp, eff) = first
            .zip(last)
            .and_then(|(f, l)| speedup_and_efficiency(*f, *l))
            .unwrap_or((f64::NAN, f64::NAN));
        w!(
            o,
            "<tr><td class=\"l\"><a href=\"#{0}\">{0}</a></td><td class=\"l\">{1}</td>\
             <td>{2}</td><td>{3}</td><td>{4}</td><td>{5}%</td><td class=\"l w\">{6}</td></tr>",
            escape(&c.name),
            escape(&c.lab),
            first.map_or("-".into(), |(n, x)| format!("{} at {n}", num(*x, 0))),
            last.map_or("-".into(), |(n, x)| format!("{} at {n}", num(*x, 0))),
            num(sp, 2),
            num(eff * 100.0, 0),
            escape(&c.report.verdict)
        );
    }
    if let Some(sat) = &s.saturation {
        w!(
            o,
            "<tr><td class=\"l\"><a href=\"#saturation\">saturation</a></td><td class=\"l\">{}\
             </td><td colspan=\"4\">see below</td><td class=\"l w\">{}</td></tr>",
            escape(&sat.lab),
            escape(&sat.verdict)
        );
    }
    o.push_str("</table></div>\n");
    o.push_str(HOW);
    for c in &s.curves {
        w!(
            o,
            "<h2 id=\"{}\">{}: {}</h2><p><b>{}</b></p>",
            escape(&c.name),
            escape(&c.name),
            escape(&c.title),
            escape(&c.report.verdict)
        );
        table(&mut o, &c.report);
        charts(&mut o, &c.report);
        cpu_table(&mut o, &c.report);
    }
    if let Some(sat) = &s.saturation {
        o.push_str(
            "<h2 id=\"saturation\">saturation: a full pool grown from 3 to 4 at its peak</h2>",
        );
        w!(o, "<p><b>{}</b></p>", escape(&sat.verdict));
        o.push_str(
            "<div class=\"scroll\"><table><tr><th class=\"l\">pool</th><th>X at 3</th>\
             <th>offered</th><th>sessions/s</th><th>p99 before</th><th>p99 after</th>\
             <th>over SLO after the 4th</th><th>4th's share</th><th>failed</th></tr>\n",
        );
        for r in &sat.runs {
            w!(
                o,
                "<tr><td class=\"l\">{}/{}</td><td>{}</td><td>{}×</td><td>{}</td><td>{} ms</td>\
                 <td>{} ms</td><td>{}</td><td>{}%</td><td>{}</td></tr>",
                r.service,
                escape(&r.strategy),
                num(r.capacity3_rps, 0),
                num(r.overload, 2),
                num(r.rate, 1),
                num(r.p99_before_ms, 0),
                num(r.p99_after_ms, 0),
                r.over_slo_after_scale_s
                    .map_or_else(|| "until the end".into(), |v| format!("{} s", num(v, 0))),
                num(r.newcomer_share * 100.0, 0),
                r.failed_requests
            );
        }
        o.push_str("</table></div>\n<div class=\"charts\">");
        let len = sat
            .runs
            .iter()
            .map(|r| r.p99_per_second.len())
            .max()
            .unwrap_or(0);
        let xs: Vec<f64> = (0..len).map(|t| t as f64 + 0.5).collect();
        let mut lines: Vec<_> = sat
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                line(
                    &format!("{}/{} p99", r.service, r.strategy),
                    i,
                    "",
                    (0..len).map(|t| r.p99_per_second.get(t).copied()).collect(),
                )
            })
            .collect();
        lines.push(line(
            "SLO",
            6,
            "2 3",
            xs.iter().map(|_| Some(sat.slo_p99_ms)).collect(),
        ));
        let markers: Vec<Marker> = sat
            .runs
            .first()
            .map(|r| Marker {
                at: r.scale_at_s,
                label: "4th replica routed".into(),
                color: "#444",
            })
            .into_iter()
            .collect();
        draw(
            &mut o,
            &Chart {
                caption: "p99 each second, before and after the 4th replica",
                x_label: "seconds since start",
                y_label: "ms",
                xs: &xs,
                x_max: len as f64,
                lines,
                band: None,
                markers: &markers,
            },
        );
        o.push_str("</div>\n");
    }
    o.push_str("</body></html>\n");
    o
}

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
    o.push_str(HOW);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::bottleneck::{Bottleneck, PartKind, PartUse};
    use crate::capacity::report::{verdict, Point, Step};
    use crate::capacity::saturation::SaturationRun;
    use crate::capacity::scenarios::{CurveResult, SaturationResult};
    use crate::capacity::search::{Ending, SearchPlan, Slo};
    use crate::capacity::usl;
    use statelab_formats::Design;

    fn step(n: u8, rps: f64) -> Step {
        Step {
            rate: rps / 7.0,
            throughput_rps: rps,
            requests: 1000,
            p50_ms: 2.0,
            p99_ms: 9.0,
            error_share: 0.0,
            generator_lagged: false,
            passed: true,
            cpu: vec![PartUse {
                name: format!("stateless-{n}"),
                kind: PartKind::Replica,
                cores: 0.19,
                budget: Some(0.2),
            }],
            host_busy_cores: 0.3 * f64::from(n),
            bottleneck: Bottleneck {
                name: format!("stateless-{n}"),
                kind: PartKind::Replica,
                utilisation: 0.95,
                cores: 0.19,
                cap: 0.2,
            },
        }
    }

    fn report() -> CapacityReport {
        let points: Vec<Point> = [(1u8, 175.0), (2, 348.0), (3, 510.0), (4, 600.0)]
            .iter()
            .map(|(n, x)| Point {
                replicas: *n,
                ending: Ending::Bracketed,
                best: Some(step(*n, *x)),
                steps: vec![step(*n, *x)],
            })
            .collect();
        let mut r = CapacityReport {
            label: "stateless-budgeted".into(),
            service: Design::Stateless,
            strategy: Some("round-robin".into()),
            slo: Slo::default(),
            search: SearchPlan {
                start_rate: 5.0,
                max_rate: 100.0,
                bisections: 3,
            },
            step_secs: 5,
            host_cores: 2,
            started_unix_ms: 0,
            verdict: verdict(&points),
            points,
            fit: None,
            holdout: None,
        };
        r.fit = usl::fit(&r.measured());
        r
    }

    #[test]
    fn a_capacity_page_has_its_table_charts_and_fit() {
        let html = render(&report());
        assert!(html.contains("Capacity against replicas"));
        assert!(html.contains("USL fitted to every point"));
        assert!(html.contains("stateless-4 at 95% of 0.20 cores"), "{html}");
        assert!(html.contains("adding replicas helped"), "{html}");
    }

    #[test]
    fn the_suite_page_heads_with_every_scenario() {
        let suite = CapacitySuite {
            title: "suite <test>".into(),
            mode: "native".into(),
            host_cores: 2,
            started_unix_ms: 0,
            curves: vec![CurveResult {
                name: "stateless-budgeted".into(),
                title: "t".into(),
                lab: "--replica-cpu 0.2".into(),
                report: report(),
            }],
            saturation: Some(SaturationResult {
                lab: "--replica-cpu 0.2".into(),
                slo_p99_ms: 50.0,
                runs: vec![SaturationRun {
                    service: Design::Stateful,
                    strategy: "cookie".into(),
                    capacity3_rps: 500.0,
                    overload: 1.15,
                    rate: 28.0,
                    requests_per_session: 20,
                    scale_at_s: 15.2,
                    p99_before_ms: 900.0,
                    p99_after_ms: 1200.0,
                    over_slo_after_scale_s: None,
                    newcomer_share: 0.08,
                    failed_requests: 0,
                    p99_per_second: (0..30).map(f64::from).collect(),
                }],
                verdict: "v".into(),
            }),
        };
        let html = render_suite(&suite);
        assert!(html.contains("suite &lt;test&gt;"));
        assert!(html.contains("href=\"#stateless-budgeted\""));
        assert!(html.contains("href=\"#saturation\""));
        assert!(html.contains("until the end"));
        assert!(html.contains("4th replica routed"));
    }
}

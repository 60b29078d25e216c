//! The evidence page: the claims table first (claim, figures, verdict, reason, a link to the
//! section that measured it), then the probes' findings, then each load run's section as the
//! comparison report draws it.

use std::fmt::Write as _;

use super::{cell, escape, num, run_section, table, CSS};
use crate::evidence::claims::{curves, Evidence, Verdict};
use crate::evidence::probes::Probes;

const EXTRA_CSS: &str = ".holds{color:#0a5c2a}.but{color:#7a5300}.loose,.wrong{color:#a00018}\
.nm{color:#777}td.w{white-space:normal}td.figs{min-width:22em}\
pre{background:#f6f6f6;padding:8px;overflow-x:auto}";

/// A figure's value: whole numbers without decimals, small ones to three places.
fn value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() < 1.0 {
        format!("{v:.3}")
    } else if v.abs() < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// The name of the section a claim links to: the run's label, or the probe's heading.
fn section_name(e: &Evidence, id: &str) -> String {
    if let Some(r) = id
        .strip_prefix("run-")
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| e.runs.get(i))
    {
        return r.label.clone();
    }
    match id {
        "probe-token" => "the token read",
        "probe-revocation" => "replays after logout",
        "probe-bytes" => "bytes per request",
        "probe-memory" => "memory per session",
        "probe-redis" => "Redis round trips",
        other => other,
    }
    .to_owned()
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Holds => "l holds",
        Verdict::HoldsBut => "l but",
        Verdict::Loose => "l loose",
        Verdict::Wrong => "l wrong",
        Verdict::NotMeasured => "l nm",
    }
}

/// The whole page.
pub fn render(e: &Evidence) -> String {
    let mut o = String::with_capacity(128 * 1024);
    let t = escape(&e.title);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    w!(
        o,
        "<title>{t}</title><style>{CSS}{EXTRA_CSS}</style></head><body>\n<h1>{t}</h1>"
    );
    w!(
        o,
        "<p class=\"note\">Measured in one run of <code>scripts/evidence</code>: {} lab, {} cores{}. \
         Every figure below comes from this run; a claim whose experiment did not run says so.</p>",
        escape(&e.mode),
        e.cores,
        if e.quick { ", short mode (--quick)" } else { "" }
    );
    let rows = e.claims.iter().map(|c| {
        let figures = if c.figures.is_empty() {
            "—".to_owned()
        } else {
            c.figures
                .iter()
                .map(|f| format!("{}: {} {}", f.name, value(f.value), f.unit))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let link = match &c.run {
            Some(id) => format!(
                "<td class=\"l\"><a href=\"#{}\">{}</a></td>",
                escape(id),
                escape(&section_name(e, id))
            ),
            None => "<td></td>".to_owned(),
        };
        vec![
            cell(&c.claim, "l w"),
            format!(
                "<td class=\"l w figs\">{}</td>",
                escape(&figures).replace('\n', "<br>")
            ),
            cell(c.verdict.as_str(), verdict_class(c.verdict)),
            cell(&c.reason, "l w"),
            link,
        ]
    });
    o.push_str("<div class=\"scroll\">");
    table(&mut o, "<claim|<measured|<verdict|<why|<from", rows);
    o.push_str("</div>");
    probes(&mut o, &e.probes, e.mode == "docker");
    capacity(&mut o, e);
    for (i, r) in e.runs.iter().enumerate() {
        run_section(&mut o, i, r);
    }
    o.push_str("</body></html>\n");
    o
}

fn capacity(o: &mut String, e: &Evidence) {
    o.push_str("<section id=\"capacity\"><h2>Capacity at one and at three replicas</h2>");
    let Some(suite) = &e.capacity else {
        w!(
            o,
            "<p>{}</p></section>",
            escape(e.capacity_not_measured.as_deref().unwrap_or("not measured"))
        );
        return;
    };
    o.push_str(
        "<p>Each pool in a lab of its own, replicas of 0.2 core, the highest rate meeting a p99 of \
         50 ms with at most 0.1% failed; the whole account with its charts is \
         <a href=\"capacity/capacity-report.html\">capacity/capacity-report.html</a>.</p>",
    );
    let rows = curves(suite).into_iter().map(|c| {
        vec![
            cell(c.design, "l"),
            cell(format!("{} at {}", num(c.first.1, 0), c.first.0), ""),
            cell(format!("{} at {}", num(c.last.1, 0), c.last.0), ""),
            cell(format!("{}%", num(c.efficiency * 100.0, 0)), ""),
            cell(c.bottleneck.as_deref().unwrap_or("-"), "l"),
        ]
    });
    table(
        o,
        "<pool|X(1) req/s|X(N) req/s|efficiency X(N)/(N·X(1))|<bottleneck at N",
        rows,
    );
    o.push_str("</section>");
}

fn probes(o: &mut String, p: &Probes, docker: bool) {
    if let Some(t) = &p.token {
        o.push_str("<section id=\"probe-token\"><h2>A token, read without its key</h2>");
        w!(
            o,
            "<p>A stateless login as <code>{}</code> with {} cart lines; its token ({} bytes) \
             base64url-decoded, no key used:</p><pre>{}\n{}</pre></section>",
            escape(&t.username),
            t.cart_lines,
            t.token_bytes,
            escape(&serde_json::to_string(&t.header).unwrap_or_default()),
            escape(&serde_json::to_string_pretty(&t.claims).unwrap_or_default())
        );
    }
    if !p.replays.is_empty() {
        o.push_str("<section id=\"probe-revocation\"><h2>A credential replayed after logout</h2>");
        o.push_str(
            "<p>Each design: log in, copy the cookie, log out, then send <code>GET /cart</code> \
             with the copy from another client.</p>",
        );
        let rows = p
            .replays
            .iter()
            .map(|r| vec![cell(r.design, "l"), cell(r.tries, ""), cell(r.accepted, "")]);
        table(o, "<design|replays|accepted (200)", rows);
        if let Some(x) = &p.expiry {
            w!(
                o,
                "<p>A stateless replica of its own with a {} s token lifetime: the logged-out token \
                 was {} at once, and refused {}.</p>",
                x.lifetime_s,
                if x.accepted_before_exp { "accepted" } else { "refused" },
                x.refused_after_s.map_or("never within 10 s of its expiry".to_owned(), |s| {
                    format!(
                        "{} s after the login: its lifetime, the verifier's leeway for clock skew \
                         between replicas, and the expiry's rounding to whole seconds",
                        num(s, 1)
                    )
                })
            );
        }
        o.push_str("</section>");
    }
    if !p.request_bytes.is_empty() {
        o.push_str("<section id=\"probe-bytes\"><h2>Bytes per request</h2>");
        o.push_str(
            "<p><code>GET /cart</code> as the client writes it (request line and headers), at an \
             empty cart and at a full one; the replica's own CPU time per request at a full cart, \
             sent straight to its first replica.</p>",
        );
        let rows = p.request_bytes.iter().map(|b| {
            vec![
                cell(b.design, "l"),
                cell(b.empty_cart, ""),
                cell(b.full_cart, ""),
                cell(b.credential_full_cart, ""),
                cell(
                    b.cpu_us_per_request.map_or("—".to_owned(), |c| num(c, 0)),
                    "",
                ),
            ]
        });
        table(
            o,
            "<design|empty cart (bytes)|full cart (bytes)|credential at a full cart (bytes)|replica CPU per request (µs)",
            rows,
        );
        o.push_str("</section>");
    }
    if !p.memory.is_empty() {
        o.push_str("<section id=\"probe-memory\"><h2>Memory per live session</h2>");
        let rows = p.memory.iter().map(|m| {
            vec![
                cell(m.design, "l"),
                cell(&m.what, "l"),
                cell(m.sessions, ""),
                cell(m.bytes_before, ""),
                cell(m.bytes_after, ""),
                cell(num(m.bytes_per_session, 0), ""),
            ]
        });
        table(
            o,
            "<design|<measured|sessions|before (bytes)|after (bytes)|per session (bytes)",
            rows,
        );
        o.push_str("</section>");
    }
    if let Some(r) = &p.redis_round_trip {
        w!(
            o,
            "<section id=\"probe-redis\"><h2>A Redis round trip</h2><p>{} <code>PING</code>s one \
             at a time from the load generator to the lab's Redis{}: p50 {} ms, p99 {} ms.</p></section>",
            r.requests,
            if docker {
                " at its address in the lab network, across Docker's bridge"
            } else {
                ""
            },
            num(r.p50_ms, 3),
            num(r.p99_ms, 3)
        );
    }
    if !p.not_measured.is_empty() {
        o.push_str("<section id=\"probe-missed\"><h2>Probes not measured</h2><ul>");
        for (name, why) in &p.not_measured {
            w!(o, "<li>{}: {}</li>", escape(name), escape(why));
        }
        o.push_str("</ul></section>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::claims::{Claim, Figure};

    #[test]
    fn the_table_links_each_measured_claim_to_its_section() {
        let e = Evidence {
            title: "t".into(),
            generated_unix_ms: 0,
            mode: "native".into(),
            cores: 2,
            quick: true,
            claims: vec![
                Claim {
                    id: "crash-loses-sessions".into(),
                    claim: "a crash <loses> sessions".into(),
                    figures: vec![Figure {
                        name: "sessions lost".into(),
                        value: 5.0,
                        unit: "sessions".into(),
                    }],
                    verdict: Verdict::Holds,
                    reason: "5 of 6 lost".into(),
                    run: Some("run-0".into()),
                },
                Claim {
                    id: "scale-out".into(),
                    claim: "scales".into(),
                    figures: Vec::new(),
                    verdict: Verdict::NotMeasured,
                    reason: "not measured in this run".into(),
                    run: None,
                },
            ],
            probes: Probes::default(),
            runs: vec![crate::report::fixture::run("stateful/cookie", true)],
            run_dirs: vec!["stateful-cookie".into()],
            capacity: None,
            capacity_not_measured: Some("not measured in this run".into()),
        };
        let html = render(&e);
        assert!(html.contains("a crash &lt;loses&gt; sessions"));
        assert!(
            html.contains("sessions lost: 5 sessions"),
            "whole numbers, no decimals"
        );
        assert!(html.contains("<a href=\"#run-0\">stateful/cookie</a>"));
        assert!(html.contains("<section id=\"run-0\">"));
        assert!(html.contains("<td class=\"l nm\">not measured</td>"));
        assert!(html.contains("short mode"));
        assert_eq!(value(0.0684), "0.068");
        assert_eq!(value(227.74), "228");
        assert_eq!(value(2.4631), "2.46");
    }
}

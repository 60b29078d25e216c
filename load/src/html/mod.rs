//! The HTML report: one self-contained page (inline CSS, hand-drawn inline SVG, no scripts and
//! no external fetches) that a lab user can open offline or attach to a write-up.
//!
//! Layout: a header that says how to read the figures; with several runs, a comparison table;
//! with scale events, a scaling table; then one section per run with its parameters, key figures,
//! errors, fault events, the failover account (with a Redis kill, the node killed and the new
//! primary; the failure window; the acknowledged writes lost; the 2xx latency on either side),
//! one account per scale event (shares before and
//! after), four charts over time (throughput, latency, failures, requests per replica; a fifth,
//! each replica's share, when the pool was scaled) and the percentile and per-replica tables. Every string that comes from the data is escaped.
//!
//! This module is the page: what it says and which charts it shows, from which figures. The
//! drawing of the charts is `svg`'s.

use std::collections::BTreeSet;
use std::fmt::{Display, Write as _};

use crate::config::{ModelKind, Routing, WorkflowKind};
use crate::report::{new_primary_text, spread, Balance, Failover, FaultStep, RunReport};
use crate::scaling::{ScaleReport, EVEN_SECONDS, EVEN_TOLERANCE};
use crate::stats::{OkLatency, SecondStats};

/// `write!` into a `String` cannot fail; this drops the `Result` in one place. Defined before
/// `mod svg` so the chart drawing uses it too.
macro_rules! w {
    ($($t:tt)*) => {{ let _ = write!($($t)*); }};
}

mod svg;

pub mod capacity;
pub mod evidence;

use svg::{draw, fin, line, Chart, Marker, DASHES};

const CSS: &str = "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;\
color:#1a1a1a;background:#fff;max-width:1200px;margin:0 auto;padding:16px 24px}\
h1{font-size:1.6em;margin:.2em 0}h2{border-top:2px solid #ccc;padding-top:.6em;margin-top:2em}\
h3{font-size:1.05em;margin:1.2em 0 .4em}.note{color:#444}\
.how{background:#f4f6f8;border-left:4px solid #0072B2;padding:8px 12px}\
table{border-collapse:collapse;margin:.3em 0 1em}th,td{padding:3px 8px;text-align:right}\
td{border-bottom:1px solid #ddd;white-space:nowrap}th{background:#f0f0f0;vertical-align:bottom}\
.l{text-align:left}.w{white-space:normal;min-width:10em}.nb{white-space:nowrap}\
.scroll{overflow-x:auto}.bad{color:#a00018;background:#fde8eb;font-weight:600}\
.cols{display:flex;flex-wrap:wrap;gap:8px 48px}dl{display:grid;gap:1px 14px;margin:0;\
grid-template-columns:max-content auto}dt{color:#555}dd{margin:0}ul{margin:.2em 0;padding-left:1.2em}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:8px 20px}\
figure{margin:0}figcaption{font-weight:600;margin-bottom:2px}svg{width:100%;height:auto;display:block}";

/// Renders the runs as one HTML5 document.
pub fn render(title: &str, runs: &[RunReport]) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let t = escape(title);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    w!(
        o,
        "<title>{t}</title><style>{CSS}</style></head><body>\n<h1>{t}</h1>"
    );
    let (n, s) = (runs.len(), if runs.len() == 1 { "" } else { "s" });
    w!(
        o,
        "<p class=\"note\">statelab-load report of {n} run{s}.</p>"
    );
    o.push_str(
        "<p class=\"how\"><b>How to read this.</b> Latency is measured from the <i>intended</i> \
         send time of each request (a session's scheduled arrival for its first request, the end \
         of the think time for the others), so a stalled server or a generator that fell behind \
         cannot hide its wait (coordinated-omission corrected); service time is measured from the actual \
         send. A request failed when it got no answer or a non-2xx one. A <i>session loss</i> is \
         a 401 after a successful login, or a cart that differs from what the user put in. \
         An <i>acknowledged write lost</i> is a cart add answered 200 that a later cart no longer \
         shows, or a login answered 200 whose session is later answered 401. \
         <i>Recovery</i> is the first of 3 consecutive seconds back inside the pre-kill band of \
         throughput (2xx/s), p99 latency and failures per second. Charts show one point per whole second, drawn at the \
         middle of that second; a gap in a latency line is a second with no latency sample (only \
         connection failures).</p>\n",
    );
    if runs.len() > 1 {
        comparison(&mut o, runs);
    }
    if runs.iter().any(|r| !r.scaling.is_empty()) {
        scaling_comparison(&mut o, runs);
    }
    if runs.iter().any(|r| r.skew.is_some()) {
        skew_comparison(&mut o, runs);
    }
    if runs.len() > 1 && runs.iter().any(|r| r.files.is_some()) {
        files_comparison(&mut o, runs);
    }
    if runs.len() > 1 && runs.iter().any(|r| r.chat.is_some()) {
        chat_comparison(&mut o, runs);
    }
    for (i, r) in runs.iter().enumerate() {
        run_section(&mut o, i, r);
    }
    o.push_str("</body></html>\n");
    o
}

/// Escapes text for HTML element content and attribute values (and SVG text).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table figure; a non-finite one is shown as not measured ("-") rather than as 0.
fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".into()
    }
}

fn opt(v: Option<impl Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn mib(bytes: u64) -> String {
    num(bytes as f64 / 1_048_576.0, 1)
}

fn percent(part: u64, total: u64) -> String {
    // part <= total, so an empty total gives 0 %.
    num(part as f64 * 100.0 / total.max(1) as f64, 1)
}

/// A table cell with escaped text; `class` is `""`, `"l"` (left), `"bad"`, ...
fn cell(text: impl Display, class: &str) -> String {
    let text = escape(&text.to_string());
    match class {
        "" => format!("<td>{text}</td>"),
        _ => format!("<td class=\"{class}\">{text}</td>"),
    }
}

fn bad_if(bad: bool) -> &'static str {
    if bad {
        "bad"
    } else {
        ""
    }
}

/// A table; `head` is `|`-separated, a leading `<` left-aligns a header.
fn table(o: &mut String, head: &str, rows: impl IntoIterator<Item = Vec<String>>) {
    o.push_str("<table><tr>");
    for h in head.split('|') {
        match h.strip_prefix('<') {
            Some(h) => w!(o, "<th class=\"l\">{h}</th>"),
            None => w!(o, "<th>{h}</th>"),
        }
    }
    o.push_str("</tr>\n");
    for row in rows {
        w!(o, "<tr>{}</tr>\n", row.concat());
    }
    o.push_str("</table>\n");
}

/// Recovery time for tables, and whether it is "never" (worth highlighting).
fn recovered(f: Option<&Failover>) -> (String, bool) {
    match f
        .and_then(|f| f.recovery.as_ref())
        .map(|r| r.recovered_after_s)
    {
        Some(Some(s)) => (format!("{} s", num(s, 1)), false),
        Some(None) => ("never".into(), true),
        None => ("-".into(), false),
    }
}

fn comparison(o: &mut String, runs: &[RunReport]) {
    o.push_str("<h2>Comparison</h2><div class=\"scroll\">");
    let head = "<run|<killed|requests|failed|session losses|acknowledged writes lost|p50 ms|p99 \
                ms|ok/s|<spread across replicas|last answer after kill|failed in failover|\
                recovered after|<new primary|MiB per replica";
    let rows = runs.iter().enumerate().map(|(i, r)| {
        let f = r.failover.as_ref();
        let (rec, never) = recovered(f);
        let mem = if r.memory_bytes.is_empty() {
            "-".into()
        } else {
            mib(r.memory_bytes.values().sum::<u64>() / r.memory_bytes.len() as u64)
        };
        let shares: Vec<String> = spread(&r.per_replica)
            .split(" · ")
            .map(|s| format!("<span class=\"nb\">{}</span>", escape(s)))
            .collect();
        vec![
            format!(
                "<td class=\"l\"><a href=\"#run-{i}\">{}</a></td>",
                escape(&r.label)
            ),
            cell(r.killed.as_deref().unwrap_or("-"), "l"),
            cell(r.requests, ""),
            cell(r.failed_requests, ""),
            cell(r.session_losses, bad_if(r.session_losses > 0)),
            match (r.acknowledged_adds_lost, r.acknowledged_logins_lost) {
                (Some(adds), Some(logins)) => cell(adds + logins, bad_if(adds + logins > 0)),
                _ => cell("-", ""),
            },
            cell(num(r.p50_ms, 2), ""),
            cell(num(r.p99_ms, 2), ""),
            cell(num(r.throughput_rps, 0), ""),
            format!("<td class=\"l w\">{}</td>", shares.join(" · ")),
            cell(
                opt(f.map(|f| format!("{} s", num(f.last_answer_after_kill_s, 2)))),
                "",
            ),
            cell(opt(f.map(|f| f.failed_during_failover)), ""),
            cell(rec, bad_if(never)),
            cell(opt(f.map(new_primary_text)), "l"),
            cell(mem, ""),
        ]
    });
    table(o, head, rows);
    o.push_str(
        "</div><p class=\"note\"><i>Last answer after kill</i>: seconds from the kill to the last \
         answer the killed replica gave. <i>Failed in failover</i>: failed requests from the \
         kill's second until the recovery (or the end of the run). <i>Acknowledged writes \
         lost</i>: cart adds and logins answered 200, then lost. <i>New primary</i>: after a \
         Redis kill, the first node the lab named primary that was not before it, when first \
         seen. <i>MiB per replica</i>: mean resident memory after the run.</p>\n",
    );
}

fn run_section(o: &mut String, i: usize, r: &RunReport) {
    let label = escape(&r.label);
    w!(
        o,
        "<section id=\"run-{i}\"><h2>{label}</h2><div class=\"cols\"><div>"
    );
    o.push_str("<h3>Parameters</h3><dl>");
    let params = [
        ("service", r.service.to_string()),
        (
            "strategy",
            r.strategy.map_or("unknown", Routing::as_str).into(),
        ),
        ("target", r.target.clone()),
        ("workflow", r.workflow.to_string()),
        ("model", r.model.to_string()),
        ("rate (sessions/s)", opt(r.rate.filter(|v| v.is_finite()))),
        ("users", opt(r.users)),
        ("cart adds", opt(r.adds)),
        ("think time (ms)", opt(r.think_ms)),
        ("source addresses", r.sources.to_string()),
        (
            "users' skew",
            r.skew.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "sources' skew",
            r.sources_skew.clone().unwrap_or_else(|| "none".into()),
        ),
        ("duration", format!("{} s", num(r.duration_s, 1))),
        (
            "interrupted",
            if r.interrupted { "yes (Ctrl-C)" } else { "no" }.into(),
        ),
    ];
    for (k, v) in params {
        w!(o, "<dt>{k}</dt><dd>{}</dd>", escape(&v));
    }
    o.push_str("</dl></div><div><h3>Key figures</h3><ul>");
    let ms = |v: f64| num(v, 2);
    let li = |o: &mut String, bad: bool, text: String| {
        w!(o, "<li class=\"{}\">{}</li>", bad_if(bad), escape(&text));
    };
    let (req, ok, failed) = (r.requests, r.ok_requests, r.failed_requests);
    let pct = percent(failed, req);
    li(
        o,
        false,
        format!("{req} requests: {ok} ok, {failed} failed ({pct}%)"),
    );
    let (lost, by_401, by_cart) = (
        r.session_losses,
        r.losses_unauthorized,
        r.losses_cart_mismatch,
    );
    let text =
        format!("{lost} session losses ({by_401} by 401 after login, {by_cart} by a wrong cart)");
    li(o, lost > 0, text);
    if let (Some(adds), Some(adds_lost), Some(logins_lost)) = (
        r.acknowledged_adds,
        r.acknowledged_adds_lost,
        r.acknowledged_logins_lost,
    ) {
        li(
            o,
            adds_lost + logins_lost > 0,
            format!(
                "acknowledged writes lost: {adds_lost} of {adds} cart adds answered 200, \
                 {logins_lost} logins answered 200"
            ),
        );
    }
    let (started, completed) = (r.sessions_started, r.sessions_completed);
    li(
        o,
        false,
        format!("sessions: {started} started, {completed} completed"),
    );
    if let Some(b) = &r.balance {
        li(
            o,
            b.max_over_mean > 1.25,
            format!(
                "balance over {} replicas: busiest at {}× the mean, coefficient of variation {}",
                b.replicas,
                num(b.max_over_mean, 2),
                num(b.cv, 2)
            ),
        );
    }
    if let Some(b) = &r.session_balance {
        li(
            o,
            b.max_over_mean > 1.25,
            format!(
                "live sessions: busiest replica at {}× the mean, coefficient of variation {}",
                num(b.max_over_mean, 2),
                num(b.cv, 2)
            ),
        );
    }
    if let Some(f) = &r.files {
        li(
            o,
            f.counts.lost > 0,
            format!(
                "avatars: {} (a read answered 404 or with other bytes)",
                f.counts_words()
            ),
        );
        if let Some(words) = f.after_run_words() {
            li(
                o,
                f.after_run.is_some_and(|a| a.lost > 0),
                format!("avatars {words} (each read once more by name, from its owner's address)"),
            );
        }
    }
    if let Some(c) = &r.chat {
        li(o, c.delivery < 0.99, format!("chat: {}", c.words()));
    }
    let replicas_cpu = crate::report::replicas_cpu(r);
    if !replicas_cpu.is_empty() {
        li(
            o,
            false,
            format!("CPU over the run, in cores: {replicas_cpu}"),
        );
    }
    if let Some(b) = &r.bounded {
        li(
            o,
            false,
            format!(
                "bounded loads: balance factor {}, {} requests sent past their first choice ({} %)",
                b.balance_factor,
                b.moves,
                num(b.share_moved * 100.0, 1)
            ),
        );
    }
    if let Some(h) = &r.heavy {
        li(
            o,
            false,
            format!(
                "heaviest {} users: p99 {} ms over {} requests (everyone: {} ms)",
                h.users,
                num(h.p99_ms, 1),
                h.requests,
                num(r.p99_ms, 1)
            ),
        );
    }
    li(
        o,
        false,
        format!("throughput: {} ok/s", num(r.throughput_rps, 1)),
    );
    let (p50, p90, p99) = (ms(r.p50_ms), ms(r.p90_ms), ms(r.p99_ms));
    let (p999, max) = (ms(r.p999_ms), ms(r.max_ms));
    li(
        o,
        false,
        format!("latency: p50 {p50} · p90 {p90} · p99 {p99} · p99.9 {p999} · max {max} ms"),
    );
    let (s50, s99) = (ms(r.service_p50_ms), ms(r.service_p99_ms));
    li(o, false, format!("service time: p50 {s50} · p99 {s99} ms"));
    if r.model == ModelKind::Open {
        let (late, dropped, lag) = (r.starts_late, r.starts_dropped, num(r.max_start_lag_ms, 1));
        li(
            o,
            false,
            format!("arrivals: {late} started late, {dropped} dropped, max start lag {lag} ms"),
        );
    }
    if r.workflow == WorkflowKind::Shop {
        let (late, lag) = (r.steps_late, num(r.max_step_lag_ms, 1));
        li(
            o,
            false,
            format!("steps after think time: {late} sent late, max lag {lag} ms"),
        );
    }
    o.push_str("</ul></div><div><h3>Errors by kind</h3>");
    let e = &r.errors;
    let counts = [
        e.connect,
        e.timeout,
        e.io,
        e.status_4xx,
        e.status_5xx,
        e.total(),
    ];
    table(
        o,
        "connect|timeout|io|4xx|5xx|total",
        [counts.map(|n| cell(n, "")).to_vec()],
    );
    o.push_str("</div></div>\n<h3>Fault events</h3>");
    if r.events.is_empty() {
        o.push_str("<p>No scheduled fault.</p>");
    } else {
        let rows = r.events.iter().map(|ev| {
            vec![
                cell(format!("{} s", num(ev.at_s, 2)), ""),
                cell(ev.what, "l"),
                cell(&ev.replica, "l"),
                cell(format!("{} s", num(ev.took_s, 2)), ""),
                cell(
                    if ev.ok { "ok" } else { "FAILED" },
                    if ev.ok { "l" } else { "l bad" },
                ),
                cell(&ev.detail, "l w"),
            ]
        });
        table(o, "at|<step|<replica|took|<result|<detail", rows);
    }
    o.push_str("<h3>Failover</h3><p>");
    failover_text(o, r.failover.as_ref());
    o.push_str("</p>\n");
    for sc in &r.scaling {
        scale_section(o, sc);
    }
    charts(o, r);

    o.push_str("<div class=\"cols\"><div><h3>Latency percentiles</h3>");
    let rows = r.percentiles.iter().map(|p| {
        // As many decimals as the percentile has (p99.99 must not print as p100).
        let name = format!("p{}", p.percentile);
        vec![
            cell(name, "l"),
            cell(ms(p.latency_ms), ""),
            cell(ms(p.service_ms), ""),
        ]
    });
    table(o, "<percentile|latency ms|service ms", rows);
    o.push_str("</div><div><h3>Per replica</h3>");
    let names: BTreeSet<&String> = r.per_replica.keys().chain(r.memory_bytes.keys()).collect();
    if names.is_empty() {
        o.push_str("<p>No answer carried an x-replica header.</p>");
    } else {
        let total: u64 = r.per_replica.values().sum();
        let rows = names.into_iter().map(|n| {
            let count = r.per_replica.get(n).copied().unwrap_or(0);
            let killed = if r.killed.as_ref() == Some(n) {
                " (killed)"
            } else {
                ""
            };
            vec![
                cell(format!("{n}{killed}"), "l"),
                cell(count, ""),
                cell(format!("{}%", percent(count, total)), ""),
                cell(opt(r.memory_bytes.get(n).map(|b| mib(*b))), ""),
            ]
        });
        table(o, "<replica|requests|share|memory MiB", rows);
    }
    o.push_str("</div></div></section>\n");
}

/// The size a scale event asked for, as a table cell says it: `stateful=4 (drain=15)`.
fn scale_name(sc: &ScaleReport) -> String {
    let removal = if sc.removal.is_empty() {
        String::new()
    } else {
        format!(" ({})", sc.removal)
    };
    format!("{}={}{removal}", sc.pool, sc.replicas)
}

fn even_text(sc: &ScaleReport) -> String {
    sc.even_after_s.map_or_else(
        || "never in this run".into(),
        |s| format!("{} s", num(s, 1)),
    )
}

/// Every scale event of every run in one table: the scaling comparison.
/// The skewed runs side by side: the imbalance, the hot replica across the pool's growth, and
/// what bounded loads moved and lost.
fn skew_comparison(o: &mut String, runs: &[RunReport]) {
    o.push_str("<h2>Heavy users</h2><div class=\"scroll\">");
    let head = "<run|requests|busiest replica / mean|coefficient of variation|live sessions: \
                busiest / mean|<hot replica: share before → after growing|hot replica's cores (of its \
                budget)|moved by the bound|\
                session losses|p99 ms|heaviest users' p99 ms";
    let rows = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.skew.is_some())
        .map(|(i, r)| {
            let bal = |b: Option<&Balance>, f: fn(&Balance) -> f64| {
                b.map_or_else(
                    || cell("-", ""),
                    |b| cell(num(f(b), 2), bad_if(f(b) > 1.25)),
                )
            };
            let hot = crate::report::hot_replica(r).map_or_else(
                || "-".into(),
                |(name, before, after)| {
                    format!(
                        "{name}: {} % → {} %",
                        num(before * 100.0, 0),
                        num(after * 100.0, 0)
                    )
                },
            );
            vec![
                format!(
                    "<td class=\"l\"><a href=\"#run-{i}\">{}</a></td>",
                    escape(&r.label)
                ),
                cell(r.requests, ""),
                bal(r.balance.as_ref(), |b| b.max_over_mean),
                match &r.balance {
                    Some(b) => cell(num(b.cv, 2), ""),
                    None => cell("-", ""),
                },
                bal(r.session_balance.as_ref(), |b| b.max_over_mean),
                cell(hot, "l"),
                match crate::report::hot_replica(r)
                    .and_then(|(name, _, _)| crate::report::part_cpu(r, &name))
                {
                    Some((cores, budget)) => cell(
                        crate::report::cores_text((cores, budget)),
                        bad_if(budget.is_some_and(|b| cores >= 0.9 * b)),
                    ),
                    None => cell("-", ""),
                },
                cell(
                    r.bounded.map_or_else(
                        || "-".into(),
                        |b| format!("{} ({} %)", b.moves, num(b.share_moved * 100.0, 1)),
                    ),
                    "",
                ),
                cell(r.session_losses, bad_if(r.session_losses > 0)),
                cell(num(r.p99_ms, 2), ""),
                cell(
                    r.heavy
                        .as_ref()
                        .map_or_else(|| "-".into(), |h| num(h.p99_ms, 2)),
                    "",
                ),
            ]
        });
    table(o, head, rows);
    o.push_str(
        "</div><p class=\"note\">Each run: a closed population whose k-th user thinks k<sup>S</sup> \
         times as long as the first (a Zipf law of request rates), the pool grown by one replica at \
         half time. <i>Busiest / mean</i> and the <i>coefficient of variation</i> are over the \
         requests each replica answered in the run; <i>live sessions</i> over each replica's \
         session-seconds. <i>Hot replica</i>: the replica with the largest share of requests in \
         the seconds before the pool grew, and its share in the last seconds after; its \
         <i>cores</i> are its mean CPU over the whole run, against its budget (90 % or more \
         highlighted). <i>Moved by \
         the bound</i>: requests the balance factor sent past their strategy's first choice, from \
         the proxy's own count.</p>\n",
    );
}

/// The file runs side by side: avatars stored, lost to a visitor during the run and when read
/// back after it, refused while the object store was away, and what the sessions lost.
fn files_comparison(o: &mut String, runs: &[RunReport]) {
    o.push_str("<h2>Files</h2><div class=\"scroll\">");
    let head = "<run|<event|avatars stored|read by visitors|lost to visitors|refused (503)|\
                <refused in seconds|lost after the run|session losses|failed requests";
    let rows = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.files.map(|f| (i, r, f)))
        .map(|(i, r, f)| {
            let c = f.counts;
            let share = crate::report::share_words;
            vec![
                format!(
                    "<td class=\"l\"><a href=\"#run-{i}\">{}</a></td>",
                    escape(&r.label)
                ),
                cell(escape(&crate::report::event_words(r)), "l"),
                cell(c.stored, ""),
                cell(c.read, ""),
                cell(share(c.lost, c.read), bad_if(c.lost > 0)),
                cell(c.unavailable, bad_if(c.unavailable > 0)),
                cell(
                    f.unavailable_seconds
                        .map_or_else(|| "-".into(), |[a, b]| format!("{a}-{b}")),
                    "l",
                ),
                match f.after_run {
                    Some(a) => cell(share(a.lost, a.asked), bad_if(a.lost > 0)),
                    None => cell("-", ""),
                },
                cell(r.session_losses, bad_if(r.session_losses > 0)),
                cell(r.failed_requests, ""),
            ]
        });
    table(o, head, rows);
    o.push_str(
        "</div><p class=\"note\">Each session logs in and uploads an avatar; another visitor (the \
         same address, no cookie, so the proxy places it afresh) reads it by name up to three \
         think times later. <i>Lost</i>: a read answered 404, or with other bytes than were \
         stored. <i>Lost after the run</i>: every stored avatar read once more by name, from its \
         owner's address, once the kills, restarts and scale events were over. <i>Refused</i>: \
         uploads and reads answered 503 <code>files_unavailable</code> while the object store was \
         away, and the seconds of the run they fell in.</p>\n",
    );
}

/// The chat runs side by side: what each room delivered of what it owed, live and in history,
/// the fan-out latency, and the sockets a kill or a scale-in ended.
fn chat_comparison(o: &mut String, runs: &[RunReport]) {
    o.push_str("<h2>Chat</h2><div class=\"scroll\">");
    let head = "<run|<event|messages said|hearings owed|delivered|heard live|heard in history|\
                fan-out p50 ms|fan-out p99 ms|sockets opened|sockets lost";
    let rows = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.chat.map(|c| (i, r, c)))
        .map(|(i, r, c)| {
            vec![
                format!(
                    "<td class=\"l\"><a href=\"#run-{i}\">{}</a></td>",
                    escape(&r.label)
                ),
                cell(escape(&crate::report::event_words(r)), "l"),
                cell(c.said, ""),
                cell(c.owed, ""),
                cell(
                    format!("{} %", num(c.delivery * 100.0, 1)),
                    bad_if(c.delivery < 0.99),
                ),
                cell(c.heard_live, ""),
                cell(c.heard_in_history, ""),
                cell(num(c.fanout_p50_ms, 2), ""),
                cell(num(c.fanout_p99_ms, 2), ""),
                cell(c.sockets_opened, ""),
                cell(c.sockets_lost, bad_if(c.sockets_lost > 0)),
            ]
        });
    table(o, head, rows);
    o.push_str(
        "</div><p class=\"note\">Each run: a closed population of chat users in rooms, each \
         saying a message every think time over a WebSocket into its room and opening the socket \
         again (after 100 ms, doubling to 2 s) when it ends. A hearing is <i>owed</i> for each \
         message and each peer in its room who had joined before it was said (the last 0.5 s \
         excepted); <i>delivered</i> is what was heard, live or in the history a socket is sent \
         when it joins. <i>Fan-out</i>: from a message's send to a peer hearing it live.</p>\n",
    );
}

fn scaling_comparison(o: &mut String, runs: &[RunReport]) {
    o.push_str("<h2>Scaling</h2><div class=\"scroll\">");
    let head = "<run|<scale|took|first request of a new replica|live sessions|moved|moved and \
                lost|failed requests|even load after|<shares after";
    let rows = runs.iter().enumerate().flat_map(|(i, r)| {
        r.scaling.iter().map(move |sc| {
            let first = sc
                .joined
                .iter()
                .map(|j| j.at_s - sc.asked_at_s)
                .reduce(f64::min);
            let shares: Vec<String> = sc
                .share_after
                .iter()
                .map(|(n, v)| {
                    format!(
                        "<span class=\"nb\">{} {}%</span>",
                        escape(n),
                        num(v * 100.0, 0)
                    )
                })
                .collect();
            vec![
                format!(
                    "<td class=\"l\"><a href=\"#run-{i}\">{}</a></td>",
                    escape(&r.label)
                ),
                cell(scale_name(sc), "l"),
                cell(format!("{} s", num(sc.took_s, 2)), ""),
                cell(opt(first.map(|s| format!("+{} s", num(s, 2)))), ""),
                cell(sc.sessions.carried, ""),
                cell(sc.sessions.moved, ""),
                cell(sc.sessions.moved_lost, bad_if(sc.sessions.moved_lost > 0)),
                cell(sc.failed_in_window, ""),
                cell(even_text(sc), bad_if(sc.even_after_s.is_none())),
                format!("<td class=\"l w\">{}</td>", shares.join(" · ")),
            ]
        })
    });
    table(o, head, rows);
    w!(
        o,
        "</div><p class=\"note\"><i>Live sessions</i>: sessions logged in before the scale \
         command returned that sent a request after it began. <i>Moved</i>: of those, sessions \
         answered by another replica than before, counted once (round-robin moves every session \
         by design; what matters there is that nothing is lost). <i>Moved and lost</i>: moved \
         sessions then answered 401 or with a wrong cart. <i>Even load after</i>: from the ask \
         until the first of {EVEN_SECONDS} seconds in a row in each of which every replica of the \
         pool served within {}% of an even share.</p>\n",
        num(EVEN_TOLERANCE * 100.0, 0)
    );
}

/// One scale event of a run: what happened when, and the shares before and after.
fn scale_section(o: &mut String, sc: &ScaleReport) {
    w!(
        o,
        "<h3>Scale {}</h3><p>Asked for at {} s; the command took {} s{}. ",
        escape(&scale_name(sc)),
        num(sc.asked_at_s, 2),
        num(sc.took_s, 2),
        if sc.ok {
            ""
        } else {
            " and <span class=\"bad\">FAILED</span>"
        }
    );
    for j in &sc.joined {
        w!(
            o,
            "<b>{}</b> took its first request at {} s ({} s after the ask). ",
            escape(&j.replica),
            num(j.at_s, 2),
            num(j.at_s - sc.asked_at_s, 2)
        );
    }
    for l in &sc.left {
        w!(
            o,
            "<b>{}</b> gave its last answer at {} s. ",
            escape(&l.replica),
            num(l.at_s, 2)
        );
    }
    let c = sc.sessions;
    w!(
        o,
        "{} live sessions sent requests after the ask; {} of them moved to another replica and \
         <span class=\"{}\">{} of those were lost</span>. In the event's window ({} s to {} s) \
         {} requests failed and {} sessions were lost in all. Even load: {}.</p>",
        c.carried,
        c.moved,
        bad_if(c.moved_lost > 0),
        c.moved_lost,
        num(sc.asked_at_s, 1),
        num(sc.window_end_s, 1),
        sc.failed_in_window,
        sc.sessions_lost_in_window,
        even_text(sc)
    );
    let names: BTreeSet<&String> = sc
        .share_before
        .keys()
        .chain(sc.share_after.keys())
        .collect();
    let pct = |v: Option<&f64>| v.map_or_else(|| "-".into(), |v| format!("{}%", num(v * 100.0, 1)));
    let rows = names.into_iter().map(|n| {
        vec![
            cell(n, "l"),
            cell(pct(sc.share_before.get(n)), ""),
            cell(pct(sc.share_after.get(n)), ""),
        ]
    });
    table(
        o,
        "<replica|share before (last 5 s)|share after (window's last 5 s)",
        rows,
    );
}

/// A partition's failures, sessions, new primary and acknowledged writes lost.
fn partition_figures(o: &mut String, f: &Failover) {
    let (failed, lost) = (f.failed_during_failover, f.sessions_lost_after_kill);
    w!(
        o,
        "{failed} requests failed and {lost} sessions were lost from the cut's second on. "
    );
    if let Some(p) = &f.new_primary {
        w!(
            o,
            "<b>{}</b> was first named primary {} s after the cut. ",
            escape(&p.name),
            num(p.at_s - f.kill_at_s, 2)
        );
    }
    if let (Some(adds), Some(adds_lost), Some(logins_lost)) = (
        f.acknowledged_adds,
        f.acknowledged_adds_lost,
        f.acknowledged_logins_lost,
    ) {
        w!(
            o,
            "From the cut's second on, {adds} cart adds were answered 200 and {adds_lost} of them \
             were lost later; {logins_lost} logins answered 200 were lost later (401)."
        );
    }
}

fn failover_text(o: &mut String, f: Option<&Failover>) {
    let Some(f) = f else {
        o.push_str("No replica was killed in this run.");
        return;
    };
    let (at, took) = (num(f.kill_at_s, 2), num(f.kill_took_s, 2));
    if f.fault == FaultStep::Partition {
        let node = f.killed_node.as_deref().unwrap_or(&f.replica);
        let from = f.cut_off.as_deref().unwrap_or_default().join(", ");
        w!(
            o,
            "<b>{}</b> was cut off from {} at {at} s (the partition command took {took} s); the \
             replicas not among them still reached it. ",
            escape(node),
            escape(&from)
        );
        if let Some(at) = f.restart_at_s {
            w!(o, "The partition was healed at {} s. ", num(at, 2));
        }
        partition_figures(o, f);
        return;
    }
    w!(
        o,
        "<b>{}</b> was killed at {at} s (the kill command took {took} s). ",
        escape(&f.replica)
    );
    if f.last_answer_after_kill_s > 0.0 {
        let last = num(f.last_answer_after_kill_s, 2);
        w!(o, "Its last answer came {last} s after the kill. ");
    } else {
        o.push_str("It gave no answer after the kill. ");
    }
    if let Some(at) = f.restart_at_s {
        w!(o, "It was restarted at {} s. ", num(at, 2));
    }
    let (failed, lost) = (f.failed_during_failover, f.sessions_lost_after_kill);
    w!(
        o,
        "{failed} requests failed from the kill's second until the recovery (or the end of the \
         run), and {lost} sessions were lost from the kill on. "
    );
    if let Some(on) = f.sessions_on_killed.filter(|n| *n > 0) {
        w!(
            o,
            "{on} sessions were on the killed replica (from the kill on, each sent a request \
             while its last answer came from it). "
        );
    }
    redis_text(o, f);
    window_text(o, f);
    let Some(rec) = &f.recovery else {
        o.push_str("No pre-kill band (fewer than two whole seconds before the kill): recovery is not measured.");
        return;
    };
    let (lo, hi) = (num(rec.throughput_low, 0), num(rec.throughput_high, 0));
    w!(
        o,
        "Pre-kill band: {lo}–{hi} ok/s with p99 ≤ {} ms and at most {} failed per second. ",
        num(rec.p99_high_ms, 2),
        rec.failed_high
    );
    match rec.recovered_after_s {
        Some(s) => w!(o, "Back inside the band {} s after the kill.", num(s, 1)),
        None => o.push_str("<span class=\"bad\">Never back inside the band within the run.</span>"),
    }
}

/// The node the lab resolved the kill to, and the primaries before and after a Redis kill.
fn redis_text(o: &mut String, f: &Failover) {
    if let Some(node) = f.killed_node.as_ref().filter(|n| **n != f.replica) {
        w!(o, "The lab killed <b>{}</b>. ", escape(node));
    }
    let Some(before) = &f.primaries_before_kill else {
        return;
    };
    w!(
        o,
        "Primaries just before the kill: {}. ",
        escape(&before.join(", "))
    );
    match &f.new_primary {
        Some(_) => w!(o, "New primary: <b>{}</b>. ", escape(&new_primary_text(f))),
        None => o.push_str("<span class=\"bad\">No new primary appeared within the run.</span> "),
    }
}

/// The failure window, the acknowledged writes lost from the kill on, and the 2xx latency on
/// either side.
fn window_text(o: &mut String, f: &Failover) {
    if let Some(w) = &f.failure_window {
        let at = |v: Option<f64>| v.map_or_else(|| "-".into(), |s| format!("{} s", num(s, 3)));
        match w.first_failed_s {
            None => o.push_str("No request failed after the kill. "),
            Some(_) => w!(
                o,
                "Failure window: the first request failed at {}, the first success after it \
                 came at {}, the last failure at {}; {} requests failed from the kill on. ",
                at(w.first_failed_s),
                at(w.first_ok_after_s),
                at(w.last_failed_s),
                w.failed
            ),
        }
    }
    if let (Some(adds), Some(adds_lost), Some(logins_lost)) = (
        f.acknowledged_adds,
        f.acknowledged_adds_lost,
        f.acknowledged_logins_lost,
    ) {
        w!(
            o,
            "From the kill's second on, <span class=\"{}\">{adds_lost} of {adds} acknowledged \
             cart adds and {logins_lost} acknowledged logins were lost</span>. ",
            bad_if(adds_lost + logins_lost > 0)
        );
    }
    let span = |l: Option<&OkLatency>| {
        l.map_or_else(
            || "none".into(),
            |l| {
                format!(
                    "p50 {} ms, p99 {} ms ({} ok answers, {}–{} s)",
                    num(l.p50_ms, 2),
                    num(l.p99_ms, 2),
                    l.ok_requests,
                    l.from_s,
                    l.to_s
                )
            },
        )
    };
    if f.ok_latency_before_kill.is_some() || f.ok_latency_after_failures.is_some() {
        w!(
            o,
            "Latency of the 2xx answers before the kill: {}; after the failures: {}. ",
            span(f.ok_latency_before_kill.as_ref()),
            span(f.ok_latency_after_failures.as_ref())
        );
    }
}

fn series(tl: &[SecondStats], f: impl Fn(&SecondStats) -> f64) -> Vec<Option<f64>> {
    tl.iter().map(|s| Some(f(s))).collect()
}

/// Latency of each second, or a gap when it had no latency sample (connect and I/O failures
/// have none, and a 0 there would look like a fast second).
fn latency(tl: &[SecondStats], f: impl Fn(&SecondStats) -> f64) -> Vec<Option<f64>> {
    tl.iter()
        .map(|s| (s.requests > s.errors.connect + s.errors.io).then(|| f(s)))
        .collect()
}

/// Every replica that answered in the run, in name order (the charts' lines and colours).
fn names_of(r: &RunReport) -> BTreeSet<&String> {
    r.timeline
        .iter()
        .flat_map(|s| s.per_replica.keys())
        .chain(r.per_replica.keys())
        .collect()
}

/// The run's four charts over time; the kill, the restart and the recovery are marked on each,
/// so the failover can be read across throughput, latency and failures at once.
fn charts(o: &mut String, r: &RunReport) {
    let tl = &r.timeline;
    let xs: Vec<f64> = tl.iter().map(|s| s.t as f64 + 0.5).collect();
    let last = tl.iter().map(|s| s.t + 1).max().unwrap_or(0) as f64;
    let x_max = fin(r.duration_s).max(last).max(1.0);
    let rec = r.failover.as_ref().and_then(|f| f.recovery.as_ref());
    let mut markers = Vec::new();
    if let Some(f) = &r.failover {
        let kill = format!("kill {}", f.replica);
        markers.push(Marker {
            at: f.kill_at_s,
            label: kill,
            color: "#B00020",
        });
        if let Some(at) = f.restart_at_s {
            markers.push(Marker {
                at,
                label: "restart".into(),
                color: "#555555",
            });
        }
        if let Some(p) = &f.new_primary {
            markers.push(Marker {
                at: p.at_s,
                label: format!("primary {}", p.name),
                color: "#0072B2",
            });
        }
        if let Some(s) = rec.and_then(|x| x.recovered_after_s) {
            let at = f.kill_at_s + s;
            markers.push(Marker {
                at,
                label: "recovered".into(),
                color: "#007A55",
            });
        }
    }
    for sc in &r.scaling {
        markers.push(Marker {
            at: sc.asked_at_s,
            label: format!("scale {}", scale_name(sc)),
            color: "#0072B2",
        });
        for j in &sc.joined {
            markers.push(Marker {
                at: j.at_s,
                label: format!("first {}", j.replica),
                color: "#009E73",
            });
        }
        if let Some(s) = sc.even_after_s {
            markers.push(Marker {
                at: sc.asked_at_s + s,
                label: "even".into(),
                color: "#555555",
            });
        }
    }
    let chart = |caption, y_label, lines, band| Chart {
        caption,
        x_label: "seconds since start",
        y_label,
        xs: &xs,
        x_max,
        lines,
        band,
        markers: &markers,
    };
    o.push_str("<div class=\"charts\">\n");
    let ok = vec![line("ok per second", 0, "", series(tl, |s| s.ok as f64))];
    let band = rec.map(|b| (b.throughput_low, b.throughput_high, "pre-kill band"));
    draw(o, &chart("Throughput", "ok/s", ok, band));
    let lat = vec![
        line("p50", 0, "", latency(tl, |s| s.p50_ms)),
        line("p99", 1, "", latency(tl, |s| s.p99_ms)),
    ];
    let band = rec.map(|b| (0.0, b.p99_high_ms, "pre-kill p99 ceiling"));
    draw(o, &chart("Latency (from intended send)", "ms", lat, band));
    let errs = vec![
        line("failed per second", 1, "", series(tl, |s| s.failed as f64)),
        line(
            "session losses per second",
            3,
            "7 4",
            series(tl, |s| s.session_losses as f64),
        ),
    ];
    draw(o, &chart("Failures", "per second", errs, None));
    let reps = names_of(r).into_iter().enumerate().map(|(i, n)| {
        let ys = series(tl, |s| s.per_replica.get(n).copied().unwrap_or(0) as f64);
        line(n, i, DASHES[i % DASHES.len()], ys)
    });
    draw(
        o,
        &chart("Requests per replica", "requests/s", reps.collect(), None),
    );
    if !r.scaling.is_empty() {
        let shares = names_of(r).into_iter().enumerate().map(|(i, n)| {
            let ys = tl
                .iter()
                .map(|s| {
                    let total: u64 = s.per_replica.values().sum();
                    (total > 0).then(|| {
                        s.per_replica.get(n).copied().unwrap_or(0) as f64 * 100.0 / total as f64
                    })
                })
                .collect();
            line(n, i, DASHES[i % DASHES.len()], ys)
        });
        draw(
            o,
            &chart("Share of requests per replica", "%", shares.collect(), None),
        );
    }
    o.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::fixture::run;
    use crate::stats::ErrorCounts;

    #[test]
    fn renders_a_self_contained_document_with_all_charts() {
        let html = render("lab <1>", &[run("stateful/cookie", true)]);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains("kill r-2"));
        assert!(html.contains(">restart<"));
        assert!(html.contains("lab &lt;1&gt;"));
        for banned in ["src=", "<link", "@import", "url(", "<script"] {
            assert!(!html.contains(banned), "{banned} in the page");
        }
        assert!(!html.contains("<h2>Comparison</h2>"));
        assert!(!html.contains("NaN") && !html.contains("inf"));
    }

    #[test]
    fn a_scale_event_gets_its_section_markers_share_chart_and_table_row() {
        use crate::scaling::{ReplicaMoment, ScaleReport};
        use crate::stats::MoveCounts;
        let mut r = run("stateful/ip-hash 3->4", false);
        r.scaling.push(ScaleReport {
            pool: "stateful".into(),
            replicas: 4,
            removal: String::new(),
            asked_at_s: 4.0,
            took_s: 0.6,
            ok: true,
            window_end_s: 12.0,
            joined: vec![ReplicaMoment {
                replica: "r-4".into(),
                at_s: 4.5,
            }],
            left: Vec::new(),
            share_before: BTreeMap::from([("r-1".into(), 0.5), ("r-2".into(), 0.5)]),
            share_after: BTreeMap::from([("r-1".into(), 0.375), ("r-4".into(), 0.25)]),
            sessions: MoveCounts {
                carried: 40,
                moved: 9,
                moved_lost: 9,
            },
            sessions_lost_in_window: 9,
            failed_in_window: 9,
            even_after_s: None,
        });
        let html = render("scaling", &[r.clone(), run("other", false)]);
        assert!(html.contains("<h2>Scaling</h2>"));
        assert!(html.contains("<h3>Scale stateful=4</h3>"));
        assert!(html.contains("<b>r-4</b> took its first request at 4.50 s (0.50 s after the ask)"));
        assert!(html.contains("40 live sessions"));
        assert!(html.contains("9 of those were lost"));
        assert!(html.contains("never in this run"));
        assert!(html.contains("Share of requests per replica"));
        assert!(html.contains("scale stateful=4") && html.contains("first r-4"));
        // The run with a scale event has five charts, the other four.
        assert_eq!(html.matches("<svg").count(), 9);
        assert!(html.contains("37.5%"));
        // Without scale events, no scaling table.
        let plain = render("plain", &[run("a", false), run("b", false)]);
        assert!(!plain.contains("<h2>Scaling</h2>"));
    }

    #[test]
    fn a_redis_kill_shows_its_nodes_window_acknowledged_losses_and_latency() {
        use crate::report::NewPrimary;
        let mut r = run("externalized/round-robin", true);
        let f = r.failover.as_mut().expect("the fixture has a kill");
        f.replica = "redis-primary".into();
        f.killed_node = Some("redis-1".into());
        f.primaries_before_kill = Some(vec!["redis-1".into()]);
        f.new_primary = Some(NewPrimary {
            name: "redis-3".into(),
            at_s: 6.45,
        });
        let html = render("redis", &[r.clone(), run("other", false)]);
        assert!(html.contains("The lab killed <b>redis-1</b>."));
        assert!(html.contains("Primaries just before the kill: redis-1."));
        assert!(html.contains("New primary: <b>redis-3 at 6.45 s (1.25 s after the kill)</b>"));
        assert!(
            html.contains(">primary redis-3<"),
            "the new primary marks the charts"
        );
        assert!(html.contains(
            "the first request failed at 5.210 s, the first success after it came at 5.250 s, \
             the last failure at 6.900 s; 60 requests failed from the kill on"
        ));
        assert!(
            html.contains("1 of 300 acknowledged cart adds and 2 acknowledged logins were lost")
        );
        assert!(html.contains("before the kill: p50 1.30 ms, p99 4.00 ms (500 ok answers, 0–5 s)"));
        assert!(
            html.contains("acknowledged writes lost: 1 of 700 cart adds answered 200, 2 logins")
        );
        // The comparison: acknowledged writes lost (adds and logins), the new primary.
        assert!(html.contains("<td class=\"bad\">3</td>"));
        assert!(html.contains("<td class=\"l\">redis-3 at 6.45 s (1.25 s after the kill)</td>"));
        // The failures per second are charted.
        assert!(html.contains("failed per second"));

        // Watched, but no new primary within the run.
        let f = r.failover.as_mut().expect("the fixture has a kill");
        f.new_primary = None;
        let html = render("redis", &[r]);
        assert!(html.contains("No new primary appeared within the run."));
    }

    #[test]
    fn escapes_data_text() {
        let mut r = run("a<b&\"c\"", true);
        r.events[0].detail = "<oops>".into();
        let html = render("t", &[r.clone(), r]);
        assert!(!html.contains("a<b&\"c\""));
        assert!(html.contains("a&lt;b&amp;&quot;c&quot;"));
        assert!(!html.contains("<oops>"));
    }

    #[test]
    fn comparison_only_with_several_runs() {
        let html = render("t", &[run("one", true), run("two", false)]);
        assert_eq!(html.matches("<h2>Comparison</h2>").count(), 1);
        assert_eq!(html.matches("<svg").count(), 8);
        assert!(html.contains("<td class=\"bad\">2</td>"));
        assert!(html.contains("No replica was killed"));
        assert!(html.contains("<td>8.0</td>"), "mean memory in MiB");
    }

    #[test]
    fn survives_empty_zero_and_non_finite_data() {
        let mut empty = run("empty", true);
        empty.timeline.clear();
        empty.per_replica.clear();
        empty.memory_bytes.clear();
        empty.duration_s = 0.0;
        empty.failover = None;
        let mut odd = run("odd", true);
        odd.timeline.truncate(1);
        odd.timeline[0].p99_ms = f64::NAN;
        odd.timeline[0].p50_ms = f64::INFINITY;
        odd.timeline[0].ok = 0;
        odd.p99_ms = f64::NAN;
        odd.duration_s = f64::NAN;
        let mut zero = run("zero", false);
        for s in &mut zero.timeline {
            *s = SecondStats {
                ok: 0,
                requests: 0,
                failed: 0,
                session_losses: 0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                per_replica: BTreeMap::new(),
                ..s.clone()
            };
        }
        let html = render("t", &[empty, odd, zero]);
        assert_eq!(html.matches("<svg").count(), 12);
        assert!(html.contains("no per-second data"));
        assert!(!html.contains("NaN") && !html.contains("inf"));
    }

    #[test]
    fn latency_gaps_for_seconds_without_samples() {
        let mut r = run("gap", false);
        r.timeline[3].errors = ErrorCounts {
            connect: 100,
            ..ErrorCounts::default()
        };
        r.timeline[3].requests = 100;
        let ys = latency(&r.timeline, |s| s.p99_ms);
        assert_eq!(ys[3], None);
        assert_eq!(ys[2], Some(4.0));
    }
}

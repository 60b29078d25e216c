//! The charts of the HTML report, drawn by hand as inline SVG: line charts over the run's
//! seconds, with an optional shaded band and labelled vertical markers (the kill, the restart,
//! the recovery). No library and no script, so the page stays one offline file.
//!
//! Charts are honest about gaps: a `None` value breaks its line instead of drawing a flattering
//! 0 (the page passes `None` for a second without any latency sample); other non-finite values
//! count as 0.

use std::fmt::Write as _;

use super::{escape, num};

/// Okabe-Ito colours (colour-blind safe; its yellow is left out, too pale on white) and brown.
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B",
];
/// Replica lines cycle through these too, so replicas with equal load (lines on top of each
/// other) stay distinguishable.
pub(super) const DASHES: [&str; 3] = ["", "7 4", "2 3"];
const BAND_FILL: &str = "#D9EFDF";

/// A value a chart can draw: non-finite and negative values count as 0.
pub(super) fn fin(v: f64) -> f64 {
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

/// One drawn series; `None` values are gaps.
pub(super) struct Line {
    name: String,
    color: &'static str,
    dash: &'static str,
    ys: Vec<Option<f64>>,
}

/// A vertical dashed line with a label: the kill, the restart, the recovery.
pub(super) struct Marker {
    pub(super) at: f64,
    pub(super) label: String,
    pub(super) color: &'static str,
}

/// What one chart shows, as the page chose it; [`draw`] turns it into SVG.
pub(super) struct Chart<'a> {
    pub(super) caption: &'a str,
    pub(super) x_label: &'a str,
    pub(super) y_label: &'a str,
    pub(super) xs: &'a [f64],
    pub(super) x_max: f64,
    pub(super) lines: Vec<Line>,
    /// A shaded y range (low, high, legend label): the pre-kill band.
    pub(super) band: Option<(f64, f64, &'a str)>,
    pub(super) markers: &'a [Marker],
}

pub(super) fn line(name: &str, color: usize, dash: &'static str, ys: Vec<Option<f64>>) -> Line {
    let color = PALETTE[color % PALETTE.len()];
    Line {
        name: name.into(),
        color,
        dash,
        ys,
    }
}

/// A "nice" step (1, 2 or 5 times a power of ten) at or above `raw`.
fn nice(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let exp = 10f64.powf(raw.log10().floor());
    let f = raw / exp;
    exp * [1.0, 2.0, 5.0]
        .into_iter()
        .find(|&n| f <= n)
        .unwrap_or(10.0)
}

fn tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", num(v / 1000.0, 1).trim_end_matches(".0"))
    } else {
        num(v, 1).trim_end_matches(".0").to_string()
    }
}

const W: f64 = 560.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 16.0;
const PLOT_H: f64 = 180.0;
const BOTTOM: f64 = 38.0;

fn dasharray(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(" stroke-dasharray=\"{dash}\"")
    }
}

/// Appends the chart as a `<figure>` holding an inline `<svg>`, sized by a fixed viewBox so the
/// page's CSS scales it to the column.
pub(super) fn draw(o: &mut String, c: &Chart) {
    let plot_w = W - LEFT - RIGHT;
    // The legend first: how many rows it wraps to decides where the plot starts.
    let mut legend = String::new();
    let (mut x, mut y) = (LEFT, 12.0);
    let band = c.band.iter().map(|b| (b.2, "", ""));
    for (name, color, dash) in band.chain(c.lines.iter().map(|l| (&*l.name, l.color, l.dash))) {
        let width = 46.0 + 6.6 * name.chars().count() as f64;
        if x > LEFT && x + width > W - RIGHT {
            (x, y) = (LEFT, y + 16.0);
        }
        if color.is_empty() {
            let y = y - 9.0;
            w!(legend, "<rect x=\"{x}\" y=\"{y}\" width=\"24\" height=\"10\" fill=\"{BAND_FILL}\" stroke=\"#7FB48F\"/>");
        } else {
            let (x2, y) = (x + 24.0, y - 4.0);
            let d = dasharray(dash);
            w!(legend, "<line x1=\"{x}\" x2=\"{x2}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"2.5\"{d}/>");
        }
        w!(
            legend,
            "<text x=\"{}\" y=\"{y}\" fill=\"#222\">{}</text>",
            x + 30.0,
            escape(name)
        );
        x += width;
    }
    let top = y + 16.0;
    let (base, h, right) = (top + PLOT_H, top + PLOT_H + BOTTOM, W - RIGHT);
    let values = c
        .lines
        .iter()
        .flat_map(|l| l.ys.iter().flatten().map(|v| fin(*v)));
    let y_raw = values
        .chain(c.band.iter().map(|b| fin(b.1)))
        .fold(1.0, f64::max);
    let y_step = nice(y_raw / 4.0);
    let y_max = (y_raw / y_step).ceil() * y_step;
    let sx = |x: f64| LEFT + fin(x).min(c.x_max) / c.x_max * plot_w;
    let sy = |y: f64| base - fin(y).min(y_max) / y_max * PLOT_H;

    let caption = escape(c.caption);
    w!(
        o,
        "<figure><figcaption>{caption}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" "
    );
    w!(
        o,
        "viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{caption}\" font-size=\"11\" "
    );
    o.push_str("font-family=\"system-ui,sans-serif\">\n");
    o.push_str(&legend);
    if let Some((lo, hi, _)) = c.band {
        let (y1, y2) = (sy(hi), sy(lo));
        let hgt = y2 - y1;
        w!(o, "<rect x=\"{LEFT}\" y=\"{y1:.1}\" width=\"{plot_w}\" height=\"{hgt:.1}\" fill=\"{BAND_FILL}\"/>");
    }
    let mut v = 0.0;
    while v <= y_max + y_step * 1e-6 {
        let (y, ty, label) = (sy(v), sy(v) + 4.0, tick(v));
        w!(
            o,
            "<line x1=\"{LEFT}\" x2=\"{right}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/>"
        );
        w!(
            o,
            "<text x=\"{}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#333\">{label}</text>",
            LEFT - 5.0
        );
        v += y_step;
    }
    let x_step = nice(c.x_max / 8.0).max(1.0);
    let mut v = 0.0;
    while v <= c.x_max + 1e-9 {
        let (x, label, (t1, t2)) = (sx(v), tick(v), (base + 4.0, base + 16.0));
        w!(
            o,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{base}\" y2=\"{t1}\" stroke=\"#333\"/>"
        );
        w!(
            o,
            "<text x=\"{x:.1}\" y=\"{t2}\" text-anchor=\"middle\" fill=\"#333\">{label}</text>"
        );
        v += x_step;
    }
    let (mid_x, mid_y, title_y) = (LEFT + plot_w / 2.0, top + PLOT_H / 2.0, h - 5.0);
    w!(
        o,
        "<path d=\"M{LEFT} {top}V{base}H{right}\" fill=\"none\" stroke=\"#333\"/>"
    );
    let x_label = escape(c.x_label);
    w!(
        o,
        "<text x=\"{mid_x}\" y=\"{title_y}\" text-anchor=\"middle\" fill=\"#333\">{x_label}</text>"
    );
    let y_label = escape(c.y_label);
    w!(o, "<text transform=\"translate(13 {mid_y}) rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">{y_label}</text>");
    if c.xs.is_empty() || c.lines.is_empty() {
        w!(o, "<text x=\"{mid_x}\" y=\"{mid_y}\" text-anchor=\"middle\" fill=\"#666\">no per-second data</text>");
    }
    let dots = c.xs.len() <= 30;
    for l in &c.lines {
        // Split at gaps: each run of values is one polyline.
        let mut segs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (x, y) in c.xs.iter().zip(&l.ys) {
            match (y, segs.last_mut()) {
                (Some(y), Some(seg)) => seg.push((sx(*x), sy(*y))),
                _ => segs.push(Vec::new()),
            }
        }
        let (color, d) = (l.color, dasharray(l.dash));
        for seg in segs.iter().filter(|s| !s.is_empty()) {
            let pts: Vec<String> = seg.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let pts = pts.join(" ");
            w!(o, "<polyline points=\"{pts}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\"{d}/>");
            if dots || seg.len() == 1 {
                let r = if seg.len() == 1 { 3.5 } else { 2.2 };
                for (x, y) in seg {
                    w!(
                        o,
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" fill=\"{color}\"/>"
                    );
                }
            }
        }
    }
    let shown = c
        .markers
        .iter()
        .filter(|m| m.at.is_finite() && (0.0..=c.x_max).contains(&m.at));
    for (i, m) in shown.enumerate() {
        let (x, color, label) = (sx(m.at), m.color, escape(&m.label));
        w!(
            o,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{base}\" stroke=\"{color}\" "
        );
        o.push_str("stroke-width=\"1.4\" stroke-dasharray=\"5 4\"/>");
        // Labels are stacked so close markers do not overwrite each other, and flipped to the
        // left of their line near the right edge; a white halo keeps them legible over lines.
        let (tx, anchor) = if x > LEFT + plot_w * 0.7 {
            (x - 4.0, "end")
        } else {
            (x + 4.0, "start")
        };
        let ty = top + 12.0 + 13.0 * i as f64;
        w!(o, "<text x=\"{tx:.1}\" y=\"{ty}\" text-anchor=\"{anchor}\" fill=\"{color}\" stroke=\"#fff\" ");
        w!(
            o,
            "stroke-width=\"3\" paint-order=\"stroke\" font-weight=\"600\">{label}</text>"
        );
    }
    o.push_str("</svg></figure>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice(0.3), 0.5);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(150.0), 200.0);
        assert_eq!(nice(f64::NAN), 1.0);
        assert_eq!(tick(25_000.0), "25k");
        assert_eq!(tick(0.5), "0.5");
    }
}

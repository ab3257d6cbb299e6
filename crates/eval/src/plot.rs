//! Small SVG charts, written by hand (no plotting dependency): a line chart and a grouped bar
//! chart, enough for loss curves and before/after scores. Any browser or Markdown viewer
//! shows them.

use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: &[&str] = &["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];

/// One named series of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn header(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        W / 2.0,
        escape(title)
    )
}

fn nice_range(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 { (lo - 0.5, hi + 0.5) } else { (lo, hi) }
}

fn axes(out: &mut String, x: (f64, f64), y: (f64, f64), x_label: &str, y_label: &str) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ =
        writeln!(out, "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>");
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let yv = y.0 + f * (y.1 - y.0);
        let py = TOP + ph - f * ph;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            fmt_tick(yv)
        );
        let xv = x.0 + f * (x.1 - x.0);
        let px = LEFT + f * pw;
        if x_label.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph + 16.0,
            fmt_tick(xv)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        LEFT + pw / 2.0,
        H - 12.0,
        escape(x_label),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || (v.fract().abs() < 1e-9 && v.abs() >= 1.0) { format!("{v:.0}") } else { format!("{v:.2}") }
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = LEFT + 10.0 + 150.0 * i as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            TOP + 6.0,
            COLORS[i % COLORS.len()],
            x + 16.0,
            TOP + 16.0,
            escape(name)
        );
    }
}

/// A line chart of `series` (each also marked by dots, so a single point shows).
#[must_use]
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let (x0, x1) = nice_range(x0, x1);
    let (y0, y1) = nice_range(y0.min(0.0), y1);
    let mut out = header(title);
    axes(&mut out, (x0, x1), (y0, y1), x_label, y_label);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        for p in &pts {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"2.5\" fill=\"{color}\"/>");
        }
    }
    legend(&mut out, &series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
    out.push_str("</svg>\n");
    out
}

/// A grouped bar chart: one group per category, one bar per series (`values[series][category]`),
/// values between 0 and 1 (shares and scores), printed above each bar.
#[must_use]
pub fn bar_chart(title: &str, y_label: &str, categories: &[&str], series: &[(&str, Vec<f64>)]) -> String {
    let mut out = header(title);
    axes(&mut out, (0.0, 1.0), (0.0, 1.0), "", y_label);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    #[allow(clippy::cast_precision_loss)]
    let group = pw / categories.len().max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let bar = group * 0.8 / series.len().max(1) as f64;
    for (c, name) in categories.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let gx = LEFT + group * c as f64 + group * 0.1;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            gx + group * 0.4,
            TOP + ph + 18.0,
            escape(name)
        );
        for (s, (_, values)) in series.iter().enumerate() {
            let v = values.get(c).copied().unwrap_or(0.0).clamp(0.0, 1.0);
            #[allow(clippy::cast_precision_loss)]
            let x = gx + bar * s as f64;
            let h = v * ph;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{v:.2}</text>",
                TOP + ph - h,
                bar * 0.95,
                COLORS[s % COLORS.len()],
                x + bar / 2.0,
                TOP + ph - h - 3.0
            );
        }
    }
    legend(&mut out, &series.iter().map(|s| s.0).collect::<Vec<_>>());
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_draws_each_series_and_escapes_text() {
        let s = vec![
            Series { name: "train <loss>".into(), points: vec![(1.0, 3.0), (2.0, 2.5), (3.0, 2.0)] },
            Series { name: "valid".into(), points: vec![(3.0, 2.2)] },
        ];
        let svg = line_chart("Loss & steps", "step", "loss", &s);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("train &lt;loss&gt;") && svg.contains("Loss &amp; steps"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn bar_chart_has_one_bar_per_value() {
        let svg =
            bar_chart("Scores", "score", &["EM", "F1"], &[("base", vec![0.1, 0.5]), ("adapter", vec![0.2, 0.75])]);
        // 2 legend squares + 4 bars + the frame.
        assert_eq!(svg.matches("<rect").count(), 1 + 1 + 2 + 4);
        assert!(svg.contains(">0.75<"));
    }
}

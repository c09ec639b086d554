//! The drift report: one static HTML page per run, readable offline at a glance.
//!
//! A summary (model, baseline, current data, verdict), then one section per column with
//! drifted columns first: its metrics against their thresholds and an inline SVG chart of
//! baseline and current shares per bin. No scripts, no fonts or styles from the internet.

use std::fmt::Write;

use super::compare::ColumnDrift;
use super::run::DriftReport;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}\
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}\
.drifted{color:#b00020;font-weight:600}.stable{color:#1b5e20}\
.verdict{padding:.6rem 1rem;border-radius:.3rem;background:#f3f3f3}\
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}";

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn number(value: f64) -> String {
    if value == 0.0 || (value.abs() >= 0.001 && value.abs() < 1e6) {
        format!("{value:.4}")
    } else {
        format!("{value:.3e}")
    }
}

/// The report of `report` as a complete HTML document.
pub fn render_html(report: &DriftReport) -> String {
    let mut html = String::new();
    let drifted = report.drifted_features();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Drift of {model}</title><style>{STYLE}</style></head><body>\
         <h1>Drift of {model}</h1>\
         <table><tr><th>baseline</th><td>{baseline}@{baseline_version} (training data)</td></tr>\
         <tr><th>current</th><td>{current}</td></tr>\
         <tr><th>run</th><td>{run}</td></tr></table>",
        model = escape(&report.model),
        baseline = escape(&report.baseline.0.to_string()),
        baseline_version = report.baseline.1,
        current = escape(&report.current),
        run = escape(&report.run_id),
    );
    let verdict = match &report.retrain_reason {
        Some(reason) => format!(
            "<span class=\"drifted\">Retraining requested:</span> {}",
            escape(reason)
        ),
        None => String::from("<span class=\"stable\">No retraining needed.</span>"),
    };
    let _ = write!(
        html,
        "<p class=\"verdict\">{} of {} features drifted{}. {verdict}</p>",
        drifted.len(),
        report.features.len(),
        if drifted.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&drifted.join(", ")))
        }
    );
    html.push_str(
        "<p class=\"legend\">Bars:<span style=\"background:#9e9e9e\"></span>baseline\
         <span style=\"background:#1565c0\"></span>current</p>",
    );
    for column in report.prediction.iter().chain(&report.features) {
        section(&mut html, column);
    }
    html.push_str("</body></html>\n");
    html
}

fn section(html: &mut String, column: &ColumnDrift) {
    let (class, word) = if column.drifted {
        ("drifted", "drifted")
    } else {
        ("stable", "stable")
    };
    let _ = write!(
        html,
        "<section><h2>{name} <small>({kind})</small> <span class=\"{class}\">{word}</span></h2>\
         <p>{base} baseline rows, {current} current rows</p>\
         <table><tr><th>metric</th><th>value</th><th>threshold</th><th></th></tr>",
        name = escape(&column.column),
        kind = column.data_type,
        base = column.baseline_rows,
        current = column.current_rows,
    );
    for metric in &column.metrics {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            metric.metric,
            number(metric.value),
            metric.threshold.map(number).unwrap_or_default(),
            if metric.drifted { "drifted" } else { "" },
            if metric.drifted { "drifted" } else { "" },
        );
    }
    html.push_str("</table>");
    chart(html, column);
    html.push_str("</section>");
}

/// Baseline and current shares per bin as grouped bars.
fn chart(html: &mut String, column: &ColumnDrift) {
    let bins = &column.bins;
    if bins.is_empty() {
        return;
    }
    let (width, height, bottom) = (720.0, 220.0, 60.0);
    let plot = height - bottom;
    let slot = width / bins.len() as f64;
    let tallest = bins
        .iter()
        .map(|b| b.baseline.max(b.current))
        .fold(0.0, f64::max)
        .max(1e-9);
    let _ = write!(
        html,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         role=\"img\" aria-label=\"baseline and current shares of {}\">",
        escape(&column.column)
    );
    for (i, bin) in bins.iter().enumerate() {
        let x = i as f64 * slot;
        let bar = slot * 0.38;
        for (offset, share, color) in [
            (0.1, bin.baseline, "#9e9e9e"),
            (0.5, bin.current, "#1565c0"),
        ] {
            let h = share / tallest * (plot - 12.0);
            let _ = write!(
                html,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{color}\">\
                 <title>{}: {:.1}%</title></rect>",
                x + slot * offset,
                plot - h,
                escape(&bin.label),
                share * 100.0
            );
        }
        let _ = write!(
            html,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" \
             transform=\"rotate(-35 {:.1} {:.1})\">{}</text>",
            x + slot / 2.0,
            plot + 14.0,
            x + slot / 2.0,
            plot + 14.0,
            escape(&bin.label)
        );
    }
    html.push_str("</svg>");
}

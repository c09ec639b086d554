//! `GET /metrics`: the HTTP API's figures in Prometheus' text format: requests by
//! endpoint, model and status, latency histograms per model, rows scored, model
//! reloads (a promotion taking effect), the online tables' commits and backlog, and each
//! job's last run ([`super::job_figures`]).
//!
//! Labels only ever name models that were loaded, so requests for made-up model names
//! cannot grow the figures without bound.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use parking_lot::Mutex;

use super::job_figures::LastRun;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label of requests that named no loaded model.
const NO_MODEL: &str = "";

/// The API's figures since the server started.
#[derive(Debug, Default)]
pub struct Metrics {
    figures: Mutex<Figures>,
}

#[derive(Debug, Default)]
struct Figures {
    requests: BTreeMap<(&'static str, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    rows: BTreeMap<String, u64>,
    reloads: BTreeMap<String, u64>,
    online_rows_committed: u64,
    online_commit_failures: u64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts a request to `endpoint` (the route, not the path a client sent) that
    /// scored `rows` rows of `model` (when one was loaded) and answered `status`.
    pub fn request(
        &self,
        endpoint: &'static str,
        model: Option<&str>,
        status: u16,
        rows: u64,
        took: Duration,
    ) {
        let model = model.unwrap_or(NO_MODEL).to_string();
        let mut figures = self.figures.lock();
        *figures
            .requests
            .entry((endpoint, model.clone(), status))
            .or_default() += 1;
        if rows > 0 {
            *figures.rows.entry(model.clone()).or_default() += rows;
        }
        let seconds = took.as_secs_f64();
        let histogram = figures.latency.entry(model).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Counts a model whose `name` or alias now resolves to another version.
    pub fn reload(&self, model: &str) {
        *self
            .figures
            .lock()
            .reloads
            .entry(model.to_string())
            .or_default() += 1;
    }

    /// Counts rows committed to online tables and the request log.
    pub fn online_committed(&self, rows: usize) {
        self.figures.lock().online_rows_committed += rows as u64;
    }

    /// Counts a failed commit of online rows.
    pub fn online_commit_failed(&self) {
        self.figures.lock().online_commit_failures += 1;
    }

    /// The figures in Prometheus' text format (0.0.4), with `backlog` rows waiting and
    /// the jobs' `last_runs`.
    pub fn render(&self, backlog: usize, last_runs: &[LastRun]) -> String {
        let figures = self.figures.lock();
        let mut out = String::new();
        header(
            &mut out,
            "lakescore_http_requests_total",
            "counter",
            "HTTP requests answered, by endpoint, model and status.",
        );
        for ((endpoint, model, status), count) in &figures.requests {
            let _ = writeln!(
                out,
                "lakescore_http_requests_total{{endpoint=\"{}\",model=\"{}\",status=\"{status}\"}} {count}",
                escape(endpoint),
                escape(model)
            );
        }
        header(
            &mut out,
            "lakescore_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its answer, by model.",
        );
        for (model, histogram) in &figures.latency {
            let model = escape(model);
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "lakescore_http_request_duration_seconds_bucket{{model=\"{model}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "lakescore_http_request_duration_seconds_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "lakescore_http_request_duration_seconds_sum{{model=\"{model}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "lakescore_http_request_duration_seconds_count{{model=\"{model}\"}} {}",
                histogram.count
            );
        }
        header(
            &mut out,
            "lakescore_rows_scored_total",
            "counter",
            "Rows scored online, by model.",
        );
        for (model, rows) in &figures.rows {
            let _ = writeln!(
                out,
                "lakescore_rows_scored_total{{model=\"{}\"}} {rows}",
                escape(model)
            );
        }
        header(
            &mut out,
            "lakescore_model_reloads_total",
            "counter",
            "Times a model name or alias started resolving to another version.",
        );
        for (model, count) in &figures.reloads {
            let _ = writeln!(
                out,
                "lakescore_model_reloads_total{{model=\"{}\"}} {count}",
                escape(model)
            );
        }
        for (name, kind, help, value) in [
            (
                "lakescore_online_rows_committed_total",
                "counter",
                "Online predictions and request-log rows committed to their tables.",
                figures.online_rows_committed as f64,
            ),
            (
                "lakescore_online_commit_failures_total",
                "counter",
                "Commits of online rows that failed (they are tried again).",
                figures.online_commit_failures as f64,
            ),
            (
                "lakescore_online_backlog_rows",
                "gauge",
                "Online predictions and request-log rows waiting to be committed.",
                backlog as f64,
            ),
        ] {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        type Figure = fn(&LastRun) -> f64;
        let job_figures: [(&str, &str, Figure); 4] = [
            (
                "lakescore_job_last_run_finished_timestamp_seconds",
                "When each job's last run ended (Unix time).",
                |run| run.finished_at,
            ),
            (
                "lakescore_job_last_run_succeeded",
                "1 when each job's last run succeeded, else 0.",
                |run| f64::from(u8::from(run.succeeded)),
            ),
            (
                "lakescore_job_last_run_duration_seconds",
                "How long each job's last run took.",
                |run| run.seconds,
            ),
            (
                "lakescore_job_last_run_rows_written",
                "Rows each job's last run wrote.",
                |run| run.rows_written as f64,
            ),
        ];
        for (name, help, figure) in job_figures {
            header(&mut out, name, "gauge", help);
            for run in last_runs {
                let _ = writeln!(
                    out,
                    "{name}{{job=\"{}\"}} {}",
                    escape(&run.job),
                    figure(run)
                );
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.request("predict", Some("churn"), 200, 3, Duration::from_millis(2));
        metrics.request("predict", Some("churn"), 200, 1, Duration::from_millis(40));
        metrics.request("predict", None, 404, 0, Duration::from_micros(100));
        metrics.reload("churn");
        let nightly = LastRun {
            job: String::from("nightly"),
            finished_at: 1_700_000_000.0,
            succeeded: true,
            seconds: 12.5,
            rows_written: 300,
        };
        let text = metrics.render(7, &[nightly]);
        for line in [
            "lakescore_http_requests_total{endpoint=\"predict\",model=\"churn\",status=\"200\"} 2",
            "lakescore_http_requests_total{endpoint=\"predict\",model=\"\",status=\"404\"} 1",
            "lakescore_http_request_duration_seconds_bucket{model=\"churn\",le=\"0.0025\"} 1",
            "lakescore_http_request_duration_seconds_bucket{model=\"churn\",le=\"0.05\"} 2",
            "lakescore_http_request_duration_seconds_bucket{model=\"churn\",le=\"+Inf\"} 2",
            "lakescore_http_request_duration_seconds_count{model=\"churn\"} 2",
            "lakescore_rows_scored_total{model=\"churn\"} 4",
            "lakescore_model_reloads_total{model=\"churn\"} 1",
            "lakescore_online_backlog_rows 7",
            "lakescore_job_last_run_finished_timestamp_seconds{job=\"nightly\"} 1700000000",
            "lakescore_job_last_run_succeeded{job=\"nightly\"} 1",
            "lakescore_job_last_run_duration_seconds{job=\"nightly\"} 12.5",
            "lakescore_job_last_run_rows_written{job=\"nightly\"} 300",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

//! `lakescore drift`: compares a model's current data with its training data and prints
//! the verdict per feature.

use std::path::PathBuf;
use std::sync::Arc;

use lakescore_engine::drift::compare::ColumnDrift;
use lakescore_engine::drift::{Drift, Window};
use lakescore_engine::{Lakehouse, Project};

/// What `lakescore drift` was asked to compare.
pub struct DriftRequest {
    /// The model reference.
    pub model: String,
    /// The table, `schema.name[@VERSION]`.
    pub table: String,
    /// Only rows after this version.
    pub since: Option<u64>,
    /// Only rows of this recent window, e.g. `7d`.
    pub window: Option<String>,
    /// The timestamp column of `since` and `window`.
    pub time_column: String,
    /// Where to write the HTML report too.
    pub report: Option<PathBuf>,
}

/// Runs the comparison and prints one line per feature, drifted ones first.
pub async fn run(
    project: &Project,
    lakehouse: Arc<Lakehouse>,
    request: DriftRequest,
) -> anyhow::Result<()> {
    let window = match (&request.since, &request.window) {
        (Some(version), _) => Window::Since(*version),
        (None, Some(text)) => Window::Last(humantime::parse_duration(text).map_err(|e| {
            lakescore_engine::Error::Usage(format!(
                "--window \"{text}\" is not a duration ({e}); write e.g. 7d, 36h or 90m"
            ))
        })?),
        (None, None) => Window::Version(None),
    };
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!("profiling {} for {}", request.table, request.model));
    let report = Drift::new(project, lakehouse, request.model, request.table)
        .with_window(window)
        .with_time_column(request.time_column)
        .with_report(request.report.clone())
        .await;
    bar.finish_and_clear();
    let report = report?;
    println!(
        "{} on {} against its training data {}@{}",
        report.model, report.current, report.baseline.0, report.baseline.1
    );
    println!(
        "{:<24} {:<12} {:<8}  metrics (drifted ones marked *)",
        "column", "type", "verdict"
    );
    for column in report.prediction.iter().chain(&report.features) {
        print_column(column);
    }
    match &report.retrain_reason {
        Some(reason) => println!("retraining requested: {reason}"),
        None => println!("no retraining needed"),
    }
    println!("report: {}", report.report_uri);
    if let Some(path) = &request.report {
        println!("        {}", path.display());
    }
    println!(
        "metrics: select * from monitoring.drift_metrics where run_id = '{}'",
        report.run_id
    );
    Ok(())
}

fn print_column(column: &ColumnDrift) {
    let metrics: Vec<String> = column
        .metrics
        .iter()
        .filter(|m| m.threshold.is_some())
        .map(|m| {
            format!(
                "{}={:.3}{}",
                m.metric,
                m.value,
                if m.drifted { "*" } else { "" }
            )
        })
        .collect();
    println!(
        "{:<24} {:<12} {:<8}  {}",
        column.column,
        column.data_type,
        if column.drifted { "DRIFTED" } else { "stable" },
        metrics.join(" ")
    );
}

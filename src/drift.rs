//! `lakescore drift`: compares a model's current data with its training data and prints
//! the verdict per feature.

use std::path::PathBuf;

use lakescore_engine::ml::drift::Window;
use lakescore_engine::run::RunContext;

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
    /// The timestamp column of `since` and `window` (None: the table's default).
    pub time_column: Option<String>,
    /// Where to write the HTML report too.
    pub report: Option<PathBuf>,
}

/// Runs the comparison and prints one line per feature, drifted ones first.
pub async fn run(cx: &RunContext, request: DriftRequest) -> anyhow::Result<()> {
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
    let report = cx
        .drift(request.model, request.table)
        .with_window(window)
        .with_time_column(request.time_column)
        .with_report(request.report)
        .await;
    bar.finish_and_clear();
    println!("{}", report?);
    Ok(())
}

//! `lakescore ingest`: runs the landing with a progress bar and prints one line per source.

use std::sync::Arc;

use lakescore_connectors::{Ingest, IngestReport, Progress};
use lakescore_engine::run::RunContext;

/// Lands the new files of `sources` (all when empty) and prints what happened. Fails when
/// any source failed or rejected a file, after reporting every source.
pub async fn run(cx: &RunContext, sources: Vec<String>) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {human_pos} records ({per_sec})");
    let progress_bar = bar.clone();
    let report = Ingest::new(cx)
        .with_sources(sources)
        .with_progress(Arc::new(move |event| match event {
            Progress::FileStarted { source, file, .. } => {
                progress_bar.set_position(0);
                progress_bar.set_message(format!("{source}: {}", short_name(&file)));
            }
            Progress::Records(n) => progress_bar.set_position(n),
        }))
        .await;
    bar.finish_and_clear();
    let report = report?;
    println!("{report}");
    first_failure(report)
}

/// The first failure, after printing the others, so the exit code reflects it.
fn first_failure(report: IngestReport) -> anyhow::Result<()> {
    let mut first: Option<anyhow::Error> = None;
    for outcome in report.sources {
        match outcome {
            Ok(source) => {
                for error in source.rejections() {
                    keep_first(&mut first, error);
                }
            }
            Err(error) => keep_first(&mut first, error),
        }
    }
    first.map_or(Ok(()), Err)
}

fn keep_first(first: &mut Option<anyhow::Error>, error: lakescore_connectors::Error) {
    if first.is_some() {
        eprintln!("error: {error}");
    } else {
        *first = Some(error.into());
    }
}

fn short_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

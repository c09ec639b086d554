//! `lakescore ingest`: runs the landing with a progress bar and prints one line per source.

use std::sync::Arc;

use lakescore_connectors::{Ingest, IngestReport, Progress};
use lakescore_engine::{Lakehouse, Project};

/// Lands the new files of `sources` (all when empty) and prints what happened. Fails when
/// any source failed or rejected a file, after reporting every source.
pub async fn run(
    project: &Project,
    lakehouse: Arc<Lakehouse>,
    sources: Vec<String>,
) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {human_pos} records ({per_sec})");
    let progress_bar = bar.clone();
    let report = Ingest::new(project, lakehouse)
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
    print_report(&report);
    first_failure(report)
}

fn print_report(report: &IngestReport) {
    for outcome in &report.sources {
        let Ok(source) = outcome else { continue };
        let files = source.files_landed.len();
        if files == 0 && source.rejected_files.is_empty() {
            println!(
                "{} <- {}: up to date ({} files already landed)",
                source.table, source.source, source.files_already_landed
            );
            continue;
        }
        let version = source
            .version
            .map(|v| format!(" -> version {v}"))
            .unwrap_or_default();
        println!(
            "{} <- {}: {files} {} landed, {} rows, {} quarantined{version}",
            source.table,
            source.source,
            if files == 1 { "file" } else { "files" },
            source.rows,
            source.quarantined,
        );
        if !source.new_columns.is_empty() {
            println!(
                "  new columns added to {}: {}",
                source.table,
                source.new_columns.join(", ")
            );
        }
        if source.quarantined > 0 {
            println!(
                "  bad rows are in quarantine.{}",
                source.table.replacen('.', "_", 1)
            );
        }
    }
    println!("run id {}", report.run_id);
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

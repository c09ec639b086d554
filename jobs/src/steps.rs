//! One job step: calling the lakescore operation it names with the job's run id, and
//! reporting what it read and wrote.

use std::sync::Arc;

use chrono::Utc;
use lakescore_connectors::Ingest;
use lakescore_engine::config::{JobConfig, StepAction};
use lakescore_engine::drift::Drift;
use lakescore_engine::feedback::BuildFeedback;
use lakescore_engine::models::retrain::{Retrain, RetrainOutcome};
use lakescore_engine::models::score::Score;
use lakescore_engine::models::train::Train;
use lakescore_engine::vacuum::{DEFAULT_RETAIN, VacuumOptions, vacuum};
use lakescore_engine::{Lakehouse, Project};
use lakescore_sql::dag::Selector;
use lakescore_sql::transform::{ModelStatus, Transform};

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::error::{Error, Result};
use crate::freshness::{check_freshness, stale_error};
use crate::history::DataMoved;

/// What a step needs: the project, its lakehouse and the run it belongs to.
pub struct StepContext<'a> {
    /// The project.
    pub project: &'a Project,
    /// Its lakehouse.
    pub lakehouse: Arc<Lakehouse>,
    /// The job run's id, written into every commit the step makes.
    pub run_id: &'a str,
    /// The job, for its alert targets.
    pub job: &'a JobConfig,
}

/// Runs `action` once; returns what it read and wrote and a one-line summary.
pub async fn run_step(
    context: &StepContext<'_>,
    action: &StepAction,
) -> Result<(DataMoved, String)> {
    let StepContext {
        project,
        lakehouse,
        run_id,
        job,
    } = context;
    match action {
        StepAction::Ingest { sources } => {
            let report = Ingest::new(project, lakehouse.clone())
                .with_sources(sources.clone())
                .with_run_id(*run_id)
                .await?;
            let mut data = DataMoved::default();
            let mut files = 0;
            let mut failure = None;
            for outcome in report.sources {
                let source = match outcome {
                    Ok(source) => source,
                    Err(error) => {
                        failure.get_or_insert(Error::from(error));
                        continue;
                    }
                };
                if let Some(rejection) = source.rejections().next() {
                    failure.get_or_insert(Error::from(rejection));
                }
                files += source.files_landed.len();
                data.rows_read += source.rows + source.quarantined;
                data.rows_written += source.rows;
                if let Some(version) = source.version {
                    data.tables_written
                        .push(format!("{}@{version}", source.table));
                }
            }
            match failure {
                Some(error) => Err(error),
                None => Ok((
                    data.clone(),
                    format!("{files} new files, {} rows landed", data.rows_written),
                )),
            }
        }
        StepAction::Transform { models, force } => {
            let report = Transform::new(project, lakehouse.clone())
                .with_selectors(models.iter().map(|m| Selector::parse(m)).collect())
                .with_force(*force)
                .with_run_id(*run_id)
                .await?;
            if let Some(error) = report.failure() {
                return Err(error.into());
            }
            let mut data = DataMoved::default();
            let mut built = 0;
            for model in &report.models {
                if let ModelStatus::Built { version } = model.status {
                    built += 1;
                    data.rows_written += model.rows.unwrap_or(0);
                    data.tables_written
                        .push(format!("{}@{version}", model.table));
                }
            }
            let summary = format!(
                "{built} of {} models built, {} rows written",
                report.models.len(),
                data.rows_written
            );
            Ok((data, summary))
        }
        StepAction::Train { model } => {
            let manifest = Train::new(project, lakehouse.clone(), model.clone())
                .with_run_id(*run_id)
                .await?;
            let data = DataMoved {
                rows_read: manifest.rows.table_rows,
                rows_written: 0,
                tables_read: vec![format!(
                    "{}@{}",
                    manifest.training_table, manifest.training_table_version
                )],
                tables_written: Vec::new(),
            };
            let summary = format!(
                "registered {}:{} trained on {} rows",
                manifest.name, manifest.version, manifest.rows.training
            );
            Ok((data, summary))
        }
        StepAction::Score {
            model,
            input,
            output,
        } => {
            let report = Score::new(project, lakehouse.clone(), model.clone(), input.clone())
                .with_output(output.clone())
                .with_run_id(*run_id)
                .await?;
            let (input_table, input_version) = &report.input;
            let data = DataMoved {
                rows_read: report.rows,
                rows_written: report.version.map_or(0, |_| report.rows),
                tables_read: vec![format!("{input_table}@{input_version}")],
                tables_written: report
                    .version
                    .map(|v| format!("{}@{v}", report.output))
                    .into_iter()
                    .collect(),
            };
            let summary = match report.version {
                Some(version) => format!(
                    "scored {} rows with {} into {}@{version}",
                    report.rows, report.model, report.output
                ),
                None => format!(
                    "{input_table}@{input_version} was already scored with {}",
                    report.model
                ),
            };
            Ok((data, summary))
        }
        StepAction::Drift { model, table } => {
            let report = Drift::new(project, lakehouse.clone(), model.clone(), table.clone())
                .with_run_id(*run_id)
                .await?;
            let drifted = report.drifted_features();
            if let Some(reason) = &report.retrain_reason {
                let alert = Alert {
                    kind: AlertKind::Drift,
                    text: format!(
                        "{} drifted on {}: {reason}; report: {}",
                        report.model, report.current, report.report_uri
                    ),
                    job: Some(job.name.clone()),
                    run_id: Some(run_id.to_string()),
                    details: serde_json::json!({
                        "model": report.model,
                        "drifted_features": drifted,
                        "report": report.report_uri,
                    }),
                };
                Alerts::new(project).send(&job.on_drift, &alert).await;
            }
            let data = DataMoved {
                tables_read: vec![
                    format!("{}@{}", report.baseline.0, report.baseline.1),
                    report.current.clone(),
                ],
                ..DataMoved::default()
            };
            let summary = format!(
                "{} of {} features drifted{}",
                drifted.len(),
                report.features.len(),
                if report.retrain_reason.is_some() {
                    ", retraining requested"
                } else {
                    ""
                }
            );
            Ok((data, summary))
        }
        StepAction::Feedback { model } => {
            let report = BuildFeedback::new(project, lakehouse.clone(), model.clone())
                .with_run_id(*run_id)
                .await?;
            let (feedback, feedback_version) = &report.feedback;
            let Some(feedback_version) = feedback_version else {
                return Ok((
                    DataMoved::default(),
                    format!("no corrections yet: {feedback} does not exist"),
                ));
            };
            let (scored, scored_version) = &report.scored;
            let data = DataMoved {
                rows_read: report.corrections,
                rows_written: report.rows + report.quarantined,
                tables_read: vec![
                    format!("{feedback}@{feedback_version}"),
                    format!("{scored}@{scored_version}"),
                ],
                tables_written: report
                    .version
                    .map(|v| format!("{}@{v}", report.output))
                    .into_iter()
                    .collect(),
            };
            let summary = match report.version {
                Some(version) => format!(
                    "{}@{version}: {} corrected predictions, {} corrections quarantined{}",
                    report.output,
                    report.rows,
                    report.quarantined,
                    match report
                        .performance
                        .as_ref()
                        .and_then(|p| p.request_id.as_ref())
                    {
                        Some(id) => format!(", retraining requested ({id})"),
                        None => String::new(),
                    }
                ),
                None => format!("{feedback}@{feedback_version} was already used"),
            };
            Ok((data, summary))
        }
        StepAction::Retrain { model, force } => {
            let outcome = Retrain::new(project, lakehouse.clone(), model.clone())
                .only_if_requested(!force)
                .with_run_id(*run_id)
                .await?;
            let challenger = match outcome {
                RetrainOutcome::NotRequested => {
                    return Ok((
                        DataMoved::default(),
                        format!("no retrain request for {model} is pending"),
                    ));
                }
                RetrainOutcome::Trained { challenger } => challenger,
            };
            let record = challenger.retrain.as_ref();
            let data = DataMoved {
                rows_read: challenger.rows.table_rows
                    + record.map_or(0, |r| r.feedback_training_rows + r.feedback_holdout_rows),
                rows_written: 0,
                tables_read: std::iter::once(format!(
                    "{}@{}",
                    challenger.training_table, challenger.training_table_version
                ))
                .chain(record.and_then(|r| {
                    Some(format!(
                        "{}@{}",
                        r.feedback_training_table.as_ref()?,
                        r.feedback_training_version?
                    ))
                }))
                .collect(),
                tables_written: Vec::new(),
            };
            let summary = format!(
                "{}:{} {}",
                challenger.name,
                challenger.version,
                record.map_or("", |r| r.reason.as_str())
            );
            Ok((data, summary))
        }
        StepAction::Check { tables } => {
            let results = check_freshness(project, lakehouse, tables, Utc::now()).await?;
            if let Some(error) = stale_error(&results) {
                return Err(error);
            }
            let data = DataMoved {
                tables_read: results
                    .iter()
                    .filter_map(|f| f.version.map(|v| format!("{}@{v}", f.table)))
                    .collect(),
                ..DataMoved::default()
            };
            Ok((data, format!("{} tables fresh", results.len())))
        }
        StepAction::Vacuum { tables, retain } => {
            let options =
                VacuumOptions::for_tables(tables, retain.unwrap_or(DEFAULT_RETAIN), false)?;
            let report = vacuum(lakehouse, &options).await?;
            if let Some(broken) = report.tables.iter().find(|t| t.error.is_some()) {
                return Err(lakescore_engine::Error::Storage {
                    uri: broken.table.to_string(),
                    cause: broken.error.clone().unwrap_or_default(),
                }
                .into());
            }
            let summary = format!(
                "{} files and {} staging folders deleted from {} tables",
                report.files(),
                report.staging_folders.len(),
                report.tables.len()
            );
            Ok((DataMoved::default(), summary))
        }
    }
}

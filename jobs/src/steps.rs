//! One job step: the lakescore operation it names, run in the job's context, and the
//! step's failure rules (a rejected file or a model that did not build fails the step).

use chrono::Utc;
use lakescore_connectors::{Ingest, IngestReport};
use lakescore_engine::config::{JobConfig, StepAction};
use lakescore_engine::ml::drift::DriftReport;
use lakescore_engine::run::{Report, RunContext};
use lakescore_engine::storage::vacuum::{DEFAULT_RETAIN, VacuumOptions, vacuum};
use lakescore_sql::dag::Selector;
use lakescore_sql::transform::Transform;

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::error::{Error, Result};
use crate::freshness::{FreshnessReport, check_freshness, stale_error};

/// Runs `action` once in `cx` (the job's run) as a step of `job`.
pub async fn run_step(
    cx: &RunContext,
    job: &JobConfig,
    action: &StepAction,
) -> Result<Box<dyn Report + Send>> {
    Ok(match action {
        StepAction::Ingest { sources } => {
            let mut report = Ingest::new(cx).with_sources(sources.clone()).await?;
            if let Some(error) = take_ingest_failure(&mut report) {
                return Err(error);
            }
            Box::new(report)
        }
        StepAction::Transform { models, force } => {
            let report = Transform::new(cx)
                .with_selectors(models.iter().map(|m| Selector::parse(m)).collect())
                .with_force(*force)
                .await?;
            if let Some(error) = report.failure() {
                return Err(error.into());
            }
            Box::new(report)
        }
        StepAction::Train { model } => Box::new(cx.train(model).await?),
        StepAction::Score {
            model,
            input,
            output,
        } => Box::new(cx.score(model, input).with_output(output.clone()).await?),
        StepAction::Drift { model, table } => {
            let report = cx.drift(model, table).await?;
            alert_on_drift(cx, job, &report).await;
            Box::new(report)
        }
        StepAction::Feedback { model } => Box::new(cx.build_feedback(model).await?),
        StepAction::Retrain { model, force } => {
            Box::new(cx.retrain(model).with_only_if_requested(!force).await?)
        }
        StepAction::Check { tables } => {
            let results = check_freshness(cx.project(), cx.lakehouse(), tables, Utc::now()).await?;
            if let Some(error) = stale_error(&results) {
                return Err(error);
            }
            Box::new(FreshnessReport(results))
        }
        StepAction::Vacuum { tables, retain } => {
            let options =
                VacuumOptions::for_tables(tables, retain.unwrap_or(DEFAULT_RETAIN), false)?;
            let report = vacuum(cx.lakehouse(), &options).await?;
            if let Some(error) = report.failure() {
                return Err(error.into());
            }
            Box::new(report)
        }
    })
}

/// The step's error: the first source, in order, that failed or rejected a file (every
/// source has run by then); the failed sources are taken out of `report`.
fn take_ingest_failure(report: &mut IngestReport) -> Option<Error> {
    let mut failure = None;
    let mut landed = Vec::new();
    for outcome in std::mem::take(&mut report.sources) {
        match outcome {
            Err(error) => {
                failure.get_or_insert(Error::from(error));
            }
            Ok(source) => {
                if let Some(rejection) = source.rejections().next() {
                    failure.get_or_insert(Error::from(rejection));
                }
                landed.push(Ok(source));
            }
        }
    }
    report.sources = landed;
    failure
}

/// Tells the job's `on_drift` targets when the drift step requested retraining.
async fn alert_on_drift(cx: &RunContext, job: &JobConfig, report: &DriftReport) {
    let Some(reason) = &report.retrain_reason else {
        return;
    };
    let alert = Alert {
        kind: AlertKind::Drift,
        text: format!(
            "{} drifted on {}: {reason}; report: {}",
            report.model, report.current, report.report_uri
        ),
        job: Some(job.name.clone()),
        run_id: Some(cx.run_id().to_string()),
        details: serde_json::json!({
            "model": report.model,
            "drifted_features": report.drifted_features(),
            "report": report.report_uri,
        }),
    };
    Alerts::new(cx.project()).send(&job.on_drift, &alert).await;
}

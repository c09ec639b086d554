//! `lakescore feedback` and `lakescore retrain`: corrections into a training set, and a
//! challenger trained on it that is promoted only when it wins.

use std::sync::Arc;

use lakescore_engine::config::CorrectionPolicy;
use lakescore_engine::feedback::{BuildFeedback, PerformanceReport, expected_columns};
use lakescore_engine::models::retrain::{Retrain, RetrainOutcome};
use lakescore_engine::models::train::model_config;
use lakescore_engine::{Lakehouse, Project};

/// Builds `training.<model>_feedback` and prints what it holds and what was quarantined.
pub async fn feedback(
    project: &Project,
    lakehouse: Arc<Lakehouse>,
    model: &str,
    policy: Option<CorrectionPolicy>,
) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!(
        "joining the corrections of {model} with their predictions"
    ));
    let report = BuildFeedback::new(project, lakehouse, model)
        .with_policy(policy)
        .await;
    bar.finish_and_clear();
    let report = report?;
    let (feedback, feedback_version) = &report.feedback;
    let Some(feedback_version) = feedback_version else {
        let config = model_config(project, model)?;
        println!(
            "no corrections yet: {feedback} does not exist. Land them with a [[source]] whose table = \"{feedback}\", with the columns {}",
            expected_columns(config)
        );
        return Ok(());
    };
    let Some(version) = report.version else {
        println!(
            "{} is up to date: already built from {feedback}@{feedback_version} with policy {}",
            report.output,
            report.policy.as_str()
        );
        return Ok(());
    };
    println!(
        "{}@{version}: {} corrected predictions from {} corrections in {feedback}@{feedback_version} (policy {}), features as of each prediction",
        report.output,
        report.rows,
        report.corrections,
        report.policy.as_str()
    );
    if report.quarantined > 0 {
        println!(
            "{} corrections quarantined: select error, raw from {} where _ingest_batch = '{}'",
            report.quarantined, report.quarantine, report.run_id
        );
    }
    if let Some(performance) = &report.performance {
        print_performance(performance);
    }
    Ok(())
}

fn print_performance(performance: &PerformanceReport) {
    if let Some(window) = performance.windows.last() {
        let metrics: Vec<String> = window
            .metrics
            .iter()
            .map(|(name, value)| format!("{name}={value:.3}"))
            .collect();
        println!(
            "realized metrics of version {} from {} ({} labeled): {}",
            window.model_version,
            window.window_start.format("%Y-%m-%d %H:%M UTC"),
            window.rows,
            metrics.join(" ")
        );
    }
    for (floor, value) in &performance.breaches {
        println!(
            "below floor: {} = {value:.3} ({} = {})",
            floor.metric, floor.setting, floor.limit
        );
    }
    if let Some(id) = &performance.request_id {
        println!("retraining requested: {id} in monitoring.retrain_requests");
    }
    println!("all windows: select * from monitoring.model_performance order by window_start");
}

/// Trains a challenger with the feedback and prints the comparison and the decision.
pub async fn retrain(
    project: &Project,
    lakehouse: Arc<Lakehouse>,
    model: &str,
    if_requested: bool,
) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!("training a challenger for {model}"));
    let outcome = Retrain::new(project, lakehouse, model)
        .only_if_requested(if_requested)
        .await;
    bar.finish_and_clear();
    let challenger = match outcome? {
        RetrainOutcome::NotRequested => {
            println!("{model}: no retrain request is pending; nothing to do");
            return Ok(());
        }
        RetrainOutcome::Trained { challenger } => challenger,
    };
    let Some(record) = &challenger.retrain else {
        return Ok(());
    };
    println!(
        "{}:{} trained on {}@{} plus {} feedback rows{}",
        challenger.name,
        challenger.version,
        challenger.training_table,
        challenger.training_table_version,
        record.feedback_training_rows,
        match (
            &record.feedback_training_table,
            record.feedback_training_version
        ) {
            (Some(table), Some(version)) => format!(" from {table}@{version}"),
            _ => String::new(),
        }
    );
    println!("{}", record.reason);
    if !record.requests.is_empty() {
        println!("resolved retrain requests: {}", record.requests.join(", "));
    }
    println!("compare: lakescore models show {}", challenger.name);
    Ok(())
}

//! `lakescore run`, `scheduler`, `runs` and `check`: running jobs, listing their history
//! and checking freshness, with shutdown on Ctrl-C / SIGTERM.

use std::sync::Arc;

use chrono::Utc;
use lakescore_engine::datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use lakescore_engine::run::RunContext;
use lakescore_engine::sql::output::{Destination, OutputFormat, write_batches, write_results};
use lakescore_engine::storage::lakehouse::quote_literal;
use lakescore_engine::storage::system_tables::{JOB_RUNS, STEP_RUNS};
use lakescore_engine::{Lakehouse, Project, SqlSession, TableName};
use lakescore_jobs::alerts::{Alert, AlertKind, Alerts};
use lakescore_jobs::freshness::{Freshness, check_freshness, human_duration, stale_error};
use lakescore_jobs::lease::Leases;
use lakescore_jobs::{RunJob, Scheduler, Shutdown};
use serde_json::json;

/// Runs `job` once in the foreground and prints its steps; fails when the run did not
/// succeed.
pub async fn run(cx: &RunContext, job: &str, from: Option<String>) -> anyhow::Result<()> {
    let report = RunJob::new(cx, job)
        .with_from_step(from)
        .with_shutdown(shutdown_on_signals())
        .await?
        .into_report(job)?;
    println!("{report}");
    match report.failure() {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// Runs the scheduler until Ctrl-C or SIGTERM.
pub async fn scheduler(cx: &RunContext) -> anyhow::Result<()> {
    if cx
        .project()
        .config
        .jobs
        .iter()
        .all(|j| j.schedule.is_none())
    {
        anyhow::bail!(lakescore_engine::Error::Usage(String::from(
            "no [[job]] has a schedule: add schedule = \"0 3 * * *\" (cron: minute hour day month weekday) to a job"
        )));
    }
    let report = Scheduler::new(
        cx.project().clone(),
        cx.lakehouse().clone(),
        shutdown_on_signals(),
    )
    .await?;
    println!(
        "scheduler stopped after {} runs ({} fires skipped)",
        report.runs, report.skipped
    );
    Ok(())
}

/// Stops on the first Ctrl-C / SIGTERM after the running step; cancels on the second.
fn shutdown_on_signals() -> Shutdown {
    let shutdown = Shutdown::default();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        if wait_for_signal().await.is_err() {
            return;
        }
        tracing::warn!("stopping after the running step; signal again to cancel it");
        signals.stop.cancel();
        if wait_for_signal().await.is_ok() {
            tracing::warn!("cancelling the running step");
            signals.cancel.cancel();
        }
    });
    shutdown
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Lists job runs (newest first) or one run's step attempts; notes runs in progress.
pub async fn runs(
    cx: &RunContext,
    job: Option<&str>,
    run: Option<&str>,
    limit: usize,
    format: OutputFormat,
    destination: &Destination,
) -> anyhow::Result<()> {
    let (project, lakehouse) = (cx.project(), cx.lakehouse().clone());
    print_running(project, &lakehouse, job).await?;
    let (table, sql) = match run {
        Some(run_id) => (
            STEP_RUNS,
            format!(
                "select step, kind, attempt, status, started_at, duration_ms, rows_read, rows_written, \
                 tables_read, tables_written, error from {STEP_RUNS} where run_id = {} \
                 order by started_at, attempt",
                quote_literal(run_id)
            ),
        ),
        None => (
            JOB_RUNS,
            format!(
                "select run_id, job, trigger, status, started_at, duration_ms, steps_succeeded, \
                 failed_step, rows_written, tables_written, error from {JOB_RUNS} {} \
                 order by started_at desc limit {limit}",
                job.map(|j| format!("where job = {}", quote_literal(j)))
                    .unwrap_or_default()
            ),
        ),
    };
    if !lakehouse
        .list_tables()
        .await?
        .contains(&TableName::parse(table)?)
    {
        println!("no job has run yet: {table} does not exist");
        return Ok(());
    }
    let session = SqlSession::builder(lakehouse).build().await?;
    let stream = session
        .sql(&sql)
        .await?
        .execute_stream()
        .await
        .map_err(lakescore_engine::Error::from)?;
    write_results(stream, format, destination, limit.max(1000)).await?;
    Ok(())
}

/// Prints one line per job of `project` (or just `job`) whose lease is held right now.
async fn print_running(
    project: &Project,
    lakehouse: &Lakehouse,
    job: Option<&str>,
) -> anyhow::Result<()> {
    let leases = Leases::new(lakehouse, project.config.scheduler.lease_ttl)?;
    let now = Utc::now();
    for config in &project.config.jobs {
        if job.is_some_and(|j| j != config.name) {
            continue;
        }
        if let Some(record) = leases.current(&config.name).await?
            && record.is_held(now)
        {
            eprintln!(
                "{} is running: run {} by {}, for {}",
                config.name,
                record.run_id,
                record.holder,
                human_duration((now - record.acquired_at).to_std().unwrap_or_default())
            );
        }
    }
    Ok(())
}

/// Checks freshness, prints every checked table, alerts `[freshness] on_stale` and fails
/// when a table is stale.
pub async fn check(
    cx: &RunContext,
    tables: &[String],
    format: OutputFormat,
    destination: &Destination,
) -> anyhow::Result<()> {
    let (project, lakehouse) = (cx.project(), cx.lakehouse());
    if project.config.freshness.tables.is_empty() {
        anyhow::bail!(lakescore_engine::Error::Usage(String::from(
            "no freshness rules: add [freshness.tables] with e.g. \"raw.*\" = { max_age = \"26h\" }"
        )));
    }
    let results = check_freshness(project, lakehouse, tables, Utc::now()).await?;
    let (schema, batch) = freshness_batch(&results)?;
    write_batches(schema, vec![batch], format, destination).await?;
    let Some(error) = stale_error(&results) else {
        return Ok(());
    };
    let alert = Alert {
        kind: AlertKind::Stale,
        text: error.to_string(),
        job: None,
        run_id: None,
        details: json!(
            results
                .iter()
                .filter(|f| f.is_stale())
                .map(|f| json!({"table": f.table, "version": f.version, "problem": f.problem}))
                .collect::<Vec<_>>()
        ),
    };
    Alerts::new(project)
        .send(&project.config.freshness.on_stale, &alert)
        .await;
    Err(error.into())
}

fn freshness_batch(results: &[Freshness]) -> anyhow::Result<(Arc<Schema>, RecordBatch)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, true),
        Field::new(
            "last_commit",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("status", DataType::Utf8, false),
        Field::new("problem", DataType::Utf8, true),
    ]));
    let text = |f: fn(&Freshness) -> Option<&str>| {
        Arc::new(StringArray::from_iter(results.iter().map(f))) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        text(|f| Some(&f.table)),
        text(|f| Some(&f.rule)),
        Arc::new(UInt64Array::from_iter(results.iter().map(|f| f.version))),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                results
                    .iter()
                    .map(|f| f.last_commit.map(|t| t.timestamp_micros())),
            )
            .with_timezone("UTC"),
        ),
        text(|f| Some(if f.is_stale() { "stale" } else { "fresh" })),
        text(|f| f.problem.as_deref()),
    ];
    Ok((schema.clone(), RecordBatch::try_new(schema, columns)?))
}

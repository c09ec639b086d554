//! Run history: one row per job run in `ops.job_runs` and one per step attempt in
//! `ops.step_runs`, so "what ran, when, what did it read and write, and why did it fail"
//! is a SQL question.
//!
//! A step attempt's row is committed as soon as the attempt ends, and the run's row when
//! the run ends; both carry the run id in their commit metadata like every commit a job
//! makes.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lakescore_engine::datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
pub use lakescore_engine::run::DataMoved;
use lakescore_engine::storage::commit::{JOB, commit_metadata};
use lakescore_engine::storage::system_tables::{JOB_RUNS, STEP_RUNS};
use lakescore_engine::storage::write::{WriteMode, write_batch};
use lakescore_engine::{Lakehouse, TableName};
use serde_json::json;

use crate::error::Result;

/// How a run or a step attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything it was asked to do is done.
    Succeeded,
    /// A step failed (after its retries).
    Failed,
    /// A step or the whole job ran past its `timeout`.
    TimedOut,
    /// Stopped by a shutdown signal or a lost lease.
    Cancelled,
    /// Its process died holding the lease; found and recorded by the next run.
    Abandoned,
}

impl RunStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `lakescore run`.
    Manual,
    /// The scheduler, at a fire time.
    Schedule,
    /// The scheduler at start-up, making up a fire time missed while it was down.
    CatchUp,
}

impl Trigger {
    /// The trigger as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
        }
    }
}

/// One row of `ops.job_runs`.
#[derive(Debug, Clone)]
pub struct JobRunRecord {
    /// The run's id, in every commit it made.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// What started it.
    pub trigger: Trigger,
    /// The fire time it ran for (scheduled runs).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// How it ended.
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The step it started at, when resumed with `--from`.
    pub from_step: Option<String>,
    /// Steps that succeeded.
    pub steps_succeeded: u32,
    /// The step that did not succeed.
    pub failed_step: Option<String>,
    /// Why it did not succeed.
    pub error: Option<String>,
    /// All steps' reads and writes.
    pub data: DataMoved,
    /// The process that ran it.
    pub holder: String,
}

/// One row of `ops.step_runs`.
#[derive(Debug, Clone)]
pub struct StepRunRecord {
    /// The run.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// The step's name.
    pub step: String,
    /// Its kind (ingest, transform, ...).
    pub kind: String,
    /// 1 for the first try, 2 for the first retry...
    pub attempt: u32,
    /// How the attempt ended.
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// What it read and wrote.
    pub data: DataMoved,
    /// Why it did not succeed.
    pub error: Option<String>,
}

/// Appends a run's row to `ops.job_runs`; returns the table's new version.
pub async fn record_job_run(lakehouse: &Lakehouse, run: &JobRunRecord) -> Result<u64> {
    let batch = Row::default()
        .text("run_id", &run.run_id)
        .text("job", &run.job)
        .text("trigger", run.trigger.as_str())
        .optional_time("scheduled_for", run.scheduled_for)
        .text("status", run.status.as_str())
        .time("started_at", run.started_at)
        .time("finished_at", run.finished_at)
        .int("duration_ms", duration_ms(run.started_at, run.finished_at))
        .optional_text("from_step", run.from_step.as_deref())
        .int("steps_succeeded", i64::from(run.steps_succeeded))
        .optional_text("failed_step", run.failed_step.as_deref())
        .data(&run.data)
        .optional_text("error", run.error.as_deref())
        .text("holder", &run.holder)
        .finish()?;
    append(lakehouse, JOB_RUNS, batch, &run.run_id, &run.job).await
}

/// Appends a step attempt's row to `ops.step_runs`; returns the table's new version.
pub async fn record_step_run(lakehouse: &Lakehouse, step: &StepRunRecord) -> Result<u64> {
    let batch = Row::default()
        .text("run_id", &step.run_id)
        .text("job", &step.job)
        .text("step", &step.step)
        .text("kind", &step.kind)
        .int("attempt", i64::from(step.attempt))
        .text("status", step.status.as_str())
        .time("started_at", step.started_at)
        .time("finished_at", step.finished_at)
        .int(
            "duration_ms",
            duration_ms(step.started_at, step.finished_at),
        )
        .data(&step.data)
        .optional_text("error", step.error.as_deref())
        .finish()?;
    append(lakehouse, STEP_RUNS, batch, &step.run_id, &step.job).await
}

async fn append(
    lakehouse: &Lakehouse,
    table: &str,
    batch: RecordBatch,
    run_id: &str,
    job: &str,
) -> Result<u64> {
    let name = TableName::parse(table)?;
    let metadata = commit_metadata(run_id, json!([]), [(JOB, json!(job))]);
    Ok(write_batch(lakehouse, &name, batch, WriteMode::Append, metadata).await?)
}

fn duration_ms(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    (end - start).num_milliseconds().max(0)
}

/// A one-row record batch built column by column.
#[derive(Default)]
struct Row {
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
}

impl Row {
    fn push(mut self, field: Field, column: ArrayRef) -> Self {
        self.fields.push(field);
        self.columns.push(column);
        self
    }

    fn text(self, name: &str, value: &str) -> Self {
        self.optional_text(name, Some(value))
    }

    fn optional_text(self, name: &str, value: Option<&str>) -> Self {
        self.push(
            Field::new(name, DataType::Utf8, true),
            Arc::new(StringArray::from(vec![value])),
        )
    }

    fn time(self, name: &str, value: DateTime<Utc>) -> Self {
        self.optional_time(name, Some(value))
    }

    fn optional_time(self, name: &str, value: Option<DateTime<Utc>>) -> Self {
        self.push(
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Arc::new(
                TimestampMicrosecondArray::from(vec![value.map(|t| t.timestamp_micros())])
                    .with_timezone("UTC"),
            ),
        )
    }

    fn int(self, name: &str, value: i64) -> Self {
        self.push(
            Field::new(name, DataType::Int64, true),
            Arc::new(Int64Array::from(vec![value])),
        )
    }

    fn data(self, data: &DataMoved) -> Self {
        self.int("rows_read", data.rows_read as i64)
            .int("rows_written", data.rows_written as i64)
            .text("tables_read", &data.tables_read.join(", "))
            .text("tables_written", &data.tables_written.join(", "))
    }

    fn finish(self) -> Result<RecordBatch> {
        let schema = Arc::new(Schema::new(self.fields));
        Ok(RecordBatch::try_new(schema, self.columns).map_err(lakescore_engine::Error::from)?)
    }
}

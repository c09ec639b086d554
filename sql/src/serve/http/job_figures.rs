//! The batch side in `/metrics`: each job's last run from `ops.job_runs` (when it ended,
//! whether it succeeded, how long it took, rows written), so one Prometheus scrape shows
//! whether last night's scoring ran as well as how the API is doing. Read at most once
//! per [`REREAD_AFTER`], whatever the scrape rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lakescore_engine::datafusion::arrow::array::{Array, AsArray, RecordBatch};
use lakescore_engine::datafusion::arrow::compute::cast;
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Int64Type};
use lakescore_engine::storage::system_tables::{JOB_RUNS, system_table};
use lakescore_engine::{Lakehouse, SqlSession};
use tokio::sync::Mutex;

/// How long figures read from `ops.job_runs` are reused.
pub const REREAD_AFTER: Duration = Duration::from_secs(15);

/// A job's last run.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    /// The job.
    pub job: String,
    /// When it ended, in seconds since the Unix epoch.
    pub finished_at: f64,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Rows its steps wrote.
    pub rows_written: i64,
}

/// The last runs, read when asked for and older than [`REREAD_AFTER`].
pub struct JobFigures {
    lakehouse: Arc<Lakehouse>,
    read: Mutex<Option<(Instant, Vec<LastRun>)>>,
}

impl JobFigures {
    /// Figures of `lakehouse`'s jobs.
    pub fn new(lakehouse: Arc<Lakehouse>) -> Self {
        Self {
            lakehouse,
            read: Mutex::new(None),
        }
    }

    /// Each job's last run (none when no job has run, or the table cannot be read now).
    pub async fn last_runs(&self) -> Vec<LastRun> {
        let mut read = self.read.lock().await;
        if let Some((at, runs)) = read.as_ref()
            && at.elapsed() < REREAD_AFTER
        {
            return runs.clone();
        }
        let runs = match self.query().await {
            Ok(runs) => runs,
            Err(error) => {
                tracing::debug!("job figures not read: {error}");
                Vec::new()
            }
        };
        *read = Some((Instant::now(), runs.clone()));
        runs
    }

    async fn query(&self) -> lakescore_engine::Result<Vec<LastRun>> {
        if self
            .lakehouse
            .open_if_exists(&system_table(JOB_RUNS))
            .await?
            .is_none()
        {
            return Ok(Vec::new());
        }
        let session = SqlSession::builder(self.lakehouse.clone()).build().await?;
        let sql = format!(
            "SELECT job, status, CAST(to_unixtime(finished_at) AS DOUBLE) AS finished_at, duration_ms, rows_written \
             FROM (SELECT *, row_number() OVER (PARTITION BY job ORDER BY finished_at DESC) AS newest FROM {JOB_RUNS}) \
             WHERE newest = 1 ORDER BY job"
        );
        let batches = session.sql(&sql).await?.collect().await?;
        Ok(batches.iter().flat_map(runs_of).collect())
    }
}

fn runs_of(batch: &RecordBatch) -> Vec<LastRun> {
    let column = |at: usize, to: &DataType| cast(batch.column(at), to).ok();
    let (Some(jobs), Some(statuses), Some(finished), Some(millis), Some(rows)) = (
        column(0, &DataType::Utf8),
        column(1, &DataType::Utf8),
        column(2, &DataType::Float64),
        column(3, &DataType::Int64),
        column(4, &DataType::Int64),
    ) else {
        return Vec::new();
    };
    let (jobs, statuses) = (jobs.as_string::<i32>(), statuses.as_string::<i32>());
    let finished =
        finished.as_primitive::<lakescore_engine::datafusion::arrow::datatypes::Float64Type>();
    let (millis, rows) = (
        millis.as_primitive::<Int64Type>(),
        rows.as_primitive::<Int64Type>(),
    );
    (0..batch.num_rows())
        .filter(|&row| jobs.is_valid(row))
        .map(|row| LastRun {
            job: jobs.value(row).to_string(),
            finished_at: if finished.is_valid(row) {
                finished.value(row)
            } else {
                0.0
            },
            succeeded: statuses.is_valid(row) && statuses.value(row) == "succeeded",
            seconds: if millis.is_valid(row) {
                millis.value(row) as f64 / 1000.0
            } else {
                0.0
            },
            rows_written: if rows.is_valid(row) {
                rows.value(row)
            } else {
                0
            },
        })
        .collect()
}

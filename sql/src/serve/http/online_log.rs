//! Keeping what the HTTP API did: every online prediction is appended to its model's
//! online table (`scored.<model>_online`) and every request to `ops.request_log`, in
//! micro-batches: a table's rows are committed once `flush_rows` have gathered or
//! `flush_interval` has passed since the first of them, whichever comes first, and
//! everything gathered is committed when the server stops. A commit that fails is tried
//! again at the next flush; the rows stay in memory until then (their number is
//! [`OnlineLog::backlog`], and the API refuses new predictions while it is over
//! [`MAX_BACKLOG`] rather than lose any). When the server stops, the last commits are
//! tried four times over about four seconds. A crash loses at most what was not yet
//! committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lakescore_engine::datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use lakescore_engine::datafusion::arrow::compute::concat_batches;
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
use lakescore_engine::datafusion::arrow::error::ArrowError;
use lakescore_engine::storage::commit::{ENTRIES, commit_metadata, new_run_id};
use lakescore_engine::storage::quarantine::timestamp_type;
use lakescore_engine::storage::system_tables::{REQUEST_LOG, system_table};
use lakescore_engine::storage::write::{WriteMode, write_batch};
use lakescore_engine::{Lakehouse, TableName};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Rows waiting to be committed above which predictions are refused (503).
pub const MAX_BACKLOG: usize = 1_000_000;

/// Waits before each further try of the last commits when the server stops.
const FINAL_RETRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// One request, as `ops.request_log` keeps it.
#[derive(Debug, Clone)]
pub struct RequestEntry {
    /// The request's id (the `run_id` of its online predictions).
    pub request_id: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// The client (its token's name), empty when it presented no valid token.
    pub client: String,
    /// The client's address.
    pub address: String,
    /// Method and path.
    pub endpoint: String,
    /// The model version scored, `name:version`, when one was.
    pub model: Option<String>,
    /// Rows scored.
    pub rows: u64,
    /// The HTTP status answered.
    pub status: u16,
    /// How long it took.
    pub latency: Duration,
    /// The error message, for a failed request.
    pub error: Option<String>,
}

enum Kept {
    Predictions(TableName, RecordBatch),
    Request(RequestEntry),
}

/// Where the API sends what it keeps; cheap to clone.
#[derive(Clone)]
pub struct OnlineLog {
    sender: mpsc::UnboundedSender<Kept>,
    backlog: Arc<AtomicUsize>,
}

/// The task that commits; await [`OnlineWriter::flush`] after the last [`OnlineLog`] is
/// dropped.
pub struct OnlineWriter {
    task: tokio::task::JoinHandle<()>,
}

impl OnlineWriter {
    /// Waits until everything sent is committed (or given up on, and logged).
    pub async fn flush(self) {
        let _ = self.task.await;
    }
}

/// When tables are committed.
#[derive(Debug, Clone, Copy)]
pub struct Flushing {
    /// The longest rows wait.
    pub interval: Duration,
    /// Rows of one table committed at once.
    pub rows: usize,
}

impl OnlineLog {
    /// Starts the writer.
    pub fn start(
        lakehouse: Arc<Lakehouse>,
        flushing: Flushing,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> (OnlineLog, OnlineWriter) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let pending = Pending {
            lakehouse,
            flushing,
            metrics,
            backlog: backlog.clone(),
            tables: BTreeMap::new(),
        };
        let task = tokio::spawn(pending.run(receiver, stop));
        (OnlineLog { sender, backlog }, OnlineWriter { task })
    }

    /// Keeps `batch` (online predictions) for `table`.
    pub fn predictions(&self, table: TableName, batch: RecordBatch) {
        self.backlog.fetch_add(batch.num_rows(), Ordering::Relaxed);
        let _ = self.sender.send(Kept::Predictions(table, batch));
    }

    /// Keeps a request's audit entry.
    pub fn request(&self, entry: RequestEntry) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let _ = self.sender.send(Kept::Request(entry));
    }

    /// Rows waiting to be committed.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }
}

/// What waits, per table.
struct Pending {
    lakehouse: Arc<Lakehouse>,
    flushing: Flushing,
    metrics: Arc<Metrics>,
    backlog: Arc<AtomicUsize>,
    tables: BTreeMap<TableName, Waiting>,
}

#[derive(Default)]
struct Waiting {
    batches: Vec<RecordBatch>,
    rows: usize,
    since: Option<tokio::time::Instant>,
}

impl Pending {
    /// Gathers and commits until `stop`, then commits everything sent before it.
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Kept>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.flushing.interval.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                kept = receiver.recv() => match kept {
                    Some(kept) => self.keep(kept).await,
                    None => break,
                },
                _ = tick.tick() => self.flush(false).await,
                () = stop.cancelled() => break,
            }
        }
        while let Ok(kept) = receiver.try_recv() {
            self.keep(kept).await;
        }
        for wait in FINAL_RETRIES {
            self.flush(true).await;
            if self.tables.is_empty() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
        self.flush(true).await;
        for (table, waiting) in &self.tables {
            tracing::error!(
                "{} rows for {table} could not be committed before the server stopped and are lost",
                waiting.rows
            );
        }
    }

    async fn keep(&mut self, kept: Kept) {
        let (table, rows) = match kept {
            Kept::Predictions(table, batch) => {
                let rows = batch.num_rows();
                let waiting = self.tables.entry(table.clone()).or_default();
                waiting.batches.push(batch);
                (table, rows)
            }
            Kept::Request(entry) => {
                let table = system_table(REQUEST_LOG);
                match request_batch(std::slice::from_ref(&entry)) {
                    Ok(batch) => self
                        .tables
                        .entry(table.clone())
                        .or_default()
                        .batches
                        .push(batch),
                    Err(error) => {
                        tracing::error!("request {} not logged: {error}", entry.request_id)
                    }
                }
                (table, 1)
            }
        };
        let waiting = self.tables.entry(table.clone()).or_default();
        waiting.rows += rows;
        waiting.since.get_or_insert_with(tokio::time::Instant::now);
        if waiting.rows >= self.flushing.rows {
            self.flush_table(&table).await;
        }
    }

    /// Commits every table whose rows waited `interval` (every table, when `all`).
    async fn flush(&mut self, all: bool) {
        let due: Vec<TableName> = self
            .tables
            .iter()
            .filter(|(_, waiting)| {
                waiting
                    .since
                    .is_some_and(|since| all || since.elapsed() >= self.flushing.interval)
            })
            .map(|(table, _)| table.clone())
            .collect();
        for table in due {
            self.flush_table(&table).await;
        }
    }

    async fn flush_table(&mut self, table: &TableName) {
        let Some(waiting) = self.tables.get_mut(table) else {
            return;
        };
        let batches = std::mem::take(&mut waiting.batches);
        let rows = waiting.rows;
        match commit(&self.lakehouse, table, &batches).await {
            Ok(()) => {
                self.tables.remove(table);
                self.backlog.fetch_sub(rows, Ordering::Relaxed);
                self.metrics.online_committed(rows);
            }
            Err(error) => {
                tracing::error!(
                    "could not append {rows} rows to {table}, trying again at the next flush: {error}"
                );
                self.metrics.online_commit_failed();
                if let Some(waiting) = self.tables.get_mut(table) {
                    waiting.batches = batches;
                    waiting.since = Some(tokio::time::Instant::now());
                }
            }
        }
    }
}

/// Appends `batches` to `table`: one commit per run of batches of the same schema (a
/// new model version may read other features).
async fn commit(
    lakehouse: &Lakehouse,
    table: &TableName,
    batches: &[RecordBatch],
) -> lakescore_engine::Result<()> {
    let mut start = 0;
    while start < batches.len() {
        let schema = batches[start].schema();
        let end = batches[start..]
            .iter()
            .position(|b| b.schema() != schema)
            .map_or(batches.len(), |offset| start + offset);
        let batch = concat_batches(&schema, &batches[start..end])?;
        let metadata = commit_metadata(
            &new_run_id(),
            json!([]),
            [(ENTRIES, json!(batch.num_rows()))],
        );
        write_batch(lakehouse, table, batch, WriteMode::Append, metadata).await?;
        start = end;
    }
    Ok(())
}

/// `ops.request_log` rows.
fn request_batch(entries: &[RequestEntry]) -> Result<RecordBatch, ArrowError> {
    let text = |name: &str, values: Vec<Option<&str>>| {
        (
            Field::new(name, DataType::Utf8, true),
            Arc::new(StringArray::from(values)) as ArrayRef,
        )
    };
    let number = |name: &str, values: Vec<i64>| {
        (
            Field::new(name, DataType::Int64, false),
            Arc::new(Int64Array::from(values)) as ArrayRef,
        )
    };
    let at: TimestampMicrosecondArray = entries
        .iter()
        .map(|e| Some(e.at.timestamp_micros()))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = [
        text(
            "request_id",
            entries
                .iter()
                .map(|e| Some(e.request_id.as_str()))
                .collect(),
        ),
        (
            Field::new("requested_at", timestamp_type(), false),
            Arc::new(at) as ArrayRef,
        ),
        text(
            "client",
            entries.iter().map(|e| Some(e.client.as_str())).collect(),
        ),
        text(
            "address",
            entries.iter().map(|e| Some(e.address.as_str())).collect(),
        ),
        text(
            "endpoint",
            entries.iter().map(|e| Some(e.endpoint.as_str())).collect(),
        ),
        text(
            "model",
            entries.iter().map(|e| e.model.as_deref()).collect(),
        ),
        number("rows", entries.iter().map(|e| e.rows as i64).collect()),
        number(
            "status",
            entries.iter().map(|e| i64::from(e.status)).collect(),
        ),
        number(
            "latency_us",
            entries
                .iter()
                .map(|e| e.latency.as_micros() as i64)
                .collect(),
        ),
        text(
            "error",
            entries.iter().map(|e| e.error.as_deref()).collect(),
        ),
    ]
    .into_iter()
    .unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

//! Keeping what the HTTP API did: every online prediction is appended to its model's
//! online table (`scored.<model>_online`) and every request to `ops.request_log`, in
//! micro-batches: a table's rows are committed once `flush_rows` have gathered or
//! `flush_interval` has passed since the first of them, whichever comes first, and
//! everything gathered is committed when the server stops.
//!
//! A commit that fails is tried again at the next flush, and only what did not commit
//! (rows of two schemas are two commits; the first is never appended twice). The rows
//! stay in memory until then (their number is [`OnlineLog::backlog`]), and the API
//! refuses new predictions while it is over [`MAX_BACKLOG`] rather than lose any. Under a
//! flood of failed requests, once more than [`MAX_REQUESTS_WAITING`] entries wait, each
//! further failure (any status from 400: refusals, bad tokens, bad bodies) is counted by
//! status instead of kept, and each count is written as one entry. When the server stops,
//! the last commits are tried four times over about four seconds. A crash loses at most
//! what was not yet committed.

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
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Rows waiting to be committed above which predictions are refused (503).
pub const MAX_BACKLOG: usize = 1_000_000;

/// Request entries waiting above which failed requests (status 400 and up) are no longer
/// kept one by one but counted per status, and written as one summary entry each: a flood
/// of refused or forged requests cannot grow memory while the log catches up.
pub const MAX_REQUESTS_WAITING: usize = 100_000;

/// Small batches of one table gathered into one once this many wait, so thousands of
/// one-row requests do not each keep their own arrays and schema.
const COMPACT_AT: usize = 256;

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
    requests_waiting: Arc<AtomicUsize>,
    failures_counted: FailuresCounted,
}

/// Failed requests counted instead of kept, by status.
type FailuresCounted = Arc<Mutex<BTreeMap<u16, u64>>>;

/// The task that commits; await [`OnlineWriter::flush`] after the last [`OnlineLog`] is
/// dropped.
pub struct OnlineWriter {
    done: oneshot::Receiver<()>,
}

impl OnlineWriter {
    /// Waits until everything sent is committed (or given up on, and logged).
    pub async fn flush(self) {
        let _ = self.done.await;
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
    /// Starts the writer, on a thread of its own.
    pub fn start(
        lakehouse: Arc<Lakehouse>,
        flushing: Flushing,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> std::io::Result<(OnlineLog, OnlineWriter)> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let requests_waiting = Arc::new(AtomicUsize::new(0));
        let failures_counted = FailuresCounted::default();
        let pending = Pending {
            lakehouse,
            flushing,
            metrics,
            backlog: backlog.clone(),
            requests_waiting: requests_waiting.clone(),
            failures_counted: failures_counted.clone(),
            tables: BTreeMap::new(),
        };
        // Commits encode Parquet: on a thread of their own, they never hold up the
        // threads that answer requests.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (finished, done) = oneshot::channel();
        std::thread::Builder::new()
            .name(String::from("lakescore-online-log"))
            .spawn(move || {
                runtime.block_on(pending.run(receiver, stop));
                let _ = finished.send(());
            })?;
        let log = OnlineLog {
            sender,
            backlog,
            requests_waiting,
            failures_counted,
        };
        Ok((log, OnlineWriter { done }))
    }

    /// Keeps `batch` (online predictions) for `table`.
    pub fn predictions(&self, table: TableName, batch: RecordBatch) {
        self.backlog.fetch_add(batch.num_rows(), Ordering::Relaxed);
        let _ = self.sender.send(Kept::Predictions(table, batch));
    }

    /// Keeps a request's audit entry.
    pub fn request(&self, entry: RequestEntry) {
        let behind = self.requests_waiting.load(Ordering::Relaxed) > MAX_REQUESTS_WAITING;
        if behind && entry.status >= 400 {
            *self
                .failures_counted
                .lock()
                .entry(entry.status)
                .or_default() += 1;
            return;
        }
        self.backlog.fetch_add(1, Ordering::Relaxed);
        self.requests_waiting.fetch_add(1, Ordering::Relaxed);
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
    requests_waiting: Arc<AtomicUsize>,
    failures_counted: FailuresCounted,
    tables: BTreeMap<TableName, Waiting>,
}

#[derive(Default)]
struct Waiting {
    batches: Vec<RecordBatch>,
    requests: Vec<RequestEntry>,
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
                if waiting.batches.len() >= COMPACT_AT {
                    waiting.batches = compacted(std::mem::take(&mut waiting.batches));
                }
                (table, rows)
            }
            Kept::Request(entry) => {
                let table = system_table(REQUEST_LOG);
                self.tables
                    .entry(table.clone())
                    .or_default()
                    .requests
                    .push(entry);
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
        let failed = std::mem::take(&mut *self.failures_counted.lock());
        if !failed.is_empty() {
            let waiting = self.tables.entry(system_table(REQUEST_LOG)).or_default();
            waiting.requests.extend(
                failed
                    .into_iter()
                    .map(|(status, count)| failures_summary(status, count)),
            );
            waiting.since.get_or_insert_with(tokio::time::Instant::now);
        }
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

    /// Commits what waits for `table`. Each run of one schema is its own commit; when one
    /// fails, the runs committed before it are done and only the rest waits for the next
    /// flush, so no row is appended twice.
    async fn flush_table(&mut self, table: &TableName) {
        let Some(waiting) = self.tables.get_mut(table) else {
            return;
        };
        let mut writing = compacted(std::mem::take(&mut waiting.batches));
        let predictions = writing.len();
        let requests = std::mem::take(&mut waiting.requests);
        if !requests.is_empty() {
            match request_batch(&requests) {
                Ok(batch) => writing.push(batch),
                Err(error) => tracing::error!("request entries not logged: {error}"),
            }
        }
        match commit(&self.lakehouse, table, &writing).await {
            Ok(()) => {
                let rows = waiting.rows;
                self.tables.remove(table);
                self.backlog.fetch_sub(rows, Ordering::Relaxed);
                let logged = requests.iter().filter(|r| !r.request_id.is_empty()).count();
                self.requests_waiting.fetch_sub(logged, Ordering::Relaxed);
                self.metrics.online_committed(rows);
            }
            Err((done, error)) => {
                // The request entries' batch is the last: a failure comes at or before it.
                writing.truncate(predictions);
                let left = writing.split_off(done.min(predictions));
                let rows_done: usize = writing.iter().map(RecordBatch::num_rows).sum();
                self.backlog.fetch_sub(rows_done, Ordering::Relaxed);
                self.metrics.online_committed(rows_done);
                self.metrics.online_commit_failed();
                waiting.rows -= rows_done;
                tracing::error!(
                    "could not append {} rows to {table}, trying again at the next flush: {error}",
                    waiting.rows
                );
                waiting.batches = left;
                waiting.requests = requests;
                waiting.since = Some(tokio::time::Instant::now());
            }
        }
    }
}

/// `batches` gathered into one per run of equal schemas.
fn compacted(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let mut gathered = Vec::new();
    let mut start = 0;
    while start < batches.len() {
        let schema = batches[start].schema();
        let end = batches[start..]
            .iter()
            .position(|b| b.schema() != schema)
            .map_or(batches.len(), |offset| start + offset);
        match concat_batches(&schema, &batches[start..end]) {
            Ok(batch) => gathered.push(batch),
            Err(_) => gathered.extend_from_slice(&batches[start..end]),
        }
        start = end;
    }
    gathered
}

/// The entry standing for `count` requests answered `status` not kept one by one.
fn failures_summary(status: u16, count: u64) -> RequestEntry {
    RequestEntry {
        request_id: String::new(),
        at: Utc::now(),
        client: String::new(),
        address: String::new(),
        endpoint: String::from("(refused while the log was behind)"),
        model: None,
        rows: count,
        status,
        latency: Duration::ZERO,
        error: Some(format!(
            "{count} requests answered {status} while more than {MAX_REQUESTS_WAITING} entries waited; counted here (rows), not logged one by one"
        )),
    }
}

/// Appends `batches` to `table`, one commit each (they are runs of different schemas: a
/// new model version may read other features); on a failure, how many were committed
/// before it.
async fn commit(
    lakehouse: &Lakehouse,
    table: &TableName,
    batches: &[RecordBatch],
) -> Result<(), (usize, lakescore_engine::Error)> {
    for (done, batch) in batches.iter().enumerate() {
        let metadata = commit_metadata(
            &new_run_id(),
            json!([]),
            [(ENTRIES, json!(batch.num_rows()))],
        );
        write_batch(lakehouse, table, batch.clone(), WriteMode::Append, metadata)
            .await
            .map_err(|error| (done, error))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(column: &str, values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            column,
            DataType::Int64,
            false,
        )]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    #[test]
    fn small_batches_are_gathered_per_run_of_one_schema_in_order() {
        let gathered = compacted(vec![
            batch("a", &[1]),
            batch("a", &[2, 3]),
            batch("b", &[4]),
            batch("a", &[5]),
        ]);
        let runs: Vec<(String, usize)> = gathered
            .iter()
            .map(|b| (b.schema().field(0).name().clone(), b.num_rows()))
            .collect();
        assert_eq!(runs, [("a".into(), 3), ("b".into(), 1), ("a".into(), 1)]);
        let values = gathered[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(values.values().to_vec(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_run_committed_before_a_failing_one_is_not_appended_again() {
        let dir = tempfile::tempdir().unwrap();
        let config = lakescore_engine::config::LakehouseConfig::default();
        let lakehouse = Arc::new(Lakehouse::new(&config, dir.path()).unwrap());
        let table = TableName::parse("scored.churn_online").unwrap();
        let backlog = Arc::new(AtomicUsize::new(3));
        let mut pending = Pending {
            lakehouse: lakehouse.clone(),
            flushing: Flushing {
                interval: Duration::from_secs(60),
                rows: 1_000,
            },
            metrics: Arc::new(Metrics::default()),
            backlog: backlog.clone(),
            requests_waiting: Arc::default(),
            failures_counted: FailuresCounted::default(),
            tables: BTreeMap::new(),
        };
        // The second run's column is text where the table's is a number: it cannot be
        // appended, the first can.
        let text = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        pending.tables.insert(
            table.clone(),
            Waiting {
                batches: vec![batch("a", &[1, 2]), text],
                requests: Vec::new(),
                rows: 3,
                since: Some(tokio::time::Instant::now()),
            },
        );
        for _ in 0..3 {
            pending.flush(true).await;
            let session = lakescore_engine::SqlSession::builder(lakehouse.clone())
                .build()
                .await
                .unwrap();
            assert_eq!(session.count_rows(&table.quoted()).await.unwrap(), 2);
            assert_eq!(backlog.load(Ordering::Relaxed), 1);
            assert_eq!(pending.tables[&table].rows, 1);
            assert_eq!(pending.tables[&table].batches.len(), 1);
        }
    }

    #[test]
    fn failures_past_the_limit_are_counted_by_status_and_written_as_one_entry_each() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let log = OnlineLog {
            sender,
            backlog: Arc::default(),
            requests_waiting: Arc::new(AtomicUsize::new(MAX_REQUESTS_WAITING + 1)),
            failures_counted: FailuresCounted::default(),
        };
        let entry = |status| RequestEntry {
            request_id: String::from("r"),
            at: Utc::now(),
            client: String::new(),
            address: String::from("127.0.0.1:9"),
            endpoint: String::from("predict"),
            model: None,
            rows: 0,
            status,
            latency: Duration::ZERO,
            error: None,
        };
        for status in [401, 401, 429, 200, 401] {
            log.request(entry(status));
        }
        // The answered request is kept; the failures are counted.
        assert!(matches!(receiver.try_recv(), Ok(Kept::Request(e)) if e.status == 200));
        assert!(receiver.try_recv().is_err());
        assert_eq!(
            *log.failures_counted.lock(),
            BTreeMap::from([(401, 3), (429, 1)])
        );
        let summary = failures_summary(401, 3);
        assert_eq!((summary.status, summary.rows), (401, 3));
        assert!(summary.request_id.is_empty());
        let batch = request_batch(&[summary]).unwrap();
        assert_eq!(batch.num_rows(), 1);
    }
}

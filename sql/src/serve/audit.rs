//! The audit log: every statement the server receives, with who sent it from where, how
//! long it took, how many rows it returned and whether it failed. Each entry goes to the
//! log stream at once and to `ops.query_log` in batches (one commit a second at most), so
//! logging never waits on storage while a query runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lakescore_engine::commit::{commit_metadata, new_run_id};
use lakescore_engine::datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
use lakescore_engine::quarantine::timestamp_type;
use lakescore_engine::write::{WriteMode, write_batch};
use lakescore_engine::{Lakehouse, TableName};
use serde_json::json;
use tokio::sync::mpsc;

/// The audit table.
pub const QUERY_LOG: &str = "ops.query_log";

/// Most entries written in one commit.
const BATCH: usize = 1000;

/// One statement, as audited.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The user it ran as.
    pub user: String,
    /// The user's role.
    pub role: String,
    /// The client's address and port.
    pub client: String,
    /// The statement text.
    pub statement: String,
    /// When it arrived.
    pub started_at: DateTime<Utc>,
    /// How long it took, to its last row.
    pub duration: Duration,
    /// Rows returned.
    pub rows: u64,
    /// `ok`, `error` or `cancelled` (the client went away mid-result).
    pub status: &'static str,
    /// The error sent to the client.
    pub error: Option<String>,
}

/// Where entries are sent; cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    sender: mpsc::UnboundedSender<AuditEntry>,
}

/// The task that writes entries; await it after the last `Audit` is dropped to flush.
pub struct AuditWriter {
    task: tokio::task::JoinHandle<()>,
}

impl Audit {
    /// Starts the writer for `lakehouse`.
    pub fn start(lakehouse: Arc<Lakehouse>) -> (Audit, AuditWriter) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_entries(lakehouse, receiver));
        (Audit { sender }, AuditWriter { task })
    }

    /// Logs `entry` now and queues it for `ops.query_log`.
    pub fn record(&self, entry: AuditEntry) {
        match &entry.error {
            None => tracing::info!(
                user = entry.user,
                role = entry.role,
                client = entry.client,
                rows = entry.rows,
                ms = entry.duration.as_millis() as u64,
                status = entry.status,
                "statement: {}",
                entry.statement
            ),
            Some(error) => tracing::warn!(
                user = entry.user,
                role = entry.role,
                client = entry.client,
                ms = entry.duration.as_millis() as u64,
                "statement failed: {}: {error}",
                entry.statement
            ),
        }
        let _ = self.sender.send(entry);
    }
}

impl AuditWriter {
    /// Waits until every queued entry is written.
    pub async fn flush(self) {
        let _ = self.task.await;
    }
}

async fn write_entries(
    lakehouse: Arc<Lakehouse>,
    mut receiver: mpsc::UnboundedReceiver<AuditEntry>,
) {
    let mut pending = Vec::new();
    loop {
        let received = receiver.recv_many(&mut pending, BATCH).await;
        if received == 0 {
            return;
        }
        // Gather what arrives in the next moment into the same commit.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while pending.len() < BATCH {
            match receiver.try_recv() {
                Ok(entry) => pending.push(entry),
                Err(_) => break,
            }
        }
        if let Err(error) = write(&lakehouse, &pending).await {
            tracing::error!(
                "could not write {} entries to {QUERY_LOG}: {error}",
                pending.len()
            );
        }
        pending.clear();
    }
}

async fn write(lakehouse: &Lakehouse, entries: &[AuditEntry]) -> lakescore_engine::Result<u64> {
    let text = |f: &dyn Fn(&AuditEntry) -> Option<String>| {
        Arc::new(StringArray::from_iter(entries.iter().map(f))) as ArrayRef
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("started_at", timestamp_type(), false),
        Field::new("user_name", DataType::Utf8, true),
        Field::new("role", DataType::Utf8, true),
        Field::new("client", DataType::Utf8, true),
        Field::new("statement", DataType::Utf8, true),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("status", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                entries.iter().map(|e| e.started_at.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ),
        text(&|e| Some(e.user.clone())),
        text(&|e| Some(e.role.clone())),
        text(&|e| Some(e.client.clone())),
        text(&|e| Some(e.statement.clone())),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.duration.as_millis() as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.rows as i64),
        )),
        text(&|e| Some(e.status.to_string())),
        text(&|e| e.error.clone()),
    ];
    let batch = RecordBatch::try_new(schema, columns)?;
    let metadata = commit_metadata(
        &new_run_id(),
        json!([]),
        [("entries", json!(entries.len()))],
    );
    write_batch(
        lakehouse,
        &TableName::parse(QUERY_LOG)?,
        batch,
        WriteMode::Append,
        metadata,
    )
    .await
}

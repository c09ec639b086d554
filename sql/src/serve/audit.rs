//! The audit log: every statement the server receives, with who sent it from where, how
//! long it took, how many rows it returned and whether it failed. Each entry goes to the
//! log stream at once (as structured fields, so a statement cannot forge a log line) and
//! to `ops.query_log` in batches, so logging never waits on storage while a query runs.
//!
//! Entries are never dropped: a batch that cannot be committed is tried again, then kept
//! in a local spool file (`.lakescore/query_log.spool.jsonl` next to the project file)
//! that is written to the table at the next successful commit, also after a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lakescore_engine::datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
use lakescore_engine::storage::commit::{ENTRIES, commit_metadata, new_run_id};
use lakescore_engine::storage::quarantine::timestamp_type;
use lakescore_engine::storage::system_tables::QUERY_LOG;
use lakescore_engine::storage::write::{WriteMode, write_batch};
use lakescore_engine::{Lakehouse, TableName};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

/// Most entries written in one commit.
const BATCH: usize = 1000;

/// Waits before each retry of a failed commit.
const RETRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// Where entries wait while the table cannot be written, relative to the project folder.
pub const SPOOL: &str = ".lakescore/query_log.spool.jsonl";

/// One statement, as audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(with = "micros")]
    pub started_at: DateTime<Utc>,
    /// How long it took, to its last row.
    pub duration: Duration,
    /// Rows returned.
    pub rows: u64,
    /// `ok`, `error` or `cancelled` (by the client, a cancel request or the timeout).
    pub status: String,
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
    /// Starts the writer for `lakehouse`, spooling under `project_dir` when it must.
    pub fn start(lakehouse: Arc<Lakehouse>, project_dir: PathBuf) -> (Audit, AuditWriter) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let spool = project_dir.join(SPOOL);
        let task = tokio::spawn(write_entries(lakehouse, spool, receiver));
        (Audit { sender }, AuditWriter { task })
    }

    /// Logs `entry` now and queues it for `ops.query_log`.
    pub fn record(&self, entry: AuditEntry) {
        // Debug formatting quotes and escapes the texts a client chose.
        match &entry.error {
            None => tracing::info!(
                user = ?entry.user,
                role = ?entry.role,
                client = %entry.client,
                rows = entry.rows,
                ms = entry.duration.as_millis() as u64,
                status = %entry.status,
                statement = ?entry.statement,
                "statement"
            ),
            Some(error) => tracing::warn!(
                user = ?entry.user,
                role = ?entry.role,
                client = %entry.client,
                ms = entry.duration.as_millis() as u64,
                status = %entry.status,
                statement = ?entry.statement,
                error = ?error,
                "statement failed"
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

/// Times in the spool: microseconds since the epoch.
mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(time.timestamp_micros())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let micros = i64::deserialize(d)?;
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| de::Error::custom("time out of range"))
    }
}

async fn write_entries(
    lakehouse: Arc<Lakehouse>,
    spool: PathBuf,
    mut receiver: mpsc::UnboundedReceiver<AuditEntry>,
) {
    // What an earlier run left in the spool is written before anything new arrives.
    let mut replay = spool.exists();
    loop {
        let mut arrived = Vec::new();
        if !replay {
            if receiver.recv_many(&mut arrived, BATCH).await == 0 {
                return;
            }
            // Gather what arrives in the next moment into the same commit.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while let Ok(entry) = receiver.try_recv() {
                arrived.push(entry);
            }
        }
        replay = false;
        let spooled = spool.exists();
        let mut batch = if spooled {
            read_spool(&spool)
        } else {
            Vec::new()
        };
        batch.extend(arrived);
        if batch.is_empty() {
            continue;
        }
        if commit_with_retries(&lakehouse, &batch).await {
            if spooled {
                remove_spool(&spool);
            }
        } else {
            write_spool(&spool, &batch);
        }
    }
}

/// Commits `entries`, trying again after each of [`RETRIES`]; false when all failed.
async fn commit_with_retries(lakehouse: &Lakehouse, entries: &[AuditEntry]) -> bool {
    let mut waits = RETRIES.iter();
    loop {
        match write(lakehouse, entries).await {
            Ok(_) => return true,
            Err(error) => match waits.next() {
                Some(wait) => {
                    tracing::warn!(
                        "could not write {} entries to {QUERY_LOG}, trying again: {error}",
                        entries.len()
                    );
                    tokio::time::sleep(*wait).await;
                }
                None => {
                    tracing::error!(
                        "could not write {} entries to {QUERY_LOG}: {error}",
                        entries.len()
                    );
                    return false;
                }
            },
        }
    }
}

/// Entries a previous run (or an earlier failed commit) left in the spool.
fn read_spool(spool: &Path) -> Vec<AuditEntry> {
    let Ok(text) = std::fs::read_to_string(spool) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| match serde_json::from_str(line) {
            Ok(entry) => Some(entry),
            Err(error) => {
                tracing::error!(
                    "{}: unreadable audit entry left out: {error}",
                    spool.display()
                );
                None
            }
        })
        .collect()
}

/// Keeps `entries` (the spool's earlier entries among them) in the spool.
fn write_spool(spool: &Path, entries: &[AuditEntry]) {
    let written = (|| -> std::io::Result<()> {
        if let Some(folder) = spool.parent() {
            std::fs::create_dir_all(folder)?;
        }
        let mut file = std::fs::File::create(spool)?;
        for entry in entries {
            let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
            writeln!(file, "{line}")?;
        }
        file.sync_all()
    })();
    match written {
        Ok(()) => tracing::warn!(
            "{} entries kept in {} until {QUERY_LOG} can be written",
            entries.len(),
            spool.display()
        ),
        Err(error) => {
            // The log stream already holds every entry; say loudly that the table won't.
            tracing::error!(
                "could not keep {} entries in {}: {error}; they are only in this log",
                entries.len(),
                spool.display()
            );
        }
    }
}

fn remove_spool(spool: &Path) {
    if let Err(error) = std::fs::remove_file(spool) {
        tracing::error!(
            "{}: could not remove the written spool: {error}",
            spool.display()
        );
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
        text(&|e| Some(e.status.clone())),
        text(&|e| e.error.clone()),
    ];
    let batch = RecordBatch::try_new(schema, columns)?;
    let metadata = commit_metadata(&new_run_id(), json!([]), [(ENTRIES, json!(entries.len()))]);
    write_batch(
        lakehouse,
        &TableName::parse(QUERY_LOG)?,
        batch,
        WriteMode::Append,
        metadata,
    )
    .await
}

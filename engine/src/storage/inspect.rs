//! What lakescore tells about tables without querying them: the table listing
//! (`lakescore tables`) and a table's Delta history (`lakescore history`).
//!
//! Both come back as Arrow record batches so the CLI writes them in any output format.
//! Row counts and sizes come from the Delta log's file statistics, never from a scan.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::DeltaTable;
use futures::TryStreamExt;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion};

/// One line of `lakescore tables`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    /// `schema.name`.
    pub name: TableName,
    /// Current version; `None` when the table cannot be read.
    pub version: Option<u64>,
    /// Rows, from the Delta log's statistics; `None` when a file has no statistics.
    pub rows: Option<u64>,
    /// Active data files.
    pub files: u64,
    /// Bytes in the active data files.
    pub size_bytes: u64,
    /// When the current version was committed.
    pub last_commit: Option<DateTime<Utc>>,
    /// Why the table cannot be read (a torn commit, a missing file), when it cannot.
    pub error: Option<String>,
}

impl TableSummary {
    /// Summarizes the table at its current version.
    pub async fn of(lakehouse: &Lakehouse, name: &TableName) -> Result<Self> {
        let table = lakehouse.open_table(name, TableVersion::Latest).await?;
        let snapshot = table
            .snapshot()
            .map_err(|source| delta_error(&table, source))?;
        let version = snapshot.version() as u64;
        let (mut rows, mut files, mut size_bytes) = (Some(0u64), 0u64, 0u64);
        for file in snapshot.log_data().iter() {
            files += 1;
            size_bytes += file.size().max(0) as u64;
            rows = rows.zip(file.num_records()).map(|(sum, n)| sum + n as u64);
        }
        let last_commit = snapshot
            .version_timestamp(snapshot.version())
            .and_then(DateTime::from_timestamp_millis);
        Ok(Self {
            name: name.clone(),
            version: Some(version),
            rows,
            files,
            size_bytes,
            last_commit,
            error: None,
        })
    }

    /// A table that is listed but cannot be read, and why.
    fn broken(name: &TableName, error: &Error) -> Self {
        Self {
            name: name.clone(),
            version: None,
            rows: None,
            files: 0,
            size_bytes: 0,
            last_commit: None,
            error: Some(error.to_string()),
        }
    }
}

/// Summaries of every table in the lakehouse, sorted by name. A table that cannot be
/// read is listed with its error (and logged), so one broken table hides nothing else.
pub async fn list_table_summaries(lakehouse: &Lakehouse) -> Result<Vec<TableSummary>> {
    let mut summaries = Vec::new();
    for name in lakehouse.list_tables().await? {
        match TableSummary::of(lakehouse, &name).await {
            Ok(summary) => summaries.push(summary),
            Err(error) => {
                tracing::warn!(table = %name, "table cannot be read: {error}");
                summaries.push(TableSummary::broken(&name, &error));
            }
        }
    }
    Ok(summaries)
}

/// The table listing as a record batch: table, version, rows, files, size, last_commit.
pub fn summaries_batch(summaries: &[TableSummary]) -> Result<(SchemaRef, RecordBatch)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, true),
        Field::new("rows", DataType::UInt64, true),
        Field::new("files", DataType::UInt64, false),
        Field::new("size", DataType::Utf8, false),
        Field::new("size_bytes", DataType::UInt64, false),
        last_commit_field("last_commit"),
        Field::new("error", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            summaries.iter().map(|s| s.name.to_string()),
        )),
        Arc::new(UInt64Array::from_iter(summaries.iter().map(|s| s.version))),
        Arc::new(UInt64Array::from_iter(summaries.iter().map(|s| s.rows))),
        Arc::new(UInt64Array::from_iter_values(
            summaries.iter().map(|s| s.files),
        )),
        Arc::new(StringArray::from_iter_values(
            summaries.iter().map(|s| human_size(s.size_bytes)),
        )),
        Arc::new(UInt64Array::from_iter_values(
            summaries.iter().map(|s| s.size_bytes),
        )),
        timestamps(summaries.iter().map(|s| s.last_commit)),
        Arc::new(StringArray::from_iter(
            summaries.iter().map(|s| s.error.clone()),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok((schema, batch))
}

/// One commit in a table's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The version this commit created.
    pub version: u64,
    /// When it was committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// The Delta operation (WRITE, MERGE, CREATE TABLE, ...).
    pub operation: Option<String>,
    /// The lakescore run that made it, if any.
    pub run_id: Option<String>,
    /// The input tables and versions it was computed from, as JSON.
    pub inputs: Option<String>,
    /// Operation parameters and any other commit metadata, as JSON.
    pub details: String,
}

/// A table's history, newest commit first; `limit` keeps the newest few.
pub async fn table_history(
    lakehouse: &Lakehouse,
    name: &TableName,
    limit: Option<usize>,
) -> Result<Vec<HistoryEntry>> {
    let table = lakehouse.open_table(name, TableVersion::Latest).await?;
    let newest = table.version().unwrap_or_default() as u64;
    let commits: Vec<_> = table
        .history(limit)
        .try_collect()
        .await
        .map_err(|source| delta_error(&table, source))?;
    Ok(commits
        .into_iter()
        .enumerate()
        .map(|(age, mut commit)| {
            let run_id = commit
                .info
                .remove(crate::storage::commit::RUN_ID.as_str())
                .map(json_text);
            let inputs = commit
                .info
                .remove(crate::storage::commit::INPUTS.as_str())
                .map(json_text);
            let mut details = Map::new();
            if let Some(parameters) = commit.operation_parameters.take() {
                details.insert(
                    "operationParameters".into(),
                    Value::Object(parameters.into_iter().collect()),
                );
            }
            for (key, value) in commit
                .info
                .into_iter()
                .filter(|(k, _)| k != "operationMetrics")
            {
                details.insert(key, value);
            }
            HistoryEntry {
                version: newest.saturating_sub(age as u64),
                committed_at: commit.timestamp.and_then(DateTime::from_timestamp_millis),
                operation: commit.operation,
                run_id,
                inputs,
                details: Value::Object(details).to_string(),
            }
        })
        .collect())
}

/// History entries as a record batch: version, committed_at, operation, run_id, inputs, details.
pub fn history_batch(entries: &[HistoryEntry]) -> Result<(SchemaRef, RecordBatch)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("version", DataType::UInt64, false),
        last_commit_field("committed_at"),
        Field::new("operation", DataType::Utf8, true),
        Field::new("run_id", DataType::Utf8, true),
        Field::new("inputs", DataType::Utf8, true),
        Field::new("details", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            entries.iter().map(|e| e.version),
        )),
        timestamps(entries.iter().map(|e| e.committed_at)),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.operation.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.run_id.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.inputs.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            entries.iter().map(|e| e.details.as_str()),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok((schema, batch))
}

fn last_commit_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        true,
    )
}

fn timestamps(values: impl Iterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    Arc::new(
        TimestampMillisecondArray::from_iter(values.map(|t| t.map(|t| t.timestamp_millis())))
            .with_timezone("UTC"),
    )
}

fn json_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

fn delta_error(table: &DeltaTable, source: deltalake::DeltaTableError) -> Error {
    Error::Delta {
        uri: table.table_url().to_string(),
        source,
    }
}

/// Sizes in binary units with one decimal: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}

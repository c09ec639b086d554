//! Quarantine rows of a landing: records that could not be landed, kept with where they
//! came from and why (the table names and schema are the engine's [`quarantine_table`]
//! and [`quarantine_schema`]), and the spool that writes them into the quarantine table's
//! files as they come, so a file of bad rows never piles up in memory.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::error::ArrowError;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use lakescore_engine::config::LandingMode;
pub use lakescore_engine::storage::quarantine::{quarantine_schema, quarantine_table};
use lakescore_engine::{Lakehouse, TableName};

use crate::error::{Error, Result};
use crate::landing::{commit_writer, create_delta_table};

/// Quarantined rows gathered before they are written out as one record batch.
const SPOOL_ROWS: usize = 4096;

/// What every quarantined row of a batch records about it.
#[derive(Debug, Clone)]
pub struct QuarantineBatchInfo {
    /// The source.
    pub source: String,
    /// The batch id.
    pub batch_id: String,
    /// When the batch was ingested, in microseconds since the epoch.
    pub ingested_at: i64,
    /// The run id (of the commit that creates the quarantine table, if it must).
    pub run_id: String,
}

/// A batch's quarantined rows on their way into the quarantine table: written to its
/// data files in groups of [`SPOOL_ROWS`], committed once with the batch.
pub struct QuarantineSpool<'a> {
    lakehouse: &'a Lakehouse,
    name: TableName,
    table: Option<DeltaTable>,
    writer: Option<RecordBatchWriter>,
    info: QuarantineBatchInfo,
    waiting: Vec<QuarantinedRow>,
    rows: u64,
}

impl<'a> QuarantineSpool<'a> {
    /// A spool into quarantine table `name` (`table` when it exists already).
    pub fn new(
        lakehouse: &'a Lakehouse,
        name: TableName,
        table: Option<DeltaTable>,
        info: QuarantineBatchInfo,
    ) -> Self {
        Self {
            lakehouse,
            name,
            table,
            writer: None,
            info,
            waiting: Vec::new(),
            rows: 0,
        }
    }

    /// The quarantine table.
    pub fn name(&self) -> &TableName {
        &self.name
    }

    /// Rows quarantined so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds a row, writing the waiting ones out once there are enough.
    pub async fn push(&mut self, row: QuarantinedRow) -> Result<()> {
        self.waiting.push(row);
        self.rows += 1;
        if self.waiting.len() >= SPOOL_ROWS {
            self.write_waiting().await?;
        }
        Ok(())
    }

    async fn write_waiting(&mut self) -> Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let info = &self.info;
        let batch = quarantine_batch(
            &info.source,
            &info.batch_id,
            info.ingested_at,
            &self.waiting,
        )
        .map_err(|e| Error::storage(&self.name, e))?;
        self.waiting.clear();
        if self.table.is_none() {
            let created =
                create_delta_table(self.lakehouse, &self.name, &batch.schema(), &info.run_id)
                    .await?;
            self.table = Some(created);
        }
        let writer = match (self.writer.take(), &self.table) {
            (Some(writer), _) => writer,
            (None, Some(table)) => {
                RecordBatchWriter::for_table(table).map_err(|e| Error::storage(&self.name, e))?
            }
            (None, None) => {
                return Err(Error::storage(
                    &self.name,
                    "the quarantine table was not created",
                ));
            }
        };
        self.writer
            .insert(writer)
            .write(batch)
            .await
            .map_err(|e| Error::storage(&self.name, e))
    }

    /// Commits the spooled rows in one commit with `properties`; nothing when there are
    /// none. Returns the new version.
    pub async fn commit(mut self, properties: CommitProperties) -> Result<Option<u64>> {
        self.write_waiting().await?;
        match (self.writer, &self.table) {
            (Some(writer), Some(table)) => commit_writer(
                writer,
                table,
                LandingMode::Append,
                properties,
                "ingest-quarantine-commit",
            )
            .await
            .map(Some),
            _ => Ok(None),
        }
    }
}

/// One rejected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    /// The file it came from.
    pub file: String,
    /// Its line or record number.
    pub row: u64,
    /// The column at fault, if one is.
    pub column: Option<String>,
    /// What was wrong.
    pub error: String,
    /// The record as it appeared.
    pub raw: String,
}

/// Quarantined rows of one batch as a record batch.
pub fn quarantine_batch(
    source: &str,
    batch_id: &str,
    ingested_at: i64,
    rows: &[QuarantinedRow],
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            source, n,
        ))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.file.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.row as i64),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.column.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.error.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.raw.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            batch_id, n,
        ))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(ingested_at, n))
                .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(quarantine_schema(), columns)
}

#[cfg(test)]
mod tests {
    use lakescore_engine::TableName;

    use super::*;

    #[test]
    fn quarantine_names_follow_the_table() {
        let table = TableName::parse("raw.erp_invoices").unwrap();
        assert_eq!(
            quarantine_table(&table).to_string(),
            "quarantine.raw_erp_invoices"
        );
        let row = QuarantinedRow {
            file: "f.csv".into(),
            row: 7,
            column: None,
            error: "expected 3 fields, found 2".into(),
            raw: "a;b".into(),
        };
        let batch = quarantine_batch("erp", "b1", 0, &[row]).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), quarantine_schema());
    }
}

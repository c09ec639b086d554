//! Quarantine: rows that could not be landed, kept with where they came from and why.
//!
//! Table `schema.name` quarantines into `quarantine.<schema>_<name>` (so `raw.erp_invoices`
//! into `quarantine.raw_erp_invoices`), one row per rejected record.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use lakescore_engine::TableName;

use crate::schema::{INGEST_BATCH, INGESTED_AT, SOURCE_FILE, SOURCE_ROW, timestamp_type};

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

/// The quarantine table of `table`.
pub fn quarantine_table(table: &TableName) -> TableName {
    TableName {
        schema: String::from("quarantine"),
        name: format!("{}_{}", table.schema, table.name),
    }
}

/// The quarantine table's schema.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new(SOURCE_FILE, DataType::Utf8, false),
        Field::new(SOURCE_ROW, DataType::Int64, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new(INGEST_BATCH, DataType::Utf8, false),
        Field::new(INGESTED_AT, timestamp_type(), false),
    ]))
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

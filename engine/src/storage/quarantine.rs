//! Quarantine tables: where rows that could not be used are kept with where they came
//! from and why. Table `schema.name` quarantines into `quarantine.<schema>_<name>` (so
//! `raw.erp_invoices` into `quarantine.raw_erp_invoices`, `feedback.churn_risk` into
//! `quarantine.feedback_churn_risk`), one row per rejected record, whether the landing
//! rejected it or a later step (the feedback join) did.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::storage::lakehouse::TableName;

/// The file a row came from.
pub const SOURCE_FILE: &str = "_source_file";
/// The row's line (CSV, JSON lines) or record number (JSON arrays, Parquet) in its file.
pub const SOURCE_ROW: &str = "_source_row";
/// The ingest batch (or run) that landed or rejected the row.
pub const INGEST_BATCH: &str = "_ingest_batch";
/// When the row was landed or rejected.
pub const INGESTED_AT: &str = "_ingested_at";

/// Lineage timestamps: microseconds in UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
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

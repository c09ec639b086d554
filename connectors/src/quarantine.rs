//! Quarantine rows of a landing: records that could not be landed, kept with where they
//! came from and why (the table names and schema are the engine's [`quarantine_table`]
//! and [`quarantine_schema`]).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::error::ArrowError;
pub use lakescore_engine::quarantine::{quarantine_schema, quarantine_table};

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

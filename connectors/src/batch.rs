//! Building Arrow record batches of landed rows: typed data columns plus lineage.
//!
//! A row is typed completely before any of it is appended, so a row with one bad value is
//! rejected whole (for quarantine) and never half-written.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use lakescore_engine::config::ColumnType;

use crate::cell::{Cell, Value};
use crate::dialect::Dialect;
use crate::schema::{Column, table_schema};

/// Why a row cannot be landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Lineage shared by every row of one file in one batch.
#[derive(Debug, Clone)]
pub struct FileLineage {
    /// The file, as the source names it.
    pub file: String,
    /// The ingest batch id.
    pub batch_id: String,
    /// Landing time, microseconds since the epoch.
    pub ingested_at: i64,
}

/// Accumulates typed rows into record batches.
pub struct BatchBuilder {
    columns: Vec<Column>,
    schema: SchemaRef,
    builders: Vec<TypedBuilder>,
    source_rows: Int64Builder,
    lineage: FileLineage,
    typed: Vec<Value>,
}

impl BatchBuilder {
    /// A builder for rows of `columns` from the file in `lineage`.
    pub fn new(columns: Vec<Column>, lineage: FileLineage) -> Self {
        let schema = table_schema(&columns);
        let builders = columns
            .iter()
            .map(|c| TypedBuilder::new(c.column_type))
            .collect();
        Self {
            columns,
            schema,
            builders,
            source_rows: Int64Builder::new(),
            lineage,
            typed: Vec::new(),
        }
    }

    /// Rows buffered so far.
    pub fn len(&self) -> usize {
        self.source_rows.len()
    }

    /// True when no rows are buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Types `cells` (one per column, in column order) and appends the row, or explains
    /// why it cannot be landed.
    pub fn push(&mut self, row: u64, cells: &[Cell], dialect: &Dialect) -> Result<(), RowProblem> {
        self.typed.clear();
        for (column, cell) in self.columns.iter().zip(cells) {
            let value = cell
                .to_value(column.column_type, dialect)
                .map_err(|message| RowProblem {
                    column: Some(column.name.clone()),
                    message,
                })?;
            if column.required && value == Value::Null {
                return Err(RowProblem {
                    column: Some(column.name.clone()),
                    message: String::from("required value is missing"),
                });
            }
            self.typed.push(value);
        }
        for (builder, value) in self.builders.iter_mut().zip(self.typed.drain(..)) {
            builder.append(value);
        }
        self.source_rows.append_value(row as i64);
        Ok(())
    }

    /// The buffered rows as a batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = self.len();
        let mut arrays: Vec<ArrayRef> =
            self.builders.iter_mut().map(TypedBuilder::finish).collect();
        let repeated =
            |value: &str| StringArray::from_iter_values(std::iter::repeat_n(value, rows));
        arrays.push(Arc::new(repeated(&self.lineage.file)));
        arrays.push(Arc::new(self.source_rows.finish()));
        arrays.push(Arc::new(repeated(&self.lineage.batch_id)));
        let mut at = TimestampMicrosecondBuilder::with_capacity(rows);
        at.append_value_n(self.lineage.ingested_at, rows);
        arrays.push(Arc::new(at.finish().with_timezone("UTC")));
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

/// One Arrow builder per column type.
enum TypedBuilder {
    String(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Boolean(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl TypedBuilder {
    fn new(column_type: ColumnType) -> Self {
        match column_type {
            ColumnType::String => TypedBuilder::String(StringBuilder::new()),
            ColumnType::Int => TypedBuilder::Int(Int64Builder::new()),
            ColumnType::Float => TypedBuilder::Float(Float64Builder::new()),
            ColumnType::Decimal(p, s) => TypedBuilder::Decimal(Decimal128Builder::new(), p, s),
            ColumnType::Boolean => TypedBuilder::Boolean(BooleanBuilder::new()),
            ColumnType::Date => TypedBuilder::Date(Date32Builder::new()),
            ColumnType::Timestamp => TypedBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
        }
    }

    /// Appends a value already typed for this column (anything else appends null).
    fn append(&mut self, value: Value) {
        match (self, value) {
            (TypedBuilder::String(b), Value::Str(v)) => b.append_value(v),
            (TypedBuilder::Int(b), Value::Int(v)) => b.append_value(v),
            (TypedBuilder::Float(b), Value::Float(v)) => b.append_value(v),
            (TypedBuilder::Decimal(b, _, _), Value::Decimal(v)) => b.append_value(v),
            (TypedBuilder::Boolean(b), Value::Bool(v)) => b.append_value(v),
            (TypedBuilder::Date(b), Value::Date(v)) => b.append_value(v),
            (TypedBuilder::Timestamp(b), Value::Timestamp(v)) => b.append_value(v),
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            TypedBuilder::String(b) => b.append_null(),
            TypedBuilder::Int(b) => b.append_null(),
            TypedBuilder::Float(b) => b.append_null(),
            TypedBuilder::Decimal(b, _, _) => b.append_null(),
            TypedBuilder::Boolean(b) => b.append_null(),
            TypedBuilder::Date(b) => b.append_null(),
            TypedBuilder::Timestamp(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            TypedBuilder::String(b) => Arc::new(b.finish()),
            TypedBuilder::Int(b) => Arc::new(b.finish()),
            TypedBuilder::Float(b) => Arc::new(b.finish()),
            TypedBuilder::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale were validated when the schema was read"),
            ),
            TypedBuilder::Boolean(b) => Arc::new(b.finish()),
            TypedBuilder::Date(b) => Arc::new(b.finish()),
            TypedBuilder::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    fn columns() -> Vec<Column> {
        vec![
            Column {
                name: "id".into(),
                column_type: ColumnType::Int,
                required: true,
            },
            Column {
                name: "amount".into(),
                column_type: ColumnType::Decimal(10, 2),
                required: false,
            },
            Column {
                name: "due".into(),
                column_type: ColumnType::Date,
                required: false,
            },
        ]
    }

    #[test]
    fn bad_rows_are_rejected_whole_and_good_rows_carry_lineage() {
        let lineage = FileLineage {
            file: "inv.csv".into(),
            batch_id: "b1".into(),
            ingested_at: 0,
        };
        let mut builder = BatchBuilder::new(columns(), lineage);
        let erp = Dialect::erp_preset();
        let text = |v: &str| Cell::Text(v.into());
        builder
            .push(2, &[text("1"), text("1.234,50"), text("01.02.2026")], &erp)
            .unwrap();
        let bad = builder
            .push(3, &[text("2"), text("oops"), text("01.02.2026")], &erp)
            .unwrap_err();
        assert_eq!(bad.column.as_deref(), Some("amount"));
        assert!(
            bad.message.contains("'oops' is not a decimal"),
            "{}",
            bad.message
        );
        let missing = builder
            .push(4, &[text(""), text("1,00"), text("")], &erp)
            .unwrap_err();
        assert_eq!(
            missing,
            RowProblem {
                column: Some("id".into()),
                message: "required value is missing".into()
            }
        );
        builder
            .push(5, &[text("3"), text("5,00-"), text("")], &erp)
            .unwrap();
        let batch = builder.finish().unwrap();
        assert_eq!(
            pretty_format_batches(&[batch]).unwrap().to_string(),
            "+----+---------+------------+--------------+-------------+---------------+----------------------+\n\
             | id | amount  | due        | _source_file | _source_row | _ingest_batch | _ingested_at         |\n\
             +----+---------+------------+--------------+-------------+---------------+----------------------+\n\
             | 1  | 1234.50 | 2026-02-01 | inv.csv      | 2           | b1            | 1970-01-01T00:00:00Z |\n\
             | 3  | -5.00   |            | inv.csv      | 5           | b1            | 1970-01-01T00:00:00Z |\n\
             +----+---------+------------+--------------+-------------+---------------+----------------------+"
        );
        assert!(builder.is_empty());
    }
}

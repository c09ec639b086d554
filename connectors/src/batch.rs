//! Building Arrow record batches of landed rows: typed data columns plus lineage.
//!
//! Records come row by row ([`BatchBuilder`], for JSON and Parquet) or as a parsed chunk
//! of delimited text ([`ChunkTyper`]), typed column by column straight from the field
//! text: plain numbers take a fast path, every other spelling the dialect's parsers. A
//! row with one bad value is rejected whole (for quarantine) and never half-written.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanArray, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float64Builder, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use lakescore_engine::config::ColumnType;

use crate::cell::{Cell, Value, type_text};
use crate::dialect::Dialect;
use crate::reader::RecordLimits;
use crate::reader::csv::ParsedChunk;
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
        let mut arrays: Vec<ArrayRef> =
            self.builders.iter_mut().map(TypedBuilder::finish).collect();
        arrays.extend(self.lineage.arrays(self.source_rows.finish()));
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

impl FileLineage {
    /// The lineage columns of rows from lines `source_rows`.
    fn arrays(&self, source_rows: Int64Array) -> [ArrayRef; 4] {
        let rows = source_rows.len();
        let repeated =
            |value: &str| StringArray::from_iter_values(std::iter::repeat_n(value, rows));
        let mut at = TimestampMicrosecondBuilder::with_capacity(rows);
        at.append_value_n(self.ingested_at, rows);
        [
            Arc::new(repeated(&self.file)),
            Arc::new(source_rows),
            Arc::new(repeated(&self.batch_id)),
            Arc::new(at.finish().with_timezone("UTC")),
        ]
    }
}

/// A record of a chunk that does not land.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RejectedRecord {
    /// Its position among the chunk's records that were typed.
    pub index: usize,
    /// The line it starts on.
    pub row: u64,
    /// Why it does not land.
    pub problem: RowProblem,
    /// The record as read.
    pub raw: String,
}

/// What typing one chunk produced.
#[derive(Debug)]
pub(crate) struct TypedChunk {
    /// Records typed (landed and rejected).
    pub records: usize,
    /// The rows that land, with lineage.
    pub batch: RecordBatch,
    /// The records that do not, in order.
    pub rejected: Vec<RejectedRecord>,
}

/// Types chunks of delimited records from one file into batches of a table's columns.
#[derive(Debug, Clone)]
pub(crate) struct ChunkTyper {
    columns: Vec<Column>,
    /// For each column, its field in the file's records (None: the file lacks it).
    positions: Vec<Option<usize>>,
    headers: Vec<String>,
    schema: SchemaRef,
    lineage: FileLineage,
    dialect: Dialect,
    limits: RecordLimits,
}

impl ChunkTyper {
    /// Types records of a file with `headers` into `columns`.
    pub fn new(
        columns: Vec<Column>,
        headers: Vec<String>,
        lineage: FileLineage,
        dialect: Dialect,
        limits: RecordLimits,
    ) -> Self {
        let positions = columns
            .iter()
            .map(|c| headers.iter().position(|h| *h == c.name))
            .collect();
        Self {
            schema: table_schema(&columns),
            columns,
            positions,
            headers,
            lineage,
            dialect,
            limits,
        }
    }

    /// Types the records of `chunk` from record `first` on, column by column.
    pub fn type_chunk(&self, chunk: &ParsedChunk, first: usize) -> Result<TypedChunk, ArrowError> {
        let records = first..chunk.len().max(first);
        let count = records.len();
        let mut problems: Vec<Option<RowProblem>> = records
            .clone()
            .map(|r| {
                chunk
                    .problem(r, &self.headers, self.limits)
                    .map(|message| RowProblem {
                        column: None,
                        message,
                    })
            })
            .collect();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (column, position) in self.columns.iter().zip(&self.positions) {
            let mut builder = TypedBuilder::with_capacity(column.column_type, count);
            for (problem, r) in problems.iter_mut().zip(records.clone()) {
                if problem.is_some() {
                    builder.append_null();
                    continue;
                }
                let typed = match position {
                    Some(field) => {
                        builder.append_text(chunk.field(r, *field), column, &self.dialect)
                    }
                    None => builder.append_missing(column),
                };
                if let Err(message) = typed {
                    builder.append_null();
                    *problem = Some(RowProblem {
                        column: Some(column.name.clone()),
                        message,
                    });
                }
            }
            arrays.push(builder.finish());
        }
        let lines = Int64Array::from_iter_values(records.clone().map(|r| chunk.line(r) as i64));
        arrays.extend(self.lineage.arrays(lines));
        let mut batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        let rejected: Vec<RejectedRecord> = problems
            .iter()
            .zip(records)
            .enumerate()
            .filter_map(|(index, (problem, r))| {
                problem.clone().map(|problem| RejectedRecord {
                    index,
                    row: chunk.line(r),
                    problem,
                    raw: chunk.raw(r, self.dialect.delimiter),
                })
            })
            .collect();
        if !rejected.is_empty() {
            let lands: BooleanArray = problems.iter().map(|p| Some(p.is_none())).collect();
            batch = filter_record_batch(&batch, &lands)?;
        }
        Ok(TypedChunk {
            records: count,
            batch,
            rejected,
        })
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
        Self::with_capacity(column_type, 1024)
    }

    fn with_capacity(column_type: ColumnType, rows: usize) -> Self {
        match column_type {
            ColumnType::String => {
                TypedBuilder::String(StringBuilder::with_capacity(rows, rows * 16))
            }
            ColumnType::Int => TypedBuilder::Int(Int64Builder::with_capacity(rows)),
            ColumnType::Float => TypedBuilder::Float(Float64Builder::with_capacity(rows)),
            ColumnType::Decimal(p, s) => {
                TypedBuilder::Decimal(Decimal128Builder::with_capacity(rows), p, s)
            }
            ColumnType::Boolean => TypedBuilder::Boolean(BooleanBuilder::with_capacity(rows)),
            ColumnType::Date => TypedBuilder::Date(Date32Builder::with_capacity(rows)),
            ColumnType::Timestamp => {
                TypedBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
            }
        }
    }

    /// Types `text` for `column` and appends it; on error appends nothing. Plain numbers
    /// and text are appended without building a [`Value`]; anything else goes through
    /// the dialect's parsers, which give the same result for what the fast path takes.
    fn append_text(
        &mut self,
        text: &str,
        column: &Column,
        dialect: &Dialect,
    ) -> Result<(), String> {
        match self {
            TypedBuilder::String(b) if !dialect.is_null(text) => {
                b.append_value(text);
                return Ok(());
            }
            TypedBuilder::Float(b) => {
                if let Some(value) = plain_float(text, dialect) {
                    b.append_value(value);
                    return Ok(());
                }
            }
            TypedBuilder::Int(b) => {
                if let Some(value) = plain_int(text, dialect) {
                    b.append_value(value);
                    return Ok(());
                }
            }
            _ => {}
        }
        let value = type_text(text, column.column_type, dialect)?;
        if value == Value::Null {
            return self.append_missing(column);
        }
        self.append(value);
        Ok(())
    }

    /// Appends null for `column`, unless it is required.
    fn append_missing(&mut self, column: &Column) -> Result<(), String> {
        if column.required {
            return Err(String::from("required value is missing"));
        }
        self.append_null();
        Ok(())
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

/// `text` as a float when it is a plain number (no spaces, separators or trailing minus)
/// and not a null spelling: exactly what the dialect's parser makes of it.
fn plain_float(text: &str, dialect: &Dialect) -> Option<f64> {
    let plain = dialect.decimal_separator == '.'
        && dialect
            .thousands_separator
            .is_none_or(|sep| !text.contains(sep))
        && !dialect.is_null(text);
    plain
        .then(|| short_decimal(text).or_else(|| text.parse::<f64>().ok()))
        .flatten()
        .filter(|value| value.is_finite())
}

/// Powers of ten a double holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A decimal of at most 15 digits with an optional sign and point (`-12.345`), the way
/// most extracts write numbers, without the general parser: its digits and the power of
/// ten are exact doubles, so one division rounds exactly as `str::parse` does.
fn short_decimal(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let (mut mantissa, mut count, mut scale, mut point) = (0u64, 0usize, 0usize, false);
    for &byte in digits {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                count += 1;
                scale += usize::from(point);
            }
            b'.' if !point => point = true,
            _ => return None,
        }
        if count > 15 {
            return None;
        }
    }
    if count == 0 {
        return None;
    }
    let value = mantissa as f64 / EXACT_POWERS_OF_TEN[scale];
    Some(if negative { -value } else { value })
}

/// `text` as an integer when it is plain digits with an optional sign and not a null
/// spelling: exactly what the dialect's parser makes of it.
fn plain_int(text: &str, dialect: &Dialect) -> Option<i64> {
    if dialect.is_null(text) {
        return None;
    }
    text.parse::<i64>().ok()
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
    fn short_decimals_parse_exactly_as_the_standard_parser() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let digits = (next() % 15 + 1) as usize;
            let mut text: String = (0..digits)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let point = (next() % (digits as u64 + 1)) as usize;
            text.insert(point, '.');
            if next() % 2 == 0 {
                text.insert(0, '-');
            }
            let expected: f64 = text.parse().unwrap();
            assert_eq!(
                short_decimal(&text).map(f64::to_bits),
                Some(expected.to_bits()),
                "{text}"
            );
        }
        for text in [
            "",
            "-",
            ".",
            "1e5",
            "1,5",
            "1.2.3",
            " 1",
            "1234567890123456",
            "inf",
        ] {
            assert_eq!(short_decimal(text), None, "{text}");
        }
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

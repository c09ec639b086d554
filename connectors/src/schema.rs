//! Columns of a landed table: declared, inherited from the table, or inferred from a file,
//! and their Arrow types, plus the lineage columns every landed row carries.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use lakescore_engine::config::{ColumnType, SourceConfig};

use crate::cell::Cell;
use crate::dialect::Dialect;

pub use lakescore_engine::storage::quarantine::{
    INGEST_BATCH, INGESTED_AT, SOURCE_FILE, SOURCE_ROW, timestamp_type,
};

/// How many records type inference looks at.
pub const INFERENCE_SAMPLE: usize = 1000;

/// A data column of a landed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column name, as in the extract's header.
    pub name: String,
    /// Its type.
    pub column_type: ColumnType,
    /// Whether files must have it and rows must fill it.
    pub required: bool,
}

/// The Arrow type that stores a column type in Delta.
pub fn arrow_type(column_type: ColumnType) -> DataType {
    match column_type {
        ColumnType::String => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Decimal(p, s) => DataType::Decimal128(p, s),
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => timestamp_type(),
    }
}

/// The column type an existing table column has, if lakescore can land into it.
pub fn column_type_of(data_type: &DataType) -> Option<ColumnType> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::String,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnType::Int,
        DataType::Float32 | DataType::Float64 => ColumnType::Float,
        DataType::Decimal128(p, s) => ColumnType::Decimal(*p, *s),
        DataType::Boolean => ColumnType::Boolean,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(_, _) => ColumnType::Timestamp,
        _ => return None,
    })
}

/// The declared columns of a source, in declaration order.
pub fn declared_columns(source: &SourceConfig) -> Vec<Column> {
    source
        .schema
        .iter()
        .map(|(name, spec)| Column {
            name: normalize_name(name),
            column_type: spec.column_type,
            required: spec.required,
        })
        .collect()
}

/// The Arrow schema of a landed table: data columns, then the lineage columns.
pub fn table_schema(columns: &[Column]) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(&c.name, arrow_type(c.column_type), true))
        .collect();
    fields.extend(lineage_fields());
    Arc::new(Schema::new(fields))
}

/// The lineage fields every landed row carries.
pub fn lineage_fields() -> [Field; 4] {
    [
        Field::new(SOURCE_FILE, DataType::Utf8, false),
        Field::new(SOURCE_ROW, DataType::Int64, false),
        Field::new(INGEST_BATCH, DataType::Utf8, false),
        Field::new(INGESTED_AT, timestamp_type(), false),
    ]
}

/// True for the lineage columns.
pub fn is_lineage(name: &str) -> bool {
    [SOURCE_FILE, SOURCE_ROW, INGEST_BATCH, INGESTED_AT].contains(&name)
}

/// Normalizes a header to a snake_case column name, as dlt does: lower case, runs of
/// anything but letters and digits become one `_`, no leading or trailing `_`
/// (`Betrag (EUR)` becomes `betrag_eur`). Names starting with a digit get a leading `_`.
pub fn normalize_name(header: &str) -> String {
    let mut name = String::with_capacity(header.len());
    for c in header.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_matches('_').to_string();
    match name.chars().next() {
        None => String::from("_"),
        Some(first) if first.is_ascii_digit() => format!("_{name}"),
        Some(_) => name,
    }
}

/// Infers a column's type from sample values: the first of int, float, boolean, date,
/// timestamp that every non-null value parses as; string otherwise.
pub fn infer_type<'a>(
    values: impl Iterator<Item = &'a Cell> + Clone,
    dialect: &Dialect,
) -> ColumnType {
    let non_null = values.filter(|cell| !cell.is_null(dialect));
    if non_null.clone().next().is_none() {
        return ColumnType::String;
    }
    let candidates = [
        ColumnType::Int,
        ColumnType::Float,
        ColumnType::Boolean,
        ColumnType::Date,
        ColumnType::Timestamp,
    ];
    candidates
        .into_iter()
        .find(|candidate| non_null.clone().all(|cell| cell.fits(*candidate, dialect)))
        .unwrap_or(ColumnType::String)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(values: &[&str]) -> Vec<Cell> {
        values.iter().map(|v| Cell::Text(v.to_string())).collect()
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        let crm = Dialect::crm_preset();
        let erp = Dialect::erp_preset();
        assert_eq!(
            infer_type(texts(&["1", "", "3"]).iter(), &crm),
            ColumnType::Int
        );
        assert_eq!(
            infer_type(texts(&["1", "2.5"]).iter(), &crm),
            ColumnType::Float
        );
        assert_eq!(
            infer_type(texts(&["1.234,50", "7,00-"]).iter(), &erp),
            ColumnType::Float
        );
        assert_eq!(
            infer_type(texts(&["true", "false"]).iter(), &crm),
            ColumnType::Boolean
        );
        assert_eq!(
            infer_type(texts(&["01.02.2026"]).iter(), &erp),
            ColumnType::Date
        );
        assert_eq!(
            infer_type(texts(&["2026-01-01T10:00:00Z"]).iter(), &crm),
            ColumnType::Timestamp
        );
        assert_eq!(
            infer_type(texts(&["a", "1"]).iter(), &crm),
            ColumnType::String
        );
        assert_eq!(
            infer_type(texts(&["", ""]).iter(), &crm),
            ColumnType::String
        );
    }

    #[test]
    fn headers_normalize_to_snake_case() {
        assert_eq!(normalize_name("Betrag (EUR)"), "betrag_eur");
        assert_eq!(normalize_name("  AccountId "), "accountid");
        assert_eq!(normalize_name("Kunden-Nr."), "kunden_nr");
        assert_eq!(normalize_name("Straße"), "straße");
        assert_eq!(normalize_name("1st_seen"), "_1st_seen");
        assert_eq!(normalize_name("***"), "_");
    }

    #[test]
    fn table_schema_ends_with_lineage() {
        let schema = table_schema(&[Column {
            name: "amount".into(),
            column_type: ColumnType::Decimal(18, 2),
            required: true,
        }]);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["amount", SOURCE_FILE, SOURCE_ROW, INGEST_BATCH, INGESTED_AT]
        );
        assert_eq!(schema.field(0).data_type(), &DataType::Decimal128(18, 2));
        assert_eq!(
            column_type_of(schema.field(4).data_type()),
            Some(ColumnType::Timestamp)
        );
    }
}

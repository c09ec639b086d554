//! One field of an extract record before it is typed, and typing it.
//!
//! CSV fields are text; JSON fields keep what JSON knew (numbers, booleans, nested values).
//! [`Cell::to_value`] applies the dialect's parsers for the target column type and says
//! exactly what was wrong when it cannot.

use lakescore_engine::config::ColumnType;

use crate::dialect::Dialect;

/// A raw field.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Cell {
    /// Absent or JSON null.
    #[default]
    Null,
    /// Text, parsed with the dialect.
    Text(String),
    /// A JSON number, kept as written.
    Number(serde_json::Number),
    /// A JSON boolean.
    Bool(bool),
    /// A nested JSON object or array, as JSON text.
    Json(String),
}

/// A typed value ready for an Arrow builder.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null.
    Null,
    /// Text.
    Str(String),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Scaled decimal.
    Decimal(i128),
    /// Boolean.
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
}

impl Cell {
    /// True when the cell is null (absent, JSON null, or text spelling null).
    pub fn is_null(&self, dialect: &Dialect) -> bool {
        match self {
            Cell::Null => true,
            Cell::Text(text) => dialect.is_null(text),
            _ => false,
        }
    }

    /// True when the cell converts to `column_type`.
    pub fn fits(&self, column_type: ColumnType, dialect: &Dialect) -> bool {
        self.to_value(column_type, dialect).is_ok()
    }

    /// Converts the cell to `column_type`; the error says what the value is not.
    pub fn to_value(&self, column_type: ColumnType, dialect: &Dialect) -> Result<Value, String> {
        if let Cell::Text(text) = self {
            return type_text(text, column_type, dialect);
        }
        if self.is_null(dialect) {
            return Ok(Value::Null);
        }
        match (self, column_type) {
            (Cell::Json(t), ColumnType::String) => Ok(Value::Str(t.clone())),
            (Cell::Number(n), ColumnType::String) => Ok(Value::Str(n.to_string())),
            (Cell::Bool(b), ColumnType::String) => Ok(Value::Str(b.to_string())),
            (Cell::Number(n), ColumnType::Int) => n
                .as_i64()
                .map(Value::Int)
                .ok_or_else(|| format!("{n} is not an integer")),
            (Cell::Number(n), ColumnType::Float) => n
                .as_f64()
                .map(Value::Float)
                .ok_or_else(|| format!("{n} is not a number")),
            (Cell::Number(n), ColumnType::Decimal(p, s)) => Dialect::default_preset()
                .parse_decimal(&n.to_string(), p, s)
                .map(Value::Decimal),
            (Cell::Number(n), ColumnType::Boolean) => match n.as_i64() {
                Some(0) => Ok(Value::Bool(false)),
                Some(1) => Ok(Value::Bool(true)),
                _ => Err(format!("{n} is not a boolean")),
            },
            (Cell::Bool(b), ColumnType::Boolean) => Ok(Value::Bool(*b)),
            (cell, wanted) => Err(format!("{} is not of type {wanted}", cell.describe())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Cell::Null => String::from("null"),
            Cell::Text(t) | Cell::Json(t) => format!("'{t}'"),
            Cell::Number(n) => n.to_string(),
            Cell::Bool(b) => b.to_string(),
        }
    }

    /// The cell as it appeared, for quarantine's raw text.
    pub fn raw_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(t) | Cell::Json(t) => t.clone(),
            Cell::Number(n) => n.to_string(),
            Cell::Bool(b) => b.to_string(),
        }
    }
}

/// Types a text field as `column_type` with the dialect's spellings; the error says what
/// the text is not.
pub fn type_text(text: &str, column_type: ColumnType, dialect: &Dialect) -> Result<Value, String> {
    // A spelling of false wins over null for booleans: SAP writes false as "".
    if column_type == ColumnType::Boolean && dialect.false_values.iter().any(|f| f == text.trim()) {
        return Ok(Value::Bool(false));
    }
    if dialect.is_null(text) {
        return Ok(Value::Null);
    }
    match column_type {
        ColumnType::String => Ok(Value::Str(text.to_string())),
        ColumnType::Int => dialect.parse_int(text).map(Value::Int),
        ColumnType::Float => dialect.parse_float(text).map(Value::Float),
        ColumnType::Decimal(p, s) => dialect.parse_decimal(text, p, s).map(Value::Decimal),
        ColumnType::Boolean => dialect.parse_bool(text).map(Value::Bool),
        ColumnType::Date => dialect.parse_date(text).map(Value::Date),
        ColumnType::Timestamp => dialect.parse_timestamp(text).map(Value::Timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_keep_their_types() {
        let d = Dialect::default_preset();
        let n = |s: &str| Cell::Number(s.parse().unwrap());
        assert_eq!(n("42").to_value(ColumnType::Int, &d), Ok(Value::Int(42)));
        assert!(
            n("4.2")
                .to_value(ColumnType::Int, &d)
                .unwrap_err()
                .contains("not an integer")
        );
        assert_eq!(
            n("4.25").to_value(ColumnType::Decimal(10, 2), &d),
            Ok(Value::Decimal(425))
        );
        assert_eq!(
            Cell::Bool(true).to_value(ColumnType::String, &d),
            Ok(Value::Str("true".into()))
        );
        assert_eq!(
            Cell::Json("{\"a\":1}".into()).to_value(ColumnType::Int, &d),
            Err(String::from("'{\"a\":1}' is not of type int"))
        );
        assert_eq!(Cell::Null.to_value(ColumnType::Date, &d), Ok(Value::Null));
    }
}

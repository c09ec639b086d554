//! Data tests: checks a model's result must pass before it is committed.
//!
//! Each test is one `[[tests]]` entry in the model's config with exactly one kind key and
//! an optional `severity` (`"error"`, the default, or `"warn"`) and `name`:
//!
//! | kind | example | a row fails when |
//! |---|---|---|
//! | `not_null` | `not_null = ["id", "email"]` | any of the columns is NULL |
//! | `unique` | `unique = ["id"]` (several columns: unique together) | another row has the same non-NULL values |
//! | `accepted_values` | `accepted_values = { column = "tier", values = ["gold", "silver"] }` | the value is not NULL and not listed |
//! | `relationships` | `relationships = { column = "id", to = "raw.erp_customers", field = "customer_no" }` | the value is not NULL and `to` has no row with it in `field` |
//! | `range` | `range = { column = "amount", min = 0, max = 1e6 }` | the value is below `min` or above `max` |
//! | `expression` | `expression = "paid_at >= invoiced_at"` | the expression is false (NULL passes, as in SQL `CHECK`) |
//!
//! A test compiles to one query returning the failing rows of the relation under test.

use lakescore_engine::TableName;
use lakescore_engine::storage::lakehouse::{quote_identifier as quote, quote_literal};
use serde::Deserialize;
use toml::Value;

/// Column names: one, or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    /// One column.
    One(String),
    /// Several columns.
    Many(Vec<String>),
}

impl Columns {
    fn names(&self) -> Vec<String> {
        match self {
            Columns::One(name) => vec![name.clone()],
            Columns::Many(names) => names.clone(),
        }
    }
}

/// `accepted_values = { column, values }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedValues {
    /// The column.
    pub column: String,
    /// The values it may hold.
    pub values: Vec<Value>,
}

/// `relationships = { column, to, field }`: a foreign key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relationship {
    /// The column holding the reference.
    pub column: String,
    /// The referenced table, `schema.name`.
    pub to: String,
    /// The referenced column (default: the same name as `column`).
    pub field: Option<String>,
}

/// `range = { column, min, max }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The column.
    pub column: String,
    /// Smallest allowed value, inclusive.
    pub min: Option<Value>,
    /// Largest allowed value, inclusive.
    pub max: Option<Value>,
}

/// How a failing test is treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The model is not committed and the run fails.
    #[default]
    Error,
    /// The failure is recorded and printed; the model is committed.
    Warn,
}

impl Severity {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }
}

/// One `[[tests]]` entry as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// A name for reports (default: derived from the kind and columns).
    pub name: Option<String>,
    /// `"error"` (default) or `"warn"`.
    #[serde(default)]
    pub severity: Severity,
    /// Columns that must not be NULL.
    pub not_null: Option<Columns>,
    /// Columns whose values (together) must be unique.
    pub unique: Option<Columns>,
    /// A column and the values it may hold.
    pub accepted_values: Option<AcceptedValues>,
    /// A foreign key into another table.
    pub relationships: Option<Relationship>,
    /// A column's allowed range.
    pub range: Option<Range>,
    /// A SQL condition every row must meet.
    pub expression: Option<String>,
}

/// What a test checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// None of the columns is NULL.
    NotNull(Vec<String>),
    /// The columns' values are unique together.
    Unique(Vec<String>),
    /// The column holds only these values (SQL literals).
    AcceptedValues {
        /// The column.
        column: String,
        /// The values as SQL literals.
        values: Vec<String>,
    },
    /// Every value appears in `to.field`.
    Relationship {
        /// The column.
        column: String,
        /// The referenced table.
        to: TableName,
        /// The referenced column.
        field: String,
    },
    /// Values lie within `min..=max` (SQL literals).
    Range {
        /// The column.
        column: String,
        /// Lower bound.
        min: Option<String>,
        /// Upper bound.
        max: Option<String>,
    },
    /// The SQL condition holds.
    Expression(String),
}

/// A checked data test.
#[derive(Debug, Clone, PartialEq)]
pub struct DataTest {
    /// Its name in reports.
    pub name: String,
    /// What it checks.
    pub check: Check,
    /// How a failure is treated.
    pub severity: Severity,
}

impl TestSpec {
    /// Checks that exactly one kind is given and its values are usable.
    pub fn check(&self) -> Result<DataTest, String> {
        let mut kinds = Vec::new();
        if let Some(columns) = &self.not_null {
            kinds.push(Check::NotNull(non_empty(columns.names(), "not_null")?));
        }
        if let Some(columns) = &self.unique {
            kinds.push(Check::Unique(non_empty(columns.names(), "unique")?));
        }
        if let Some(accepted) = &self.accepted_values {
            let values = accepted
                .values
                .iter()
                .map(sql_literal)
                .collect::<Result<Vec<_>, _>>()?;
            if values.is_empty() {
                return Err(String::from("accepted_values needs at least one value"));
            }
            kinds.push(Check::AcceptedValues {
                column: accepted.column.clone(),
                values,
            });
        }
        if let Some(relationship) = &self.relationships {
            let to = TableName::parse(&relationship.to).map_err(|e| e.to_string())?;
            kinds.push(Check::Relationship {
                column: relationship.column.clone(),
                to,
                field: relationship
                    .field
                    .clone()
                    .unwrap_or_else(|| relationship.column.clone()),
            });
        }
        if let Some(range) = &self.range {
            if range.min.is_none() && range.max.is_none() {
                return Err(String::from("range needs min, max or both"));
            }
            kinds.push(Check::Range {
                column: range.column.clone(),
                min: range.min.as_ref().map(sql_literal).transpose()?,
                max: range.max.as_ref().map(sql_literal).transpose()?,
            });
        }
        if let Some(expression) = &self.expression {
            kinds.push(Check::Expression(expression.clone()));
        }
        let check = match kinds.len() {
            1 => kinds.remove(0),
            0 => {
                return Err(String::from(
                    "a test needs one of not_null, unique, accepted_values, relationships, range or expression",
                ));
            }
            _ => {
                return Err(String::from(
                    "a test has exactly one of not_null, unique, accepted_values, relationships, range or expression: write one [[tests]] entry per check",
                ));
            }
        };
        Ok(DataTest {
            name: self.name.clone().unwrap_or_else(|| check.default_name()),
            check,
            severity: self.severity,
        })
    }
}

fn non_empty(columns: Vec<String>, kind: &str) -> Result<Vec<String>, String> {
    if columns.is_empty() {
        Err(format!("{kind} needs at least one column"))
    } else {
        Ok(columns)
    }
}

/// A TOML value as a SQL literal.
fn sql_literal(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(quote_literal(text)),
        Value::Integer(number) => Ok(number.to_string()),
        Value::Float(number) => Ok(number.to_string()),
        Value::Boolean(flag) => Ok(flag.to_string()),
        Value::Datetime(datetime) => {
            let text = datetime.to_string();
            if datetime.time.is_none() {
                Ok(format!("DATE '{text}'"))
            } else {
                Ok(format!("TIMESTAMP '{text}'"))
            }
        }
        other => Err(format!(
            "{other} cannot be compared with a column: use a string, number, boolean or date"
        )),
    }
}

impl Check {
    /// The kind's name, as in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::NotNull(_) => "not_null",
            Check::Unique(_) => "unique",
            Check::AcceptedValues { .. } => "accepted_values",
            Check::Relationship { .. } => "relationships",
            Check::Range { .. } => "range",
            Check::Expression(_) => "expression",
        }
    }

    fn default_name(&self) -> String {
        match self {
            Check::NotNull(columns) | Check::Unique(columns) => {
                format!("{}({})", self.kind(), columns.join(", "))
            }
            Check::AcceptedValues { column, .. } | Check::Range { column, .. } => {
                format!("{}({column})", self.kind())
            }
            Check::Relationship { column, to, field } => {
                format!("relationships({column} -> {to}.{field})")
            }
            Check::Expression(expression) => format!("expression({expression})"),
        }
    }

    /// Tables besides the model's own that the test reads.
    pub fn tables_read(&self) -> Option<&TableName> {
        match self {
            Check::Relationship { to, .. } => Some(to),
            _ => None,
        }
    }

    /// A query returning the rows of `relation` that fail the test (for `unique`: one row
    /// per duplicated value, with its number of rows in `occurrences`).
    pub fn failing_rows_sql(&self, relation: &str) -> String {
        match self {
            Check::NotNull(columns) => format!(
                "SELECT * FROM {relation} WHERE {}",
                columns
                    .iter()
                    .map(|c| format!("{} IS NULL", quote(c)))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            Check::Unique(columns) => {
                let list = columns
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", ");
                let present = columns
                    .iter()
                    .map(|c| format!("{} IS NOT NULL", quote(c)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                format!(
                    "SELECT {list}, count(*) AS occurrences FROM {relation} WHERE {present} \
                     GROUP BY {list} HAVING count(*) > 1"
                )
            }
            Check::AcceptedValues { column, values } => format!(
                "SELECT * FROM {relation} WHERE {0} IS NOT NULL AND {0} NOT IN ({1})",
                quote(column),
                values.join(", ")
            ),
            Check::Relationship { column, to, field } => format!(
                "SELECT * FROM {relation} AS tested WHERE tested.{0} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {1} AS referenced WHERE referenced.{2} = tested.{0})",
                quote(column),
                to.quoted(),
                quote(field)
            ),
            Check::Range { column, min, max } => {
                let bounds: Vec<String> = [
                    min.as_ref().map(|m| format!("{} < {m}", quote(column))),
                    max.as_ref().map(|m| format!("{} > {m}", quote(column))),
                ]
                .into_iter()
                .flatten()
                .collect();
                format!("SELECT * FROM {relation} WHERE {}", bounds.join(" OR "))
            }
            Check::Expression(expression) => {
                format!("SELECT * FROM {relation} WHERE NOT ({expression})")
            }
        }
    }

    /// A query counting the rows that fail, given the failing-rows query.
    pub fn count_sql(&self, failing: &str) -> String {
        match self {
            Check::Unique(_) => {
                format!("SELECT CAST(coalesce(sum(occurrences), 0) AS BIGINT) FROM ({failing})")
            }
            _ => format!("SELECT count(*) FROM ({failing})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<DataTest, String> {
        toml::from_str::<TestSpec>(text)
            .map_err(|e| e.to_string())?
            .check()
    }

    #[test]
    fn one_kind_per_test() -> Result<(), String> {
        let test = spec("unique = [\"a\", \"b\"]\nseverity = \"warn\"")?;
        assert_eq!(test.check, Check::Unique(vec!["a".into(), "b".into()]));
        assert_eq!(test.name, "unique(a, b)");
        assert_eq!(test.severity, Severity::Warn);
        assert!(spec("").unwrap_err().contains("needs one of"));
        assert!(
            spec("not_null = \"a\"\nunique = \"a\"")
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(
            spec("range = { column = \"a\" }")
                .unwrap_err()
                .contains("min, max or both")
        );
        Ok(())
    }

    #[test]
    fn literals_and_queries() -> Result<(), String> {
        let test =
            spec("accepted_values = { column = \"tier\", values = [\"o'k\", 2, 1979-05-27] }")?;
        assert_eq!(
            test.check.failing_rows_sql("r"),
            "SELECT * FROM r WHERE \"tier\" IS NOT NULL AND \"tier\" NOT IN ('o''k', 2, DATE '1979-05-27')"
        );
        let test = spec("relationships = { column = \"id\", to = \"raw.accounts\" }")?;
        assert!(test.check.failing_rows_sql("r").contains(
            "FROM \"raw\".\"accounts\" AS referenced WHERE referenced.\"id\" = tested.\"id\""
        ));
        assert_eq!(
            test.check.tables_read().map(ToString::to_string),
            Some("raw.accounts".into())
        );
        let test = spec("range = { column = \"amount\", min = 0 }")?;
        assert_eq!(
            test.check.failing_rows_sql("r"),
            "SELECT * FROM r WHERE \"amount\" < 0"
        );
        Ok(())
    }
}

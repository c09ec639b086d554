//! `[[source]]` entries of the project file: where extracts come from, how they are
//! written, and which table they land in.
//!
//! Only the shape of the settings lives here; what a dialect preset means and how values
//! are parsed is the connectors crate's business.

use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::EnvString;

/// One `[[source]]`: a set of extract files landing in one table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name, used by `lakescore ingest NAME` and in lineage.
    pub name: String,
    /// A local path or glob (relative to the project folder), or an object store URI glob
    /// such as `s3://bucket/exports/crm/accounts_*.csv`.
    pub path: EnvString,
    /// The file format.
    pub format: SourceFormat,
    /// The target table, `schema.name`.
    pub table: String,
    /// How a batch is written into the table.
    #[serde(default)]
    pub mode: LandingMode,
    /// Key columns for `mode = "merge"`.
    #[serde(default)]
    pub key: Vec<String>,
    /// Declared columns, in order; without them the schema is inferred from the first file.
    #[serde(default)]
    pub schema: IndexMap<String, ColumnSpec>,
    /// A dialect preset name, or a table of dialect options (with an optional `preset`).
    #[serde(default, deserialize_with = "string_or_table")]
    pub dialect: DialectSettings,
    /// How many bad rows a file may have before the whole batch is rejected.
    #[serde(default)]
    pub max_bad_rows: BadRowLimit,
}

/// Extract file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// Delimited text.
    Csv,
    /// JSON lines, or one JSON array of objects.
    Json,
    /// Apache Parquet.
    Parquet,
}

/// How a batch of extracts is written into its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LandingMode {
    /// Add the rows.
    #[default]
    Append,
    /// Replace the table's rows with the batch.
    Overwrite,
    /// Upsert on `key`: the newest extract wins.
    Merge,
}

/// The column types a source can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Text.
    String,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// Exact decimal with precision and scale.
    Decimal(u8, i8),
    /// true / false.
    Boolean,
    /// Calendar date.
    Date,
    /// Instant, stored in UTC with microsecond precision.
    Timestamp,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::Float => f.write_str("float"),
            ColumnType::Decimal(p, s) => write!(f, "decimal({p},{s})"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
        }
    }
}

impl FromStr for ColumnType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let simple = match lower.as_str() {
            "string" | "text" | "varchar" => Some(ColumnType::String),
            "int" | "integer" | "bigint" | "long" => Some(ColumnType::Int),
            "float" | "double" => Some(ColumnType::Float),
            "bool" | "boolean" => Some(ColumnType::Boolean),
            "date" => Some(ColumnType::Date),
            "timestamp" | "timestamptz" => Some(ColumnType::Timestamp),
            _ => None,
        };
        if let Some(simple) = simple {
            return Ok(simple);
        }
        let decimal = lower
            .strip_prefix("decimal(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|args| args.split_once(','))
            .and_then(|(p, s)| Some((p.trim().parse::<u8>().ok()?, s.trim().parse::<i8>().ok()?)))
            .filter(|(p, s)| (1..=38).contains(p) && *s >= 0 && (*s as u8) <= *p);
        decimal.map(|(p, s)| ColumnType::Decimal(p, s)).ok_or_else(|| {
            format!(
                "unknown column type '{text}': use string, int, float, decimal(P,S), boolean, date or timestamp"
            )
        })
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A declared column: `name = "type"` or `name = { type = "...", required = true }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpec {
    /// The column's type.
    pub column_type: ColumnType,
    /// A file without this column is rejected, and a row without a value is quarantined.
    pub required: bool,
}

/// The table form of a column declaration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnTable {
    #[serde(rename = "type")]
    column_type: ColumnType,
    #[serde(default)]
    required: bool,
}

impl FromStr for ColumnTable {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self {
            column_type: text.parse()?,
            required: false,
        })
    }
}

impl<'de> Deserialize<'de> for ColumnSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table: ColumnTable = string_or_table(deserializer)?;
        Ok(Self {
            column_type: table.column_type,
            required: table.required,
        })
    }
}

/// Dialect settings: a preset name (`dialect = "erp"`) or a table of options
/// (`[source.dialect]` with `preset = "erp"` and overrides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialectSettings {
    /// A named bundle of options (`crm`, `erp`) that the other options override.
    pub preset: Option<String>,
    /// Field delimiter, e.g. `","`, `";"`, `"\t"`.
    pub delimiter: Option<char>,
    /// Quote character.
    pub quote: Option<char>,
    /// Escape character inside quoted fields (default: doubled quotes).
    pub escape: Option<char>,
    /// Whether the first row (after skipped rows) holds column names.
    pub header: Option<bool>,
    /// Lines to skip before the header.
    pub skip_rows: Option<usize>,
    /// Skip leading lines that hold no delimiter (report titles before the header).
    pub skip_preamble: Option<bool>,
    /// `utf-8`, `windows-1252` or `latin-1`.
    pub encoding: Option<String>,
    /// Decimal separator for numbers, e.g. `","`.
    pub decimal_separator: Option<char>,
    /// Thousands separator for numbers, e.g. `"."`.
    pub thousands_separator: Option<char>,
    /// Numbers may carry their minus sign at the end (`100,00-`).
    pub trailing_minus: Option<bool>,
    /// Date formats (strftime), tried in order.
    pub date_formats: Option<Vec<String>>,
    /// Timestamp formats (strftime), tried in order.
    pub timestamp_formats: Option<Vec<String>>,
    /// Spellings of true.
    pub true_values: Option<Vec<String>>,
    /// Spellings of false.
    pub false_values: Option<Vec<String>>,
    /// Spellings of null.
    pub null_values: Option<Vec<String>>,
    /// Time zone of timestamps written without one, e.g. `Europe/Berlin` (default UTC).
    pub timezone: Option<String>,
}

impl FromStr for DialectSettings {
    type Err = String;

    fn from_str(preset: &str) -> Result<Self, Self::Err> {
        Ok(Self {
            preset: Some(preset.to_string()),
            ..Self::default()
        })
    }
}

/// The bad-row limit: a count (`max_bad_rows = 100`) or a share of a file's rows
/// (`max_bad_rows = "5%"`). The default is 10%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BadRowLimit {
    /// At most this many bad rows per file.
    Count(u64),
    /// At most this fraction (0 to 1) of a file's rows.
    Ratio(f64),
}

impl Default for BadRowLimit {
    fn default() -> Self {
        BadRowLimit::Ratio(0.1)
    }
}

impl fmt::Display for BadRowLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRowLimit::Count(n) => write!(f, "{n}"),
            BadRowLimit::Ratio(r) => write!(f, "{}%", r * 100.0),
        }
    }
}

impl<'de> Deserialize<'de> for BadRowLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        impl Visitor<'_> for LimitVisitor {
            type Value = BadRowLimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row count such as 100 or a percentage such as \"5%\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BadRowLimit, E> {
                u64::try_from(v)
                    .map(BadRowLimit::Count)
                    .map_err(|_| E::custom("max_bad_rows cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BadRowLimit, E> {
                v.trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .map(|p| BadRowLimit::Ratio(p / 100.0))
                    .ok_or_else(|| E::custom(format!("'{v}' is not a percentage such as \"5%\"")))
            }
        }
        deserializer.deserialize_any(LimitVisitor)
    }
}

/// Deserializes either a plain string (through `FromStr`) or a table.
fn string_or_table<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: Deserialize<'de> + FromStr<Err = String>,
    D: Deserializer<'de>,
{
    struct StringOrTable<T>(std::marker::PhantomData<T>);
    impl<'de, T> Visitor<'de> for StringOrTable<T>
    where
        T: Deserialize<'de> + FromStr<Err = String>,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a table")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_any(StringOrTable(std::marker::PhantomData))
}

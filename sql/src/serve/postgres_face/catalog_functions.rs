//! The `pg_catalog` functions clients call on connect and in their catalog queries that
//! datafusion-pg-catalog does not provide, with PostgreSQL's answers for a lakehouse:
//! tables have no sequences, indexes or per-table storage size PostgreSQL would report,
//! every function is visible, and type names resolve to PostgreSQL's type oids.
//!
//! - `to_regtype(name)`: psycopg 3 (and so SQLAlchemy's `postgresql+psycopg`) looks up
//!   types such as `hstore` on connect; unknown names give NULL, as in PostgreSQL.
//! - `pg_get_serial_sequence(table, column)`: SQLAlchemy's column reflection; NULL.
//! - `pg_size_pretty(bytes)`: psql's `\dt+` and `\l+`, in PostgreSQL's units and rounding.
//! - `pg_table_size(oid)`, `pg_indexes_size(oid)`: NULL (not known per table here).
//! - `pg_function_is_visible(oid)` (psql's `\df`), `pg_type_is_visible`,
//!   `pg_collation_is_visible` (SQLAlchemy's columns), `pg_opclass_is_visible`,
//!   `pg_conversion_is_visible`: true, as everything is on the search path.
//! - `pg_get_function_result(oid)`, `pg_get_function_arguments(oid)`,
//!   `pg_get_indexdef(oid, column, pretty)`: NULL.
//! - `like_escape(pattern, escape)`: PostgreSQL's own, which turns a pattern with another
//!   escape character into one with backslashes; [`super::rewrites`] uses it for
//!   `LIKE ... ESCAPE`.

use std::sync::Arc;

use datafusion_postgres::pgwire::api::Type;
use lakescore_engine::datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, StringArray, new_null_array,
};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Int64Type};
use lakescore_engine::datafusion::error::{DataFusionError, Result as DfResult};
use lakescore_engine::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use lakescore_engine::datafusion::prelude::SessionContext;

use super::shaped_like;

/// Registers the functions on `context`.
pub fn register(context: &SessionContext) {
    let text = DataType::Utf8;
    let oid = DataType::Int32;
    // Integers as the widest type, so that both oids and bound parameters fit.
    let number = DataType::Int64;
    for (name, arguments, returns) in [
        (
            "pg_get_serial_sequence",
            vec![text.clone(), text.clone()],
            text.clone(),
        ),
        ("pg_table_size", vec![number.clone()], DataType::Int64),
        ("pg_indexes_size", vec![number.clone()], DataType::Int64),
        ("pg_get_function_result", vec![number.clone()], text.clone()),
        (
            "pg_get_function_arguments",
            vec![number.clone()],
            text.clone(),
        ),
        (
            "pg_get_indexdef",
            vec![number.clone(), number.clone(), DataType::Boolean],
            text.clone(),
        ),
    ] {
        register_null(context, name, arguments, returns);
    }
    for name in [
        "pg_function_is_visible",
        "pg_type_is_visible",
        "pg_collation_is_visible",
        "pg_opclass_is_visible",
        "pg_conversion_is_visible",
    ] {
        context.register_udf(create_udf(
            name,
            vec![number.clone()],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let oids = args[0].to_array(1)?;
                let visible: BooleanArray = (0..oids.len())
                    .map(|row| oids.is_valid(row).then_some(true))
                    .collect();
                shaped_like(args, Arc::new(visible))
            }),
        ));
    }
    context.register_udf(create_udf(
        "to_regtype",
        vec![text.clone()],
        oid,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = args[0].to_array(1)?;
            let names = names.as_string::<i32>();
            let oids: Int32Array = names.iter().map(|n| n.and_then(type_oid)).collect();
            shaped_like(args, Arc::new(oids))
        }),
    ));
    context.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        text.clone(),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = args[0].to_array(1)?;
            let pretty: StringArray = sizes
                .as_primitive::<Int64Type>()
                .iter()
                .map(|size| size.map(size_pretty))
                .collect();
            shaped_like(args, Arc::new(pretty))
        }),
    ));
    context.register_udf(create_udf(
        "like_escape",
        vec![text.clone(), text.clone()],
        text,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Array(array) => array.len(),
                    ColumnarValue::Scalar(_) => 1,
                })
                .max()
                .unwrap_or(1);
            let patterns = args[0].to_array(rows)?;
            let escapes = args[1].to_array(rows)?;
            let converted = patterns
                .as_string::<i32>()
                .iter()
                .zip(escapes.as_string::<i32>().iter())
                .map(|(pattern, escape)| match (pattern, escape) {
                    (Some(pattern), Some(escape)) => like_escape(pattern, escape).map(Some),
                    _ => Ok(None),
                })
                .collect::<DfResult<StringArray>>()?;
            shaped_like(args, Arc::new(converted))
        }),
    ));
}

/// Registers `name(arguments)`, which answers NULL of type `returns`.
fn register_null(
    context: &SessionContext,
    name: &str,
    arguments: Vec<DataType>,
    returns: DataType,
) {
    let null_of = returns.clone();
    context.register_udf(create_udf(
        name,
        arguments,
        returns,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = args.iter().find_map(|a| match a {
                ColumnarValue::Array(array) => Some(array.len()),
                ColumnarValue::Scalar(_) => None,
            });
            Ok(match rows {
                Some(rows) => ColumnarValue::Array(new_null_array(&null_of, rows)),
                None => ColumnarValue::Scalar(null_of.clone().try_into()?),
            })
        }),
    ));
}

/// The oid of the PostgreSQL type `name` (as `to_regtype` reads it: `int4`, `integer`,
/// `text[]`, `pg_catalog.int8`, ...), or None for a type the server does not know.
fn type_oid(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let (base, array) = match name.strip_suffix("[]") {
        Some(base) => (base.trim_end(), true),
        None => (name, false),
    };
    let canonical = match base {
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "real" => "float4",
        "double precision" => "float8",
        "boolean" => "bool",
        "decimal" => "numeric",
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        other => other,
    };
    KNOWN_TYPES
        .iter()
        .find(|(scalar, array_type)| scalar.name() == canonical || array_type.name() == canonical)
        .map(|(scalar, array_type)| {
            let found = if array || array_type.name() == canonical {
                array_type
            } else {
                scalar
            };
            found.oid() as i32
        })
}

/// The types lakescore's columns are served as, and those clients look up, with their
/// array types.
const KNOWN_TYPES: [(Type, Type); 20] = [
    (Type::BOOL, Type::BOOL_ARRAY),
    (Type::INT2, Type::INT2_ARRAY),
    (Type::INT4, Type::INT4_ARRAY),
    (Type::INT8, Type::INT8_ARRAY),
    (Type::FLOAT4, Type::FLOAT4_ARRAY),
    (Type::FLOAT8, Type::FLOAT8_ARRAY),
    (Type::NUMERIC, Type::NUMERIC_ARRAY),
    (Type::TEXT, Type::TEXT_ARRAY),
    (Type::VARCHAR, Type::VARCHAR_ARRAY),
    (Type::BPCHAR, Type::BPCHAR_ARRAY),
    (Type::NAME, Type::NAME_ARRAY),
    (Type::BYTEA, Type::BYTEA_ARRAY),
    (Type::DATE, Type::DATE_ARRAY),
    (Type::TIME, Type::TIME_ARRAY),
    (Type::TIMESTAMP, Type::TIMESTAMP_ARRAY),
    (Type::TIMESTAMPTZ, Type::TIMESTAMPTZ_ARRAY),
    (Type::INTERVAL, Type::INTERVAL_ARRAY),
    (Type::JSON, Type::JSON_ARRAY),
    (Type::JSONB, Type::JSONB_ARRAY),
    (Type::UUID, Type::UUID_ARRAY),
];

/// `bytes` as PostgreSQL's `pg_size_pretty` writes it: whole bytes below 10 kB, then the
/// largest unit that keeps the number below 20,480, rounded half away from zero.
fn size_pretty(bytes: i64) -> String {
    // (unit, limit below which it is used, whether it is rounded, its power of two)
    const UNITS: [(&str, i64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let half_rounded = |size: i64| (size + if size < 0 { -1 } else { 1 }) / 2;
    let mut size = bytes;
    for (index, (unit, limit, rounded, power)) in UNITS.iter().enumerate() {
        let Some((_, _, next_rounded, next_power)) = UNITS.get(index + 1) else {
            return format!(
                "{} {unit}",
                if *rounded { half_rounded(size) } else { size }
            );
        };
        if size.unsigned_abs() < limit.unsigned_abs() {
            return format!(
                "{} {unit}",
                if *rounded { half_rounded(size) } else { size }
            );
        }
        // One bit more is kept when the next unit is rounded.
        let bits = next_power - power - u32::from(*next_rounded) + u32::from(*rounded);
        size /= 1_i64 << bits;
    }
    unreachable!("the last unit always answers")
}

/// PostgreSQL's `like_escape`: `pattern`, written with `escape` as its escape character
/// (none when empty), rewritten with backslash as the escape character.
fn like_escape(pattern: &str, escape: &str) -> DfResult<String> {
    let mut escapes = escape.chars();
    let escape = escapes.next();
    if escapes.next().is_some() {
        return Err(DataFusionError::Execution(format!(
            "invalid escape string {escape:?}: an escape string must be empty or one character"
        )));
    }
    let mut converted = String::with_capacity(pattern.len() + 2);
    let mut characters = pattern.chars();
    while let Some(character) = characters.next() {
        if Some(character) == escape {
            let Some(escaped) = characters.next() else {
                return Err(DataFusionError::Execution(format!(
                    "LIKE pattern {pattern:?} must not end with the escape character"
                )));
            };
            converted.push('\\');
            converted.push(escaped);
        } else if character == '\\' {
            converted.push_str("\\\\");
        } else {
            converted.push(character);
        }
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_postgresql_prints_them() {
        for (bytes, expected) in [
            (0, "0 bytes"),
            (10_239, "10239 bytes"),
            (10_240, "10 kB"),
            (1_000_000, "977 kB"),
            (20_970_000, "20 MB"),
            (123_456_789_012, "115 GB"),
            (-10_240, "-10 kB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(size_pretty(bytes), expected, "{bytes}");
        }
    }

    #[test]
    fn like_patterns_with_any_escape_character_become_backslash_patterns() {
        assert_eq!(like_escape("pg/_%", "/").unwrap(), "pg\\_%");
        assert_eq!(like_escape("a\\b//c", "/").unwrap(), "a\\\\b\\/c");
        assert_eq!(like_escape("a\\_b", "").unwrap(), "a\\\\_b");
        assert_eq!(like_escape("a\\_b", "\\").unwrap(), "a\\_b");
        assert!(
            like_escape("ab/", "/")
                .unwrap_err()
                .to_string()
                .contains("must not end with the escape character")
        );
        assert!(
            like_escape("ab", "//")
                .unwrap_err()
                .to_string()
                .contains("empty or one character")
        );
    }

    #[test]
    fn type_names_resolve_to_postgresql_oids() {
        assert_eq!(type_oid("int4"), Some(23));
        assert_eq!(type_oid("integer"), Some(23));
        assert_eq!(type_oid("pg_catalog.text"), Some(25));
        assert_eq!(type_oid("text[]"), Some(1009));
        assert_eq!(type_oid("_int8"), Some(1016));
        assert_eq!(type_oid("Timestamp With Time Zone"), Some(1184));
        assert_eq!(type_oid("hstore"), None);
    }
}

//! `information_schema.columns` with PostgreSQL's type names: DataFusion's view says
//! `Utf8View`, `Float64` and `Timestamp(Microsecond, Some("UTC"))`, which BI tools that read
//! column types from it (and analysts) do not know. Catalog queries read it through a
//! subquery whose `data_type` is PostgreSQL's name for the type the server sends the
//! column as (`text`, `double precision`, `timestamp with time zone`, `json`, ...), with
//! `udt_name` (`text`, `float8`, `timestamptz`, ...) as PostgreSQL has it.

use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;

use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use datafusion_postgres::datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule;
use datafusion_postgres::pgwire::api::Type;
use lakescore_engine::datafusion::arrow::array::{AsArray, StringArray};
use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::scalar::ScalarValue;
use lakescore_engine::datafusion::sql::sqlparser::ast::{
    Ident, Statement, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use lakescore_engine::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use lakescore_engine::datafusion::sql::sqlparser::parser::Parser;

use super::json::holds_struct;
use super::shaped_like;

/// Registers `pg_data_type(arrow_type, udt)` on `context`: PostgreSQL's name of the type
/// a column of `arrow_type` is sent as (`udt` true for the short name).
pub fn register(context: &SessionContext) {
    context.register_udf(create_udf(
        "pg_data_type",
        vec![DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let short = matches!(
                &args[1],
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))
            );
            let rows = match &args[0] {
                ColumnarValue::Array(array) => array.len(),
                ColumnarValue::Scalar(_) => 1,
            };
            let types = args[0].to_array(rows)?;
            let names: StringArray = types
                .as_string::<i32>()
                .iter()
                .map(|arrow| arrow.map(|arrow| postgres_type_name(arrow, short)))
                .collect();
            shaped_like(args, Arc::new(names))
        }),
    ));
}

/// PostgreSQL's name of the type a column of `arrow` (DataFusion's text of an Arrow type)
/// is sent as: the SQL name, or with `short` the catalog's (`udt_name`).
fn postgres_type_name(arrow: &str, short: bool) -> String {
    let Ok(data_type) = DataType::from_str(arrow) else {
        return arrow.to_string();
    };
    let pg_type = if holds_struct(&data_type) {
        Type::JSON
    } else {
        into_pg_type(&data_type).unwrap_or(Type::TEXT)
    };
    if short {
        return pg_type.name().to_string();
    }
    let name = match pg_type.name() {
        "bool" => "boolean",
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "varchar" => "character varying",
        "bpchar" => "character",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        name if name.starts_with('_') => "ARRAY",
        name => name,
    };
    name.to_string()
}

/// The columns of DataFusion's `information_schema.columns`, in order.
const COLUMNS: [&str; 15] = [
    "table_catalog",
    "table_schema",
    "table_name",
    "column_name",
    "ordinal_position",
    "column_default",
    "is_nullable",
    "data_type",
    "character_maximum_length",
    "character_octet_length",
    "numeric_precision",
    "numeric_precision_radix",
    "numeric_scale",
    "datetime_precision",
    "interval_type",
];

/// `information_schema.columns`, read through a subquery with PostgreSQL's type names.
#[derive(Debug)]
pub struct ColumnsWithPostgresTypes;

impl SqlStatementRewriteRule for ColumnsWithPostgresTypes {
    fn rewrite(&self, mut statement: Statement) -> Statement {
        let _ = VisitMut::visit(&mut statement, &mut Columns);
        statement
    }
}

struct Columns;

impl VisitorMut for Columns {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string().to_lowercase())
            .collect();
        if !matches!(parts.as_slice(), [schema, table] if schema == "information_schema" && table == "columns")
        {
            return ControlFlow::Continue(());
        }
        let projection: Vec<String> = COLUMNS
            .iter()
            .map(|column| match *column {
                "data_type" => String::from(
                    "pg_data_type(data_type, false) AS data_type, pg_data_type(data_type, true) AS udt_name",
                ),
                other => other.to_string(),
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM information_schema.columns",
            projection.join(", ")
        );
        let Ok(subquery) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&sql)
            .and_then(|mut parser| parser.parse_query())
        else {
            return ControlFlow::Continue(());
        };
        let alias = alias.clone().unwrap_or(TableAlias {
            explicit: true,
            name: Ident::new("columns"),
            columns: vec![],
            at: None,
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_read_as_postgresql_names() {
        for (arrow, name, udt) in [
            ("Utf8View", "text", "text"),
            ("Float64", "double precision", "float8"),
            ("Int64", "bigint", "int8"),
            ("Boolean", "boolean", "bool"),
            (
                "Timestamp(µs, \"UTC\")",
                "timestamp with time zone",
                "timestamptz",
            ),
            ("Date32", "date", "date"),
            (
                "List(Struct(\"feature\": Utf8View, \"contribution\": Float64))",
                "json",
                "json",
            ),
            ("List(Int64)", "ARRAY", "_int8"),
        ] {
            assert_eq!(postgres_type_name(arrow, false), name, "{arrow}");
            assert_eq!(postgres_type_name(arrow, true), udt, "{arrow}");
        }
    }
}

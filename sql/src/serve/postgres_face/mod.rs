//! What PostgreSQL clients count on from a server beyond the wire protocol itself, so
//! that SQLAlchemy, pandas, psycopg, psql's meta-commands and BI tools' catalog queries
//! work unchanged: `version()` in PostgreSQL's form ([`version`]), savepoints as no-ops
//! ([`savepoints`]), the `pg_catalog` functions they call ([`catalog_functions`]),
//! `pg_catalog`'s tables with the columns and types clients expect ([`catalog_tables`]),
//! `information_schema.columns` with PostgreSQL's type names ([`information_schema`]),
//! the connection's settings ([`settings`]) and search path ([`search_path`]), JSON ([`json`]), which
//! form of a statement is planned ([`statements`]) and `to_char` with PostgreSQL's patterns
//! ([`to_char`]), table and column descriptions ([`descriptions`]) and PostgreSQL
//! syntax DataFusion does not plan rewritten into forms it does ([`rewrites`]).
//!
//! The general parts follow datafusion-pg-catalog's shapes (scalar functions registered
//! on the session, `SqlStatementRewriteRule`s), so they could move there unchanged.

pub mod catalog_functions;
pub mod catalog_tables;
pub mod descriptions;
pub mod information_schema;
pub mod json;
pub mod rewrites;
pub mod savepoints;
pub mod search_path;
pub mod settings;
pub mod statements;
pub mod to_char;
pub mod version;

use std::sync::Arc;

use lakescore_engine::datafusion::arrow::array::ArrayRef;
use lakescore_engine::datafusion::common::DFSchema;
use lakescore_engine::datafusion::logical_expr::{ColumnarValue, EmptyRelation, LogicalPlan};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::scalar::ScalarValue;

pub use self::savepoints::SavepointHook;

/// Registers the functions clients call on `context`, after datafusion-pg-catalog's
/// (some replace its own).
pub fn register(context: &SessionContext) {
    version::register(context);
    catalog_functions::register(context);
    json::register(context);
    information_schema::register(context);
    to_char::register(context);
}

/// `result` (one value per row) as a function's answer: a scalar when every argument was
/// one, as a function of constants is, else the array.
pub(crate) fn shaped_like(
    args: &[ColumnarValue],
    result: ArrayRef,
) -> lakescore_engine::datafusion::error::Result<ColumnarValue> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?));
    }
    Ok(ColumnarValue::Array(result))
}

/// The plan of a statement answered when it is executed, which describes no rows
/// (savepoints, `COPY`, cursor statements).
pub fn answered_when_executed() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::empty()),
    })
}

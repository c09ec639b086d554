//! Time travel in SQL: the `table_at(table, version_or_timestamp)` table function.
//!
//! ```sql
//! SELECT * FROM table_at('raw.crm_accounts', 3);
//! SELECT * FROM table_at('raw.crm_accounts', TIMESTAMP '2026-01-01 00:00:00');
//! SELECT * FROM table_at('raw.crm_accounts', '2026-01-01T00:00:00+02:00');
//! ```
//!
//! A timestamp picks the newest version committed at or before it; timestamps without a
//! zone are UTC. DataFusion plans table functions synchronously while opening a Delta
//! version reads storage, so the session resolves every `table_at` call in a statement
//! before planning it ([`TimeTravel::resolve`]) and the function then hands out the
//! opened versions.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_datafusion_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    self as sql, FunctionArg, FunctionArgExpr, TableFactor, Visit, Visitor,
};

use crate::error::{Error, Result};
use crate::sql::cluster::TableReads;
use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion};

/// The SQL name of the time-travel table function.
pub const TABLE_AT: &str = "table_at";

/// One `table_at` call: which table, at which version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pin {
    table: TableName,
    version: TableVersion,
}

/// The `table_at` table function and the table versions resolved for it.
#[derive(Debug, Default)]
pub struct TimeTravel {
    resolved: Mutex<HashMap<Pin, Arc<dyn TableProvider>>>,
    reads: TableReads,
}

impl TimeTravel {
    /// The function of a session that reads tables as `reads` says.
    pub fn new(reads: TableReads) -> Self {
        Self {
            resolved: Mutex::default(),
            reads,
        }
    }

    /// Opens every table version that `statement` asks for with `table_at`, so planning
    /// can hand them out.
    pub async fn resolve(&self, lakehouse: &Lakehouse, statement: &DfStatement) -> Result<()> {
        for pin in pins_in(statement)? {
            if self.lookup(&pin).is_some() {
                continue;
            }
            let table = lakehouse.open_table(&pin.table, pin.version).await?;
            let provider = self.reads.provider(&table).await?;
            let mut resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            resolved.insert(pin, provider);
        }
        Ok(())
    }

    fn lookup(&self, pin: &Pin) -> Option<Arc<dyn TableProvider>> {
        let resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        resolved.get(pin).cloned()
    }
}

impl TableFunctionImpl for TimeTravel {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let pin = pin_from_exprs(args.exprs())?;
        self.lookup(&pin).ok_or_else(|| {
            plan_datafusion_err!(
                "{TABLE_AT}('{}', ...) was not resolved before planning: its arguments must be literals",
                pin.table
            )
        })
    }
}

const USAGE: &str = "use table_at('schema.table', VERSION) or table_at('schema.table', TIMESTAMP '2026-01-01 00:00:00')";

/// Reads a pin from the planned arguments of a `table_at` call.
fn pin_from_exprs(exprs: &[Expr]) -> DfResult<Pin> {
    let [table, at] = exprs else {
        return plan_err!("{TABLE_AT} takes two arguments: {USAGE}");
    };
    let table = match literal(table) {
        Some(ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t))) => t,
        _ => {
            return plan_err!(
                "{TABLE_AT}: the first argument must be a table name string: {USAGE}"
            );
        }
    };
    let table = TableName::parse(&table).map_err(|e| plan_datafusion_err!("{e}"))?;
    let version = match at {
        Expr::Cast(cast) => literal(&cast.expr).and_then(|v| scalar_version(&v)),
        other => literal(other).and_then(|v| scalar_version(&v)),
    };
    let version = version.ok_or_else(|| {
        plan_datafusion_err!(
            "{TABLE_AT}: the second argument must be a version number or a timestamp: {USAGE}"
        )
    })??;
    Ok(Pin { table, version })
}

fn literal(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value.clone()),
        _ => None,
    }
}

fn scalar_version(value: &ScalarValue) -> Option<DfResult<TableVersion>> {
    let version = |v: i128| {
        u64::try_from(v)
            .map(TableVersion::Version)
            .map_err(|_| plan_datafusion_err!("{TABLE_AT}: version {v} is negative"))
    };
    let micros = |us: i64| {
        DateTime::from_timestamp_micros(us)
            .map(TableVersion::AsOf)
            .ok_or_else(|| plan_datafusion_err!("{TABLE_AT}: timestamp out of range"))
    };
    Some(match value {
        ScalarValue::Int8(Some(v)) => version(i128::from(*v)),
        ScalarValue::Int16(Some(v)) => version(i128::from(*v)),
        ScalarValue::Int32(Some(v)) => version(i128::from(*v)),
        ScalarValue::Int64(Some(v)) => version(i128::from(*v)),
        ScalarValue::UInt8(Some(v)) => version(i128::from(*v)),
        ScalarValue::UInt16(Some(v)) => version(i128::from(*v)),
        ScalarValue::UInt32(Some(v)) => version(i128::from(*v)),
        ScalarValue::UInt64(Some(v)) => version(i128::from(*v)),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => parse_instant(s)
            .map(TableVersion::AsOf)
            .map_err(|e| plan_datafusion_err!("{TABLE_AT}: {e}")),
        ScalarValue::TimestampSecond(Some(s), _) => micros(s.saturating_mul(1_000_000)),
        ScalarValue::TimestampMillisecond(Some(ms), _) => micros(ms.saturating_mul(1_000)),
        ScalarValue::TimestampMicrosecond(Some(us), _) => micros(*us),
        ScalarValue::TimestampNanosecond(Some(ns), _) => micros(ns.div_euclid(1_000)),
        _ => return None,
    })
}

/// Parses an instant: RFC 3339 with a zone, or `YYYY-MM-DD[ HH:MM:SS[.fff]]` taken as UTC.
pub fn parse_instant(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(with_zone) = DateTime::parse_from_rfc3339(text) {
        return Ok(with_zone.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(naive.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!(
        "'{text}' is not a timestamp: write '2026-01-01 00:00:00' (UTC) or '2026-01-01T00:00:00+02:00'"
    ))
}

/// Every `table_at` call in a statement, read from the SQL syntax tree.
/// The tables `statement` reads through `table_at`, with the versions it asks for.
pub fn tables_at_versions(statement: &DfStatement) -> Result<Vec<(TableName, TableVersion)>> {
    Ok(pins_in(statement)?
        .into_iter()
        .map(|pin| (pin.table, pin.version))
        .collect())
}

fn pins_in(statement: &DfStatement) -> Result<Vec<Pin>> {
    let mut finder = PinFinder::default();
    visit_statement(statement, &mut finder);
    finder.pins.into_iter().collect()
}

/// Walks the SQL syntax of `statement` (including an EXPLAINed statement and the query
/// of a COPY) with `visitor`.
pub(crate) fn visit_statement<V: Visitor<Break = ()>>(statement: &DfStatement, visitor: &mut V) {
    match statement {
        DfStatement::Statement(inner) => {
            let _ = inner.visit(visitor);
        }
        DfStatement::Explain(explain) => visit_statement(&explain.statement, visitor),
        DfStatement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &copy.source {
                let _ = query.visit(visitor);
            }
        }
        _ => {}
    }
}

#[derive(Default)]
struct PinFinder {
    pins: Vec<Result<Pin>>,
}

impl Visitor for PinFinder {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
            && name.to_string().eq_ignore_ascii_case(TABLE_AT)
        {
            self.pins.push(pin_from_sql(&args.args));
        }
        ControlFlow::Continue(())
    }
}

fn pin_from_sql(args: &[FunctionArg]) -> Result<Pin> {
    let usage = || Error::Sql(format!("{TABLE_AT}: {USAGE}"));
    let exprs: Vec<&sql::Expr> = args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(usage()),
        })
        .collect::<Result<_>>()?;
    let [table, at] = exprs.as_slice() else {
        return Err(usage());
    };
    let table = match table {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::SingleQuotedString(s) => TableName::parse(s)?,
            _ => return Err(usage()),
        },
        _ => return Err(usage()),
    };
    let instant = |s: &str| parse_instant(s).map_err(|e| Error::Sql(format!("{TABLE_AT}: {e}")));
    let version = match at {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::Number(n, _) => n
                .parse::<u64>()
                .map(TableVersion::Version)
                .map_err(|_| Error::Sql(format!("{TABLE_AT}: '{n}' is not a version number")))?,
            sql::Value::SingleQuotedString(s) => TableVersion::AsOf(instant(s)?),
            _ => return Err(usage()),
        },
        sql::Expr::TypedString(typed) => match &typed.value.value {
            sql::Value::SingleQuotedString(s) => TableVersion::AsOf(instant(s)?),
            _ => return Err(usage()),
        },
        _ => return Err(usage()),
    };
    Ok(Pin { table, version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn pins(sql: &str) -> Result<Vec<Pin>> {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        pins_in(&statements.pop_front().unwrap())
    }

    #[test]
    fn finds_versions_and_timestamps_anywhere_in_a_query() {
        let found = pins(
            "SELECT * FROM table_at('raw.a', 3) a \
             JOIN (SELECT * FROM table_at('raw.b', TIMESTAMP '2026-01-02 03:04:05')) b ON true \
             WHERE a.x IN (SELECT x FROM table_at('raw.c', '2026-01-01T00:00:00+02:00'))",
        )
        .unwrap();
        let at = |s: &str| TableVersion::AsOf(parse_instant(s).unwrap());
        assert_eq!(
            found,
            vec![
                Pin {
                    table: TableName::parse("raw.a").unwrap(),
                    version: TableVersion::Version(3)
                },
                Pin {
                    table: TableName::parse("raw.b").unwrap(),
                    version: at("2026-01-02T03:04:05Z")
                },
                Pin {
                    table: TableName::parse("raw.c").unwrap(),
                    version: at("2025-12-31T22:00:00Z")
                },
            ]
        );
    }

    #[test]
    fn bad_arguments_explain_the_syntax() {
        let error = pins("SELECT * FROM table_at('raw.a')").unwrap_err();
        assert!(error.to_string().contains(USAGE), "{error}");
        let error = pins("SELECT * FROM table_at('raw.a', 'yesterday')").unwrap_err();
        assert!(error.to_string().contains("is not a timestamp"), "{error}");
        let error = pins("SELECT * FROM table_at('nodot', 1)").unwrap_err();
        assert!(error.to_string().contains("schema.name"), "{error}");
    }

    #[test]
    fn instants_parse_in_the_documented_forms() {
        let utc = parse_instant("2026-01-01 00:00:00").unwrap();
        assert_eq!(utc.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(parse_instant("2026-01-01").unwrap(), utc);
        assert_eq!(parse_instant("2026-01-01T01:00:00+01:00").unwrap(), utc);
    }
}

//! Which form of a statement is planned. datafusion-postgres rewrites every statement for
//! PostgreSQL compatibility before lakescore sees it, and one of its rewrites replaces a
//! correlated subquery in a select list with NULL. That suits catalog queries (see
//! [`super::rewrites`]), but an analyst's
//! `SELECT c.id, (SELECT max(s.probability) FROM scored.churn s WHERE s.id = c.id) ...`
//! would silently answer NULL. So a statement that reads lakehouse tables is planned as
//! written, with datafusion-pg-catalog's other rewrites; a catalog query as
//! datafusion-postgres rewrote it (some clients' catalog queries are replaced whole).

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation, RewritePgCatalogOperator,
    RewriteRegCastToSubquery, SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};
use lakescore_engine::datafusion::sql::sqlparser::ast::{Statement, TableFactor, Visit, Visitor};
use lakescore_engine::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use lakescore_engine::datafusion::sql::sqlparser::parser::Parser;

use super::rewrites;

/// The schemas of PostgreSQL's catalog.
const CATALOG_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// The statements of one query string: each as datafusion-postgres hands it to lakescore,
/// with the form lakescore plans when it reads lakehouse tables.
#[derive(Debug, Default, Clone)]
pub struct WrittenStatements(Vec<(Statement, Statement)>);

impl WrittenStatements {
    /// The statements of `sql`; none when it does not parse as written (datafusion-postgres
    /// then reports the error, or handles what only it parses).
    pub fn parse(sql: &str) -> Self {
        // Without a subquery both forms are the same: spare parsing the text twice.
        if sql.to_ascii_lowercase().matches("select").count() < 2 {
            return Self::default();
        }
        let received = compatibility_parser().parse(sql).unwrap_or_default();
        let written = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap_or_default();
        if received.len() != written.len() {
            return Self::default();
        }
        let written = written.into_iter().map(|statement| {
            compatibility_rules()
                .iter()
                .fold(statement, |statement, rule| rule.rewrite(statement))
        });
        Self(received.into_iter().zip(written).collect())
    }

    /// The form of `received` to plan, with lakescore's rewrites.
    pub fn planned_form(&self, received: &Statement) -> Statement {
        if !reads_lakehouse(received) {
            return rewrites::rewrite_catalog_query(received.clone());
        }
        let written = self
            .0
            .iter()
            .find(|(candidate, _)| candidate == received)
            .map(|(_, written)| written.clone());
        rewrites::rewrite(written.unwrap_or_else(|| received.clone()))
    }
}

/// datafusion-pg-catalog's parser, as datafusion-postgres uses it.
fn compatibility_parser() -> &'static PostgresCompatibilityParser {
    static PARSER: OnceLock<PostgresCompatibilityParser> = OnceLock::new();
    PARSER.get_or_init(PostgresCompatibilityParser::new)
}

/// datafusion-pg-catalog's rewrites in its order, without the one that answers NULL for
/// correlated subqueries in a select list.
fn compatibility_rules() -> &'static [Arc<dyn SqlStatementRewriteRule>] {
    static RULES: OnceLock<Vec<Arc<dyn SqlStatementRewriteRule>>> = OnceLock::new();
    RULES.get_or_init(|| {
        vec![
            Arc::new(AliasDuplicatedProjectionRewrite),
            Arc::new(ResolveUnqualifiedIdentifier),
            Arc::new(RewriteArrayAnyAllOperation),
            Arc::new(PrependUnqualifiedPgTableName),
            Arc::new(StripCallableQualifier),
            Arc::new(FixArrayLiteral),
            Arc::new(CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(StripCollate),
            Arc::new(RewritePgCatalogOperator),
            Arc::new(RewriteRegCastToSubquery::new()),
            Arc::new(FixVersionColumnName),
        ]
    })
}

/// True when `statement` reads a table outside PostgreSQL's catalog (table functions
/// such as `unnest(...)` are not tables).
fn reads_lakehouse(statement: &Statement) -> bool {
    struct Tables(bool);
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let TableFactor::Table {
                name, args: None, ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            let in_catalog = name.0.len() > 1
                && name.0[0].as_ident().is_some_and(|schema| {
                    CATALOG_SCHEMAS
                        .iter()
                        .any(|catalog| schema.value.eq_ignore_ascii_case(catalog))
                });
            if in_catalog {
                return ControlFlow::Continue(());
            }
            self.0 = true;
            ControlFlow::Break(())
        }
    }
    let mut tables = Tables(false);
    let _ = statement.visit(&mut tables);
    tables.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(sql: &str) -> String {
        let statements = WrittenStatements::parse(sql);
        let received = compatibility_parser().parse(sql).unwrap().remove(0);
        statements.planned_form(&received).to_string()
    }

    #[test]
    fn correlated_subqueries_over_lakehouse_tables_are_planned_as_written() {
        assert_eq!(
            planned(
                "SELECT c.id, (SELECT max(s.p) FROM scored.churn AS s WHERE s.id = c.id) AS p FROM curated.customers AS c"
            ),
            "SELECT c.id, (SELECT max(s.p) FROM scored.churn AS s WHERE s.id = c.id) AS p FROM curated.customers AS c"
        );
        // Unqualified names may be lakehouse tables too.
        assert!(
            planned(
                "SELECT (SELECT max(s.p) FROM churn AS s WHERE s.id = c.id) FROM customers AS c"
            )
            .contains("max(s.p)")
        );
        // A catalog query gets datafusion-pg-catalog's NULL.
        assert_eq!(
            planned(
                "SELECT c.relname, (SELECT d.description FROM pg_catalog.pg_description AS d WHERE d.objoid = c.oid) FROM pg_catalog.pg_class AS c"
            ),
            "SELECT c.relname, NULL FROM pg_catalog.pg_class AS c"
        );
    }
}

//! PostgreSQL syntax that clients' queries use and DataFusion does not plan, rewritten
//! into forms it does, after datafusion-pg-catalog's own rewrites. Every statement gets:
//!
//! - `x LIKE p ESCAPE 'c'` (SQLAlchemy's schema listing escapes `_` with `/`): DataFusion
//!   accepts only the backslash, so the pattern becomes `like_escape(p, 'c')`, which
//!   PostgreSQL defines as that very conversion.
//! - `generate_subscripts(a, d)` (SQLAlchemy's key and index reflection):
//!   `unnest(generate_series(1, cardinality(a)))` when `d` is 1, the same numbers in the
//!   same rows for one-dimensional arrays, none otherwise.
//! - `ARRAY(SELECT x ...)` (psql's `\du`, Metabase's role queries): a scalar subquery
//!   `(SELECT array_agg(x) FROM (SELECT x ...))`.
//! - `CASE WHEN c THEN (SELECT x FROM t WHERE w) END` (SQLAlchemy's column reflection):
//!   DataFusion plans a correlated subquery only outside `CASE`, so the condition moves
//!   into the subquery, `(SELECT x FROM t WHERE (w) AND (c))`, NULL exactly when the
//!   `CASE` was (for subqueries that do not aggregate).
//! - `'pg_class'::regclass` (SQLAlchemy's and Metabase's joins of `pg_description`):
//!   datafusion-pg-catalog looks an unqualified name up in `current_schema()` alone;
//!   PostgreSQL looks in `pg_catalog` first, so its lookup also searches `pg_catalog`.
//!
//! Catalog queries (those that read `pg_catalog` and `information_schema` alone) read
//! `information_schema.columns` with PostgreSQL's type names, and get datafusion-pg-catalog's answer to correlated subqueries in a select list, NULL, for
//! the ones the `CASE` rewrite brings there: their lookups of column defaults, identity
//! sequences and collations have nothing to find in a lakehouse. Bound parameters inside
//! them are kept, as datafusion-postgres types parameters by the ones a plan holds.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion_postgres::datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule;
use lakescore_engine::datafusion::sql::sqlparser::ast::{
    CaseWhen, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, Value, visit_expressions,
    visit_expressions_mut,
};
use lakescore_engine::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use lakescore_engine::datafusion::sql::sqlparser::parser::Parser;

use super::information_schema::ColumnsWithPostgresTypes;

/// The rewrites every statement gets.
const EVERY_STATEMENT: [&dyn SqlStatementRewriteRule; 5] = [
    &LikeEscapeToBackslash,
    &GenerateSubscriptsToUnnest,
    &ArraySubqueryToArrayAgg,
    &ConditionalSubqueryToFiltered,
    &RegclassSearchesCatalogFirst,
];

/// `statement`, which reads lakehouse tables, with the rewrites every statement gets.
pub fn rewrite(statement: Statement) -> Statement {
    EVERY_STATEMENT
        .iter()
        .fold(statement, |statement, rule| rule.rewrite(statement))
}

/// `statement`, a catalog query, with every rewrite.
pub fn rewrite_catalog_query(statement: Statement) -> Statement {
    let statement = CorrelatedSelectListSubqueryToNull.rewrite(rewrite(statement));
    ColumnsWithPostgresTypes.rewrite(statement)
}

/// Rewrites every expression of `statement` that `replace` gives a replacement for.
fn replace_expressions(
    mut statement: Statement,
    mut replace: impl FnMut(&Expr) -> Option<Expr>,
) -> Statement {
    let _ = visit_expressions_mut(&mut statement, |expr: &mut Expr| {
        if let Some(replacement) = replace(expr) {
            *expr = replacement;
        }
        ControlFlow::<()>::Continue(())
    });
    statement
}

/// `sql` parsed as an expression; None if it does not parse (the statement is then left
/// as it was, and DataFusion reports what it cannot plan).
fn expression(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

/// `LIKE`/`ILIKE ... ESCAPE 'c'` with an escape character other than the backslash.
#[derive(Debug)]
pub struct LikeEscapeToBackslash;

impl SqlStatementRewriteRule for LikeEscapeToBackslash {
    fn rewrite(&self, statement: Statement) -> Statement {
        replace_expressions(statement, |expr| {
            let (Expr::Like {
                negated,
                any: false,
                expr: value,
                pattern,
                escape_char: Some(escape),
            }
            | Expr::ILike {
                negated,
                any: false,
                expr: value,
                pattern,
                escape_char: Some(escape),
            }) = expr
            else {
                return None;
            };
            let Value::SingleQuotedString(character) = &escape.value else {
                return None;
            };
            if character == "\\" {
                return None;
            }
            let operator = if matches!(expr, Expr::Like { .. }) {
                "LIKE"
            } else {
                "ILIKE"
            };
            let not = if *negated { "NOT " } else { "" };
            expression(&format!(
                "({value}) {not}{operator} like_escape({pattern}, {})",
                escape.value
            ))
        })
    }
}

/// The subquery datafusion-pg-catalog puts for `'name'::regclass`, looking an
/// unqualified name up in `current_schema()` only.
#[derive(Debug)]
pub struct RegclassSearchesCatalogFirst;

/// How that lookup matches an unqualified name's schema, and how it should.
const UNQUALIFIED_LOOKUP: (&str, &str) = (
    "array_length(parts, 1) = 1 AND n.nspname = current_schema()",
    "array_length(parts, 1) = 1 AND n.nspname IN ('pg_catalog', current_schema())",
);

impl SqlStatementRewriteRule for RegclassSearchesCatalogFirst {
    fn rewrite(&self, statement: Statement) -> Statement {
        replace_expressions(statement, |expr| {
            let Expr::Subquery(query) = expr else {
                return None;
            };
            let text = query.to_string();
            let (current, searched) = UNQUALIFIED_LOOKUP;
            if !text.contains("parse_ident(") || !text.contains(current) {
                return None;
            }
            expression(&format!("({})", text.replace(current, searched)))
        })
    }
}

/// The arguments of a call to `name` (any case, unqualified), if `expr` is one.
fn call_arguments<'a>(expr: &'a Expr, name: &str) -> Option<&'a FunctionArguments> {
    let Expr::Function(Function {
        name: called, args, ..
    }) = expr
    else {
        return None;
    };
    let [part] = called.0.as_slice() else {
        return None;
    };
    let ident = part.as_ident()?;
    ident.value.eq_ignore_ascii_case(name).then_some(args)
}

/// `generate_subscripts(array, 1)`.
#[derive(Debug)]
pub struct GenerateSubscriptsToUnnest;

impl SqlStatementRewriteRule for GenerateSubscriptsToUnnest {
    fn rewrite(&self, statement: Statement) -> Statement {
        replace_expressions(statement, |expr| {
            let FunctionArguments::List(list) = call_arguments(expr, "generate_subscripts")? else {
                return None;
            };
            let [
                FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(dimension)),
            ] = list.args.as_slice()
            else {
                return None;
            };
            // Catalog arrays have one dimension: any other has no subscripts. The
            // dimension stays in the statement, as it may be a bound parameter.
            expression(&format!(
                "unnest(CASE WHEN {dimension} = 1 THEN generate_series(1, CAST(cardinality({array}) AS BIGINT)) END)"
            ))
        })
    }
}

/// `ARRAY(subquery)`.
#[derive(Debug)]
pub struct ArraySubqueryToArrayAgg;

impl SqlStatementRewriteRule for ArraySubqueryToArrayAgg {
    fn rewrite(&self, statement: Statement) -> Statement {
        replace_expressions(statement, |expr| {
            let FunctionArguments::Subquery(query) = call_arguments(expr, "array")? else {
                return None;
            };
            expression(&format!(
                "(SELECT array_agg(array_element) FROM ({query}) AS array_subquery(array_element))"
            ))
        })
    }
}

/// `CASE WHEN c THEN (subquery) [ELSE NULL] END`.
#[derive(Debug)]
pub struct ConditionalSubqueryToFiltered;

impl SqlStatementRewriteRule for ConditionalSubqueryToFiltered {
    fn rewrite(&self, statement: Statement) -> Statement {
        replace_expressions(statement, |expr| {
            let Expr::Case {
                operand: None,
                conditions,
                else_result,
                ..
            } = expr
            else {
                return None;
            };
            let [CaseWhen { condition, result }] = conditions.as_slice() else {
                return None;
            };
            if else_result
                .as_deref()
                .is_some_and(|otherwise| otherwise.to_string().to_uppercase() != "NULL")
            {
                return None;
            }
            let Expr::Subquery(query) = result else {
                return None;
            };
            // A subquery inside a subquery's filter is more than DataFusion plans.
            if has_subquery(condition) {
                return None;
            }
            let mut query = query.clone();
            let SetExpr::Select(select) = query.body.as_mut() else {
                return None;
            };
            if aggregates(select) {
                return None;
            }
            select.selection = Some(match select.selection.take() {
                Some(filter) => expression(&format!("({filter}) AND ({condition})"))?,
                None => condition.clone(),
            });
            Some(Expr::Subquery(query))
        })
    }
}

/// True when `expr` holds a subquery.
fn has_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = visit_expressions(expr, |inner: &Expr| {
        if matches!(
            inner,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// A correlated subquery in a select list (one naming a table its own `FROM` does not),
/// also inside an expression such as `CASE`: NULL, keeping the bound parameters it held.
#[derive(Debug)]
pub struct CorrelatedSelectListSubqueryToNull;

impl SqlStatementRewriteRule for CorrelatedSelectListSubqueryToNull {
    fn rewrite(&self, mut statement: Statement) -> Statement {
        let _ = lakescore_engine::datafusion::sql::sqlparser::ast::VisitMut::visit(
            &mut statement,
            &mut SelectListSubqueries,
        );
        statement
    }
}

struct SelectListSubqueries;

impl lakescore_engine::datafusion::sql::sqlparser::ast::VisitorMut for SelectListSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let outer = names_read(select);
        for item in &mut select.projection {
            let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
            else {
                continue;
            };
            let _ = visit_expressions_mut(expr, |inner: &mut Expr| {
                if let Expr::Subquery(subquery) = inner
                    && is_correlated(subquery, &outer)
                    && let Some(null) = null_keeping_parameters(subquery)
                {
                    *inner = null;
                }
                ControlFlow::<()>::Continue(())
            });
        }
        ControlFlow::Continue(())
    }
}

/// The tables `select` reads directly, by name, last name part and alias, lower case.
fn names_read(select: &Select) -> HashSet<String> {
    let mut names = HashSet::new();
    for factor in select.from.iter().flat_map(|from| {
        std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
    }) {
        let (name, alias) = match factor {
            TableFactor::Table { name, alias, .. } => (Some(name), alias),
            TableFactor::Derived { alias, .. } | TableFactor::UNNEST { alias, .. } => (None, alias),
            _ => (None, &None),
        };
        if let Some(name) = name {
            names.insert(name.to_string().to_lowercase());
            if let Some(last) = name.0.last() {
                names.insert(last.to_string().to_lowercase());
            }
        }
        if let Some(alias) = alias {
            names.insert(alias.name.value.to_lowercase());
        }
    }
    names
}

/// True when `query` names a column of a table its own `FROM` does not read: a qualifier
/// it does not define, or one of `outer`'s tables, also inside a table function's
/// arguments (`unnest(tc.reloptions)`).
fn is_correlated(query: &Query, outer: &HashSet<String>) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let own = names_read(select);
    let text = query.to_string().to_lowercase();
    if outer
        .iter()
        .filter(|name| !own.contains(*name))
        .any(|name| mentions_qualifier(&text, name))
    {
        return true;
    }
    let mut correlated = false;
    let _ = visit_expressions(query, |expr: &Expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() > 1
        {
            let qualifier = parts[..parts.len() - 1]
                .iter()
                .map(|p| p.value.to_lowercase())
                .collect::<Vec<_>>()
                .join(".");
            let table = parts[parts.len() - 2].value.to_lowercase();
            if !own.contains(&qualifier) && !own.contains(&table) {
                correlated = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    correlated
}

/// True when `text` holds `qualifier.` as a qualifier of its own (not the end of a longer
/// name).
fn mentions_qualifier(text: &str, qualifier: &str) -> bool {
    let needle = format!("{qualifier}.");
    text.match_indices(&needle).any(|(at, _)| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(|before| !(before.is_alphanumeric() || before == '_' || before == '.'))
    })
}

/// NULL, mentioning each bound parameter of `query` so the statement still holds them:
/// `CASE WHEN $1::VARCHAR IS NULL OR ... THEN NULL END`.
fn null_keeping_parameters(query: &Query) -> Option<Expr> {
    // A typed parameter is visited before the bare one inside it.
    let mut parameters = Vec::new();
    let mut typed = HashSet::new();
    let _ = visit_expressions(query, |expr: &Expr| {
        match expr {
            Expr::Cast { expr: inner, .. } if is_placeholder(inner) => {
                typed.insert(inner.to_string());
                parameters.push(expr.to_string());
            }
            bare if is_placeholder(bare) && !typed.contains(&bare.to_string()) => {
                parameters.push(bare.to_string())
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    if parameters.is_empty() {
        return expression("NULL");
    }
    let tests: Vec<String> = parameters.iter().map(|p| format!("{p} IS NULL")).collect();
    expression(&format!("CASE WHEN {} THEN NULL END", tests.join(" OR ")))
}

fn is_placeholder(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(value) if matches!(value.value, Value::Placeholder(_)))
}

/// True when `select` groups or aggregates, and so answers a row even when nothing
/// matches.
fn aggregates(select: &Select) -> bool {
    !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty())
        || select.having.is_some()
        || select.projection.iter().any(|item| {
            let text = item.to_string().to_lowercase();
            AGGREGATES.iter().any(|aggregate| text.contains(aggregate))
        })
}

/// Calls that make a subquery answer a row even when nothing matches.
const AGGREGATES: [&str; 10] = [
    "count(",
    "sum(",
    "min(",
    "max(",
    "avg(",
    "array_agg(",
    "string_agg(",
    "bool_and(",
    "bool_or(",
    "json_agg(",
];

#[cfg(test)]
mod tests {
    #[test]
    fn catalog_queries_answer_null_for_correlated_lookups_and_keep_their_parameters() {
        let catalog = |sql: &str| {
            let statement = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(sql)
                .and_then(|mut parser| parser.parse_statement())
                .unwrap();
            rewrite_catalog_query(statement).to_string()
        };
        assert_eq!(
            catalog(
                "SELECT a.attname, CASE WHEN (a.attidentity != $1::VARCHAR) THEN (SELECT json_build_object($2::VARCHAR, s.seqstart) FROM pg_catalog.pg_sequence AS s WHERE s.seqrelid = a.attrelid) ELSE NULL END AS identity FROM pg_catalog.pg_attribute AS a"
            ),
            "SELECT a.attname, CASE WHEN $2::VARCHAR IS NULL OR $1::VARCHAR IS NULL THEN NULL END AS identity FROM pg_catalog.pg_attribute AS a"
        );
        assert_eq!(
            catalog(
                "SELECT (SELECT t.typname FROM pg_catalog.pg_type AS t WHERE t.oid = a.atttypid) FROM pg_catalog.pg_attribute AS a"
            ),
            "SELECT NULL FROM pg_catalog.pg_attribute AS a"
        );
        assert_eq!(
            catalog(
                "SELECT CASE WHEN (a.c <> 0 AND (SELECT t.c FROM pg_catalog.pg_type AS t WHERE t.oid = a.t) <> a.c) THEN (SELECT n.x FROM pg_catalog.pg_collation AS n WHERE n.oid = a.c) END FROM pg_catalog.pg_attribute AS a"
            ),
            "SELECT CASE WHEN (a.c <> 0 AND NULL <> a.c) THEN NULL END FROM pg_catalog.pg_attribute AS a"
        );
        for kept in [
            "SELECT (SELECT count(*) FROM pg_catalog.pg_type) FROM pg_catalog.pg_attribute AS a",
            "SELECT (SELECT t.typname FROM pg_catalog.pg_type AS t WHERE t.oid = 23) FROM pg_catalog.pg_attribute AS a",
        ] {
            assert_eq!(catalog(kept), kept);
        }
    }

    use super::*;

    fn rewritten(sql: &str) -> String {
        let statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statement())
            .unwrap();
        rewrite(statement).to_string()
    }

    #[test]
    fn postgresql_only_syntax_becomes_what_datafusion_plans() {
        assert_eq!(
            rewritten("SELECT n FROM t WHERE n NOT LIKE 'pg/_' || '%' ESCAPE '/'"),
            "SELECT n FROM t WHERE (n) NOT LIKE like_escape('pg/_' || '%', '/')"
        );
        assert_eq!(
            rewritten("SELECT n FROM t WHERE n ILIKE 'a!%' ESCAPE '!'"),
            "SELECT n FROM t WHERE (n) ILIKE like_escape('a!%', '!')"
        );
        assert_eq!(
            rewritten("SELECT generate_subscripts(i.indkey, $1::INTEGER) AS ord FROM i"),
            "SELECT unnest(CASE WHEN $1::INTEGER = 1 THEN generate_series(1, CAST(cardinality(i.indkey) AS BIGINT)) END) AS ord FROM i"
        );
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM d WHERE d.adnum = a.attnum) ELSE NULL END FROM a"
            ),
            "SELECT (SELECT d.adbin FROM d WHERE (d.adnum = a.attnum) AND (a.atthasdef)) FROM a"
        );
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN (a.c <> 0 AND (SELECT t.c FROM t WHERE t.oid = a.t) <> a.c) THEN (SELECT n.x FROM n WHERE n.oid = a.c) ELSE NULL END FROM a"
            ),
            "SELECT CASE WHEN (a.c <> 0 AND (SELECT t.c FROM t WHERE t.oid = a.t) <> a.c) THEN (SELECT n.x FROM n WHERE n.oid = a.c) ELSE NULL END FROM a"
        );
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT b.rolname FROM b WHERE b.oid = r.oid) AS memberof FROM r"
            ),
            "SELECT (SELECT array_agg(array_element) FROM (SELECT b.rolname FROM b WHERE b.oid = r.oid) AS array_subquery (array_element)) AS memberof FROM r"
        );
        // 'pg_class'::regclass as datafusion-pg-catalog rewrites it.
        let lookup = |schema: &str| {
            format!(
                "(SELECT c.oid FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid CROSS JOIN (SELECT parse_ident('pg_class'::TEXT) AS parts) WHERE array_length(parts, 1) IN (1, 2) AND ((array_length(parts, 1) = 1 AND n.nspname {schema}) OR (array_length(parts, 1) = 2 AND n.nspname = parts[1] AND c.relname = parts[2])))"
            )
        };
        assert_eq!(
            rewritten(&format!(
                "SELECT 1 WHERE classoid = {}",
                lookup("= current_schema()")
            )),
            format!(
                "SELECT 1 WHERE classoid = {}",
                lookup("IN ('pg_catalog', current_schema())")
            )
        );
    }

    #[test]
    fn what_datafusion_plans_already_is_left_alone() {
        for sql in [
            "SELECT n FROM t WHERE n LIKE 'a\\_%' ESCAPE '\\'",
            "SELECT n FROM t WHERE n LIKE 'a%'",
            "SELECT CASE WHEN a.x THEN (SELECT count(*) FROM d) END FROM a",
            "SELECT (SELECT d.y FROM d WHERE d.id = a.id) FROM a",
            "SELECT CASE WHEN a.x THEN (SELECT d.y FROM d) ELSE 'none' END FROM a",
            "SELECT ARRAY[1, 2]",
        ] {
            let statement = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(sql)
                .and_then(|mut parser| parser.parse_statement())
                .unwrap();
            assert_eq!(rewritten(sql), statement.to_string(), "{sql}");
        }
    }
}

//! Where unqualified table names are found: the connection's `search_path` (`SET
//! search_path TO scored, curated`, by default the role's) read as PostgreSQL reads it,
//! and statements with each unqualified table name qualified with the first schema on
//! the path that has it, before their grants are checked.

use std::collections::HashSet;
use std::ops::ControlFlow;

use lakescore_engine::datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, Statement, TableFactor, Visit, VisitMut, Visitor,
    VisitorMut,
};

/// The schemas of `search_path` text (`scored, "Curated", "$user"`) in order: unquoted
/// names folded to lower case, quoted ones kept, `$user` the connecting user.
pub fn parse_search_path(text: &str, user: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(
            |part| match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => part.to_lowercase(),
            },
        )
        .map(|schema| {
            if schema == "$user" {
                user.to_string()
            } else {
                schema
            }
        })
        .collect()
}

/// `statement` with each unqualified table name that is not a common table expression
/// qualified with the first schema of `search_path` that has it (`exists(schema,
/// table)`); a name no schema has is left for the planner to report.
pub fn qualify_tables(
    mut statement: Statement,
    search_path: &[String],
    exists: impl Fn(&str, &str) -> bool,
) -> Statement {
    let mut ctes = CommonTableExpressions::default();
    let _ = statement.visit(&mut ctes);
    let mut qualifier = Qualifier {
        search_path,
        exists,
        ctes: ctes.0,
    };
    let _ = VisitMut::visit(&mut statement, &mut qualifier);
    statement
}

/// The names of every common table expression in a statement.
#[derive(Default)]
struct CommonTableExpressions(HashSet<String>);

impl Visitor for CommonTableExpressions {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

struct Qualifier<'a, F> {
    search_path: &'a [String],
    exists: F,
    ctes: HashSet<String>,
}

impl<F: Fn(&str, &str) -> bool> VisitorMut for Qualifier<'_, F> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, args: None, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let [ObjectNamePart::Identifier(table)] = name.0.as_slice() else {
            return ControlFlow::Continue(());
        };
        let table_name = if table.quote_style.is_some() {
            table.value.clone()
        } else {
            table.value.to_lowercase()
        };
        if self.ctes.contains(&table_name) {
            return ControlFlow::Continue(());
        }
        if let Some(schema) = self
            .search_path
            .iter()
            .find(|schema| (self.exists)(schema, &table_name))
        {
            *name = ObjectName(vec![
                ObjectNamePart::Identifier(Ident::with_quote('"', schema.clone())),
                ObjectNamePart::Identifier(table.clone()),
            ]);
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use lakescore_engine::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use lakescore_engine::datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    #[test]
    fn search_paths_read_as_postgresql_reads_them() {
        assert_eq!(
            parse_search_path("Scored, \"Curated\" ,\"$user\", public", "ana"),
            ["scored", "Curated", "ana", "public"]
        );
        assert!(parse_search_path("", "ana").is_empty());
    }

    #[test]
    fn unqualified_tables_are_found_along_the_search_path() {
        let tables = [
            ("curated", "customers"),
            ("scored", "churn"),
            ("curated", "churn"),
        ];
        let exists = |schema: &str, table: &str| tables.contains(&(schema, table));
        let qualified = |sql: &str, path: &[&str]| {
            let statement = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_statement())
                .unwrap();
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            qualify_tables(statement, &path, exists).to_string()
        };
        assert_eq!(
            qualified(
                "SELECT * FROM churn JOIN customers USING (id)",
                &["scored", "curated"]
            ),
            "SELECT * FROM \"scored\".churn JOIN \"curated\".customers USING(id)"
        );
        assert_eq!(
            qualified("SELECT * FROM churn", &["curated", "scored"]),
            "SELECT * FROM \"curated\".churn"
        );
        // Common table expressions, qualified names, table functions and names no
        // schema has stay as written.
        for sql in [
            "WITH churn AS (SELECT 1) SELECT * FROM churn",
            "SELECT * FROM raw.churn",
            "SELECT * FROM table_at('scored.churn', 1)",
            "SELECT * FROM missing",
        ] {
            assert_eq!(qualified(sql, &["scored"]), sql, "{sql}");
        }
        assert_eq!(
            qualified(
                "SELECT (SELECT count(*) FROM customers) FROM churn",
                &["curated"]
            ),
            "SELECT (SELECT count(*) FROM \"curated\".customers) FROM \"curated\".churn"
        );
    }
}

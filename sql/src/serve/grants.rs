//! Roles and what they may run: which statement kinds reach the planner at all, and which
//! tables a role may read, checked on the tables the planned statement scans.

use std::collections::HashMap;

use lakescore_engine::TableName;
use lakescore_engine::config::ServeConfig;
use lakescore_engine::datafusion::common::TableReference;
use lakescore_engine::datafusion::common::tree_node::TreeNodeRecursion;
use lakescore_engine::datafusion::logical_expr::LogicalPlan;
use lakescore_engine::datafusion::sql::sqlparser::ast::Statement;
use lakescore_engine::sql::catalog::CATALOG_NAME;
use lakescore_engine::sql::read_only::statement_kind;
use lakescore_engine::sql::session::{DEFAULT_SCHEMA, SYSTEM_SCHEMAS};

/// What the server does with a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handling {
    /// Plan it, check the tables it reads and run it.
    Query,
    /// Leave it to the session hooks (`SET`, `SHOW`, transactions).
    Session,
    /// `DECLARE`, `FETCH` or `CLOSE` of a cursor ([`super::cursors`]): a declared cursor's
    /// query is planned, checked and run as a [`Handling::Query`] is.
    Cursor,
    /// A `COPY`: its query runs as a [`Handling::Query`] does when it copies to the client
    /// ([`super::copy_out`]), and it is refused otherwise.
    Copy,
    /// Refuse it with this reason.
    Refuse(String),
}

/// How `statement` is handled: queries run, session statements pass, the rest is refused.
pub fn handling(statement: &Statement) -> Handling {
    match statement {
        Statement::Query(_) => Handling::Query,
        // EXPLAIN ANALYZE runs its statement: only a query may be explained.
        Statement::Explain { statement, .. } if matches!(**statement, Statement::Query(_)) => {
            Handling::Query
        }
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Handling::Session,
        Statement::Copy { .. } => Handling::Copy,
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => {
            Handling::Cursor
        }
        other => Handling::Refuse(format!(
            "lakescore serve is read-only: {} is not allowed. Tables are written by lakescore ingest, transform and score",
            statement_kind(other)
        )),
    }
}

/// The roles of `[[serve.role]]` with their `select` patterns.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    roles: HashMap<String, Vec<glob::Pattern>>,
}

impl Grants {
    /// The roles of `config` (patterns were checked when the project file was read).
    pub fn new(config: &ServeConfig) -> Self {
        Self {
            roles: config
                .roles
                .iter()
                .map(|role| {
                    let patterns = role
                        .select
                        .iter()
                        .filter_map(|p| glob::Pattern::new(p).ok())
                        .collect();
                    (role.name.clone(), patterns)
                })
                .collect(),
        }
    }

    /// True when `role` may read `table`: a pattern without a dot names schemas, one with
    /// a dot names `schema.table`.
    pub fn allows(&self, role: &str, table: &TableName) -> bool {
        let Some(patterns) = self.roles.get(role) else {
            return false;
        };
        let full = table.to_string();
        patterns.iter().any(|pattern| {
            if pattern.as_str().contains('.') {
                pattern.matches(&full)
            } else {
                pattern.matches(&table.schema)
            }
        })
    }

    /// The first of `tables` that `role` may not read.
    pub fn first_denied_of(&self, role: &str, tables: &[TableName]) -> Option<TableName> {
        tables
            .iter()
            .find(|table| !self.allows(role, table))
            .cloned()
    }

    /// The first table `plan` scans, subqueries included, that `role` may not read; scans
    /// of table functions (`is_function`) and of the system schemas read no table.
    pub fn first_denied(
        &self,
        role: &str,
        plan: &LogicalPlan,
        is_function: &dyn Fn(&TableReference) -> bool,
    ) -> Option<TableName> {
        let mut denied = None;
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && !is_function(&scan.table_name)
                && let Some(table) = scanned_table(&scan.table_name)
                && !self.allows(role, &table)
            {
                denied = Some(table);
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        denied
    }
}

/// The lakehouse table a scan reads; None for the system schemas.
fn scanned_table(reference: &TableReference) -> Option<TableName> {
    let resolved = reference.clone().resolve(CATALOG_NAME, DEFAULT_SCHEMA);
    if SYSTEM_SCHEMAS.contains(&resolved.schema.as_ref()) {
        return None;
    }
    Some(TableName {
        schema: resolved.schema.to_string(),
        name: resolved.table.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use lakescore_engine::config::ProjectConfig;

    use super::*;

    fn grants() -> Grants {
        let config = ProjectConfig::parse(
            "[project]\nname = \"p\"\n[[serve.role]]\nname = \"analyst\"\n\
             select = [\"curated\", \"scored.*\", \"monitoring.drift_*\"]\n\
             [[serve.role]]\nname = \"engineer\"\nselect = [\"*\"]\n",
        )
        .unwrap();
        Grants::new(&config.serve)
    }

    #[test]
    fn schemas_tables_and_patterns() {
        let grants = grants();
        let table = |t: &str| TableName::parse(t).unwrap();
        assert!(grants.allows("analyst", &table("curated.customers")));
        assert!(grants.allows("analyst", &table("scored.churn_risk")));
        assert!(grants.allows("analyst", &table("monitoring.drift_metrics")));
        assert!(!grants.allows("analyst", &table("monitoring.retrain_requests")));
        assert!(!grants.allows("analyst", &table("raw.crm_accounts")));
        assert!(grants.allows("engineer", &table("raw.crm_accounts")));
        assert!(!grants.allows("nobody", &table("curated.customers")));
    }
}

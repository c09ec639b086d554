//! SQL reads, never writes: every plan a [`crate::SqlSession`] runs is checked with
//! DataFusion's `SQLOptions` (no DDL, no DML, no `COPY`, anywhere in the plan, including
//! under `EXPLAIN ANALYZE` and in subqueries), and every lakehouse table it hands to
//! DataFusion refuses `INSERT`, `DELETE`, `UPDATE` and `TRUNCATE` on its own.
//!
//! Tables are written by `ingest`, `transform` (SQL models), `score`, `feedback` and jobs,
//! which record lineage and run ids; a write through SQL would bypass all of that.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{ScanArgs, ScanResult, Session, TableProvider};
use datafusion::common::{Constraints, DFSchemaRef, Statistics, not_impl_err};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::dml::{InsertOp, MergeIntoClause};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::{Error, Result};

/// What lakescore's SQL is for, and where writes belong; the end of every refusal.
pub const WRITES_BELONG_ELSEWHERE: &str = "lakescore's SQL is read-only: tables are written by `lakescore ingest`, `transform` (SQL models in models/*.sql), `score`, `feedback` and jobs, which keep lineage and run ids";

/// Fails when `statement` is not one that reads: queries (also explained), `DESCRIBE`,
/// `SHOW` and `SET`. Checked before anything is planned, so a statement that would create a
/// table is refused as a write, not reported as naming an unknown table.
pub fn refuse_write_statement(statement: &DfStatement) -> Result<()> {
    let reads = match statement {
        DfStatement::Statement(inner) => match inner.as_ref() {
            Statement::Explain { statement, .. } => {
                return refuse_write_statement(&DfStatement::Statement(statement.clone()));
            }
            Statement::Query(_)
            | Statement::ExplainTable { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::Set(_) => true,
            _ => false,
        },
        DfStatement::Explain(explain) => return refuse_write_statement(&explain.statement),
        DfStatement::Reset(_) => true,
        DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_) => false,
    };
    if reads {
        Ok(())
    } else {
        Err(Error::ReadOnly {
            what: format!("{} is not allowed", statement_kind(statement)),
        })
    }
}

/// The first keywords of `statement` (at most two), upper-cased: `INSERT INTO`, `COPY`.
pub fn statement_kind(statement: &impl std::fmt::Display) -> String {
    statement
        .to_string()
        .split_whitespace()
        .take(2)
        .take_while(|word| word.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// Fails when `plan` would change anything: DDL, DML or `COPY` anywhere in it.
pub fn refuse_writes(plan: &LogicalPlan) -> Result<()> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .verify_plan(plan)
        .map_err(|error| {
            let refused = error.strip_backtrace();
            let what = refused
                .split_once(": ")
                .map_or(refused.as_str(), |(_, what)| what)
                .trim();
            Error::ReadOnly {
                what: format!("{what} is not allowed"),
            }
        })
}

/// A lakehouse table as SQL sees it: everything a read needs, and no way to write.
#[derive(Debug)]
pub struct ReadOnlyTable {
    inner: Arc<dyn TableProvider>,
}

impl ReadOnlyTable {
    /// `inner`, readable only.
    pub fn wrap(inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        Arc::new(Self { inner })
    }
}

fn refused<T>(what: &str) -> DfResult<T> {
    not_impl_err!("{what} is not allowed: {WRITES_BELONG_ELSEWHERE}")
}

#[async_trait]
impl TableProvider for ReadOnlyTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    async fn scan_with_args<'a>(
        &self,
        state: &dyn Session,
        args: ScanArgs<'a>,
    ) -> DfResult<ScanResult> {
        self.inner.scan_with_args(state, args).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        refused("INSERT")
    }

    async fn delete_from(
        &self,
        _state: &dyn Session,
        _filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        refused("DELETE")
    }

    async fn update(
        &self,
        _state: &dyn Session,
        _assignments: Vec<(String, Expr)>,
        _filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        refused("UPDATE")
    }

    async fn truncate(&self, _state: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        refused("TRUNCATE")
    }

    async fn merge_into(
        &self,
        _state: &dyn Session,
        _source: Arc<dyn ExecutionPlan>,
        _merge_schema: DFSchemaRef,
        _on: Expr,
        _clauses: Vec<MergeIntoClause>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        refused("MERGE")
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn check(sql: &str) -> Result<()> {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        refuse_write_statement(&statements.pop_front().unwrap())
    }

    #[test]
    fn reads_pass_and_writes_are_named() {
        for sql in [
            "SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "SET datafusion.execution.batch_size = 10",
        ] {
            check(sql).unwrap();
        }
        for (sql, kind) in [
            ("INSERT INTO t SELECT 1", "INSERT INTO"),
            ("EXPLAIN ANALYZE INSERT INTO t SELECT 1", "INSERT INTO"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL",
            ),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("DROP TABLE t", "DROP TABLE"),
        ] {
            let error = check(sql).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!(
                    "{kind} is not allowed: lakescore's SQL is read-only"
                )),
                "{sql}: {error}"
            );
        }
    }
}

//! Savepoints (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`, which psycopg 3 and SQLAlchemy send
//! for nested transactions) accepted as no-ops, as `BEGIN` and `COMMIT` are: the server
//! is read-only, so there is nothing to keep or undo.

use async_trait::async_trait;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::error::PgWireResult;
use datafusion_postgres::pgwire::messages::response::TransactionStatus;
use lakescore_engine::datafusion::common::ParamValues;
use lakescore_engine::datafusion::logical_expr::LogicalPlan;
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::sql::sqlparser::ast::Statement;

use crate::serve::limits::user_error;

/// The command tag of a statement [`SavepointHook`] answers; None for any other.
fn savepoint_tag(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Savepoint { .. } => Some("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Some("RELEASE"),
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Some("ROLLBACK"),
        _ => None,
    }
}

/// Answers `SAVEPOINT`, `RELEASE [SAVEPOINT]` and `ROLLBACK TO [SAVEPOINT]` with
/// PostgreSQL's command tags. They are accepted outside a transaction block too (where
/// PostgreSQL refuses a savepoint): pgwire learns that a block began only at the end of
/// a query string, so `BEGIN; SAVEPOINT a` sent as one string could not be told apart,
/// and accepting changes nothing on a read-only server. In a block a failed statement
/// aborted, `RELEASE` and `ROLLBACK TO` are accepted and the block stays aborted until
/// `ROLLBACK`.
#[derive(Debug)]
pub struct SavepointHook;

impl SavepointHook {
    fn answer(statement: &Statement, status: TransactionStatus) -> Option<PgWireResult<Response>> {
        let tag = savepoint_tag(statement)?;
        Some(match status {
            // PostgreSQL's ROLLBACK TO would revive an aborted block; pgwire keeps it
            // aborted until ROLLBACK, so a new savepoint is refused there.
            TransactionStatus::Error if tag == "SAVEPOINT" => Err(user_error(
                "25P02",
                String::from(
                    "current transaction is aborted, commands ignored until end of transaction block: send ROLLBACK",
                ),
            )),
            _ => Ok(Response::Execution(Tag::new(tag))),
        })
    }
}

#[async_trait]
impl QueryHook for SavepointHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement, client.transaction_status())
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // Nothing to plan: the statement is answered when it is executed.
        savepoint_tag(statement)
            .is_some()
            .then(|| Ok(super::answered_when_executed()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement, client.transaction_status())
    }
}

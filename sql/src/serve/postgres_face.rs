//! What PostgreSQL clients count on from a server beyond the wire protocol itself:
//! `version()` in PostgreSQL's form (SQLAlchemy, and so Superset and pandas, read the
//! major version from it on connect), and savepoints (`SAVEPOINT`, `RELEASE`, `ROLLBACK
//! TO`, which psycopg 3 and SQLAlchemy send for nested transactions) accepted as no-ops,
//! as `BEGIN` and `COMMIT` are: the server is read-only, so there is nothing to keep or
//! undo.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::error::PgWireResult;
use datafusion_postgres::pgwire::messages::response::TransactionStatus;
use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::datafusion::common::{DFSchema, ParamValues};
use lakescore_engine::datafusion::error::Result as DfResult;
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, EmptyRelation, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::scalar::ScalarValue;
use lakescore_engine::datafusion::sql::sqlparser::ast::Statement;

use super::limits::user_error;

/// The PostgreSQL release whose catalog and behaviour the server follows.
const POSTGRES_VERSION: &str = "16.6";

/// What `version()` answers, e.g. `PostgreSQL 16.6 (lakescore 0.1.0, Apache DataFusion
/// 55.2.0) on x86_64-linux`.
fn version_text() -> String {
    format!(
        "PostgreSQL {POSTGRES_VERSION} (lakescore {}, Apache DataFusion {}) on {}-{}",
        env!("CARGO_PKG_VERSION"),
        lakescore_engine::datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

/// Registers `version()` on `context`, replacing DataFusion's, which names DataFusion
/// alone and so is not understood by clients that parse PostgreSQL's form.
pub fn register(context: &SessionContext) {
    context.register_udf(ScalarUDF::new_from_impl(Version {
        signature: Signature::exact(vec![], Volatility::Stable),
    }));
}

/// `version()`: the server in PostgreSQL's form.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Version {
    signature: Signature,
}

impl ScalarUDFImpl for Version {
    fn name(&self) -> &str {
        "version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            version_text(),
        ))))
    }
}

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
        savepoint_tag(statement).is_some().then(|| {
            Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(DFSchema::empty()),
            }))
        })
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

//! Running statements for a client: each is planned in the connection's lakescore session,
//! listed afresh for every statement (so it reads every table at its newest version, with
//! `table_at`, `predict` and the normalization functions), checked against the client's
//! role on the tables the plan scans, and run; every statement and its outcome goes to the
//! audit log.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::PgCatalogContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, METADATA_USER};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, StreamExt};
use lakescore_engine::catalog::CATALOG_NAME;
use lakescore_engine::datafusion::catalog::SchemaProvider;
use lakescore_engine::datafusion::common::ParamValues;
use lakescore_engine::datafusion::logical_expr::LogicalPlan;
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::sql::parser::Statement as DfStatement;
use lakescore_engine::datafusion::sql::sqlparser::ast::Statement;
use lakescore_engine::{Lakehouse, Project, SqlSession, TableName};

use super::audit::{Audit, AuditEntry};
use super::auth::Users;
use super::grants::{Grants, Handling, handling};

/// What every connection shares: the project, its lakehouse, users, grants and the audit.
pub struct Shared {
    /// The project.
    pub project: Arc<Project>,
    /// Its lakehouse.
    pub lakehouse: Arc<Lakehouse>,
    /// Who may log in.
    pub users: Arc<Users>,
    /// What each role may read.
    pub grants: Grants,
    /// Where statements are recorded.
    pub audit: Audit,
}

/// The roles pg_catalog lists.
#[derive(Debug, Clone)]
struct Roles(Vec<String>);

#[async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        self.0.clone()
    }
}

impl Shared {
    fn role(&self, client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<String> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        self.users
            .role_of(&user)
            .map(str::to_string)
            .ok_or_else(|| user_error("28000", format!("role \"{user}\" does not exist")))
    }

    /// A connection's session: lakescore's, with PostgreSQL's catalog.
    async fn new_session(&self) -> PgWireResult<ConnectionSession> {
        let session = SqlSession::builder(self.lakehouse.clone())
            .functions(self.project.config.functions.clone())
            .build()
            .await
            .map_err(engine_error)?;
        let roles = Roles(
            self.project
                .config
                .serve
                .roles
                .iter()
                .map(|r| r.name.clone())
                .collect(),
        );
        setup_pg_catalog(session.context(), CATALOG_NAME, roles)
            .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(*e)))?;
        let pg_catalog = session
            .context()
            .catalog(CATALOG_NAME)
            .and_then(|catalog| catalog.schema(PG_CATALOG))
            .ok_or_else(|| user_error("XX000", String::from("pg_catalog was not set up")))?;
        Ok(ConnectionSession {
            session,
            pg_catalog,
        })
    }
}

/// The schema PostgreSQL clients read the catalog from.
const PG_CATALOG: &str = "pg_catalog";

/// A connection's session and its `pg_catalog`, which keeps the object ids it handed out
/// (clients look tables up by oid across statements).
struct ConnectionSession {
    session: SqlSession,
    pg_catalog: Arc<dyn SchemaProvider>,
}

impl ConnectionSession {
    /// Lists the lakehouse again, so the next statement reads the newest versions.
    async fn refresh(&mut self) -> PgWireResult<()> {
        self.session.refresh().await.map_err(engine_error)?;
        if let Some(catalog) = self.session.context().catalog(CATALOG_NAME) {
            catalog
                .register_schema(PG_CATALOG, self.pg_catalog.clone())
                .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(e)))?;
        }
        Ok(())
    }
}

/// The query hook that handles every statement before datafusion-postgres's own: queries
/// are planned and checked here, `SET`/`SHOW`/transactions pass on, the rest is refused.
pub struct LakescoreQueries {
    shared: Arc<Shared>,
    session: tokio::sync::Mutex<Option<ConnectionSession>>,
}

impl LakescoreQueries {
    /// The hook for one connection.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// Plans `statement` at the newest table versions and checks the client's role may
    /// read what it names and what its plan scans.
    async fn plan(
        &self,
        statement: &Statement,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<(SessionContext, LogicalPlan)> {
        let role = self.shared.role(client)?;
        let mut slot = self.session.lock().await;
        let current = match slot.take() {
            Some(mut current) => {
                current.refresh().await?;
                current
            }
            None => self.shared.new_session().await?,
        };
        let planned = self.plan_in(&current.session, &role, statement).await;
        let context = current.session.context().clone();
        *slot = Some(current);
        planned.map(|plan| (context, plan))
    }

    async fn plan_in(
        &self,
        session: &SqlSession,
        role: &str,
        statement: &Statement,
    ) -> PgWireResult<LogicalPlan> {
        let statement = DfStatement::Statement(Box::new(statement.clone()));
        let read: Vec<TableName> = session
            .tables_read(&statement)
            .map_err(engine_error)?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        let denied =
            |table: TableName| user_error("42501", format!("permission denied for table {table}"));
        // The named tables first, so a forbidden table's versions and columns are never
        // revealed by a planning error; then every table the plan scans.
        if let Some(table) = self.shared.grants.first_denied_of(role, &read) {
            return Err(denied(table));
        }
        let frame = session.plan(statement).await.map_err(engine_error)?;
        let plan = frame.logical_plan().clone();
        if let Some(table) = self.shared.grants.first_denied(role, &plan) {
            return Err(denied(table));
        }
        Ok(plan)
    }
}

#[async_trait]
impl QueryHook for LakescoreQueries {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match handling(statement) {
            Handling::Session => None,
            Handling::Refuse(reason) => Some(Err(user_error("25006", reason))),
            Handling::Query => Some(
                async {
                    let (context, plan) = self.plan(statement, &*client).await?;
                    let frame = context
                        .execute_logical_plan(plan)
                        .await
                        .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(e)))?;
                    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                    let response =
                        encode_dataframe(frame, &Format::UnifiedText, Some(options)).await?;
                    Ok(Response::Query(response))
                }
                .await,
            ),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match handling(statement) {
            Handling::Session => None,
            Handling::Refuse(reason) => Some(Err(user_error("25006", reason))),
            Handling::Query => Some(self.plan(statement, client).await.map(|(_, plan)| plan)),
        }
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The plan was checked when it was parsed; datafusion-postgres binds the
        // parameters and encodes the rows in the format the client asked for.
        None
    }
}

/// datafusion-postgres's session service with every statement audited.
pub struct AuditedService {
    inner: Arc<DfSessionService>,
    shared: Arc<Shared>,
}

impl AuditedService {
    /// Wraps `inner`.
    pub fn new(inner: Arc<DfSessionService>, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// Records `responses` once their rows are sent (or their error now).
    fn audited<C: ClientInfo>(
        &self,
        client: &C,
        statement: &str,
        started: (Instant, chrono::DateTime<Utc>),
        responses: PgWireResult<Vec<Response>>,
    ) -> PgWireResult<Vec<Response>> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let entry = AuditEntry {
            role: self.shared.users.role_of(&user).unwrap_or("").to_string(),
            user,
            client: client.socket_addr().to_string(),
            statement: statement.to_string(),
            started_at: started.1,
            duration: started.0.elapsed(),
            rows: 0,
            status: "ok",
            error: None,
        };
        let responses = match responses {
            Ok(responses) => responses,
            Err(error) => {
                self.shared.audit.record(AuditEntry {
                    status: "error",
                    error: Some(describe(&error)),
                    ..entry
                });
                return Err(error);
            }
        };
        let guard = Arc::new(AuditGuard {
            audit: self.shared.audit.clone(),
            entry: std::sync::Mutex::new(Some(entry)),
            started: started.0,
            rows: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        });
        let wrapped = responses
            .into_iter()
            .map(|response| match response {
                Response::Query(mut query) => {
                    guard.pending.fetch_add(1, Ordering::SeqCst);
                    let counting = guard.clone();
                    let rows =
                        std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
                    let finished = guard.clone();
                    query.data_rows = Box::pin(
                        rows.inspect(move |row| {
                            if row.is_ok() {
                                counting.rows.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                        .chain(futures::stream::poll_fn(move |_| {
                            finished.stream_done();
                            std::task::Poll::Ready(None)
                        })),
                    );
                    Response::Query(query)
                }
                other => other,
            })
            .collect();
        guard.stream_done_if_none();
        Ok(wrapped)
    }
}

/// Records one audit entry when the last result stream of a statement ends, or when the
/// streams are dropped unfinished (the client went away).
struct AuditGuard {
    audit: Audit,
    entry: std::sync::Mutex<Option<AuditEntry>>,
    started: Instant,
    rows: AtomicU64,
    pending: AtomicU64,
}

impl AuditGuard {
    fn stream_done(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.finish("ok");
        }
    }

    fn stream_done_if_none(&self) {
        if self.pending.load(Ordering::SeqCst) == 0 {
            self.finish("ok");
        }
    }

    fn finish(&self, status: &'static str) {
        let taken = self.entry.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(entry) = taken {
            self.audit.record(AuditEntry {
                rows: self.rows.load(Ordering::Relaxed),
                duration: self.started.elapsed(),
                status,
                ..entry
            });
        }
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        self.finish("cancelled");
    }
}

#[async_trait]
impl SimpleQueryHandler for AuditedService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = (Instant::now(), Utc::now());
        let responses = SimpleQueryHandler::do_query(&*self.inner, client, query).await;
        self.audited(client, query, started, responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for AuditedService {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.inner.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = (Instant::now(), Utc::now());
        let response = ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows)
            .await
            .map(|r| vec![r]);
        let statement = portal.statement.statement.0.clone();
        let mut responses = self.audited(client, &statement, started, response)?;
        Ok(responses.pop().unwrap_or(Response::EmptyQuery))
    }
}

/// `SQLSTATE: message`, as the client saw it.
fn describe(error: &PgWireError) -> String {
    match error {
        PgWireError::UserError(info) => format!("{}: {}", info.code, info.message),
        other => other.to_string(),
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// An engine error as PostgreSQL reports its kind.
fn engine_error(error: lakescore_engine::Error) -> PgWireError {
    let code = match &error {
        lakescore_engine::Error::UnknownTable { .. } => "42P01",
        lakescore_engine::Error::Sql(_) => "42601",
        other if other.is_user_error() => "22023",
        _ => "XX000",
    };
    user_error(code, error.to_string())
}

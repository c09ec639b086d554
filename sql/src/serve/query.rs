//! Running statements for a client: each is planned in the connection's lakescore session,
//! listed afresh for every statement (so it reads every table at its newest version, with
//! `table_at`, `predict` and the normalization functions, and lists only the tables the
//! role may read), checked against the client's role on the tables the plan scans, and run
//! on the query runtime under the connection's limits ([`super::limits`]); every statement
//! and its outcome, parse failures included, goes to the audit log.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::{
    PgCatalogContextProvider, Role,
};
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, QueryResponse, Response};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, Type};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, Parser};
use futures::channel::oneshot;
use futures::{Sink, Stream, StreamExt};
use lakescore_engine::datafusion::catalog::SchemaProvider;
use lakescore_engine::datafusion::common::ParamValues;
use lakescore_engine::datafusion::logical_expr::LogicalPlan;
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::sql::parser::Statement as DfStatement;
use lakescore_engine::datafusion::sql::sqlparser::ast::Statement;
use lakescore_engine::sql::catalog::CATALOG_NAME;
use lakescore_engine::{Lakehouse, Project, SqlSession, TableName};

use super::audit::{Audit, AuditEntry};
use super::auth::{Users, user_of};
use super::copy_out::{CopyOut, copy_response};
use super::cursors::{self, CursorStatement};
use super::errors::plain_error;
use super::grants::{Grants, Handling, handling};
use super::limits::{
    HandedCancel, Memory, QUERY_CANCELED, Watch, run_on, statement_timeout, user_error,
};
use super::postgres_face::catalog_tables::CatalogAsClientsExpect;
use super::postgres_face::descriptions::{DescribedObjects, DescribedSlot, asks_for_descriptions};
use super::postgres_face::json::JsonColumns;
use super::postgres_face::search_path::qualify_tables;
use super::postgres_face::settings::Settings;
use super::postgres_face::statements::WrittenStatements;
use super::{identity, postgres_face, value_size};

/// What every connection shares: the project, its lakehouse, users, grants, the audit,
/// and where and with how much memory statements run.
pub struct Shared {
    /// The project.
    pub project: Arc<Project>,
    /// Its lakehouse.
    pub lakehouse: Arc<Lakehouse>,
    /// Who may log in.
    pub users: Arc<Users>,
    /// What each role may read.
    pub grants: Arc<Grants>,
    /// Where statements are recorded.
    pub audit: Audit,
    /// The runtime statements execute on.
    pub runtime: tokio::runtime::Handle,
    /// The memory statements may hold.
    pub memory: Memory,
}

/// The client key datafusion-postgres keeps `SET statement_timeout` under, in milliseconds.
const STATEMENT_TIMEOUT_SETTING: &str = "statement_timeout_ms";

/// A statement as it arrives: when, and (once its rows start to be sent) the receiver a
/// cancel request for the connection fires. Until then pgwire itself answers a cancel
/// request: it waits for one while the whole query string is planned.
struct Arrival {
    started: Instant,
    cancel: Option<HandedCancel>,
}

impl Arrival {
    fn now() -> Self {
        Self {
            started: Instant::now(),
            cancel: None,
        }
    }

    /// Prepares to take over cancel requests: the returned takeover does it when the
    /// statement's rows are first asked for. Taking over earlier would end pgwire's own
    /// wait for a cancel while later statements of the same query string still run,
    /// which pgwire reports as a cancel.
    ///
    /// A cursor's rows are asked for by later statements (`FETCH`), which pgwire answers
    /// cancel requests for itself: its query is not `cancellable`, and its takeover does
    /// nothing.
    fn cancel_takeover(
        &mut self,
        client: &(dyn ClientInfo + Send + Sync),
        cancellable: bool,
    ) -> CancelTakeover {
        let (hand_over, handed) = oneshot::channel();
        if !cancellable {
            return CancelTakeover {
                handle: None,
                hand_over,
            };
        }
        self.cancel = Some(handed);
        CancelTakeover {
            handle: client
                .session_extensions()
                .get::<Arc<ConnectionHandle>>()
                .map(|handle| Arc::clone(&*handle)),
            hand_over,
        }
    }
}

/// Takes over a connection's cancel requests for one statement and hands the receiver to
/// its watch.
struct CancelTakeover {
    handle: Option<Arc<ConnectionHandle>>,
    hand_over: oneshot::Sender<oneshot::Receiver<()>>,
}

impl CancelTakeover {
    async fn take(self) {
        if let Some(handle) = self.handle {
            let _ = self.hand_over.send(handle.start_query().await);
        }
    }
}

/// One connection's state, shared by its handlers.
#[derive(Default)]
pub struct ClientState {
    /// The result formats of the portal being executed (extended protocol).
    result_format: Mutex<Option<Format>>,
    /// The statements of the query string being run, as written.
    written: Mutex<WrittenStatements>,
}

impl ClientState {
    fn set_result_format(&self, format: Format) {
        *self.result_format.lock().unwrap_or_else(|e| e.into_inner()) = Some(format);
    }

    /// Notes the query string whose statements come next.
    fn set_query(&self, sql: &str) {
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = WrittenStatements::parse(sql);
    }

    /// The form of `received` to plan.
    fn planned_form(&self, received: &Statement) -> Statement {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .planned_form(received)
    }

    fn take_result_format(&self) -> Format {
        self.result_format
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(Format::UnifiedText)
    }
}

/// The roles pg_catalog lists (`pg_roles`, psql's `\du`): each `[[serve.role]]`, which
/// cannot log in, and each `[[serve.user]]`, which can and is a member of its role.
#[derive(Debug, Clone)]
struct Roles {
    roles: Vec<String>,
    /// (user, its role)
    users: Vec<(String, String)>,
}

#[async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        let names: std::collections::BTreeSet<String> = self
            .roles
            .iter()
            .cloned()
            .chain(self.users.iter().map(|(user, _)| user.clone()))
            .collect();
        names.into_iter().collect()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        // A user named as its role is one role that can log in.
        let member_of = match self.users.iter().find(|(user, _)| user == name) {
            Some((_, role)) if role == name => vec![],
            Some((_, role)) => vec![role.clone()],
            None if self.roles.iter().any(|role| role == name) => vec![],
            None => return None,
        };
        let can_login = self.users.iter().any(|(user, _)| user == name);
        Some(Role {
            name: name.to_string(),
            is_superuser: false,
            can_login,
            can_create_db: false,
            can_create_role: false,
            can_create_user: false,
            can_replication: false,
            grants: vec![],
            inherited_roles: member_of,
        })
    }
}

impl Shared {
    fn role(&self, client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<String> {
        let user = user_of(client);
        self.users
            .role_of(&user)
            .map(str::to_string)
            .ok_or_else(|| user_error("28000", format!("role \"{user}\" does not exist")))
    }

    /// The search path `user`'s role names, if it names one.
    pub fn role_search_path(&self, user: &str) -> Option<Vec<String>> {
        let role = self.users.role_of(user)?;
        self.project.config.serve.role(role)?.search_path.clone()
    }

    /// What ends `role`'s statement, which arrived as `arrival`, early.
    fn watch(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
        role: &str,
        arrival: Arrival,
    ) -> Watch {
        let serve = &self.project.config.serve;
        let settings = serve.role(role);
        let limit = settings
            .and_then(|r| r.statement_timeout)
            .unwrap_or(serve.statement_timeout);
        let timeout = statement_timeout(limit, client.metadata().get(STATEMENT_TIMEOUT_SETTING));
        Watch {
            deadline: Some((
                tokio::time::Instant::from_std(arrival.started + timeout),
                timeout,
            )),
            cancel: arrival.cancel,
            max_rows: settings
                .and_then(|r| r.max_result_rows)
                .map(|max| (max, role.to_string())),
            memory_limit: self.memory.per_query(),
        }
    }

    /// A connection's session for `user` in `role`: lakescore's, listing only what the
    /// role may read, with PostgreSQL's catalog and the user's identity functions.
    async fn new_session(&self, user: &str, role: &str) -> PgWireResult<ConnectionSession> {
        let grants = self.grants.clone();
        let visible_role = role.to_string();
        let session = lakescore_engine::ml::sql_session(self.lakehouse.clone())
            .functions(self.project.config.functions.clone())
            .runtime(
                self.memory
                    .runtime_env()
                    .map_err(|e| user_error("XX000", e.to_string()))?,
            )
            .visible(Arc::new(move |table: &TableName| {
                grants.allows(&visible_role, table)
            }))
            .build()
            .await
            .map_err(engine_error)?;
        let serve = &self.project.config.serve;
        let roles = Roles {
            roles: serve.roles.iter().map(|r| r.name.clone()).collect(),
            users: serve
                .users
                .iter()
                .map(|u| (u.name.clone(), u.role.clone()))
                .collect(),
        };
        setup_pg_catalog(session.context(), CATALOG_NAME, roles)
            .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(*e)))?;
        identity::register(
            session.context(),
            user,
            self.users.clone(),
            self.grants.clone(),
        );
        value_size::bound(session.context(), self.memory.per_query());
        postgres_face::register(session.context());
        let catalog = session
            .context()
            .catalog(CATALOG_NAME)
            .ok_or_else(|| user_error("XX000", String::from("the lakehouse catalog is missing")))?;
        // Descriptions are looked up by the statements that ask for them.
        let described = DescribedSlot::default();
        DescribedObjects::default().register(session.context(), &described);
        let pg_catalog: Arc<dyn SchemaProvider> = Arc::new(CatalogAsClientsExpect::new(
            catalog
                .schema(PG_CATALOG)
                .ok_or_else(|| user_error("XX000", String::from("pg_catalog was not set up")))?,
            described.clone(),
        ));
        catalog
            .register_schema(PG_CATALOG, pg_catalog.clone())
            .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(e)))?;
        Ok(ConnectionSession {
            session,
            pg_catalog,
            described,
        })
    }
}

/// The schema PostgreSQL clients read the catalog from.
const PG_CATALOG: &str = "pg_catalog";

/// A connection's session and its `pg_catalog`, which keeps the object ids it handed out
/// (clients look tables up by oid across statements), and the descriptions of the tables
/// by those ids.
struct ConnectionSession {
    session: SqlSession,
    pg_catalog: Arc<dyn SchemaProvider>,
    described: DescribedSlot,
}

impl Drop for ConnectionSession {
    /// pg_catalog refers back to the session's catalogs: let go of it so both are freed.
    fn drop(&mut self) {
        self.session.release_registered_schemas();
    }
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

/// `statement` with its unqualified table names looked up along the connection's search
/// path, and `settings` answering `current_setting` and `current_schema` in `session`.
fn qualified(session: &SqlSession, settings: &Settings, statement: Statement) -> Statement {
    let catalog = session.context().catalog(CATALOG_NAME);
    // `public` always exists, as in PostgreSQL: it is where DataFusion looks first.
    let existing: HashSet<String> = catalog
        .as_ref()
        .map(|catalog| catalog.schema_names())
        .unwrap_or_default()
        .into_iter()
        .chain([String::from("public")])
        .collect();
    settings.register(session.context(), &existing);
    qualify_tables(statement, &settings.search_path, |schema, table| {
        schema != PG_CATALOG
            && catalog
                .as_ref()
                .and_then(|catalog| catalog.schema(schema))
                .is_some_and(|schema| schema.table_exist(table))
    })
}

/// The query hook that handles every statement before datafusion-postgres's own: queries
/// are planned, checked and run here, `SET`/`SHOW`/transactions pass on, the rest is
/// refused.
pub struct LakescoreQueries {
    shared: Arc<Shared>,
    state: Arc<ClientState>,
    session: tokio::sync::Mutex<Option<ConnectionSession>>,
}

impl LakescoreQueries {
    /// The hook for one connection.
    pub fn new(shared: Arc<Shared>, state: Arc<ClientState>) -> Self {
        Self {
            shared,
            state,
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
            None => self.shared.new_session(&user_of(client), &role).await?,
        };
        let user = user_of(client);
        let settings = Settings::of(
            client,
            &user,
            self.shared.role_search_path(&user).as_deref(),
        );
        let statement = qualified(
            &current.session,
            &settings,
            self.state.planned_form(statement),
        );
        let context = current.session.context().clone();
        if asks_for_descriptions(&statement) {
            let lakehouse = &self.shared.lakehouse;
            let looked_up = DescribedObjects::look_up(&context, lakehouse).await;
            match looked_up {
                Ok(objects) => objects.register(&context, &current.described),
                Err(error) => {
                    *slot = Some(current);
                    return Err(engine_error(lakescore_engine::Error::from_datafusion(
                        error,
                    )));
                }
            }
        }
        let planned = self.plan_in(&current.session, &role, &statement).await;
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
        let plan = session
            .logical_plan(statement)
            .await
            .map_err(engine_error)?;
        let is_function = |reference: &_| session.is_table_function(reference);
        if let Some(table) = self.shared.grants.first_denied(role, &plan, &is_function) {
            return Err(denied(table));
        }
        Ok(plan)
    }

    /// The context of the connection's session (the one plans were made in).
    async fn context(&self) -> PgWireResult<SessionContext> {
        let slot = self.session.lock().await;
        slot.as_ref()
            .map(|current| current.session.context().clone())
            .ok_or_else(|| user_error("26000", String::from("no statement was prepared")))
    }

    /// Runs `plan` on the query runtime and streams its rows in `format`, until it ends or
    /// its watch stops it.
    async fn execute(
        &self,
        context: SessionContext,
        plan: LogicalPlan,
        format: &Format,
        client: &(dyn ClientInfo + Send + Sync),
        arrival: Arrival,
    ) -> PgWireResult<Response> {
        let (fields, rows) = self
            .run((context, plan), format, client, arrival, true)
            .await?;
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// Runs `copy`'s query, which arrived as `arrival`, and streams its rows in the copy's
    /// format.
    async fn copy(
        &self,
        copy: CopyOut,
        client: &(dyn ClientInfo + Send + Sync),
        arrival: Arrival,
    ) -> PgWireResult<Response> {
        let query = match &copy.query {
            Statement::Query(_) => copy.query.clone(),
            _ => return Err(user_error("0A000", String::from("COPY needs a query"))),
        };
        let planned = self.plan(&query, client).await?;
        let (fields, rows) = self
            .run(planned, &Format::UnifiedText, client, arrival, true)
            .await?;
        Ok(Response::CopyOut(copy_response(copy.format, fields, rows)))
    }

    /// Declares, fetches from or closes a cursor of `client`'s.
    async fn cursor(
        &self,
        statement: &Statement,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let cursor = CursorStatement::parse(statement).map_err(|r| user_error("0A000", r))?;
        match cursor {
            CursorStatement::Declare { name, query } => {
                let arrival = Arrival::now();
                let (context, plan) = self.plan(&query, &*client).await?;
                let (fields, rows) = self
                    .run(
                        (context, plan.clone()),
                        &Format::UnifiedText,
                        &*client,
                        arrival,
                        false,
                    )
                    .await?;
                let described = (query.to_string(), Some((*query, plan)));
                cursors::declare(
                    client.portal_store(),
                    &name,
                    described,
                    QueryResponse::new(fields, rows),
                )
                .await
            }
            CursorStatement::Fetch { name, count } => {
                cursors::fetch(client.portal_store(), &name, count).await
            }
            CursorStatement::Close(name) => cursors::close(client.portal_store(), name.as_deref()),
        }
    }

    /// Runs `plan` on the query runtime: its columns, and its rows encoded in `format`.
    async fn run(
        &self,
        (context, plan): (SessionContext, LogicalPlan),
        format: &Format,
        client: &(dyn ClientInfo + Send + Sync),
        mut arrival: Arrival,
        cancellable: bool,
    ) -> PgWireResult<(
        Arc<Vec<FieldInfo>>,
        impl Stream<Item = PgWireResult<DataRow>> + Send + 'static,
    )> {
        let role = self.shared.role(client)?;
        let frame = context
            .execute_logical_plan(plan)
            .await
            .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(e)))?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let (json, served) = JsonColumns::of(frame.schema().as_arrow());
        let fields =
            Arc::new(json.typed(arrow_schema_to_pg_fields(&served, format, Some(options))?));
        let takeover = arrival.cancel_takeover(client, cancellable);
        let watch = self.shared.watch(client, &role, arrival);
        let batches = run_on(&self.shared.runtime, frame, watch);
        Ok((
            fields.clone(),
            encoded_rows(fields, json, takeover, batches),
        ))
    }
}

/// The rows of `batches` encoded for the wire (`json`'s columns as JSON), after
/// `takeover` when they are first asked for; an error ends the stream.
fn encoded_rows(
    fields: Arc<Vec<FieldInfo>>,
    json: JsonColumns,
    takeover: CancelTakeover,
    batches: tokio::sync::mpsc::Receiver<
        PgWireResult<lakescore_engine::datafusion::arrow::array::RecordBatch>,
    >,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let batches = async move {
        takeover.take().await;
        batches
    };
    futures::stream::once(batches)
        .flat_map(|batches| {
            futures::stream::unfold(batches, |mut batches| async move {
                batches.recv().await.map(|batch| (batch, batches))
            })
        })
        .flat_map(move |batch| {
            let batch = batch.and_then(|batch| {
                json.apply(batch)
                    .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(e)))
            });
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(fields.clone(), batch),
                Err(error) => Box::new(std::iter::once(Err(error))),
            };
            futures::stream::iter(rows)
        })
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
            Handling::Copy => Some(match CopyOut::parse(statement) {
                Ok(copy) => self.copy(copy, &*client, Arrival::now()).await,
                Err(reason) => Err(user_error("25006", reason)),
            }),
            Handling::Cursor => Some(self.cursor(statement, client).await),
            Handling::Query => Some(
                async {
                    let arrival = Arrival::now();
                    let (context, plan) = self.plan(statement, &*client).await?;
                    self.execute(context, plan, &Format::UnifiedText, &*client, arrival)
                        .await
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
            // The query is checked now and planned again when the copy runs; a COPY
            // describes no rows of its own.
            Handling::Copy => Some(match CopyOut::parse(statement) {
                Ok(copy) => self
                    .plan(&copy.query, client)
                    .await
                    .map(|_| postgres_face::answered_when_executed()),
                Err(reason) => Err(user_error("25006", reason)),
            }),
            // Cursor statements are planned when they run; they describe no rows.
            Handling::Cursor => Some(Ok(postgres_face::answered_when_executed())),
            Handling::Query => Some(self.plan(statement, client).await.map(|(_, plan)| plan)),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match handling(statement) {
            Handling::Query => {}
            Handling::Copy => {
                let arrival = Arrival::now();
                return Some(match CopyOut::parse(statement) {
                    Ok(copy) => self.copy(copy, &*client, arrival).await,
                    Err(reason) => Err(user_error("25006", reason)),
                });
            }
            Handling::Cursor => return Some(self.cursor(statement, client).await),
            Handling::Session | Handling::Refuse(_) => return None,
        }
        let arrival = Arrival::now();
        // The plan was checked when it was parsed; datafusion-postgres decoded the
        // parameters, and the portal's result formats were noted by the audited service.
        let format = self.state.take_result_format();
        Some(
            async {
                let plan = plan
                    .clone()
                    .replace_params_with_values(params)
                    .map_err(|e| engine_error(lakescore_engine::Error::from_datafusion(e)))?;
                let context = self.context().await?;
                self.execute(context, plan, &format, &*client, arrival)
                    .await
            }
            .await,
        )
    }
}

/// datafusion-postgres's session service with every statement audited, parse failures
/// and denials included.
pub struct AuditedService {
    inner: Arc<DfSessionService>,
    shared: Arc<Shared>,
    state: Arc<ClientState>,
    parser: Arc<AuditedParser>,
}

impl AuditedService {
    /// Wraps `inner`.
    pub fn new(inner: Arc<DfSessionService>, shared: Arc<Shared>, state: Arc<ClientState>) -> Self {
        let parser = Arc::new(AuditedParser {
            inner: inner.query_parser(),
            shared: shared.clone(),
            state: state.clone(),
        });
        Self {
            inner,
            shared,
            state,
            parser,
        }
    }

    /// Records `responses` once their rows are sent (or their error now).
    fn audited<C: ClientInfo>(
        &self,
        client: &C,
        statement: &str,
        started: (Instant, chrono::DateTime<Utc>),
        responses: PgWireResult<Vec<Response>>,
    ) -> PgWireResult<Vec<Response>> {
        let entry = new_entry(&self.shared, client, statement, started);
        let responses = match responses.map_err(plain_error) {
            Ok(responses) => responses,
            Err(error) => {
                self.shared.audit.record(failed(entry, &error));
                return Err(error);
            }
        };
        let guard = Arc::new(AuditGuard {
            audit: self.shared.audit.clone(),
            entry: Mutex::new(Some(entry)),
            started: started.0,
            rows: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        let wrapped = responses
            .into_iter()
            .map(|response| match response {
                Response::Query(mut query) => {
                    let rows =
                        std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
                    query.data_rows = guard.counted(rows);
                    Response::Query(query)
                }
                Response::CopyOut(mut copy) => {
                    let lines = std::mem::replace(
                        &mut copy.data_stream,
                        Box::pin(futures::stream::empty()),
                    );
                    copy.data_stream = guard.counted(lines);
                    Response::CopyOut(copy)
                }
                other => other,
            })
            .collect();
        guard.stream_done_if_none();
        Ok(wrapped)
    }
}

/// An audit entry for `statement` from `client`, as if it succeeded with no rows.
fn new_entry<C: ClientInfo + ?Sized>(
    shared: &Shared,
    client: &C,
    statement: &str,
    started: (Instant, chrono::DateTime<Utc>),
) -> AuditEntry {
    let user = user_of(client);
    AuditEntry {
        role: shared.users.role_of(&user).unwrap_or("").to_string(),
        user,
        client: client.socket_addr().to_string(),
        statement: statement.to_string(),
        started_at: started.1,
        duration: started.0.elapsed(),
        rows: 0,
        status: String::from("ok"),
        error: None,
    }
}

/// `entry` ended by `error`: cancelled (by timeout or request) or failed.
fn failed(entry: AuditEntry, error: &PgWireError) -> AuditEntry {
    AuditEntry {
        status: status_of(error).to_string(),
        error: Some(describe(error)),
        ..entry
    }
}

fn status_of(error: &PgWireError) -> &'static str {
    match error {
        PgWireError::UserError(info) if info.code == QUERY_CANCELED => "cancelled",
        _ => "error",
    }
}

/// Records one audit entry when the last result stream of a statement ends, or when the
/// streams are dropped unfinished (the client went away).
struct AuditGuard {
    audit: Audit,
    entry: Mutex<Option<AuditEntry>>,
    started: Instant,
    rows: AtomicU64,
    pending: AtomicU64,
    /// The error that ended a result stream, with its status.
    error: Mutex<Option<(&'static str, String)>>,
}

/// A statement's result stream: rows, or lines of a copy.
type ResultStream<T> = std::pin::Pin<Box<dyn Stream<Item = PgWireResult<T>> + Send>>;

impl AuditGuard {
    /// `items` (rows, or lines of a copy), each counted as a row of the statement; the
    /// entry is recorded when the last of its streams ends.
    fn counted<T: 'static>(self: &Arc<Self>, items: ResultStream<T>) -> ResultStream<T> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let counting = self.clone();
        let finished = self.clone();
        Box::pin(
            items
                .inspect(move |item| match item {
                    Ok(_) => {
                        counting.rows.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => counting.failed(error),
                })
                .chain(futures::stream::poll_fn(move |_| {
                    finished.stream_done();
                    std::task::Poll::Ready(None)
                })),
        )
    }

    fn failed(&self, error: &PgWireError) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((status_of(error), describe(error)));
    }

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
        let failure = self.error.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(entry) = taken {
            let (status, error) = match failure {
                Some((status, error)) => (status, Some(error)),
                None => (status, None),
            };
            self.audit.record(AuditEntry {
                rows: self.rows.load(Ordering::Relaxed),
                duration: self.started.elapsed(),
                status: status.to_string(),
                error,
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
        self.state.set_query(query);
        let responses = SimpleQueryHandler::do_query(&*self.inner, client, query).await;
        self.audited(client, query, started, responses)
    }
}

/// datafusion-postgres's parser, with statements that fail to parse, plan or pass the
/// grants audited (they never reach execution).
pub struct AuditedParser {
    inner: Arc<Parser>,
    shared: Arc<Shared>,
    state: Arc<ClientState>,
}

#[async_trait]
impl QueryParser for AuditedParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let started = (Instant::now(), Utc::now());
        self.state.set_query(sql);
        let parsed = self
            .inner
            .parse_sql(client, sql, types)
            .await
            .map_err(plain_error);
        if let Err(error) = &parsed {
            let entry = new_entry(&self.shared, client, sql, started);
            self.shared.audit.record(failed(entry, error));
        }
        parsed
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    /// datafusion-postgres's description, with nested columns described as `json`, as
    /// [`JsonColumns`] sends them.
    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let described = self.inner.get_result_schema(statement, column_format)?;
        let (_, Some((_, plan))) = statement else {
            return Ok(described);
        };
        let (json, _) = JsonColumns::of(plan.schema().as_arrow());
        if described.len() != plan.schema().fields().len() {
            return Ok(described);
        }
        Ok(json.typed(described))
    }
}

#[async_trait]
impl ExtendedQueryHandler for AuditedService {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = AuditedParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
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
        self.state
            .set_result_format(portal.result_column_format.clone());
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

/// An engine error as PostgreSQL reports its kind.
fn engine_error(error: lakescore_engine::Error) -> PgWireError {
    let code = match &error {
        lakescore_engine::Error::UnknownTable { .. } => "42P01",
        lakescore_engine::Error::ReadOnly { .. } => "25006",
        lakescore_engine::Error::Sql(_) => "42601",
        other if other.is_user_error() => "22023",
        _ => "XX000",
    };
    user_error(code, error.to_string())
}

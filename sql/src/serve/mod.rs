//! `lakescore serve`: the lakehouse over the PostgreSQL wire protocol, for BI tools,
//! `psql` and any PostgreSQL driver.
//!
//! Built on datafusion-postgres and pgwire: they speak the protocol (simple and extended
//! queries, parameters, type mapping, `pg_catalog` for clients' catalog queries, `SET` and
//! `SHOW`); lakescore adds what clients expect of PostgreSQL beyond that
//! ([`postgres_face`]: `version()`, savepoints, catalog functions, `search_path`;
//! [`copy_out`]: `COPY ... TO STDOUT`; [`cursors`]: `DECLARE`, `FETCH`, `CLOSE`), who may connect ([`auth`]:
//! SCRAM-SHA-256, optional anonymous access, TLS, connection limits, slowing down
//! guessing), what each role may read and see ([`grants`], checked on the planned table
//! scans; [`identity`]), how statements run ([`query`]: the newest committed versions
//! for every statement, read-only), what one client may take ([`limits`]: timeouts,
//! cancel requests, memory, rows, a runtime of its own for queries), what clients are
//! told when something fails ([`errors`]) and the audit log ([`audit`]:
//! `ops.query_log`). Next to it, or alone, [`http`] serves on-demand predictions over
//! HTTP.
//!
//! Connections still logging in are counted apart from logged-in ones and closed after
//! `auth_timeout`; a client that hangs up has its connection, and so its running
//! statement, dropped at once.

pub mod audit;
pub mod auth;
pub mod copy_out;
pub mod cursors;
pub mod errors;
pub mod grants;
pub mod http;
pub mod identity;
pub mod limits;
pub mod listening;
pub mod postgres_face;
pub mod query;
pub mod tls;
pub mod value_size;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ErrorHandler;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{ConnectionManager, PgWireServerHandlers};
use datafusion_postgres::pgwire::tokio::{TlsAcceptor, process_socket};
use lakescore_engine::datafusion::prelude::SessionContext;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::audit::{Audit, AuditWriter};
use self::auth::{Admission, Login, Users};
use self::errors::OutgoingErrors;
use self::grants::Grants;
use self::limits::{Memory, QueryRuntime};
use self::postgres_face::SavepointHook;
use self::postgres_face::settings::SettingsHook;
use self::query::{AuditedService, ClientState, LakescoreQueries, Shared};
use crate::error::{Error, Result};

pub use self::auth::hash_password;
pub use self::listening::Listening;
pub use lakescore_engine::storage::system_tables::QUERY_LOG;

/// The PostgreSQL wire protocol, as `[serve]` configures it.
pub struct Postgres;

/// The PostgreSQL listener to start: build it ([`Listening::new`], and
/// [`Listening::with_listen`] instead of `[serve] listen`), [`Server::bind`] it, then
/// [`Bound::run`] it.
pub type Server = Listening<Postgres>;

impl Server {
    /// Checks the users and TLS files and binds the address.
    pub async fn bind(self) -> Result<Bound> {
        let config = &self.project.config.serve;
        if config.users.is_empty() && !config.allow_anonymous {
            return Err(Error::Serve(String::from(
                "no one could connect: add a [[serve.user]] (and its [[serve.role]]), or set allow_anonymous = true with an anonymous_role",
            )));
        }
        let users = Arc::new(Users::new(config)?);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(
                &self.project.dir.join(cert),
                &self.project.dir.join(key),
            )?),
            _ => None,
        };
        let listen = self.address(&config.listen);
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|source| Error::Network {
                what: format!("cannot listen on {listen} (set --listen or [serve] listen)"),
                source,
            })?;
        let (audit, writer) = Audit::start(self.lakehouse.clone(), self.project.dir.clone());
        let runtime = QueryRuntime::new()?;
        let admission = Arc::new(Admission::new(config));
        let root = self.lakehouse.root().clone();
        let mut hidden = vec![root.to_string()];
        if let Ok(path) = root.to_file_path() {
            hidden.push(path.display().to_string());
        }
        let shared = Arc::new(Shared {
            grants: Arc::new(Grants::new(config)),
            project: self.project.clone(),
            lakehouse: self.lakehouse,
            users,
            audit,
            runtime: runtime.handle(),
            memory: Memory::new(config.max_memory, config.query_memory),
        });
        Ok(Bound {
            listener,
            shared,
            tls,
            require_tls: config.require_tls,
            auth_timeout: config.auth_timeout,
            pending_logins: Arc::new(Semaphore::new(config.max_pending_logins)),
            errors: Arc::new(OutgoingErrors::new(admission.clone(), hidden)),
            admission,
            cancels: Arc::new(ConnectionManager::new()),
            runtime,
            writer,
        })
    }
}

/// A bound server, ready to accept connections.
pub struct Bound {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    require_tls: bool,
    auth_timeout: Duration,
    pending_logins: Arc<Semaphore>,
    admission: Arc<Admission>,
    errors: Arc<OutgoingErrors>,
    cancels: Arc<ConnectionManager>,
    runtime: QueryRuntime,
    writer: AuditWriter,
}

impl Bound {
    /// The address it listens on (the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Network {
            what: String::from("no local address"),
            source,
        })
    }

    /// True when connections may use TLS.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts connections until `shutdown` is cancelled, then closes them and writes the
    /// audit entries still queued.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let mut running = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (socket, address) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("could not accept a connection: {error}");
                    continue;
                }
            };
            let Ok(pending) = self.pending_logins.clone().try_acquire_owned() else {
                tracing::warn!(client = %address, "connection refused: max_pending_logins connections are logging in");
                continue;
            };
            let (socket, hang_up) = match with_hang_up_watch(socket) {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(client = %address, "could not watch a connection: {error}");
                    continue;
                }
            };
            let handlers = Connection::new(&self, pending);
            let login = handlers.login.clone();
            let tls = self.tls.clone();
            let auth_timeout = self.auth_timeout;
            running.spawn(async move {
                let serving = process_socket(socket, tls, handlers);
                let login_deadline = async {
                    tokio::time::sleep(auth_timeout).await;
                    if login.logged_in() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    ended = serving => if let Err(error) = ended {
                        tracing::debug!(client = %address, "connection ended: {error}");
                    },
                    () = login_deadline => {
                        tracing::warn!(client = %address, "connection closed: no login within auth_timeout");
                    }
                    () = hung_up(hang_up) => {
                        tracing::debug!(client = %address, "client hung up");
                    }
                }
            });
            while running.try_join_next().is_some() {}
        }
        running.shutdown().await;
        let Bound {
            shared,
            writer,
            runtime,
            ..
        } = self;
        drop(shared);
        drop(runtime);
        writer.flush().await;
        Ok(())
    }
}

/// `socket`, and a second handle on it that only watches for the client hanging up.
fn with_hang_up_watch(socket: TcpStream) -> std::io::Result<(TcpStream, TcpStream)> {
    let socket = socket.into_std()?;
    let watch = socket.try_clone()?;
    Ok((TcpStream::from_std(socket)?, TcpStream::from_std(watch)?))
}

/// Resolves when the client closes its side of the connection, even while a statement
/// runs and nothing reads from the socket.
async fn hung_up(watch: TcpStream) {
    loop {
        match watch.ready(Interest::READABLE).await {
            Ok(ready) if !ready.is_read_closed() => {
                // Data waiting for the protocol reader; look again in a moment.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => return,
        }
    }
}

/// One connection's handlers.
struct Connection {
    service: Arc<AuditedService>,
    login: Arc<Login>,
    errors: Arc<OutgoingErrors>,
    cancels: Arc<DefaultCancelHandler>,
}

impl Connection {
    fn new(server: &Bound, pending: OwnedSemaphorePermit) -> Self {
        let shared = &server.shared;
        let state = Arc::new(ClientState::default());
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(LakescoreQueries::new(shared.clone(), state.clone())),
            Arc::new(SavepointHook),
            Arc::new(SettingsHook::new(Arc::new({
                let shared = shared.clone();
                move |user: &str| shared.role_search_path(user)
            }))),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let inner = Arc::new(DfSessionService::new_with_hooks(
            Arc::new(SessionContext::new()),
            hooks,
        ));
        Self {
            login: Arc::new(Login::new(
                shared.users.clone(),
                server.require_tls,
                server.admission.clone(),
                server.cancels.clone(),
                pending,
            )),
            service: Arc::new(AuditedService::new(inner, shared.clone(), state)),
            errors: server.errors.clone(),
            cancels: Arc::new(DefaultCancelHandler::new(server.cancels.clone())),
        }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.login.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.errors.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }
}

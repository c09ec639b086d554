//! `lakescore serve`: the lakehouse over the PostgreSQL wire protocol, for BI tools,
//! `psql` and any PostgreSQL driver.
//!
//! Built on datafusion-postgres and pgwire: they speak the protocol (simple and extended
//! queries, parameters, type mapping, `pg_catalog` for clients' catalog queries, `SET` and
//! `SHOW`); lakescore adds who may connect ([`auth`]: SCRAM-SHA-256, optional anonymous
//! access, TLS), what each role may read ([`grants`], checked on the planned table scans),
//! how statements run ([`query`]: a fresh session per statement, so every query reads the
//! newest committed versions) and the audit log ([`audit`]: `ops.query_log`).

pub mod audit;
pub mod auth;
pub mod grants;
pub mod query;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ErrorHandler;
use datafusion_postgres::pgwire::api::PgWireServerHandlers;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::tokio::{TlsAcceptor, process_socket};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::{Lakehouse, Project};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::audit::{Audit, AuditWriter};
use self::auth::{FailedLogins, Login, Users};
use self::grants::Grants;
use self::query::{AuditedService, LakescoreQueries, Shared};
use crate::error::{Error, Result};

pub use self::audit::QUERY_LOG;
pub use self::auth::hash_password;

/// A server to start: build it, [`Server::bind`] it, then [`Bound::run`] it.
pub struct Server {
    project: Arc<Project>,
    lakehouse: Arc<Lakehouse>,
    listen: Option<String>,
}

impl Server {
    /// Serves `project`'s lakehouse as its `[serve]` section says.
    pub fn new(project: Arc<Project>, lakehouse: Arc<Lakehouse>) -> Self {
        Self {
            project,
            lakehouse,
            listen: None,
        }
    }

    /// Listens on `address` (`host:port`) instead of `[serve] listen`.
    pub fn with_listen(mut self, address: Option<String>) -> Self {
        self.listen = address;
        self
    }

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
        let listen = self.listen.clone().unwrap_or_else(|| config.listen.clone());
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|source| Error::Network {
                what: format!("cannot listen on {listen} (set --listen or [serve] listen)"),
                source,
            })?;
        let (audit, writer) = Audit::start(self.lakehouse.clone());
        let shared = Arc::new(Shared {
            grants: Grants::new(config),
            project: self.project.clone(),
            lakehouse: self.lakehouse,
            users,
            audit,
        });
        Ok(Bound {
            listener,
            shared,
            tls,
            require_tls: config.require_tls,
            connections: Arc::new(Semaphore::new(config.max_connections)),
            failed_logins: Arc::new(FailedLogins::default()),
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
    connections: Arc<Semaphore>,
    failed_logins: Arc<FailedLogins>,
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
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::warn!(client = %address, "connection refused: max_connections reached");
                continue;
            };
            let handlers = Connection::new(
                self.shared.clone(),
                self.require_tls,
                self.failed_logins.clone(),
            );
            let tls = self.tls.clone();
            running.spawn(async move {
                if let Err(error) = process_socket(socket, tls, handlers).await {
                    tracing::debug!(client = %address, "connection ended: {error}");
                }
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        }
        running.shutdown().await;
        let Bound { shared, writer, .. } = self;
        drop(shared);
        writer.flush().await;
        Ok(())
    }
}

/// One connection's handlers.
struct Connection {
    service: Arc<AuditedService>,
    login: Arc<Login>,
    failed_logins: Arc<FailedLogins>,
}

impl Connection {
    fn new(shared: Arc<Shared>, require_tls: bool, failed_logins: Arc<FailedLogins>) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(LakescoreQueries::new(shared.clone())),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let inner = Arc::new(DfSessionService::new_with_hooks(
            Arc::new(SessionContext::new()),
            hooks,
        ));
        Self {
            login: Arc::new(Login::new(shared.users.clone(), require_tls)),
            service: Arc::new(AuditedService::new(inner, shared)),
            failed_logins,
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
        self.failed_logins.clone()
    }
}

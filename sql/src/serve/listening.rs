//! What a listener of `lakescore serve` serves and where: the project, its lakehouse, and
//! an address given on the command line instead of the project's setting. The PostgreSQL
//! listener ([`Server`](super::Server)) and the HTTP API ([`HttpServer`](super::http::HttpServer))
//! are its two protocols, each binding in its own way.

use std::marker::PhantomData;
use std::sync::Arc;

use lakescore_engine::{Lakehouse, Project};

/// A listener of protocol `P` to start: build it, then bind it.
pub struct Listening<P> {
    pub(super) project: Arc<Project>,
    pub(super) lakehouse: Arc<Lakehouse>,
    listen: Option<String>,
    protocol: PhantomData<P>,
}

impl<P> Listening<P> {
    /// Serves `project`'s lakehouse as its configuration says.
    pub fn new(project: Arc<Project>, lakehouse: Arc<Lakehouse>) -> Self {
        Self {
            project,
            lakehouse,
            listen: None,
            protocol: PhantomData,
        }
    }

    /// Listens on `address` (`host:port`) instead of the project's setting.
    pub fn with_listen(mut self, address: Option<String>) -> Self {
        self.listen = address;
        self
    }

    /// The address to bind: the one given on the command line, else `configured`.
    pub(super) fn address(&self, configured: &str) -> String {
        self.listen
            .clone()
            .unwrap_or_else(|| configured.to_string())
    }
}

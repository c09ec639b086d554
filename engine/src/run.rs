//! The shape every lakescore operation shares.
//!
//! A [`RunContext`] holds what every operation needs: the project, its lakehouse and the
//! run id written into every commit. Operations are builders made from it
//! (`cx.score(model, input)`, `Ingest::new(&cx)`), set with `with_<setting>(value)`
//! setters, and run by `.await`; they own clones of the context's `Arc`s, so the future
//! is `'static` and can be spawned. Each returns a report implementing [`Report`], which
//! the job runner, run history and the command line read the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::Project;
use crate::storage::commit::new_run_id;
use crate::storage::lakehouse::Lakehouse;

/// The project, lakehouse and run id an operation runs with.
#[derive(Debug, Clone)]
pub struct RunContext {
    project: Arc<Project>,
    lakehouse: Arc<Lakehouse>,
    run_id: String,
}

impl RunContext {
    /// A context for a new run of `project` over `lakehouse`, with a fresh run id.
    pub fn new(project: Arc<Project>, lakehouse: Arc<Lakehouse>) -> Self {
        Self {
            project,
            lakehouse,
            run_id: new_run_id(),
        }
    }

    /// The same project and lakehouse under `run_id` (a job passes its own to each step).
    #[must_use]
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self
    }

    /// A new run of the same project and lakehouse, with a fresh run id.
    #[must_use]
    pub fn next_run(&self) -> Self {
        Self::new(self.project.clone(), self.lakehouse.clone())
    }

    /// The project.
    pub fn project(&self) -> &Arc<Project> {
        &self.project
    }

    /// The lakehouse.
    pub fn lakehouse(&self) -> &Arc<Lakehouse> {
        &self.lakehouse
    }

    /// The run id every commit of this run carries.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }
}

/// What an operation's `.await` runs: it owns everything it uses.
pub type OperationFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What an operation did, as every consumer reads it.
pub trait Report: std::fmt::Display {
    /// The rows and table versions it read and wrote.
    fn data_moved(&self) -> DataMoved;

    /// One line for job history and logs. The full text, as the command line prints it,
    /// is the report's `Display`.
    fn summary(&self) -> String;
}

/// The rows and table versions an operation read and wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataMoved {
    /// Rows read.
    pub rows_read: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Tables read, as `schema.name@version`.
    pub tables_read: Vec<String>,
    /// Tables written, as `schema.name@version`.
    pub tables_written: Vec<String>,
}

impl DataMoved {
    /// Adds `other`'s rows and tables to these.
    pub fn add(&mut self, other: &DataMoved) {
        self.rows_read += other.rows_read;
        self.rows_written += other.rows_written;
        self.tables_read.extend(other.tables_read.iter().cloned());
        self.tables_written
            .extend(other.tables_written.iter().cloned());
    }
}

//! The SQL layer's error type: each variant names the model file, table, test or server
//! setting involved and says what to do.

use std::path::PathBuf;

use lakescore_engine::error::did_you_mean;

/// Result type of the SQL crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, ordering and running SQL models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine failure (storage, table, SQL).
    #[error(transparent)]
    Engine(Box<lakescore_engine::Error>),

    /// A model file that cannot be used as written.
    #[error("{}: {message}", file.display())]
    ModelFile {
        /// The model file.
        file: PathBuf,
        /// What is wrong, with the line when known, and how to fix it.
        message: String,
    },

    /// Models that read each other in a circle.
    #[error(
        "models read each other in a cycle: {}; a model cannot read its own table or a table built from it",
        cycle.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" -> ")
    )]
    Cycle {
        /// The files in the cycle, the first repeated at the end.
        cycle: Vec<PathBuf>,
    },

    /// A model reads a table that no model builds and the lakehouse does not have.
    #[error(
        "{}: reads '{table}', which no model builds and the lakehouse does not have{}",
        file.display(),
        did_you_mean(suggestions)
    )]
    UnknownInput {
        /// The model file.
        file: PathBuf,
        /// The table as written.
        table: String,
        /// Similar table names.
        suggestions: Vec<String>,
    },

    /// A selection that names no model.
    #[error("unknown model '{name}': the project's models are {}", known.join(", "))]
    UnknownModel {
        /// The name given.
        name: String,
        /// The models the project has.
        known: Vec<String>,
    },

    /// Models of a transform run failed or were skipped (each is reported on its own).
    #[error("{} model(s) did not build: {}; the tables of the models that built are committed", failed.len(), failed.join(", "))]
    ModelsFailed {
        /// The models that failed or were skipped.
        failed: Vec<String>,
        /// True when every failure is the user's to fix.
        user_error: bool,
    },

    /// The PostgreSQL-wire server cannot start as configured (users, TLS files, address).
    #[error("lakescore serve: {0}")]
    Serve(String),

    /// The server's socket failed.
    #[error("lakescore serve: {what}: {source}")]
    Network {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Reading the models folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when the user can fix the problem (model files, selection, SQL).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Engine(inner) => inner.is_user_error(),
            Error::Io { .. } | Error::Network { .. } => false,
            Error::ModelsFailed { user_error, .. } => *user_error,
            _ => true,
        }
    }
}

impl From<lakescore_engine::Error> for Error {
    fn from(error: lakescore_engine::Error) -> Self {
        Error::Engine(Box::new(error))
    }
}

impl From<lakescore_engine::datafusion::error::DataFusionError> for Error {
    fn from(error: lakescore_engine::datafusion::error::DataFusionError) -> Self {
        Error::Engine(Box::new(lakescore_engine::Error::from_datafusion(error)))
    }
}

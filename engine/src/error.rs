//! The engine's error type: every failure a user can meet, worded as advice.
//!
//! Each variant says what went wrong and what to do about it. [`Error::is_user_error`]
//! separates mistakes the user can fix (exit code 1) from runtime failures (exit code 2).

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

/// Result type of the engine crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `lakescore.toml` was found.
    #[error(
        "no lakescore.toml found in {searched} or any folder above it: run `lakescore init` to create a project, or pass --project PATH"
    )]
    ProjectNotFound {
        /// The folder the search started from.
        searched: PathBuf,
    },

    /// The project file exists but is not valid.
    #[error("{path}: {message}")]
    Config {
        /// The project file.
        path: PathBuf,
        /// What is wrong, with the line and key.
        message: String,
    },

    /// `lakescore init` would overwrite an existing project.
    #[error("{0} already exists: lakescore init never overwrites a project file")]
    ProjectExists(PathBuf),

    /// A table name does not have the `schema.name` form.
    #[error(
        "invalid table name '{name}': {reason} (tables are named schema.name, e.g. raw.crm_accounts)"
    )]
    InvalidTableName {
        /// The name as written.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A table that does not exist in the lakehouse.
    #[error("unknown table '{name}'{}", did_you_mean(suggestions))]
    UnknownTable {
        /// The name as written.
        name: String,
        /// Existing tables with similar names.
        suggestions: Vec<String>,
    },

    /// A version or timestamp that the table's history does not have.
    #[error("table '{table}' has no {wanted}: {cause}")]
    VersionNotFound {
        /// The table.
        table: String,
        /// The version or timestamp asked for.
        wanted: String,
        /// What Delta reported.
        cause: String,
    },

    /// Work cannot run on the Ballista cluster, or the cluster cannot be reached.
    #[error("cluster engine: {0}")]
    Cluster(String),

    /// The storage under the lakehouse root could not be reached or read.
    #[error("cannot read storage at {uri}: {cause}")]
    Storage {
        /// The URI that was being accessed.
        uri: String,
        /// The underlying cause.
        cause: String,
    },

    /// A Delta table operation failed.
    #[error("Delta table {uri}: {source}")]
    Delta {
        /// The table's URI.
        uri: String,
        /// The delta-rs error.
        #[source]
        source: DeltaTableError,
    },

    /// Another run created the table between this run finding none and committing.
    #[error(
        "Delta table {uri}: another run created this table while this one was writing its rows; \
         nothing was committed. Run again to add them to it"
    )]
    CreatedMeanwhile {
        /// The table's URI.
        uri: String,
    },

    /// Options that do not go together.
    #[error("{0}")]
    Usage(String),

    /// A SQL statement could not be parsed or planned.
    #[error("{0}")]
    Sql(String),

    /// A statement that would write through SQL.
    #[error("{what}: {}", crate::sql::read_only::WRITES_BELONG_ELSEWHERE)]
    ReadOnly {
        /// What was refused, e.g. "INSERT INTO is not allowed".
        what: String,
    },

    /// Rows whose column type the table cannot hold without changing values.
    #[error(
        "{table}: column '{column}' is {table_type} in the table but {written_type} in the rows written; casting would lose information, so nothing was written. Cast the column in the query to the table's type, or overwrite the table to change its type"
    )]
    LossyCast {
        /// The table written to.
        table: String,
        /// The column.
        column: String,
        /// The type the rows have.
        written_type: String,
        /// The type the table stores.
        table_type: String,
    },

    /// Query execution failed.
    #[error("query failed: {0}")]
    Query(DataFusionError),

    /// Writing results failed.
    #[error("cannot write {what}: {cause}")]
    Output {
        /// What was being written (a path or "standard output").
        what: String,
        /// The underlying cause.
        cause: String,
    },

    /// Building a result in memory failed.
    #[error("cannot build result: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),

    /// Local file system failure.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Turns a delta-rs error about the table at `uri` into [`Error::Delta`], for
    /// `map_err`.
    pub fn delta_at(uri: &str) -> impl Fn(DeltaTableError) -> Error + Copy + '_ {
        move |source| Error::Delta {
            uri: uri.to_string(),
            source,
        }
    }

    /// True when the user can fix the problem (bad input, configuration or SQL), false for
    /// runtime failures (storage, I/O, execution).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::ProjectNotFound { .. }
                | Error::Config { .. }
                | Error::ProjectExists(_)
                | Error::InvalidTableName { .. }
                | Error::UnknownTable { .. }
                | Error::VersionNotFound { .. }
                | Error::Usage(_)
                | Error::Sql(_)
                | Error::ReadOnly { .. }
                | Error::LossyCast { .. }
        )
    }

    /// Classifies a DataFusion error: parsing and planning problems are the user's SQL,
    /// everything else is an execution failure.
    pub fn from_datafusion(error: DataFusionError) -> Self {
        let is_users_sql = matches!(
            error.find_root(),
            DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_)
        );
        if is_users_sql {
            Error::Sql(error.strip_backtrace())
        } else {
            Error::Query(error)
        }
    }
}

/// The end of an unknown-name message: the closest names, or where to look them up.
pub fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::from(": `lakescore tables` lists the tables in the lakehouse"),
        [one] => format!(": did you mean {one}?"),
        many => format!(": did you mean one of {}?", many.join(", ")),
    }
}

impl From<DataFusionError> for Error {
    fn from(error: DataFusionError) -> Self {
        Error::from_datafusion(error)
    }
}

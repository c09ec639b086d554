//! The connectors' error type: each variant names the source, file, column or row involved
//! and says what to do.

use std::fmt;

/// Result type of the connectors crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while landing extracts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine failure (storage, table, configuration).
    #[error(transparent)]
    Engine(Box<lakescore_engine::Error>),

    /// A dialect option that cannot be used.
    #[error("dialect: {0}")]
    Dialect(String),

    /// A source that is misconfigured.
    #[error("source '{source_name}': {message}")]
    Source {
        /// The source.
        source_name: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// `lakescore ingest NAME` named a source the project does not declare.
    #[error(
        "unknown source '{name}': the project declares {}",
        known_sources(known)
    )]
    UnknownSource {
        /// The name given.
        name: String,
        /// The declared sources.
        known: Vec<String>,
    },

    /// A file that cannot be landed as a whole (missing required column, unreadable).
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// Too many bad rows in a file: the batch is rejected and nothing is committed.
    #[error(
        "{file}: {bad} of {total} rows {} bad, above max_bad_rows = {limit}; nothing was committed. First problem: {first}",
        if *whole_file { "are" } else { "read so far are" }
    )]
    TooManyBadRows {
        /// The file.
        file: String,
        /// Bad rows in it.
        bad: u64,
        /// Rows read.
        total: u64,
        /// Whether every row was read (reading stops once a count limit is passed).
        whole_file: bool,
        /// The configured limit.
        limit: String,
        /// The first bad row's reason.
        first: String,
    },

    /// Reading or writing storage failed.
    #[error("{uri}: {cause}")]
    Storage {
        /// The URI involved.
        uri: String,
        /// The underlying cause.
        cause: String,
    },
}

impl Error {
    /// True when the user can fix the problem (configuration or input files).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Engine(inner) => inner.is_user_error(),
            Error::Storage { .. } => false,
            _ => true,
        }
    }

    /// A converter of any displayable error into a storage error for `uri`.
    pub fn storage_at<E: fmt::Display>(uri: &str) -> impl Fn(E) -> Self + Copy + '_ {
        move |cause| Error::storage(uri, cause)
    }

    /// A storage error for `uri`.
    pub fn storage(uri: impl fmt::Display, cause: impl fmt::Display) -> Self {
        Error::Storage {
            uri: uri.to_string(),
            cause: cause.to_string(),
        }
    }
}

impl From<lakescore_engine::Error> for Error {
    fn from(error: lakescore_engine::Error) -> Self {
        Error::Engine(Box::new(error))
    }
}

fn known_sources(known: &[String]) -> String {
    if known.is_empty() {
        String::from("no [[source]] entries")
    } else {
        known.join(", ")
    }
}

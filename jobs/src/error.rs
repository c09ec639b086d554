//! The jobs crate's error type.

use chrono::{DateTime, Utc};

/// Result type of the jobs crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong running jobs, checks and alerts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine failure (storage, SQL, models, project file).
    #[error(transparent)]
    Engine(Box<lakescore_engine::Error>),

    /// A landing failure.
    #[error(transparent)]
    Connectors(Box<lakescore_connectors::Error>),

    /// A SQL model failure.
    #[error(transparent)]
    Sql(Box<lakescore_sql::Error>),

    /// `lakescore run NAME` for a job the project file does not declare.
    #[error("no [[job]] named '{name}' in the project file{}", known_list(known))]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The jobs that exist.
        known: Vec<String>,
    },

    /// `--from STEP` names no step of the job.
    #[error("job '{job}' has no step '{step}'; its steps are: {}", steps.join(", "))]
    UnknownStep {
        /// The job.
        job: String,
        /// The step asked for.
        step: String,
        /// The job's steps.
        steps: Vec<String>,
    },

    /// Another process holds the job's lease: a run is in progress.
    #[error(
        "job '{job}' is already running (run {run_id}, by {holder}); its lease expires at {expires_at} unless renewed. Wait for that run, or check `lakescore runs {job}`"
    )]
    JobBusy {
        /// The job.
        job: String,
        /// The run in progress.
        run_id: String,
        /// Which process runs it (host, process id).
        holder: String,
        /// When the lease runs out if its holder stops renewing it.
        expires_at: DateTime<Utc>,
    },

    /// This process lost the job's lease while running it (it was paused longer than the
    /// lease lasts, or storage was unreachable), so the run stopped.
    #[error(
        "job '{job}' lost its lease while running ({reason}); the run was cancelled so two processes never run it at once"
    )]
    LeaseLost {
        /// The job.
        job: String,
        /// What happened.
        reason: String,
    },

    /// Storage failed while reading or writing job state.
    #[error("job state at {path}: {message}")]
    State {
        /// The object that could not be read or written.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// A job run ended without succeeding.
    #[error("job '{job}' {status} (run {run_id}) at step '{step}': {message}")]
    RunFailed {
        /// The job.
        job: String,
        /// The run.
        run_id: String,
        /// failed, timed out or cancelled.
        status: String,
        /// The step that did not succeed.
        step: String,
        /// Why.
        message: String,
    },

    /// `check` found tables older than their freshness rules allow.
    #[error("{} stale {}:\n{}", stale.len(), if stale.len() == 1 { "table" } else { "tables" }, stale.join("\n"))]
    Stale {
        /// One line per stale table: which, how old, who last wrote it.
        stale: Vec<String>,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::from(": declare one with [[job]]")
    } else {
        format!("; jobs: {}", known.join(", "))
    }
}

impl Error {
    /// True for mistakes the user can fix (bad job name, step, project file), false for
    /// runtime failures.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Engine(inner) => inner.is_user_error(),
            Error::Connectors(inner) => inner.is_user_error(),
            Error::Sql(inner) => inner.is_user_error(),
            Error::UnknownJob { .. } | Error::UnknownStep { .. } => true,
            _ => false,
        }
    }
}

impl From<lakescore_engine::Error> for Error {
    fn from(error: lakescore_engine::Error) -> Self {
        Error::Engine(Box::new(error))
    }
}

impl From<lakescore_connectors::Error> for Error {
    fn from(error: lakescore_connectors::Error) -> Self {
        Error::Connectors(Box::new(error))
    }
}

impl From<lakescore_sql::Error> for Error {
    fn from(error: lakescore_sql::Error) -> Self {
        Error::Sql(Box::new(error))
    }
}

impl From<lakescore_engine::datafusion::error::DataFusionError> for Error {
    fn from(error: lakescore_engine::datafusion::error::DataFusionError) -> Self {
        lakescore_engine::Error::from_datafusion(error).into()
    }
}

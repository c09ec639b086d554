//! lakescore's jobs: declared pipelines and their steps ([`runner`], [`steps`]), the cron
//! scheduler ([`scheduler`]) coordinated through a lease kept in the lakehouse
//! ([`lease`]), run history in `ops.job_runs` and `ops.step_runs` ([`history`]), freshness
//! checks ([`freshness`]) and webhook alerts ([`alerts`]).
//!
//! The crate sits on the engine, connectors and SQL crates and calls their operations;
//! the `[[job]]`, `[freshness]` and `[[alert]]` settings are read by the engine's project
//! file, so a mistake in them is reported with its line like any other.

pub mod alerts;
pub mod error;
pub mod freshness;
pub mod history;
pub mod lease;
pub mod runner;
pub mod scheduler;
pub mod steps;

pub use error::{Error, Result};
pub use runner::{RunJob, RunOutcome, RunReport, Shutdown};
pub use scheduler::Scheduler;

//! lakescore's jobs: declared pipelines and their steps, the cron scheduler, run history,
//! freshness checks, drift, feedback and retraining steps, and alerts.
//!
//! The crate sits on the engine, connectors and SQL crates and calls their operations.

pub use lakescore_engine as engine;

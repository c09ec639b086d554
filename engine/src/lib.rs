//! lakescore's engine: everything the other crates build on, in three layers that import
//! only downwards:
//!
//! - [`storage`]: the lakehouse, Delta writes, commit lineage, quarantine, vacuum;
//! - [`sql`]: the SQL session, catalog, time travel, functions and result formats;
//! - [`ml`]: models, scoring, drift and feedback.
//!
//! Beside them: the project file ([`config`]), errors ([`error`]) and injected faults for
//! crash tests ([`fault`]), and the shape every operation shares ([`run`]). Nothing here
//! knows about jobs or the CLI.

pub mod config;
pub mod error;
pub mod fault;
pub mod ml;
pub mod run;
pub mod sql;
pub mod storage;

pub use config::Project;
pub use error::{Error, Result};
pub use sql::session::SqlSession;
pub use storage::lakehouse::{Lakehouse, TableName, TableVersion};

/// Re-exported so every crate uses the engine's DataFusion (and its Arrow and Parquet).
pub use datafusion;
/// Re-exported so every crate uses the engine's delta-rs.
pub use deltalake;

//! lakescore's engine: everything the other crates build on.
//!
//! It owns the project file ([`config`]), the lakehouse root and its object stores
//! ([`lakehouse`]), the DataFusion catalog that exposes every Delta table under the root
//! ([`catalog`]) and the saved views it plans ([`views`]), time travel in SQL ([`time_travel`]), SQL that reads and never writes ([`read_only`]), drift monitoring ([`drift`]), lakescore's SQL functions
//! ([`functions`]), the lineage metadata of every commit ([`commit`]), the SQL session every entry point
//! uses ([`session`]), table listings and history ([`inspect`]) writing results in the
//! formats other tools read ([`output`]), table versions as files ([`export`]) and query results into Delta tables ([`write`]). Nothing here knows about jobs or the CLI.

pub mod catalog;
pub mod commit;
pub mod config;
pub mod delta_types;
pub mod drift;
pub mod error;
pub mod export;
pub mod fault;
pub mod feedback;
pub mod functions;
pub mod hashing;
pub mod inspect;
pub mod lakehouse;
pub mod lossless;
pub mod models;
pub mod output;
pub mod quarantine;
pub mod read_only;
pub mod retrain_requests;
pub mod session;
pub mod time_travel;
pub mod vacuum;
pub mod views;
pub mod write;

pub use config::Project;
pub use error::{Error, Result};
pub use lakehouse::{Lakehouse, TableName, TableVersion};
pub use session::SqlSession;

/// Re-exported so every crate uses the engine's DataFusion (and its Arrow and Parquet).
pub use datafusion;
/// Re-exported so every crate uses the engine's delta-rs.
pub use deltalake;

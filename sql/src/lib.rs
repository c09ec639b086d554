//! lakescore's SQL layer: SQL models that turn raw extracts into curated tables.
//!
//! A model is a `models/*.sql` file holding one `SELECT` and its settings
//! ([`model`]); the models form a dependency graph found by parsing their queries
//! ([`dag`]); `transform` runs them in order on pinned input versions and commits each
//! result only after its data tests ([`data_test`], [`testing`]) pass ([`transform`]);
//! [`lineage`] walks the commit metadata back from a table version to the extract files.
//! [`serve`] is the PostgreSQL-wire server that lets BI tools and `psql` query the tables.

pub mod dag;
pub mod data_test;
pub mod error;
pub mod lineage;
pub mod model;
pub mod serve;
pub mod testing;
pub mod transform;

pub use error::{Error, Result};
pub use transform::{ModelReport, ModelStatus, Transform, TransformEvent, TransformReport};

/// Re-exported so dependents use the same engine.
pub use lakescore_engine as engine;

//! lakescore's SQL layer: SQL models (the `models/*.sql` DAG, data tests, lineage) and the
//! PostgreSQL-wire server that serves the lakehouse to analysts and BI tools.
//!
//! The crate sits on [`lakescore_engine`], whose `SqlSession` every SQL entry point shares.

pub use lakescore_engine as engine;

//! lakescore's connectors: sources and their dialects (CSV, JSON, Parquet; CRM and ERP
//! presets), landing extracts into Delta tables (append, overwrite, merge), quarantine of
//! bad rows, and the exactly-once ledger of landed files.
//!
//! The crate sits on [`lakescore_engine`], which owns the lakehouse and its catalog.

pub use lakescore_engine as engine;

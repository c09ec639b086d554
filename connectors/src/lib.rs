//! lakescore's connectors: landing CRM, ERP and cloud-storage extracts as versioned Delta
//! tables, exactly once.
//!
//! A `[[source]]` names files (a local glob or an object store URI glob), a format
//! ([`reader`]: CSV, JSON, Parquet), a dialect ([`dialect`]: the `crm` and `erp` presets
//! and their options) and a target table. [`landing::Ingest`] lands each source's new files
//! as one Delta commit with lineage columns ([`schema`]), quarantines bad rows
//! ([`quarantine`]), records every landed file in the table's own ledger ([`ledger`]), and
//! upserts for merge sources ([`merge`]).

pub mod batch;
pub mod cell;
pub mod dialect;
pub mod error;
pub mod files;
pub mod landing;
pub mod ledger;
pub mod merge;
pub mod quarantine;
pub mod reader;
mod reading;
pub mod schema;

pub use error::{Error, Result};
pub use landing::{Ingest, IngestReport, Progress, SourceReport};

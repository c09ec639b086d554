//! Reading extract files: delimited text in chunks of records parsed in parallel
//! ([`csv`]), JSON and Parquet record by record behind one trait.
//!
//! A reader streams a local file (object-store extracts are first copied to a local
//! temporary file) and yields records with their row number and raw text, so a bad record
//! can be quarantined exactly as it was. Problems with one record (a wrong field count,
//! undecodable bytes, broken JSON) are that record's; problems with the file (unreadable,
//! not Parquet) end it.

pub(crate) mod csv;
mod digest;
pub(crate) mod json;
pub(crate) mod parquet;

use crate::cell::Cell;
use crate::error::Result;

/// One record of an extract.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Line number (CSV, JSON lines) or record number (JSON arrays, Parquet), from 1.
    pub row: u64,
    /// The record as it appeared in the file.
    pub raw: String,
    /// The fields, one per header column, or why the record could not be split into them.
    pub fields: std::result::Result<Vec<Cell>, String>,
}

/// A file's records, after its header.
pub trait RecordReader: Iterator<Item = Result<Record>> + Send {
    /// The column names, in file order.
    fn headers(&self) -> &[String];

    /// Once every record was read: `sha256:<hex>` of the bytes read, to compare with the
    /// fingerprint the file was listed with. None for formats not read front to back.
    fn fingerprint(&self) -> Option<String> {
        None
    }
}

/// How large one record may be.
#[derive(Debug, Clone, Copy)]
pub struct RecordLimits {
    /// Largest field of a delimited record, in bytes.
    pub max_field_bytes: usize,
    /// Largest record (or JSON line), in bytes.
    pub max_record_bytes: usize,
}

impl RecordLimits {
    /// The limits of `[ingest]`.
    pub fn of(settings: &lakescore_engine::config::IngestConfig) -> Self {
        let bytes = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        Self {
            max_field_bytes: bytes(settings.max_field_bytes),
            max_record_bytes: bytes(settings.max_record_bytes),
        }
    }
}

/// Bytes of an oversized record kept to show in quarantine.
pub(crate) const PREVIEW_BYTES: usize = 1024;

/// What stands for a record longer than `max_record_bytes` (from line or record `row`,
/// starting with `start`): its first bytes, and why it was skipped.
fn oversized_record(row: u64, start: &[u8], max_record_bytes: usize) -> Record {
    let kept = &start[..start.len().min(PREVIEW_BYTES)];
    Record {
        row,
        raw: format!("{}…", String::from_utf8_lossy(kept)),
        fields: Err(oversized_problem(kept.len(), max_record_bytes)),
    }
}

/// Why a record longer than `max_record_bytes` was skipped, of which `kept` bytes are
/// shown in quarantine.
pub(crate) fn oversized_problem(kept: usize, max_record_bytes: usize) -> String {
    format!(
        "the record is longer than max_record_bytes ({max_record_bytes} bytes) in [ingest]; it was skipped to its end (raw holds its first {kept} bytes)"
    )
}

/// A file-level error for `display`.
pub(crate) fn file_error(display: &str, message: impl std::fmt::Display) -> crate::error::Error {
    crate::error::Error::File {
        file: display.to_string(),
        message: message.to_string(),
    }
}

//! The exactly-once ledger of landed files, kept in the table itself.
//!
//! Each landed file is recorded as a Delta application transaction (`txn` action) in the
//! same commit as its rows: the app id names the source, the file's path and its content
//! fingerprint. Transactions are part of the table's state (they survive checkpoints and
//! log cleanup), so the ledger can never disagree with the data: a crash before the commit
//! leaves neither, and a rerun lands the file exactly once. The quarantine table records
//! the same ids, so a rerun after a crash between the two commits quarantines nothing twice.

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use lakescore_engine::storage::hashing::hex;

/// The ledger id of the file shown as `display` whose content has `fingerprint`, landed
/// by `source`: same path and same content, same id.
pub fn ledger_id(source: &str, display: &str, fingerprint: &str) -> String {
    let digest = Sha256::digest(format!("{display}\n{fingerprint}"));
    format!("lakescore.ingest.{source}.{}", &hex(&digest)[..32])
}

/// True when `table` has recorded `id`.
pub async fn is_recorded(table: &DeltaTable, id: &str) -> Result<bool> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::storage(table.table_url(), e))?;
    let version = snapshot
        .transaction_version(table.log_store().as_ref(), id)
        .await
        .map_err(|e| Error::storage(table.table_url(), e))?;
    Ok(version.is_some())
}

/// The transaction actions recording `ids`.
pub fn record(ids: &[String], now_millis: i64) -> Vec<Transaction> {
    ids.iter()
        .map(|id| Transaction::new_with_last_update(id, 0, Some(now_millis)))
        .collect()
}

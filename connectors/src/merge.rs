//! Merge landing (`mode = "merge"`): upsert a batch into its table on the key columns,
//! the newest extract winning.
//!
//! The batch is first streamed into a staging Delta table under `<root>/_staging/<batch>`
//! (never a whole batch in memory), deduplicated on the key with a window function (the
//! last file by name, and within it the last row, wins), and merged into the target by
//! delta-rs in streaming mode (with a memory pool that spills to disk), in one commit that carries the files' ledger ids. The
//! staging table is deleted afterwards; one left by a crash is ignored by the catalog.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::prelude::SessionContext;

use deltalake::DeltaTable;
use deltalake::delta_datafusion::create_session_state_with_spill_config;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use lakescore_engine::Lakehouse;
use lakescore_engine::storage::descriptions::Descriptions;
use lakescore_engine::storage::lakehouse::quote_identifier;
use lakescore_engine::storage::write::{STAGING, delete_folder, merge_frame};
use url::Url;

use crate::error::{Error, Result};
use crate::landing::{create_delta_table_at, fault_point};
use crate::schema::{SOURCE_FILE, SOURCE_ROW};

/// A batch being staged for a merge.
pub struct StagingTable {
    table: DeltaTable,
    writer: RecordBatchWriter,
    folder: String,
}

impl StagingTable {
    /// Creates the staging table for `batch_id`.
    pub async fn create(lakehouse: &Lakehouse, batch_id: &str, schema: &Schema) -> Result<Self> {
        let folder = format!("{STAGING}/{batch_id}");
        let url: Url = lakehouse
            .root()
            .join(&format!("{folder}/"))
            .map_err(|e| Error::storage(lakehouse.root(), e))?;
        let table = create_delta_table_at(lakehouse, url, "staging", schema, batch_id).await?;
        let writer = RecordBatchWriter::for_table(&table)
            .map_err(|e| Error::storage(table.table_url(), e))?;
        Ok(Self {
            table,
            writer,
            folder,
        })
    }

    /// Deletes the staging table without merging it.
    pub async fn discard(self, lakehouse: &Lakehouse) {
        delete_folder(lakehouse, &self.folder).await;
    }

    /// Stages one batch.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.writer
            .write_with_mode(batch, WriteMode::MergeSchema)
            .await
            .map_err(|e| Error::storage(self.table.table_url(), e))
    }
}

/// Merges the staged batch into `target` on `keys`, holding at most `memory_bytes` before
/// spilling to disk, and returns the new version.
pub async fn merge_staged(
    lakehouse: &Lakehouse,
    mut staging: StagingTable,
    target: DeltaTable,
    keys: &[String],
    properties: CommitProperties,
    memory_bytes: usize,
) -> Result<u64> {
    let staged_uri = staging.table.table_url().to_string();
    staging
        .writer
        .flush_and_commit(&mut staging.table)
        .await
        .map_err(|e| Error::storage(&staged_uri, e))?;
    fault_point("ingest-commit")?;

    let state = create_session_state_with_spill_config(Some(memory_bytes), None);
    let ctx = SessionContext::new_with_state(state);
    let provider = staging
        .table
        .table_provider()
        .await
        .map_err(|e| Error::storage(&staged_uri, e))?;
    ctx.register_table("staged", provider)
        .map_err(|e| Error::storage(&staged_uri, e))?;
    let key_list = keys
        .iter()
        .map(|k| quote_identifier(k))
        .collect::<Vec<_>>()
        .join(", ");
    let all_columns = ctx
        .table("staged")
        .await
        .map_err(|e| Error::storage(&staged_uri, e))?
        .schema()
        .fields()
        .iter()
        .map(|f| quote_identifier(f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let newest_per_key = format!(
        "SELECT {all_columns} FROM (SELECT *, row_number() OVER (PARTITION BY {key_list} \
         ORDER BY {SOURCE_FILE} DESC, {SOURCE_ROW} DESC) AS lakescore_rank FROM staged) \
         WHERE lakescore_rank = 1"
    );
    let source = ctx
        .sql(&newest_per_key)
        .await
        .map_err(|e| Error::storage(&staged_uri, e))?;
    let version = merge_frame(target, source, keys, properties, &Descriptions::default())
        .await
        .map_err(|e| Error::Engine(Box::new(e)))?;
    delete_folder(lakehouse, &staging.folder).await;
    Ok(version)
}

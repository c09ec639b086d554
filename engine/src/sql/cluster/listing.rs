//! A Delta table version as the cluster reads it: a Parquet listing over exactly the files
//! that version holds (never the folder, which also holds files earlier versions removed).
//!
//! Ballista serializes plans to send them to its executors, and delta-rs's scan cannot be
//! serialized; a listing of Parquet files can. Features a plain Parquet read would get
//! wrong are refused: deletion vectors (rows a file still holds but the table deleted),
//! column mapping (columns renamed in the log only) and partition columns (values kept in
//! the log, not the files). lakescore writes none of them.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake::DeltaTable;

use crate::error::{Error, Result};
use crate::storage::lakehouse::table_provider;

/// The table property that turns on column mapping.
const COLUMN_MAPPING: &str = "delta.columnMapping.mode";

/// `table` (at the version it was opened at) as a Parquet listing of its active files,
/// with the columns and types its Delta scan has.
pub async fn listing_provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    let uri = table.table_url().to_string();
    let refuse = |cause: String| {
        Error::Cluster(format!(
            "cannot read {uri}: {cause}, and executors read plain Parquet files: run this with --engine local"
        ))
    };
    let snapshot = table.snapshot().map_err(|e| refuse(e.to_string()))?;
    let metadata = snapshot.metadata();
    if let Some(mode) = metadata
        .configuration()
        .get(COLUMN_MAPPING)
        .filter(|mode| mode.as_str() != "none")
    {
        return Err(refuse(format!(
            "the table uses column mapping ({COLUMN_MAPPING} = {mode})"
        )));
    }
    if let Some(column) = metadata.partition_columns().first() {
        return Err(refuse(format!("the table is partitioned by '{column}'")));
    }
    let mut root = table.table_url().clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let mut files = Vec::new();
    for file in snapshot.log_data().iter() {
        if file.deletion_vector_descriptor().is_some() {
            return Err(refuse(format!(
                "file {} has a deletion vector",
                file.path()
            )));
        }
        let url = root
            .join(&file.path())
            .map_err(|e| refuse(format!("file {}: {e}", file.path())))?;
        files.push(ListingTableUrl::parse(url.as_str())?);
    }
    // The columns and types of the table's own scan, so both engines read the same rows.
    let schema = table_provider(table).await?.schema();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(files)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::config::LakehouseConfig;
    use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion};
    use crate::storage::write::{WriteMode, new_table_at, write_batch};

    fn batch(ids: &[i64]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, false),
        ]);
        let regions: Vec<&str> = ids.iter().map(|_| "eu").collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(regions)),
            ],
        )
        .unwrap()
    }

    async fn ids(table: &DeltaTable) -> Vec<i64> {
        let provider = listing_provider(table).await.unwrap();
        let rows = SessionContext::new()
            .read_table(provider)
            .unwrap()
            .sort_by(vec![datafusion::prelude::col("id")])
            .unwrap()
            .collect()
            .await
            .unwrap();
        rows.iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                column.values().to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_listing_reads_exactly_the_files_of_the_pinned_version() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Lakehouse::new(&LakehouseConfig::default(), dir.path()).unwrap();
        let name = TableName::parse("raw.events").unwrap();
        let write = |ids: &'static [i64], mode| {
            write_batch(&lakehouse, &name, batch(ids), mode, HashMap::new())
        };
        write(&[1, 2, 3], WriteMode::Overwrite).await.unwrap();
        write(&[10, 20], WriteMode::Overwrite).await.unwrap();
        write(&[30], WriteMode::Append).await.unwrap();
        let open = |version| lakehouse.open_table(&name, TableVersion::Version(version));
        // The folder keeps the file version 1 removed; no version after it reads it.
        assert_eq!(ids(&open(0).await.unwrap()).await, [1, 2, 3]);
        assert_eq!(ids(&open(1).await.unwrap()).await, [10, 20]);
        assert_eq!(ids(&open(2).await.unwrap()).await, [10, 20, 30]);
    }

    #[tokio::test]
    async fn a_partitioned_table_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Lakehouse::new(&LakehouseConfig::default(), dir.path()).unwrap();
        let name = TableName::parse("raw.events").unwrap();
        let table = new_table_at(&lakehouse, lakehouse.table_url(&name).unwrap())
            .unwrap()
            .write(vec![batch(&[1])])
            .with_partition_columns(["region"])
            .await
            .unwrap();
        let error = listing_provider(&table).await.unwrap_err().to_string();
        assert!(
            error.contains("the table is partitioned by 'region', and executors read plain Parquet files: run this with --engine local"),
            "{error}"
        );
    }
}

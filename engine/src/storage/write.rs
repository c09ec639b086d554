//! Writing query results into Delta tables: append, overwrite (creating the table in the
//! same commit when it does not exist yet) and merge on key columns.
//!
//! Every write streams its input plan through delta-rs and makes exactly one commit, with
//! the commit properties (lineage metadata, ledger entries) the caller gives, so a crash
//! before the commit leaves the table at its previous version.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::parquet::arrow::ArrowSchemaConverter;
use datafusion::parquet::basic::{Compression, Type as PhysicalType};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterPropertiesBuilder};
use datafusion::parquet::schema::types::{ColumnDescPtr, ColumnPath};
use datafusion::prelude::SessionContext;
use datafusion::prelude::col;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::planner::DeltaPlanner;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use serde_json::Value;
use url::Url;

use crate::error::{Error, Result};
use crate::storage::delta_types::with_delta_types;
use crate::storage::descriptions::{Descriptions, described_plan};
use crate::storage::lakehouse::{Lakehouse, TableName};
use crate::storage::lossless::first_lossy_column;

/// The folder under the root that holds staging tables: intermediate results that are
/// not part of the catalog and are deleted once used.
pub const STAGING: &str = "_staging";

/// How a write treats the rows already in the table.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteMode {
    /// Add the rows; new columns are added to the table's schema.
    Append,
    /// Replace every row (and the schema) with the written ones.
    Overwrite,
    /// Replace the rows matching the predicate (every written row must match it).
    ReplaceWhere(datafusion::prelude::Expr),
}

/// Table `name` ready to be written: its latest version, or a new table when the folder
/// holds none.
pub async fn table_for_write(lakehouse: &Lakehouse, name: &TableName) -> Result<DeltaTable> {
    match lakehouse.open_if_exists(name).await? {
        Some(table) => Ok(table),
        None => new_table_at(lakehouse, lakehouse.table_url(name)?),
    }
}

/// A handle for creating a new Delta table at `url`.
pub fn new_table_at(lakehouse: &Lakehouse, url: Url) -> Result<DeltaTable> {
    let uri = url.to_string();
    if let Ok(folder) = url.to_file_path() {
        std::fs::create_dir_all(&folder).map_err(|source| Error::Io {
            path: folder.clone(),
            source,
        })?;
    }
    deltalake::DeltaTableBuilder::from_url(url)
        .and_then(|builder| {
            builder
                .with_storage_options(lakehouse.storage_options().clone())
                .build()
        })
        .map_err(|source| Error::Delta { uri, source })
}

/// The largest dictionary a column chunk keeps before it writes its values plainly. A
/// column of categories (plans, regions, feature names) fits in a few KiB; one of ids or
/// formatted numbers would intern every value into a dictionary as large as the data
/// (Parquet's default allows 1 MiB) and save nothing.
const DICTIONARY_LIMIT: usize = 64 * 1024;

/// The encoded size at which a writer writes out the row group it holds: what a write
/// keeps in memory per file it is writing, however many rows it writes. Ingest sets its
/// own (`[ingest] row_group_mb`, by default the same).
const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// How lakescore writes Parquet files of rows with `schema`: row groups of at most
/// [`ROW_GROUP_BYTES`], Snappy-compressed, float columns (nested ones too) without a
/// dictionary, since their values rarely repeat and interning every value costs more than
/// the rest of the write, and other columns with one only while it stays small
/// ([`DICTIONARY_LIMIT`]).
pub fn parquet_properties(schema: &Schema) -> WriterPropertiesBuilder {
    let properties = WriterPropertiesBuilder::default()
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_compression(Compression::SNAPPY)
        .set_dictionary_page_size_limit(DICTIONARY_LIMIT);
    leaves(schema)
        .iter()
        .filter(|leaf| {
            matches!(
                leaf.physical_type(),
                PhysicalType::DOUBLE | PhysicalType::FLOAT
            )
        })
        .fold(properties, |properties, leaf| {
            properties.set_column_dictionary_enabled(leaf.path().clone(), false)
        })
}

/// How particular top-level columns are laid out in Parquet, beyond
/// [`parquet_properties`]' rules for every column.
#[derive(Debug, Default, Clone, Copy)]
pub struct ColumnLayout<'a> {
    /// Columns whose values neither repeat nor compress (hashes, probabilities): written
    /// without compression or dictionary, which would cost time and save nothing.
    pub incompressible: &'a [&'a str],
    /// Columns no reader skips files or row groups by (lists of explanations): written
    /// without statistics, which would compare every value they hold.
    pub unsummarized: &'a [&'a str],
}

impl ColumnLayout<'_> {
    /// How rows of `schema` are written ([`parquet_properties`]), with these columns laid
    /// out as they should be.
    pub fn properties(&self, schema: &Schema) -> WriterPropertiesBuilder {
        let mut properties = parquet_properties(schema);
        for column in self.incompressible {
            let path = ColumnPath::from(*column);
            properties = properties
                .set_column_compression(path.clone(), Compression::UNCOMPRESSED)
                .set_column_dictionary_enabled(path, false);
        }
        for leaf in leaves(schema) {
            let path = leaf.path();
            if self.unsummarized.contains(&path.parts()[0].as_str()) {
                properties =
                    properties.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
            }
        }
        properties
    }
}

/// The Parquet leaf columns rows of `schema` are written to (none for a schema Parquet
/// cannot hold: the write then fails with the writer's own error).
fn leaves(schema: &Schema) -> Vec<ColumnDescPtr> {
    ArrowSchemaConverter::new()
        .convert(schema)
        .map(|parquet| parquet.columns().to_vec())
        .unwrap_or_default()
}

/// Writes `frame`'s rows into `table` in one commit and returns the table at its new
/// version. A new table is created with `descriptions`; an existing one keeps its column
/// descriptions unless `descriptions` declares others ([`describe`](crate::storage::descriptions::describe)
/// records a change of them).
pub async fn write_frame(
    table: DeltaTable,
    frame: DataFrame,
    mode: WriteMode,
    properties: CommitProperties,
    descriptions: &Descriptions,
) -> Result<DeltaTable> {
    let layout = ColumnLayout::default();
    write_laid_out(table, frame, mode, properties, descriptions, layout).await
}

/// [`write_frame`], with `layout`'s columns laid out as it says.
pub async fn write_laid_out(
    table: DeltaTable,
    frame: DataFrame,
    mode: WriteMode,
    properties: CommitProperties,
    descriptions: &Descriptions,
    layout: ColumnLayout<'_>,
) -> Result<DeltaTable> {
    let uri = table.table_url().to_string();
    let (state, plan) = as_written(frame)?.into_parts();
    let plan = described_plan(plan, &table, descriptions)?;
    // delta-rs plans its writes with nodes only its own query planner executes.
    let state = SessionStateBuilder::new_from_existing(state)
        .with_query_planner(DeltaPlanner::new())
        .build();
    let is_new = table.version().is_none();
    if !is_new && !matches!(mode, WriteMode::Overwrite) {
        refuse_lossy_casts(&table, plan.schema().as_arrow())?;
    }
    let (save_mode, schema_mode, replace_where) = match mode {
        WriteMode::Append => (SaveMode::Append, SchemaMode::Merge, None),
        WriteMode::Overwrite => (SaveMode::Overwrite, SchemaMode::Overwrite, None),
        // A new table has no rows to replace.
        WriteMode::ReplaceWhere(_) if is_new => (SaveMode::Append, SchemaMode::Merge, None),
        WriteMode::ReplaceWhere(predicate) => {
            (SaveMode::Overwrite, SchemaMode::Merge, Some(predicate))
        }
    };
    let schema = plan.schema().as_arrow();
    let parquet = layout.properties(schema).build();
    let mut builder = table.write(Vec::new()).with_writer_properties(parquet);
    if let (true, Some(description)) = (is_new, &descriptions.table) {
        builder = builder.with_description(description);
    }
    if let Some(predicate) = replace_where {
        builder = builder.with_replace_where(predicate);
    }
    let written = builder
        .with_input_plan(plan)
        .with_session_state(Arc::new(state))
        .with_save_mode(save_mode)
        .with_schema_mode(schema_mode)
        .with_commit_properties(properties)
        .await
        .map_err(|source| Error::Delta { uri, source })?;
    Ok(written)
}

/// Writes one in-memory batch (a run-history or bookkeeping record) into table `name`,
/// creating the table on first use, in one commit with `metadata`; returns the new version.
pub async fn write_batch(
    lakehouse: &Lakehouse,
    name: &TableName,
    batch: RecordBatch,
    mode: WriteMode,
    metadata: HashMap<String, Value>,
) -> Result<u64> {
    let frame = SessionContext::new().read_batch(batch)?;
    let table = table_for_write(lakehouse, name).await?;
    let properties = CommitProperties::default().with_metadata(metadata);
    let written = write_frame(table, frame, mode, properties, &Descriptions::default()).await?;
    committed_version(&written)
}

/// Upserts `source` into `target` on `keys` in one commit: matching rows are updated,
/// the others inserted, new columns added. `source` must hold each key at most once. A
/// new table is created with `descriptions`.
pub async fn merge_frame(
    target: DeltaTable,
    source: DataFrame,
    keys: &[String],
    properties: CommitProperties,
    descriptions: &Descriptions,
) -> Result<u64> {
    let uri = target.table_url().to_string();
    let delta = Error::delta_at(&uri);
    let is_empty = match target.snapshot() {
        Ok(snapshot) => snapshot.log_data().num_files() == 0,
        Err(_) => true,
    };
    if is_empty {
        // Nothing to match against: insert everything.
        let written =
            write_frame(target, source, WriteMode::Append, properties, descriptions).await?;
        return committed_version(&written);
    }
    let source = as_written(source)?;
    refuse_lossy_casts(&target, source.schema().as_arrow())?;
    let side = |side: &str, name: &str| col(Column::new(Some(side), name));
    let predicate = keys
        .iter()
        .map(|k| side("target", k).eq(side("source", k)))
        .reduce(|a, b| a.and(b))
        .ok_or_else(|| Error::Usage(format!("merging into {uri} needs at least one key column")))?;
    let field_names: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let (merged, _metrics) = target
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_merge_schema(true)
        .with_streaming(true)
        .with_commit_properties(properties)
        .when_matched_update(|update| {
            field_names.iter().fold(update, |u, name| {
                u.update(name.as_str(), side("source", name))
            })
        })
        .map_err(delta)?
        .when_not_matched_insert(|insert| {
            field_names
                .iter()
                .fold(insert, |i, name| i.set(name.as_str(), side("source", name)))
        })
        .map_err(delta)?
        .await
        .map_err(delta)?;
    committed_version(&merged)
}

/// `frame` as it will be written: type-coerced, so its schema is the one of the rows it
/// produces (delta-rs takes the table schema from the plan and casts the rows to it, and
/// before coercion a CASE mixing 0 and a decimal reads as an integer), with every column
/// in a type all Delta readers take.
pub(crate) fn as_written(frame: DataFrame) -> Result<DataFrame> {
    let (state, plan) = frame.into_parts();
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    Ok(DataFrame::new(state, with_delta_types(plan)?))
}

/// Fails when a column of `written` would be cast to a table column type that cannot
/// hold its values (delta-rs casts such columns silently).
fn refuse_lossy_casts(table: &DeltaTable, written: &Schema) -> Result<()> {
    let Ok(snapshot) = table.snapshot() else {
        return Ok(());
    };
    let stored = snapshot.snapshot().arrow_schema();
    match first_lossy_column(written, &stored) {
        None => Ok(()),
        Some((column, written_type, table_type)) => Err(Error::LossyCast {
            table: table.table_url().to_string(),
            column,
            written_type: written_type.to_string(),
            table_type: table_type.to_string(),
        }),
    }
}

/// True when a write lost a race: another writer committed the version it wanted, or a
/// change that conflicts with what it read.
pub fn is_commit_conflict(error: &Error) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    matches!(
        error,
        Error::Delta {
            source: deltalake::DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_)
            },
            ..
        }
    )
}

/// Rows the table's last commit added, from its operation metrics.
pub async fn added_rows(table: &DeltaTable) -> u64 {
    let Ok(commits) = table.history(Some(1)).try_collect::<Vec<_>>().await else {
        return 0;
    };
    commits
        .first()
        .and_then(|c| c.info.get("operationMetrics"))
        .and_then(|m| m.get("num_added_rows"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The version a write just committed.
pub fn committed_version(table: &DeltaTable) -> Result<u64> {
    table.version().ok_or_else(|| Error::Storage {
        uri: table.table_url().to_string(),
        cause: String::from("the write did not produce a table version"),
    })
}

/// A new staging table `_staging/<name>` under the root, and its folder.
pub fn staging_table(lakehouse: &Lakehouse, name: &str) -> Result<(DeltaTable, String)> {
    let folder = format!("{STAGING}/{name}");
    let url = lakehouse
        .root()
        .join(&format!("{folder}/"))
        .map_err(|e| Error::Storage {
            uri: lakehouse.root().to_string(),
            cause: e.to_string(),
        })?;
    Ok((new_table_at(lakehouse, url)?, folder))
}

/// Deletes every object under `folder` (relative to the root). Failures only leave
/// garbage that the catalog ignores, so they are not reported.
pub async fn delete_folder(lakehouse: &Lakehouse, folder: &str) {
    let Ok(store) = lakehouse.store() else {
        return;
    };
    let prefix = StorePath::from(folder);
    let locations = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .boxed();
    let _ = store.delete_stream(locations).try_collect::<Vec<_>>().await;
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Fields};
    use datafusion::parquet::schema::types::ColumnPath;

    use super::*;

    #[test]
    fn float_columns_even_nested_ones_are_written_without_a_dictionary() {
        let contribution = Fields::from(vec![
            Field::new("feature", DataType::Utf8, true),
            Field::new("contribution", DataType::Float64, true),
        ]);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("probability", DataType::Float64, true),
            Field::new(
                "top_features",
                DataType::new_list(DataType::Struct(contribution), true),
                true,
            ),
        ]);
        let properties = parquet_properties(&schema).build();
        let dictionary = |path: &[&str]| {
            properties.dictionary_enabled(&ColumnPath::new(
                path.iter().map(|p| p.to_string()).collect(),
            ))
        };
        assert!(dictionary(&["id"]));
        assert!(!dictionary(&["probability"]));
        assert!(dictionary(&["top_features", "list", "item", "feature"]));
        assert!(!dictionary(&[
            "top_features",
            "list",
            "item",
            "contribution"
        ]));
        assert_eq!(
            properties.compression(&ColumnPath::from("id")),
            Compression::SNAPPY
        );
    }

    #[tokio::test]
    async fn incompressible_columns_are_written_plainly_and_read_back_the_same() {
        use datafusion::parquet::basic::Encoding;
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

        use crate::config::LakehouseConfig;

        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Lakehouse::new(&LakehouseConfig::default(), dir.path()).unwrap();
        let name = TableName::parse("scored.churn").unwrap();
        let context = SessionContext::new();
        let frame = context
            .sql(
                "SELECT encode(sha256(CAST(n AS VARCHAR)), 'hex') AS prediction_id, \
                 CAST(n AS DOUBLE) / 7 AS probability, 'north' AS region, \
                 make_array(CAST(n AS VARCHAR), 'tenure') AS reasons \
                 FROM unnest(range(0, 5000)) AS t(n)",
            )
            .await
            .unwrap();
        let expected = frame.clone().collect().await.unwrap();
        let layout = ColumnLayout {
            incompressible: &["prediction_id", "probability"],
            unsummarized: &["reasons"],
        };
        let table = table_for_write(&lakehouse, &name).await.unwrap();
        let properties = CommitProperties::default();
        let written = write_laid_out(
            table,
            frame,
            WriteMode::Append,
            properties,
            &Descriptions::default(),
            layout,
        )
        .await
        .unwrap();

        let folder = lakehouse.table_url(&name).unwrap().to_file_path().unwrap();
        let file = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        let columns = reader.metadata().row_group(0).columns().to_vec();
        let column = |name: &str| {
            columns
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap()
                .clone()
        };
        for plain in ["prediction_id", "probability"] {
            let chunk = column(plain);
            assert_eq!(chunk.compression(), Compression::UNCOMPRESSED, "{plain}");
            assert!(
                !chunk.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
                "{plain}"
            );
        }
        let region = column("region");
        assert_eq!(region.compression(), Compression::SNAPPY);
        assert!(region.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
        assert!(region.statistics().is_some());
        assert!(column("reasons.list.item").statistics().is_none());

        let read = SessionContext::new()
            .read_table(
                crate::storage::lakehouse::table_provider(&written)
                    .await
                    .unwrap(),
            )
            .unwrap()
            .sort(vec![col("probability").sort(true, false)])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows = |batches: &[RecordBatch]| {
            datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .unwrap()
                .to_string()
        };
        assert_eq!(rows(&read), rows(&expected));
    }
}

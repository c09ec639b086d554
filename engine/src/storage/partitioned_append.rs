//! Appending a query's rows to a table with one Parquet writer per partition of its plan
//! and one commit.
//!
//! delta-rs encodes an unpartitioned write on a single writer task, so when the rows come
//! from work spread over every core (scoring), their Parquet encoding and compression run
//! on one. Here each partition of the plan streams into its own writer and files, on its
//! own task, and the files of all of them go into one commit with the caller's metadata
//! and the row count in `operationMetrics`, as delta-rs records it. A failure anywhere
//! stops every writer, which aborts its uploads, and commits nothing.
//!
//! Only plain appends take this path: a table not created yet (its first commit, a
//! `CREATE TABLE` holding the files, creates it with the rows' columns and the caller's
//! descriptions), or an existing table whose columns are exactly the rows' (so no schema
//! change), without partition columns, column mapping, constraints, invariants or
//! generated columns. Anything else is written by [`write_laid_out`], with the same result.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::execute_stream_partitioned;
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType};
use deltalake::logstore::ObjectStoreRef;
use deltalake::operations::write::WriterStatsConfig;
use deltalake::operations::write::writer::{DeltaWriter, WriterConfig};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::{DEFAULT_TARGET_FILE_SIZE, TablePropertiesExt};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::storage::descriptions::{Descriptions, described_plan};
use crate::storage::write::{ColumnLayout, WriteMode, as_written, write_laid_out};

/// Appends `frame`'s rows to `table` in one commit carrying `metadata`, with a Parquet
/// writer per partition of the plan when the table is new or takes the rows as they are
/// (see the module), else through [`write_laid_out`]. Returns the table at its new version.
pub async fn append_per_partition(
    table: DeltaTable,
    frame: DataFrame,
    metadata: HashMap<String, Value>,
    descriptions: &Descriptions,
    layout: ColumnLayout<'_>,
) -> Result<DeltaTable> {
    let (state, plan) = as_written(frame.clone())?.into_parts();
    let plan = described_plan(plan, &table, descriptions)?;
    let schema = without_views(plan.schema().as_arrow());
    let is_new = table.version().is_none();
    if !is_new && !takes_rows_as_they_are(&table, &schema) {
        let properties = CommitProperties::default().with_metadata(metadata);
        return write_laid_out(
            table,
            frame,
            WriteMode::Append,
            properties,
            descriptions,
            layout,
        )
        .await;
    }
    let uri = table.table_url().to_string();
    let delta = Error::delta_at(&uri);
    let (stats, target_file_size) = if is_new {
        // A table without properties: statistics on its first 32 columns, 100 MiB files.
        let columns = Default::default();
        (
            WriterStatsConfig::new(columns, None),
            DEFAULT_TARGET_FILE_SIZE,
        )
    } else {
        let snapshot = table.snapshot().map_err(delta)?;
        (
            WriterStatsConfig::from_config(snapshot.snapshot().table_configuration()),
            snapshot.table_config().target_file_size(),
        )
    };
    let physical = state.create_physical_plan(&plan).await?;
    let config = WriterConfig::new(
        schema.clone(),
        Vec::new(),
        Some(layout.properties(&schema).build()),
        Some(target_file_size),
        None,
        stats.num_indexed_cols,
        stats.stats_columns,
    );
    let streams = execute_stream_partitioned(physical, state.task_ctx())?;
    let store = table.log_store().object_store(None);
    let (adds, rows) = write_streams(streams, store, config, schema.clone())
        .await
        .map_err(delta)?;
    let files = adds.len();
    let mut app_metadata = metadata;
    app_metadata.insert(
        String::from("operationMetrics"),
        json!({"num_added_rows": rows, "num_added_files": files}),
    );
    // From commit properties, so the commit runs delta-rs's post-commit hook (checkpoints
    // every `delta.checkpointInterval` versions, expired log cleanup) as its writes do.
    let properties = CommitProperties::default().with_metadata(app_metadata);
    let adds = adds.into_iter().map(Action::Add);
    if is_new {
        return create_with_files(table, &schema, adds, properties, descriptions).await;
    }
    let snapshot = table.snapshot().map_err(delta)?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let committed = CommitBuilder::from(properties)
        .with_actions(adds.collect())
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(delta)?;
    let mut written = table;
    written
        .load_version(committed.version())
        .await
        .map_err(delta)?;
    Ok(written)
}

/// Creates `table` with the columns of `schema` (and the table description) in a commit
/// that also adds the files already written. Fails, committing nothing, when another run
/// created the table in the meantime.
async fn create_with_files(
    table: DeltaTable,
    schema: &Schema,
    adds: impl Iterator<Item = Action>,
    properties: CommitProperties,
    descriptions: &Descriptions,
) -> Result<DeltaTable> {
    let uri = table.table_url().to_string();
    let delta = Error::delta_at(&uri);
    if table
        .log_store()
        .is_delta_table_location()
        .await
        .map_err(delta)?
    {
        return Err(Error::CreatedMeanwhile { uri });
    }
    let columns: StructType = schema.try_into_kernel()?;
    let mut create = table
        .create()
        .with_columns(columns.fields().cloned())
        .with_save_mode(SaveMode::ErrorIfExists)
        .with_actions(adds)
        .with_commit_properties(properties);
    if let Some(description) = &descriptions.table {
        create = create.with_comment(description);
    }
    create.await.map_err(delta)
}

/// `schema` with view types (which Delta stores as plain strings and binaries) as the
/// plain ones, as delta-rs writes them.
fn without_views(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            field
                .as_ref()
                .clone()
                .with_data_type(plain_type(field.data_type()))
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn plain_type(data_type: &DataType) -> DataType {
    let plain_field = |field: &FieldRef| {
        Arc::new(
            field
                .as_ref()
                .clone()
                .with_data_type(plain_type(field.data_type())),
        )
    };
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(item) => DataType::List(plain_field(item)),
        DataType::LargeList(item) => DataType::LargeList(plain_field(item)),
        DataType::FixedSizeList(item, size) => DataType::FixedSizeList(plain_field(item), *size),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(plain_field).collect()),
        DataType::Map(entries, sorted) => DataType::Map(plain_field(entries), *sorted),
        other => other.clone(),
    }
}

/// Whether `table` exists and takes rows of `schema` without any change: the same columns
/// and types, and nothing a writer must check or fill in besides writing the rows.
fn takes_rows_as_they_are(table: &DeltaTable, schema: &Schema) -> bool {
    let Ok(snapshot) = table.snapshot() else {
        return false;
    };
    let metadata = snapshot.metadata();
    let plain_columns = snapshot.schema().fields().all(|field| {
        !field.metadata().keys().any(|key| {
            key.starts_with("delta.generationExpression")
                || key.starts_with("delta.invariants")
                || key.starts_with("delta.identity")
                || key.starts_with("delta.columnMapping")
        })
    });
    let no_rules = !metadata
        .configuration()
        .keys()
        .any(|key| key.starts_with("delta.constraints.") || key == "delta.columnMapping.mode");
    let stored = snapshot.snapshot().arrow_schema();
    let same_columns = stored.fields().len() == schema.fields().len()
        && stored
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(kept, written)| {
                kept.name() == written.name()
                    && kept.data_type().equals_datatype(written.data_type())
                    && kept.is_nullable() == written.is_nullable()
            });
    metadata.partition_columns().is_empty() && plain_columns && no_rules && same_columns
}

/// Writes each stream into its own files, on its own task; returns every file's add and
/// the rows written. On the first failure every other writer is told to stop and aborts
/// its uploads; the files written so far are left uncommitted.
async fn write_streams(
    streams: Vec<SendableRecordBatchStream>,
    store: ObjectStoreRef,
    config: WriterConfig,
    schema: SchemaRef,
) -> deltalake::DeltaResult<(Vec<Add>, u64)> {
    let (stop, stopped) = watch::channel(false);
    let mut writers = JoinSet::new();
    for stream in streams {
        let writer = DeltaWriter::new(store.clone(), config.clone());
        writers.spawn(write_stream(
            stream,
            writer,
            schema.clone(),
            stopped.clone(),
        ));
    }
    let (mut adds, mut rows) = (Vec::new(), 0);
    while let Some(finished) = writers.join_next().await {
        let written = finished
            .map_err(|e| deltalake::DeltaTableError::Generic(format!("a writer stopped: {e}")))
            .and_then(|written| written);
        match written {
            Ok((files, written_rows)) => {
                adds.extend(files);
                rows += written_rows;
            }
            Err(error) => {
                let _ = stop.send(true);
                while writers.join_next().await.is_some() {}
                return Err(error);
            }
        }
    }
    Ok((adds, rows))
}

/// Writes one stream's batches, as `schema` (views cast to plain types), with `writer`;
/// its files' adds and the rows written. A failed stream or write, or word that another
/// writer failed, aborts the writer (closing any upload) and fails.
async fn write_stream(
    mut stream: SendableRecordBatchStream,
    mut writer: DeltaWriter,
    schema: SchemaRef,
    mut stopped: watch::Receiver<bool>,
) -> deltalake::DeltaResult<(Vec<Add>, u64)> {
    let mut rows = 0;
    loop {
        let batch = tokio::select! {
            batch = stream.next() => batch,
            () = stop_requested(&mut stopped) => {
                let _ = writer.abort().await;
                return Err(deltalake::DeltaTableError::Generic(String::from(
                    "stopped: another partition's writer failed",
                )));
            }
        };
        let Some(batch) = batch else {
            break;
        };
        let written = match batch
            .map_err(Into::into)
            .and_then(|b| as_schema(b, &schema))
        {
            Ok(batch) => {
                rows += batch.num_rows() as u64;
                writer.write(&batch).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            let _ = writer.abort().await;
            return Err(error);
        }
    }
    Ok((writer.close().await?, rows))
}

/// Returns once a stop is requested (or no one can request one any more).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    while !*stopped.borrow_and_update() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// `batch` with `schema`, its columns cast where their types differ (views).
fn as_schema(batch: RecordBatch, schema: &SchemaRef) -> deltalake::DeltaResult<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;
    use crate::config::LakehouseConfig;
    use crate::storage::commit::last_commit_info;
    use crate::storage::lakehouse::{Lakehouse, TableName, table_provider};
    use crate::storage::write::{added_rows, table_for_write};

    /// A session whose plans run in four partitions, in batches of 1,000 rows.
    fn four_partitions() -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(4)
            .with_batch_size(1000);
        SessionContext::new_with_config(config)
    }

    /// `rows` rows (`id`, `score`) from `first` on, spread over four partitions.
    async fn rows(context: &SessionContext, first: i64, rows: i64) -> DataFrame {
        context
            .sql(&format!(
                "SELECT CAST(n AS VARCHAR) AS id, CAST(n AS DOUBLE) / 3 AS score \
                 FROM unnest(range({first}, {})) AS t(n)",
                first + rows
            ))
            .await
            .unwrap()
            .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(4))
            .unwrap()
    }

    /// 20,000 rows like [`rows`]' over four partitions, the 15,000th of which fails to cast.
    async fn failing_rows(context: &SessionContext) -> DataFrame {
        context
            .sql(
                "SELECT CAST(CASE WHEN n = 15000 THEN 'not a number' ELSE CAST(n AS VARCHAR) END AS BIGINT) AS n \
                 FROM unnest(range(0, 20000)) AS t(n)",
            )
            .await
            .unwrap()
            .select_exprs(&["CAST(n AS VARCHAR) AS id", "CAST(n AS DOUBLE) / 3 AS score"])
            .unwrap()
            .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(4))
            .unwrap()
    }

    /// A lakehouse in a temporary folder and the name of the table the tests append to.
    fn temporary_lakehouse() -> (tempfile::TempDir, Lakehouse, TableName) {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Lakehouse::new(&LakehouseConfig::default(), dir.path()).unwrap();
        (dir, lakehouse, TableName::parse("scored.churn").unwrap())
    }

    /// `name` created in `lakehouse` with rows 0 to `count` by run `run_id`: version 0.
    async fn created(
        lakehouse: &Lakehouse,
        name: &TableName,
        context: &SessionContext,
        count: i64,
        run_id: &str,
    ) -> DeltaTable {
        let table = table_for_write(lakehouse, name).await.unwrap();
        let frame = rows(context, 0, count).await;
        let none = Descriptions::default();
        append_per_partition(table, frame, run(run_id), &none, ColumnLayout::default())
            .await
            .unwrap()
    }

    fn run(id: &str) -> HashMap<String, Value> {
        HashMap::from([(String::from("run_id"), json!(id))])
    }

    async fn ids(table: &DeltaTable) -> Vec<i64> {
        let batches = SessionContext::new()
            .read_table(table_provider(table).await.unwrap())
            .unwrap()
            .select_exprs(&["CAST(id AS BIGINT) AS n"])
            .unwrap()
            .sort_by(vec![datafusion::prelude::col("n")])
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|batch| {
                batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn an_append_writes_a_file_per_partition_in_one_commit_and_a_failed_one_commits_nothing()
    {
        let (_dir, lakehouse, name) = temporary_lakehouse();
        let context = four_partitions();
        let layout = ColumnLayout::default();
        let none = Descriptions::default();

        let created = created(&lakehouse, &name, &context, 1000, "first").await;
        assert_eq!(created.version(), Some(0));
        let files_before = created.snapshot().unwrap().log_data().num_files();

        // Appending to it: one version, a file from each of the four writers, every row.
        let frame = rows(&context, 1000, 20_000).await;
        let appended = append_per_partition(created, frame, run("second"), &none, layout)
            .await
            .unwrap();
        assert_eq!(appended.version(), Some(1));
        let files = appended.snapshot().unwrap().log_data().num_files() - files_before;
        assert_eq!(files, 4, "one file per partition");
        assert_eq!(ids(&appended).await, (0..21_000).collect::<Vec<_>>());
        assert_eq!(added_rows(&appended).await, 20_000);
        let newest = last_commit_info(&lakehouse, &name).await.unwrap().unwrap();
        assert_eq!(newest.get("run_id"), Some(&json!("second")), "{newest:?}");
        let commit = commit_info(&lakehouse, &name, 1);
        assert_eq!(commit["operation"], "WRITE", "{commit}");
        assert_eq!(commit["operationParameters"]["mode"], "Append", "{commit}");

        // A partition that fails mid-way stops every writer; nothing is committed.
        let failing = failing_rows(&context).await;
        let error = append_per_partition(appended.clone(), failing, run("third"), &none, layout)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a number"), "{error}");
        let mut reloaded = appended.clone();
        reloaded.update_state().await.unwrap();
        assert_eq!(reloaded.version(), Some(1));
        assert_eq!(ids(&reloaded).await.len(), 21_000);

        // Rows with a column more go through delta-rs's write, which adds the column.
        let wider = rows(&context, 21_000, 10)
            .await
            .select_exprs(&["id", "score", "'north' AS region"])
            .unwrap();
        let widened = append_per_partition(reloaded, wider, run("fourth"), &none, layout)
            .await
            .unwrap();
        assert_eq!(widened.version(), Some(2));
        let stored = widened.snapshot().unwrap().snapshot().arrow_schema();
        assert!(stored.field_with_name("region").is_ok(), "{stored:?}");
        assert_eq!(ids(&widened).await.len(), 21_010);
    }

    /// The commit that made `version` of `name`, from its log file.
    fn commit_info(lakehouse: &Lakehouse, name: &TableName, version: u64) -> Value {
        let folder = lakehouse.table_url(name).unwrap().to_file_path().unwrap();
        let log =
            std::fs::read_to_string(folder.join(format!("_delta_log/{version:020}.json"))).unwrap();
        log.lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find_map(|action| action.get("commitInfo").cloned())
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_table_is_created_with_a_file_per_partition_in_its_first_commit() {
        let (_dir, lakehouse, name) = temporary_lakehouse();
        let context = four_partitions();
        let described = Descriptions {
            table: Some(String::from("Churn scores")),
            columns: [(String::from("score"), String::from("The churn score"))].into(),
        };

        // A partition that fails mid-way leaves no table behind.
        let failing = failing_rows(&context).await;
        let table = table_for_write(&lakehouse, &name).await.unwrap();
        let layout = ColumnLayout::default();
        let error = append_per_partition(table, failing, run("failed"), &described, layout)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a number"), "{error}");
        assert!(lakehouse.open_if_exists(&name).await.unwrap().is_none());

        // Version 0 creates the table and holds a file from each of the four writers.
        let table = table_for_write(&lakehouse, &name).await.unwrap();
        let late = table_for_write(&lakehouse, &name).await.unwrap();
        let frame = rows(&context, 0, 20_000).await;
        let created = append_per_partition(table, frame, run("first"), &described, layout)
            .await
            .unwrap();
        assert_eq!(created.version(), Some(0));
        assert_eq!(created.snapshot().unwrap().log_data().num_files(), 4);
        assert_eq!(ids(&created).await, (0..20_000).collect::<Vec<_>>());
        assert_eq!(added_rows(&created).await, 20_000);
        assert_eq!(Descriptions::stored(&created), described);
        let commit = commit_info(&lakehouse, &name, 0);
        assert_eq!(commit["operation"], "CREATE TABLE", "{commit}");
        assert_eq!(commit["run_id"], "first", "{commit}");

        // A run that found no table but commits after the table was created fails, and
        // the table keeps its rows.
        let frame = rows(&context, 20_000, 100).await;
        let error = append_per_partition(late, frame, run("late"), &described, layout)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("another run created this table while this one was writing its rows; nothing was committed. Run again"),
            "{error}"
        );
        let reloaded = lakehouse.open_if_exists(&name).await.unwrap().unwrap();
        assert_eq!(reloaded.version(), Some(0));
        assert_eq!(ids(&reloaded).await.len(), 20_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_each_commit_once_with_every_row() {
        let (_dir, lakehouse, name) = temporary_lakehouse();
        let context = four_partitions();
        created(&lakehouse, &name, &context, 100, "create").await;

        // Four runs append to version 0 at once: each commits its own version.
        let mut appends = Vec::new();
        for run_number in 0..4_i64 {
            let table = lakehouse.open_if_exists(&name).await.unwrap().unwrap();
            let frame = rows(&context, 100 + run_number * 5000, 5000).await;
            let metadata = run(&format!("run {run_number}"));
            appends.push(tokio::spawn(async move {
                let none = Descriptions::default();
                append_per_partition(table, frame, metadata, &none, ColumnLayout::default())
                    .await
                    .map(|written| written.version())
            }));
        }
        let mut versions = Vec::new();
        for append in appends {
            versions.push(append.await.unwrap().unwrap().unwrap());
        }
        versions.sort_unstable();
        assert_eq!(versions, [1, 2, 3, 4]);
        let newest = lakehouse.open_if_exists(&name).await.unwrap().unwrap();
        assert_eq!(ids(&newest).await, (0..20_100).collect::<Vec<_>>());
    }

    /// A writer still waiting for its partition's first rows stops when another
    /// partition fails, so the append fails with that partition's error instead of
    /// waiting for rows that will never be committed.
    #[tokio::test]
    async fn a_failed_partition_stops_a_writer_still_waiting_for_rows() {
        use datafusion::error::DataFusionError;
        use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

        let (_dir, lakehouse, name) = temporary_lakehouse();
        let created = created(&lakehouse, &name, &four_partitions(), 10, "create").await;
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]));
        let waiting: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::pending(),
        ));
        let failing: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::once(async {
                Err(DataFusionError::Execution(String::from(
                    "the source went away",
                )))
            }),
        ));
        let snapshot = created.snapshot().unwrap();
        let stats = WriterStatsConfig::from_config(snapshot.snapshot().table_configuration());
        let config = WriterConfig::new(
            schema.clone(),
            Vec::new(),
            None,
            None,
            None,
            stats.num_indexed_cols,
            stats.stats_columns,
        );
        let store = created.log_store().object_store(None);
        // The guard only keeps a regression from hanging the suite; nothing is timed.
        let written = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            write_streams(vec![waiting, failing], store, config, schema),
        )
        .await
        .expect("the waiting writer stops");
        let error = written.unwrap_err().to_string();
        assert!(error.contains("the source went away"), "{error}");
        let mut reloaded = created.clone();
        reloaded.update_state().await.unwrap();
        assert_eq!(reloaded.version(), Some(0), "nothing is committed");
    }
}

//! Landing: `lakescore ingest`. Each source's new files become one Delta commit.
//!
//! For each source: list its files, skip those the table's ledger already holds, read the
//! rest (in a blocking task, see [`crate::reading`], streaming batches to the Delta writer
//! and bad records to the quarantine spool through a bounded channel, so memory stays bounded),
//! check that the bytes read are the ones listed, enforce `max_bad_rows`, then commit the
//! quarantine rows and then the data, each with the files' ledger ids. Nothing is committed
//! until every file of the batch is read, so a failure or a kill leaves both tables at
//! their previous versions; a failure between the two commits leaves only quarantine rows
//! of a batch that did not land, which the rerun does not quarantine again.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, MetadataExt, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use lakescore_engine::config::{IngestConfig, LandingMode, SourceConfig, SourceFormat};
use lakescore_engine::run::{DataMoved, OperationFuture, Report, RunContext};
use lakescore_engine::storage::commit::{
    BATCH, NEW_COLUMNS, QUARANTINED, ROWS, SOURCE, commit_metadata,
};
use lakescore_engine::storage::write::parquet_properties;
use lakescore_engine::{Lakehouse, Project, TableName};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::batch::FileLineage;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::files::{ExtractFile, Hashing, list_files};
use crate::ledger::{is_recorded, ledger_id, record};
use crate::merge::merge_staged;
use crate::quarantine::{QuarantineBatchInfo, QuarantineSpool, quarantine_table};
use crate::reader::RecordLimits;
use crate::reading::{CHUNK_BYTES, FileOutcome, Message, ReadJob, too_many_bad_rows};
use crate::schema::{
    Column, column_type_of, declared_columns, is_lineage, normalize_name, table_schema,
};

/// Something worth showing while ingesting.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A file is being read.
    FileStarted {
        /// The source.
        source: String,
        /// The file.
        file: String,
        /// Its size in bytes.
        bytes: u64,
    },
    /// More records of the current file were read.
    Records(u64),
}

/// Receives progress events.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What one source's run did.
#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    /// The source.
    pub source: String,
    /// Its table.
    pub table: String,
    /// Files landed in this run.
    pub files_landed: Vec<String>,
    /// Files skipped because they were landed before.
    pub files_already_landed: usize,
    /// Rows landed.
    pub rows: u64,
    /// Rows quarantined.
    pub quarantined: u64,
    /// The table version this run committed.
    pub version: Option<u64>,
    /// Columns this run added to the table.
    pub new_columns: Vec<String>,
    /// Files rejected whole, with the reason; they are retried on the next run.
    pub rejected_files: Vec<String>,
}

impl SourceReport {
    /// One error per file rejected whole, naming the source and the reason.
    pub fn rejections(&self) -> impl Iterator<Item = Error> + '_ {
        self.rejected_files.iter().map(|rejected| Error::Source {
            source_name: self.source.clone(),
            message: format!("file rejected, nothing of it landed: {rejected}"),
        })
    }
}

/// The outcome of every selected source.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// The run id written into every commit.
    pub run_id: String,
    /// Per source: what it did, or why it failed (failed sources committed nothing).
    pub sources: Vec<std::result::Result<SourceReport, Error>>,
}

impl IngestReport {
    /// True when every source landed and no file was rejected.
    pub fn is_clean(&self) -> bool {
        self.sources
            .iter()
            .all(|s| s.as_ref().is_ok_and(|r| r.rejected_files.is_empty()))
    }
}

impl Report for IngestReport {
    fn data_moved(&self) -> DataMoved {
        let mut data = DataMoved::default();
        for source in self.sources.iter().flatten() {
            data.rows_read += source.rows + source.quarantined;
            data.rows_written += source.rows;
            if let Some(version) = source.version {
                data.tables_written
                    .push(format!("{}@{version}", source.table));
            }
        }
        data
    }

    fn summary(&self) -> String {
        let files: usize = self
            .sources
            .iter()
            .flatten()
            .map(|source| source.files_landed.len())
            .sum();
        format!(
            "{files} new files, {} rows landed",
            self.data_moved().rows_written
        )
    }
}

/// One line per source (and its new columns and quarantine), then the run id.
impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for source in self.sources.iter().flatten() {
            let files = source.files_landed.len();
            if files == 0 && source.rejected_files.is_empty() {
                writeln!(
                    f,
                    "{} <- {}: up to date ({} files already landed)",
                    source.table, source.source, source.files_already_landed
                )?;
                continue;
            }
            let version = source
                .version
                .map(|v| format!(" -> version {v}"))
                .unwrap_or_default();
            writeln!(
                f,
                "{} <- {}: {files} {} landed, {} rows, {} quarantined{version}",
                source.table,
                source.source,
                if files == 1 { "file" } else { "files" },
                source.rows,
                source.quarantined,
            )?;
            if !source.new_columns.is_empty() {
                writeln!(
                    f,
                    "  new columns added to {}: {}",
                    source.table,
                    source.new_columns.join(", ")
                )?;
            }
            if source.quarantined > 0 {
                writeln!(
                    f,
                    "  bad rows are in quarantine.{}",
                    source.table.replacen('.', "_", 1)
                )?;
            }
        }
        write!(f, "run id {}", self.run_id)
    }
}

/// Lands the new files of a project's sources: `Ingest::new(&cx).await`.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Ingest {
    cx: RunContext,
    only: Vec<String>,
    progress: Option<ProgressFn>,
}

impl Ingest {
    /// Every source of the context's project, into its lakehouse.
    pub fn new(cx: &RunContext) -> Self {
        Self {
            cx: cx.clone(),
            only: Vec::new(),
            progress: None,
        }
    }

    /// Only these sources (all when empty).
    pub fn with_sources(mut self, names: Vec<String>) -> Self {
        self.only = names;
        self
    }

    /// Where to send progress events.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    async fn run(self) -> Result<IngestReport> {
        let declared = &self.cx.project().config.sources;
        for name in &self.only {
            if !declared.iter().any(|s| &s.name == name) {
                return Err(Error::UnknownSource {
                    name: name.clone(),
                    known: declared.iter().map(|s| s.name.clone()).collect(),
                });
            }
        }
        let mut report = IngestReport {
            run_id: self.cx.run_id().to_string(),
            sources: Vec::new(),
        };
        for source in declared {
            if self.only.is_empty() || self.only.contains(&source.name) {
                let landing = SourceLanding {
                    source,
                    project: self.cx.project(),
                    lakehouse: self.cx.lakehouse(),
                    run_id: self.cx.run_id(),
                    progress: self.progress.clone(),
                };
                report.sources.push(landing.run().await);
            }
        }
        Ok(report)
    }
}

impl IntoFuture for Ingest {
    type Output = Result<IngestReport>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// One source's run.
struct SourceLanding<'a> {
    source: &'a SourceConfig,
    project: &'a Project,
    lakehouse: &'a Lakehouse,
    run_id: &'a str,
    progress: Option<ProgressFn>,
}

/// A file to land in this run.
struct PendingFile {
    file: ExtractFile,
    /// Its ledger id; None until it is read, for a file hashed as it is read.
    ledger_id: Option<String>,
}

impl SourceLanding<'_> {
    /// The merge key columns, as column names.
    fn merge_keys(&self) -> Vec<String> {
        self.source.key.iter().map(|k| normalize_name(k)).collect()
    }

    fn source_error(&self, message: impl Into<String>) -> Error {
        Error::Source {
            source_name: self.source.name.clone(),
            message: message.into(),
        }
    }

    async fn run(&self) -> Result<SourceReport> {
        let name = TableName::parse(&self.source.table)?;
        let dialect = match self.source.format {
            SourceFormat::Csv => Dialect::resolve(&self.source.dialect)
                .map_err(|e| self.source_error(e.to_string()))?,
            SourceFormat::Json | SourceFormat::Parquet => Dialect::default_preset(),
        };
        let existing = self.lakehouse.open_if_exists(&name).await?;
        let quarantine_name = quarantine_table(&name);
        let quarantine = self.lakehouse.open_if_exists(&quarantine_name).await?;
        // Without the table and its quarantine no ledger can hold a file yet: each is
        // hashed once, as it is read, instead of also before.
        let hashing = if existing.is_none() && quarantine.is_none() {
            Hashing::WhenRead
        } else {
            Hashing::WhenListed
        };
        let files = list_files(
            self.source.path.as_str(),
            &self.project.dir,
            self.lakehouse.storage_options(),
            hashing,
        )
        .await?;
        let mut report = SourceReport {
            source: self.source.name.clone(),
            table: name.to_string(),
            ..SourceReport::default()
        };
        let mut pending = Vec::new();
        for file in files {
            let id = file
                .fingerprint()
                .map(|fingerprint| ledger_id(&self.source.name, &file.display, fingerprint));
            let landed = match (&existing, &id) {
                (Some(table), Some(id)) => is_recorded(table, id).await?,
                _ => false,
            };
            if landed {
                report.files_already_landed += 1;
            } else {
                pending.push(PendingFile {
                    file,
                    ledger_id: id,
                });
            }
        }
        if pending.is_empty() {
            return Ok(report);
        }

        let base_columns = self.base_columns(existing.as_ref())?;
        let table_is_new = existing.is_none();
        let table = match existing {
            Some(table) => table,
            None => self.create_table(&name, &base_columns).await?,
        };
        // Files a crashed earlier attempt already quarantined (its data commit failed):
        // their bad rows are not quarantined twice.
        let mut quarantined_before = Vec::new();
        if let Some(table) = &quarantine {
            for id in pending.iter().filter_map(|file| file.ledger_id.as_ref()) {
                if is_recorded(table, id).await? {
                    quarantined_before.push(id.clone());
                }
            }
        }
        fault_point("ingest-read")?;

        let batch_id = uuid::Uuid::now_v7().to_string();
        let ingested_at = Utc::now().timestamp_micros();
        let mut sink = match self.source.mode {
            LandingMode::Merge => BatchSink::Staging(
                crate::merge::StagingTable::create(
                    self.lakehouse,
                    &batch_id,
                    &table_schema(&base_columns),
                )
                .await?,
            ),
            _ => BatchSink::Table(TableSink {
                table: table.clone(),
                settings: self.project.config.ingest,
                writer: None,
            }),
        };
        let mut columns = base_columns.clone();
        let mut spool = QuarantineSpool::new(
            self.lakehouse,
            quarantine_name,
            quarantine,
            QuarantineBatchInfo {
                source: self.source.name.clone(),
                batch_id: batch_id.clone(),
                ingested_at,
                run_id: self.run_id.to_string(),
            },
        );
        let mut landed_ids = Vec::new();
        let mut inputs = Vec::new();
        for pending_file in &pending {
            let file = &pending_file.file;
            if let Some(progress) = &self.progress {
                progress(Progress::FileStarted {
                    source: self.source.name.clone(),
                    file: file.display.clone(),
                    bytes: file.size,
                });
            }
            let lineage = FileLineage {
                file: file.display.clone(),
                batch_id: batch_id.clone(),
                ingested_at,
            };
            let quarantine = if pending_file
                .ledger_id
                .as_ref()
                .is_some_and(|id| quarantined_before.contains(id))
            {
                None
            } else {
                Some(&mut spool)
            };
            let outcome = self
                .read_file(
                    file,
                    columns.clone(),
                    lineage,
                    &dialect,
                    &mut sink,
                    quarantine,
                )
                .await;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(Error::File { file, message }) => {
                    report.rejected_files.push(format!("{file}: {message}"));
                    continue;
                }
                Err(other) => return Err(other),
            };
            self.check_bad_rows(&file.display, &outcome)?;
            report.rows += outcome.rows - outcome.bad;
            report.quarantined += outcome.bad;
            columns = outcome.columns;
            inputs.push(json!({
                "file": file.display,
                "fingerprint": outcome.fingerprint,
                "rows": outcome.rows - outcome.bad,
                "quarantined": outcome.bad,
            }));
            landed_ids.push(ledger_id(
                &self.source.name,
                &file.display,
                &outcome.fingerprint,
            ));
            report.files_landed.push(file.display.clone());
        }
        if !table_is_new {
            report.new_columns = columns
                .iter()
                .filter(|c| !base_columns.iter().any(|b| b.name == c.name))
                .map(|c| c.name.clone())
                .collect();
        }
        if landed_ids.is_empty() {
            if let BatchSink::Staging(staging) = sink {
                staging.discard(self.lakehouse).await;
            }
            return Ok(report);
        }
        let fresh_ids: Vec<String> = landed_ids
            .iter()
            .filter(|id| !quarantined_before.contains(id))
            .cloned()
            .collect();

        let inputs = Value::Array(inputs);
        let batch_extras = [(SOURCE, json!(self.source.name)), (BATCH, json!(batch_id))];
        let now_millis = Utc::now().timestamp_millis();
        // The quarantine commits first, so a landed batch always has its bad rows in
        // quarantine; if the data commit then fails, the rerun lands the data and does
        // not quarantine the same rows again (the quarantine's ledger records the files).
        let quarantine_metadata = commit_metadata(
            self.run_id,
            inputs.clone(),
            batch_extras
                .clone()
                .into_iter()
                .chain([(ROWS, json!(spool.rows()))]),
        );
        let spooled = spool.rows();
        let quarantine_name = spool.name().clone();
        spool
            .commit(
                CommitProperties::default()
                    .with_metadata(quarantine_metadata)
                    .with_application_transactions(record(&fresh_ids, now_millis)),
            )
            .await?;
        let metadata = commit_metadata(
            self.run_id,
            inputs,
            batch_extras.into_iter().chain([
                (ROWS, json!(report.rows)),
                (QUARANTINED, json!(report.quarantined)),
                (NEW_COLUMNS, json!(report.new_columns)),
            ]),
        );
        let properties = CommitProperties::default()
            .with_metadata(metadata)
            .with_application_transactions(record(&landed_ids, now_millis));
        let committed = match sink {
            BatchSink::Table(sink) => {
                commit_writer(
                    sink.into_writer()?,
                    &table,
                    self.source.mode,
                    properties,
                    "ingest-commit",
                )
                .await
            }
            BatchSink::Staging(staging) => {
                let keys = self.merge_keys();
                let memory = self.project.config.ingest.merge_memory_mb.max(1) * 1024 * 1024;
                merge_staged(self.lakehouse, staging, table, &keys, properties, memory).await
            }
        };
        let version = committed.map_err(|error| match (spooled, error) {
            (1.., Error::Storage { uri, cause }) => Error::Storage {
                uri,
                cause: format!(
                    "{cause}; the batch's {spooled} quarantined rows were committed to {quarantine_name} (batch {batch_id}) but its data was not: the next run lands the data and does not quarantine them again"
                ),
            },
            (_, error) => error,
        })?;
        report.version = Some(version);
        Ok(report)
    }

    /// The table's data columns (types from the table, `required` from the declaration),
    /// then declared columns the table lacks; the declaration alone for a new table.
    fn base_columns(&self, table: Option<&DeltaTable>) -> Result<Vec<Column>> {
        let declared = declared_columns(self.source);
        let Some(table) = table else {
            return Ok(declared);
        };
        let snapshot = table
            .snapshot()
            .map_err(|e| Error::storage(table.table_url(), e))?;
        let schema = snapshot.snapshot().arrow_schema();
        let mut columns = Vec::new();
        for field in schema.fields().iter().filter(|f| !is_lineage(f.name())) {
            let column_type = column_type_of(field.data_type()).ok_or_else(|| {
                self.source_error(format!(
                    "table {} has column '{}' of type {}, which lakescore cannot land into",
                    self.source.table,
                    field.name(),
                    field.data_type()
                ))
            })?;
            let required = declared
                .iter()
                .any(|d| &d.name == field.name() && d.required);
            columns.push(Column {
                name: field.name().clone(),
                column_type,
                required,
            });
        }
        for column in declared {
            if !columns.iter().any(|c| c.name == column.name) {
                columns.push(column);
            }
        }
        Ok(columns)
    }

    async fn create_table(&self, name: &TableName, columns: &[Column]) -> Result<DeltaTable> {
        create_delta_table(self.lakehouse, name, &table_schema(columns), self.run_id).await
    }

    /// Reads one file in a blocking task, writing its batches as they come.
    async fn read_file(
        &self,
        file: &ExtractFile,
        columns: Vec<Column>,
        lineage: FileLineage,
        dialect: &Dialect,
        sink: &mut BatchSink,
        mut quarantine: Option<&mut QuarantineSpool<'_>>,
    ) -> Result<FileOutcome> {
        let copy = file.local_copy().await?;
        let (sender, mut receiver) = mpsc::channel(4);
        let job = ReadJob {
            format: self.source.format,
            path: copy.path().to_path_buf(),
            display: file.display.clone(),
            dialect: dialect.clone(),
            columns,
            keys: self.merge_keys(),
            lineage,
            limits: RecordLimits::of(&self.project.config.ingest),
            listed: file.listed.clone(),
            max_bad_rows: self.source.max_bad_rows,
            chunk_bytes: CHUNK_BYTES,
        };
        let reading = tokio::task::spawn_blocking(move || job.run(&sender));
        let mut wrote_rows = false;
        while let Some(message) = receiver.recv().await {
            match message {
                Message::Batch(batch) => {
                    wrote_rows = true;
                    sink.write(batch).await?;
                }
                Message::Quarantine(rows) => {
                    wrote_rows = true;
                    if let Some(spool) = quarantine.as_deref_mut() {
                        for row in rows {
                            spool.push(row).await?;
                        }
                    }
                }
                Message::Records(n) => {
                    if let Some(progress) = &self.progress {
                        progress(Progress::Records(n));
                    }
                }
            }
        }
        let outcome = reading
            .await
            .map_err(|e| Error::storage(&file.display, format!("reading stopped: {e}")))?;
        match outcome {
            // Rows of this file are already in the batch (or its quarantine): it cannot be
            // left out alone.
            Err(Error::File { file, message }) if wrote_rows => Err(self.source_error(format!(
                "{file}: {message}; the batch was rejected and nothing was committed"
            ))),
            other => other,
        }
    }

    fn check_bad_rows(&self, file: &str, outcome: &FileOutcome) -> Result<()> {
        match too_many_bad_rows(file, &self.source.max_bad_rows, outcome, true) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Where a source's batches go: the table's writer, or a staging table for merges.
enum BatchSink {
    Table(TableSink),
    Staging(crate::merge::StagingTable),
}

impl BatchSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            BatchSink::Table(sink) => sink.write(batch).await,
            BatchSink::Staging(staging) => staging.write(batch).await,
        }
    }
}

/// The Delta writer of a source's table, made at the first batch so its Parquet settings
/// fit the columns (see [`parquet_properties`]).
struct TableSink {
    table: DeltaTable,
    settings: IngestConfig,
    writer: Option<RecordBatchWriter>,
}

impl TableSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(self.new_writer(&batch.schema())?),
        };
        writer
            .write_with_mode(batch, WriteMode::MergeSchema)
            .await
            .map_err(|e| Error::storage("Delta writer", e))
    }

    /// The writer, to flush and commit.
    fn into_writer(self) -> Result<RecordBatchWriter> {
        match self.writer {
            Some(writer) => Ok(writer),
            None => self.new_writer(&Schema::empty()),
        }
    }

    fn new_writer(&self, schema: &Schema) -> Result<RecordBatchWriter> {
        let properties = parquet_properties(schema)
            .set_max_row_group_bytes(Some(self.settings.row_group_mb.max(1) * 1024 * 1024));
        Ok(RecordBatchWriter::for_table(&self.table)
            .map_err(|e| Error::storage(self.table.table_url(), e))?
            .with_writer_properties(properties.build())
            .with_target_file_size(self.settings.target_file_mb.max(1) * 1024 * 1024))
    }
}

/// Flushes the written files and commits them (replacing every current file for
/// `overwrite`), evolving the table schema when new columns arrived. `fault` names the
/// fault-injection point between the flush and the commit.
pub(crate) async fn commit_writer(
    mut writer: RecordBatchWriter,
    table: &DeltaTable,
    mode: LandingMode,
    properties: CommitProperties,
    fault: &str,
) -> Result<u64> {
    let uri = table.table_url().to_string();
    let storage = Error::storage_at(&uri);
    let adds = writer.flush().await.map_err(storage)?;
    fault_point(fault)?;
    let snapshot = table.snapshot().map_err(storage)?;
    let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    let written_schema = writer.arrow_schema();
    if written_schema.as_ref() != snapshot.snapshot().arrow_schema().as_ref() {
        let schema: StructType = written_schema
            .as_ref()
            .try_into_kernel()
            .map_err(Error::storage_at(&uri))?;
        let metadata = snapshot
            .metadata()
            .clone()
            .with_schema(&schema)
            .map_err(Error::storage_at(&uri))?;
        actions.push(Action::Metadata(metadata));
    }
    let save_mode = if mode == LandingMode::Overwrite {
        actions.extend(
            snapshot
                .log_data()
                .iter()
                .map(|file| Action::Remove(file.remove_action(true))),
        );
        SaveMode::Overwrite
    } else {
        SaveMode::Append
    };
    let operation = DeltaOperation::Write {
        mode: save_mode,
        partition_by: None,
        predicate: None,
    };
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(storage)?;
    Ok(finalized.version())
}

/// Creates the empty Delta table `name` with `schema` (its own commit, carrying the run id).
pub async fn create_delta_table(
    lakehouse: &Lakehouse,
    name: &TableName,
    schema: &Schema,
    run_id: &str,
) -> Result<DeltaTable> {
    let url = lakehouse.table_url(name)?;
    create_delta_table_at(lakehouse, url, &name.name, schema, run_id).await
}

/// Creates an empty Delta table at `url`.
pub async fn create_delta_table_at(
    lakehouse: &Lakehouse,
    url: url::Url,
    table_name: &str,
    schema: &Schema,
    run_id: &str,
) -> Result<DeltaTable> {
    let uri = url.to_string();
    let storage = Error::storage_at(&uri);
    if let Ok(folder) = url.to_file_path() {
        std::fs::create_dir_all(&folder).map_err(Error::storage_at(&uri))?;
    }
    let delta_schema: StructType = schema.try_into_kernel().map_err(Error::storage_at(&uri))?;
    let table = DeltaTable::try_from_url_with_storage_options(
        url.clone(),
        lakehouse.storage_options().clone(),
    )
    .await
    .map_err(storage)?;
    table
        .create()
        .with_columns(delta_schema.fields().cloned())
        .with_table_name(table_name)
        .with_commit_properties(CommitProperties::default().with_metadata(commit_metadata(
            run_id,
            Value::Array(Vec::new()),
            [],
        )))
        .await
        .map_err(storage)
}

/// A fault-injection point of ingest (see [`lakescore_engine::fault`]); an injected
/// failure is reported as the storage failure it stands for.
pub(crate) fn fault_point(name: &str) -> Result<()> {
    lakescore_engine::fault::point(name).map_err(|cause| Error::storage(name, cause))
}

//! Runs the `.slt` files in `tests/slt/` against lakescore's own SQL session: the
//! lakehouse catalog, `table_at`, every lakescore function, SQL models and `transform`.
//!
//! Each file gets a scratch project (its own lakehouse) and its own tokio runtime.
//! `cargo test -p lakescore-sql --test slt -- --complete` rewrites the expected results;
//! a file name filter may follow (`-- normalize`).
//!
//! Besides SQL, a record may hold one of these directives:
//! - `.table schema.name` then a query: writes the query's rows as that Delta table.
//! - `.model NAME` then the model file's text: writes `models/NAME.sql`.
//! - `.transform [SELECTOR ...] [--force]`: runs transform; one row per model with its
//!   status, version, rows and tests passed (a failed model is a row, not an error).
//! - `.lineage TABLE[@VERSION]`: the lineage tree, one row per line.
//! - `.warnings`: the values functions turned into NULL since the last `.warnings`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use lakescore_sql::dag::Selector;
use lakescore_sql::engine::datafusion::arrow::array::RecordBatch;
use lakescore_sql::engine::datafusion::arrow::datatypes::DataType;
use lakescore_sql::engine::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use lakescore_sql::engine::deltalake::kernel::transaction::CommitProperties;
use lakescore_sql::engine::run::RunContext;
use lakescore_sql::engine::storage::descriptions::Descriptions;
use lakescore_sql::engine::storage::write::{WriteMode, table_for_write, write_frame};
use lakescore_sql::engine::{Lakehouse, Project, SqlSession, TableName};
use lakescore_sql::lineage::{lineage, render_tree};
use lakescore_sql::{ModelStatus, Transform};
use sqllogictest::{DBOutput, DefaultColumnType, Runner};

const PROJECT: &str = r#"
[project]
name = "slt"

[functions]
pii_salt = "slt-salt"

[functions.exchange_rates]
base = "EUR"
rates = { USD = 1.25, GBP = 0.8 }
"#;

/// A scratch project and a session over its lakehouse.
struct LakescoreDb {
    project: Project,
    session: SqlSession,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

fn failed(error: impl std::fmt::Display) -> DbError {
    DbError(error.to_string())
}

type Output = DBOutput<DefaultColumnType>;

impl LakescoreDb {
    async fn open(dir: &Path) -> Result<Self, DbError> {
        let project = Project::load(&dir.join("lakescore.toml")).map_err(failed)?;
        let session = lakescore_sql::engine::ml::sql_session(lakehouse(&project)?)
            .functions(project.config.functions.clone())
            .config(
                lakescore_sql::engine::datafusion::prelude::SessionConfig::new()
                    .with_target_partitions(1),
            )
            .build()
            .await
            .map_err(failed)?;
        Ok(Self { project, session })
    }

    async fn query(&mut self, sql: &str) -> Result<Output, DbError> {
        self.session.refresh().await.map_err(failed)?;
        let frame = self.session.sql(sql).await.map_err(failed)?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await.map_err(failed)?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: rows_as_text(&batches)?,
        })
    }

    async fn write_table(&mut self, name: &str, sql: &str) -> Result<Output, DbError> {
        self.session.refresh().await.map_err(failed)?;
        let name = TableName::parse(name).map_err(failed)?;
        let frame = self.session.sql(sql).await.map_err(failed)?;
        let lakehouse = self.session.lakehouse();
        let table = table_for_write(lakehouse, &name).await.map_err(failed)?;
        let written = write_frame(
            table,
            frame,
            WriteMode::Overwrite,
            CommitProperties::default(),
            &Descriptions::default(),
        )
        .await
        .map_err(failed)?;
        Ok(DBOutput::StatementComplete(
            written.version().unwrap_or_default(),
        ))
    }

    async fn transform(&mut self, arguments: &str) -> Result<Output, DbError> {
        let mut selectors = Vec::new();
        let mut force = false;
        for argument in arguments.split_whitespace() {
            match argument {
                "--force" => force = true,
                other => selectors.push(Selector::parse(other)),
            }
        }
        let cx = RunContext::new(Arc::new(self.project.clone()), lakehouse(&self.project)?);
        let report = Transform::new(&cx)
            .with_selectors(selectors)
            .with_force(force)
            .await
            .map_err(failed)?;
        let rows = report
            .models
            .iter()
            .map(|model| {
                let (status, version) = match &model.status {
                    ModelStatus::Built { version } => ("built", version.to_string()),
                    ModelStatus::ViewSaved => ("view", String::from("-")),
                    ModelStatus::UpToDate { version } => (
                        "up_to_date",
                        version.map_or_else(|| String::from("-"), |v| v.to_string()),
                    ),
                    ModelStatus::Failed { message, .. } => ("failed", first_line(message)),
                    ModelStatus::Skipped { .. } => ("skipped", String::from("-")),
                };
                let passed = model.tests.iter().filter(|t| t.passed()).count();
                vec![
                    model.name.clone(),
                    status.to_string(),
                    version,
                    model
                        .rows
                        .map_or_else(|| String::from("-"), |r| r.to_string()),
                    format!("{passed}/{}", model.tests.len()),
                ]
            })
            .collect();
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Text; 5],
            rows,
        })
    }

    async fn lineage(&mut self, table: &str) -> Result<Output, DbError> {
        self.session.refresh().await.map_err(failed)?;
        let (name, version) = TableName::parse_at(table.trim()).map_err(failed)?;
        let root = lineage(&self.session, &name, version)
            .await
            .map_err(failed)?;
        let rows = render_tree(&root)
            .lines()
            .map(|line| vec![strip_volatile(line)])
            .collect();
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Text],
            rows,
        })
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for LakescoreDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<Output, DbError> {
        let text = sql.trim_start();
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        let (directive, argument) = first.split_once(' ').unwrap_or((first, ""));
        match directive {
            ".table" => self.write_table(argument.trim(), rest).await,
            ".model" => {
                let file = self
                    .project
                    .models_dir()
                    .join(format!("{}.sql", argument.trim()));
                std::fs::create_dir_all(self.project.models_dir()).map_err(failed)?;
                std::fs::write(file, rest).map_err(failed)?;
                Ok(DBOutput::StatementComplete(0))
            }
            ".transform" => self.transform(argument).await,
            ".lineage" => self.lineage(argument).await,
            ".warnings" => Ok(DBOutput::Rows {
                types: vec![
                    DefaultColumnType::Text,
                    DefaultColumnType::Integer,
                    DefaultColumnType::Text,
                ],
                rows: self
                    .session
                    .take_warnings()
                    .into_iter()
                    .map(|w| vec![w.function.to_string(), w.count.to_string(), w.example])
                    .collect(),
            }),
            _ => self.query(sql).await,
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "lakescore"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

fn lakehouse(project: &Project) -> Result<Arc<Lakehouse>, DbError> {
    Lakehouse::for_project(project)
        .map(Arc::new)
        .map_err(failed)
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || matches!(data_type, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

fn rows_as_text(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DbError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| match f.value(row).to_string() {
                        empty if empty.is_empty() => String::from("(empty)"),
                        text => text,
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// Run ids, commit times and hashes change on every run; lineage rows keep the shape.
fn strip_volatile(line: &str) -> String {
    line.split(", run ")
        .next()
        .unwrap_or(line)
        .split(" (models/")
        .next()
        .unwrap_or(line)
        .to_string()
}

fn slt_files(filter: Option<&str>) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .filter(|path| filter.is_none_or(|f| path.to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

fn run_file(path: &Path, complete: bool) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(scratch.path().join("lakescore.toml"), PROJECT).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let dir = scratch.path().to_path_buf();
        let mut runner = Runner::new(move || {
            let dir = dir.clone();
            async move { LakescoreDb::open(&dir).await }
        });
        if complete {
            runner
                .update_test_file(
                    path,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner.run_file_async(path).await.map_err(|e| e.to_string())
        }
    })
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let complete = arguments.iter().any(|a| a == "--complete");
    let filter = arguments
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    let mut failures = 0;
    let files = slt_files(filter);
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        match run_file(file, complete) {
            Ok(()) => println!("test {name} ... ok"),
            Err(error) => {
                failures += 1;
                println!("test {name} ... FAILED\n{error}");
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failures} failed;",
        if failures == 0 { "ok" } else { "FAILED" },
        files.len() - failures
    );
    if failures > 0 {
        std::process::exit(1);
    }
}

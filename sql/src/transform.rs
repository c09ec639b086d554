//! `transform`: runs the selected SQL models in dependency order, each on a consistent
//! snapshot of its inputs, testing every result before it is committed.
//!
//! At the start of a run every table the selected models read (and that the run does not
//! build itself) is pinned to its current version; a model reading another model of the
//! run sees the version that model just committed. A table model's result is first
//! written to a staging table, its data tests run there, and only then is it committed to
//! the model's table in one commit whose Delta commit info records the run id, the model
//! file and its SHA-256, and every input table with its version. A failing error-severity
//! test, or any failure, leaves the table at its previous version; models reading a failed
//! model are skipped. A model whose file and input versions match its table's last commit
//! is up to date and is not run again (unless forced), so a rerun adds no versions.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lakescore_engine::config::Project;
use lakescore_engine::datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use lakescore_engine::deltalake::kernel::transaction::CommitProperties;
use lakescore_engine::run::{DataMoved, OperationFuture, Report, RunContext};
use lakescore_engine::sql::functions::FunctionWarning;
use lakescore_engine::sql::views::{read_view, write_view};
use lakescore_engine::storage::commit::{
    COLUMN_DESCRIPTIONS, DESCRIPTION, INPUTS, MATERIALIZED, MODEL, MODEL_FILE, MODEL_SHA256, ROWS,
    commit_metadata, last_commit_info, records,
};
use lakescore_engine::storage::descriptions::{Descriptions, describe};
use lakescore_engine::storage::write::{
    WriteMode, committed_version, delete_folder, merge_frame, staging_table, table_for_write,
    write_frame,
};
use lakescore_engine::{Lakehouse, SqlSession, TableName, TableVersion};
use serde_json::{Value, json};

use crate::dag::{ModelGraph, PlannedModel, Selector};
use crate::data_test::{Check, DataTest, Severity};
use crate::error::Result;
use crate::model::{Materialization, Model, load_models};
use crate::testing::{TestOutcome, TestRun, record_results, run_test};
use lakescore_engine::sql::session::Pins;
use lakescore_engine::storage::lakehouse::quote_identifier as quote;

/// The catalog that holds a model's result while its tests run.
const RUN_CATALOG: &str = "lakescore_run";

/// What happened to one model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    /// The table was written; this is its new version.
    Built {
        /// The committed version.
        version: u64,
    },
    /// The view definition was saved.
    ViewSaved,
    /// Nothing changed since the table's last commit (or the view's definition).
    UpToDate {
        /// The table's version, None for views.
        version: Option<u64>,
    },
    /// The model failed; its table is unchanged.
    Failed {
        /// Why, with what to do.
        message: String,
        /// True when the user can fix it (model SQL, data tests), false for runtime
        /// failures such as unreachable storage.
        user_error: bool,
    },
    /// Not run because a model it reads failed or was skipped.
    Skipped {
        /// The model it reads that did not build.
        upstream: String,
    },
}

/// One model's outcome.
#[derive(Debug, Clone)]
pub struct ModelReport {
    /// The model's name.
    pub name: String,
    /// Its file, relative to the project.
    pub file: String,
    /// Its table.
    pub table: TableName,
    /// How it is stored.
    pub materialized: Materialization,
    /// What happened.
    pub status: ModelStatus,
    /// Rows the run wrote (None when nothing was written).
    pub rows: Option<u64>,
    /// Its data tests' results.
    pub tests: Vec<TestOutcome>,
    /// Values its functions could not normalize.
    pub warnings: Vec<FunctionWarning>,
    /// How long it took.
    pub duration: Duration,
}

impl ModelReport {
    /// True when the model failed or was skipped.
    pub fn is_failure(&self) -> bool {
        matches!(
            self.status,
            ModelStatus::Failed { .. } | ModelStatus::Skipped { .. }
        )
    }
}

/// The outcome of a transform run.
#[derive(Debug, Clone)]
pub struct TransformReport {
    /// The run's id, in every commit it made.
    pub run_id: String,
    /// Every selected model, in run order.
    pub models: Vec<ModelReport>,
}

impl Report for TransformReport {
    fn data_moved(&self) -> DataMoved {
        let mut data = DataMoved::default();
        for model in &self.models {
            if let ModelStatus::Built { version } = model.status {
                data.rows_written += model.rows.unwrap_or(0);
                data.tables_written
                    .push(format!("{}@{version}", model.table));
            }
        }
        data
    }

    fn summary(&self) -> String {
        let built = self
            .models
            .iter()
            .filter(|m| matches!(m.status, ModelStatus::Built { .. }))
            .count();
        format!(
            "{built} of {} models built, {} rows written",
            self.models.len(),
            self.data_moved().rows_written
        )
    }
}

/// Each model's line, in run order, then the run id.
impl fmt::Display for TransformReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for model in &self.models {
            writeln!(f, "{model}")?;
        }
        write!(f, "run id {}", self.run_id)
    }
}

/// What the command line prints of one model: its outcome, then its warnings.
impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tests = self.tests.len();
        let passed = self.tests.iter().filter(|t| t.passed()).count();
        let tests_text = if tests == 0 {
            String::new()
        } else {
            format!(", {passed}/{tests} tests passed")
        };
        let rows = self.rows.map(|r| format!(", {r} rows")).unwrap_or_default();
        let took = format!("{:.1}s", self.duration.as_secs_f64());
        let head = format!("{} -> {}", self.name, self.table);
        match &self.status {
            ModelStatus::Built { version } => write!(
                f,
                "✓ {head}: version {version} ({}{rows}{tests_text}) {took}",
                self.materialized.as_str()
            )?,
            ModelStatus::ViewSaved => write!(f, "✓ {head}: view saved{tests_text} {took}")?,
            ModelStatus::UpToDate { version } => {
                let at = version
                    .map(|v| format!(" at version {v}"))
                    .unwrap_or_default();
                write!(
                    f,
                    "= {head}: up to date{at} (same model file and input versions)"
                )?;
            }
            ModelStatus::Failed { message, .. } => write!(f, "✗ {head}: {message}")?,
            ModelStatus::Skipped { upstream } => write!(
                f,
                "- {head}: skipped, it reads {upstream}, which did not build"
            )?,
        }
        for test in self
            .tests
            .iter()
            .filter(|t| !t.passed() && !t.blocks_commit())
        {
            write!(
                f,
                "\n  warning: test {} found {} failing row(s), e.g. {}",
                test.name,
                test.failing_rows,
                test.examples.first().map_or("", String::as_str)
            )?;
        }
        for warning in &self.warnings {
            write!(f, "\n  warning: {warning}")?;
        }
        Ok(())
    }
}

impl TransformReport {
    /// The error for a run in which models failed, or None when all built.
    pub fn failure(&self) -> Option<crate::Error> {
        let failed: Vec<String> = self
            .models
            .iter()
            .filter(|m| m.is_failure())
            .map(|m| m.name.clone())
            .collect();
        if failed.is_empty() {
            return None;
        }
        let user_error = self.models.iter().all(|m| {
            !matches!(
                m.status,
                ModelStatus::Failed {
                    user_error: false,
                    ..
                }
            )
        });
        Some(crate::Error::ModelsFailed { failed, user_error })
    }
}

/// Progress of a run, as it happens.
#[derive(Debug, Clone)]
pub enum TransformEvent {
    /// A model started.
    Started {
        /// The model.
        name: String,
        /// Its table.
        table: TableName,
    },
    /// A model finished (in any status).
    Finished(ModelReport),
}

/// A callback receiving [`TransformEvent`]s.
pub type TransformProgress = Arc<dyn Fn(TransformEvent) + Send + Sync>;

/// A transform run: `Transform::new(&cx)`, choose models, then `.await` it.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Transform {
    cx: RunContext,
    selectors: Vec<Selector>,
    force: bool,
    progress: Option<TransformProgress>,
}

impl Transform {
    /// Every model of the context's project, into its lakehouse.
    pub fn new(cx: &RunContext) -> Self {
        Self {
            cx: cx.clone(),
            selectors: Vec::new(),
            force: false,
            progress: None,
        }
    }

    /// Runs only the models these selectors choose.
    pub fn with_selectors(mut self, selectors: Vec<Selector>) -> Self {
        self.selectors = selectors;
        self
    }

    /// Runs models even when they are up to date.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: TransformProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    async fn run(self) -> Result<TransformReport> {
        let graph = model_graph(self.cx.project(), self.cx.lakehouse()).await?;
        let selected = graph.select(&self.selectors)?;
        let mut pins = self.starting_pins(&graph, &selected).await?;
        let mut reports: Vec<ModelReport> = Vec::new();
        for index in selected {
            let planned = &graph.models()[index];
            let model = &planned.model;
            if let Some(progress) = &self.progress {
                progress(TransformEvent::Started {
                    name: model.name.clone(),
                    table: model.table.clone(),
                });
            }
            let blocked = planned.upstream.iter().find_map(|u| {
                let upstream = &graph.models()[*u].model;
                reports
                    .iter()
                    .find(|r| r.name == upstream.name && r.is_failure())
                    .map(|r| r.name.clone())
            });
            let started = Instant::now();
            let mut report = ModelReport {
                name: model.name.clone(),
                file: model.display_path.clone(),
                table: model.table.clone(),
                materialized: model.config.materialized,
                status: ModelStatus::ViewSaved,
                rows: None,
                tests: Vec::new(),
                warnings: Vec::new(),
                duration: Duration::ZERO,
            };
            report.status = match blocked {
                Some(upstream) => ModelStatus::Skipped { upstream },
                None => match self.run_model(planned, &pins, &mut report).await {
                    Ok(status) => status,
                    Err(error) => ModelStatus::Failed {
                        message: error.to_string(),
                        user_error: error.is_user_error(),
                    },
                },
            };
            if let ModelStatus::Built { version }
            | ModelStatus::UpToDate {
                version: Some(version),
            } = report.status
            {
                pins.insert(model.table.clone(), version);
            }
            report.duration = started.elapsed();
            if let Some(progress) = &self.progress {
                progress(TransformEvent::Finished(report.clone()));
            }
            reports.push(report);
        }
        Ok(TransformReport {
            run_id: self.cx.run_id().to_string(),
            models: reports,
        })
    }

    /// The current version of every table the selected models read but do not build.
    async fn starting_pins(&self, graph: &ModelGraph, selected: &[usize]) -> Result<Pins> {
        let built: Vec<&TableName> = selected
            .iter()
            .map(|i| &graph.models()[*i].model.table)
            .collect();
        let mut pins = Pins::new();
        for index in selected {
            for table in &graph.models()[*index].reads {
                if built.contains(&table) || pins.contains_key(table) {
                    continue;
                }
                // Views are planned when read; they have no version to pin.
                if let Some(version) = self.cx.lakehouse().latest_version_if_exists(table).await? {
                    pins.insert(table.clone(), version);
                }
            }
        }
        Ok(pins)
    }

    async fn run_model(
        &self,
        planned: &PlannedModel,
        pins: &Pins,
        report: &mut ModelReport,
    ) -> Result<ModelStatus> {
        let model = &planned.model;
        let session = lakescore_engine::ml::sql_session(self.cx.lakehouse().clone())
            .functions(self.cx.project().config.functions.clone())
            .pins(pins.clone())
            .engine(self.cx.project().config.engine.clone())
            .build()
            .await?;
        let inputs = Value::Array(
            planned
                .reads
                .iter()
                .map(|table| match pins.get(table) {
                    Some(version) => json!({"table": table.to_string(), "version": version}),
                    None => json!({"table": table.to_string(), "view": true}),
                })
                .collect(),
        );
        // What this build records; the data commit adds its rows, and a commit that
        // only changes the descriptions records the same build (so it is up to date).
        let build = |rows: Option<Value>| {
            let identity = [
                (MODEL, json!(model.name)),
                (MODEL_FILE, json!(model.display_path)),
                (MODEL_SHA256, json!(model.sha256)),
                (MATERIALIZED, json!(model.config.materialized.as_str())),
                (DESCRIPTION, json!(model.config.description)),
                (COLUMN_DESCRIPTIONS, json!(model.config.columns)),
            ];
            let extras = identity.into_iter().chain(rows.map(|rows| (ROWS, rows)));
            let metadata = commit_metadata(self.cx.run_id(), inputs.clone(), extras);
            CommitProperties::default().with_metadata(metadata)
        };
        let descriptions = Descriptions {
            table: model.config.description.clone(),
            columns: model.config.columns.clone(),
        };
        if !self.force && self.is_up_to_date(planned, &inputs).await? {
            let version = match model.config.materialized {
                Materialization::View => None,
                // A run stopped between the rows and their descriptions describes them now.
                _ => Some(
                    self.described(model, None, &descriptions, build(None))
                        .await?,
                ),
            };
            return Ok(ModelStatus::UpToDate { version });
        }
        let frame = session.plan(planned.statement.clone()).await?;
        let produced: Vec<&str> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if let Some(missing) = model
            .config
            .columns
            .keys()
            .find(|c| !produced.contains(&c.as_str()))
        {
            return Err(crate::Error::ModelFile {
                file: model.display_path.clone().into(),
                message: format!(
                    "[columns] describes '{missing}', which the query does not produce (it produces {})",
                    produced.join(", ")
                ),
            });
        }
        let tests = tests_with_implicit_key(planned);
        let run_schema = Arc::new(MemorySchemaProvider::new());
        let run_catalog = MemoryCatalogProvider::new();
        run_catalog.register_schema("staged", run_schema.clone())?;
        session
            .context()
            .register_catalog(RUN_CATALOG, Arc::new(run_catalog));
        let relation = format!("{RUN_CATALOG}.staged.{}", quote(&model.name));

        if model.config.materialized == Materialization::View {
            run_schema.register_table(model.name.clone(), frame.into_view())?;
            let passed = self.test(&session, &tests, &relation, report).await?;
            if !passed {
                return Ok(failed_tests(report));
            }
            write_view(self.cx.lakehouse(), &model.table, &model.sql).await?;
            return Ok(ModelStatus::ViewSaved);
        }

        let (staging, folder) = staging_table(
            self.cx.lakehouse(),
            &format!("transform-{}-{}", self.cx.run_id(), model.name),
        )?;
        let result = async {
            let staged = write_frame(
                staging,
                session.for_write(frame).await?,
                WriteMode::Overwrite,
                CommitProperties::default(),
                &Descriptions::default(),
            )
            .await?;
            let provider = session.provider(&staged).await?;
            report.rows = Some(
                session
                    .context()
                    .read_table(provider.clone())?
                    .count()
                    .await? as u64,
            );
            run_schema.register_table(model.name.clone(), provider.clone())?;
            if !self.test(&session, &tests, &relation, report).await? {
                return Ok(failed_tests(report));
            }
            let source = session
                .for_write(session.context().read_table(provider)?)
                .await?;
            let properties = build(Some(json!(report.rows)));
            let target = table_for_write(self.cx.lakehouse(), &model.table).await?;
            lakescore_engine::fault::check("transform-commit")?;
            let version = match model.config.materialized {
                Materialization::Merge => {
                    merge_frame(target, source, &model.config.key, properties, &descriptions)
                        .await?
                }
                Materialization::Append => committed_version(
                    &write_frame(target, source, WriteMode::Append, properties, &descriptions)
                        .await?,
                )?,
                _ => committed_version(
                    &write_frame(
                        target,
                        source,
                        WriteMode::Overwrite,
                        properties,
                        &descriptions,
                    )
                    .await?,
                )?,
            };
            let version = self
                .described(model, Some(version), &descriptions, build(None))
                .await?;
            Ok(ModelStatus::Built { version })
        }
        .await;
        delete_folder(self.cx.lakehouse(), &folder).await;
        result
    }

    /// Runs the tests, records them and the function warnings, and says whether the
    /// model may be committed.
    async fn test(
        &self,
        session: &SqlSession,
        tests: &[DataTest],
        relation: &str,
        report: &mut ModelReport,
    ) -> Result<bool> {
        report.warnings = session.take_warnings();
        for test in tests {
            report
                .tests
                .push(run_test(session.context(), test, relation).await?);
        }
        report.warnings.extend(session.take_warnings());
        let run = TestRun {
            run_id: self.cx.run_id(),
            model: &report.name,
            table: &report.table,
            tested_at: Utc::now(),
        };
        record_results(self.cx.lakehouse(), &run, &report.tests, &report.warnings).await?;
        Ok(!report.tests.iter().any(TestOutcome::blocks_commit))
    }

    /// True when the model's table was last written by this very model file from the
    /// same input versions (for views: when the saved definition is this file).
    /// Records `descriptions` on `model`'s table at `version` (the newest when None) with
    /// `properties` when it stores others; returns the table's newest version.
    async fn described(
        &self,
        model: &Model,
        version: Option<u64>,
        descriptions: &Descriptions,
        properties: CommitProperties,
    ) -> Result<u64> {
        let lakehouse = self.cx.lakehouse();
        let at = version.map_or(TableVersion::Latest, TableVersion::Version);
        let table = lakehouse.open_table(&model.table, at).await?;
        Ok(describe(&table, descriptions, properties).await?)
    }

    async fn is_up_to_date(&self, planned: &PlannedModel, inputs: &Value) -> Result<bool> {
        let model = &planned.model;
        if model.config.materialized == Materialization::View {
            return Ok(read_view(self.cx.lakehouse(), &model.table)
                .await?
                .as_deref()
                == Some(model.sql.as_str()));
        }
        if inputs
            .as_array()
            .is_some_and(|all| all.iter().any(|i| i.get("view").is_some()))
        {
            return Ok(false);
        }
        let last = last_commit_info(self.cx.lakehouse(), &model.table).await?;
        Ok(last.is_some_and(|info| {
            records(
                &info,
                &[
                    (MODEL, &json!(model.name)),
                    (MODEL_SHA256, &json!(model.sha256)),
                    (INPUTS, inputs),
                ],
            )
        }))
    }
}

impl IntoFuture for Transform {
    type Output = Result<TransformReport>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The project's models, parsed and ordered.
pub async fn model_graph(project: &Project, lakehouse: &Arc<Lakehouse>) -> Result<ModelGraph> {
    let models = load_models(project)?;
    let session = lakescore_engine::ml::sql_session(lakehouse.clone())
        .functions(project.config.functions.clone())
        .build()
        .await?;
    ModelGraph::build(models, &session).await
}

/// The model's tests; a merge model also gets `unique(key)` unless it declares it, since
/// a merge cannot apply two rows with one key.
fn tests_with_implicit_key(planned: &PlannedModel) -> Vec<DataTest> {
    let model = &planned.model;
    let mut tests = model.tests.clone();
    let key_tested = tests.iter().any(|t| {
        t.severity == Severity::Error && t.check == Check::Unique(model.config.key.clone())
    });
    if model.config.materialized == Materialization::Merge && !key_tested {
        let check = Check::Unique(model.config.key.clone());
        tests.push(DataTest {
            name: format!("unique({}) [merge key]", model.config.key.join(", ")),
            check,
            severity: Severity::Error,
        });
    }
    tests
}

fn failed_tests(report: &ModelReport) -> ModelStatus {
    let failures: Vec<String> = report
        .tests
        .iter()
        .filter(|t| t.blocks_commit())
        .map(|t| {
            let mut text = format!("test {} failed: {} failing row(s)", t.name, t.failing_rows);
            for example in &t.examples {
                text.push_str(&format!("\n      {example}"));
            }
            text
        })
        .collect();
    ModelStatus::Failed {
        message: format!(
            "{}\n    {} is unchanged; query the failing rows with: lakescore sql \"SELECT * FROM ops.test_results WHERE status = 'failed'\"",
            failures.join("\n    "),
            report.table
        ),
        user_error: true,
    }
}

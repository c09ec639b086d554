//! `lakescore score MODEL --input TABLE[@VERSION] --output scored.NAME`: scores a table
//! version with a model version into a Delta table, one commit per run, every row
//! carrying its prediction, explanation and lineage.
//!
//! The input is read at one pinned version and streamed through DataFusion (`predict`)
//! into the output table; nothing is collected in memory. `prediction_id` is the first 128
//! bits of the SHA-256 of the model name and version, the input table and version and the
//! row's key, so the same model version scoring the same input version gives the same ids.
//! A run whose model version and input version were already scored into the output adds
//! nothing.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::dataframe::DataFrame;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, Partitioning, Repartition};
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::transaction::CommitProperties;
use serde_json::{Value, json};

use super::prediction_id::{PREDICTION_ID, prediction_id_function};
use super::registry::{Manifest, ModelRef, Registry};
use crate::error::{Error, Result};
use crate::run::{DataMoved, OperationFuture, Report, RunContext};
use crate::sql::session::Pins;
use crate::storage::commit::{
    INPUTS, MODEL_SHA256, SCORED_WITH, TRAINING_TABLE, commit_metadata, last_commit_info, records,
};
use crate::storage::descriptions::{Descriptions, describe};
use crate::storage::lakehouse::{TableName, quote_identifier, quote_literal, table_provider};
use crate::storage::partitioned_append::append_per_partition;
use crate::storage::system_tables::scored_table;
use crate::storage::write::{ColumnLayout, added_rows, table_for_write};

/// The lineage columns that say which scoring wrote a scored row.
const LINEAGE_COLUMNS: [&str; 5] = [
    "model_name",
    "model_version",
    "model_sha256",
    "source_table",
    "source_table_version",
];

/// The description of each column a scoring writes besides the model's key columns.
const COLUMN_DESCRIPTIONS: [(&str, &str); 14] = [
    (
        "prediction_id",
        "Stable id of this prediction: the first 128 bits of the SHA-256 of the model name and version, the input table and version and the row's key, in hex. Feedback matches predictions by it",
    ),
    (
        "prediction",
        "The predicted class (classification) or value (regression)",
    ),
    (
        "probability",
        "Binary classification: probability of the positive class; multiclass: of the predicted class; NULL for regression",
    ),
    (
        "confidence",
        "Probability of the predicted class; NULL for regression",
    ),
    (
        "top_features",
        "The features that moved this prediction most from the model's baseline: feature, value and contribution, largest first",
    ),
    ("model_name", "The model that made the prediction"),
    ("model_version", "The model's version in the registry"),
    ("model_sha256", "SHA-256 of the model artifact"),
    ("training_table", "The table the model was trained on"),
    (
        "training_table_version",
        "The training table's Delta version the model was trained on",
    ),
    ("source_table", "The table whose row was scored"),
    (
        "source_table_version",
        "The source table's Delta version that was scored",
    ),
    ("run_id", "The lakescore run that scored the row"),
    ("scored_at", "When the row was scored (UTC)"),
];

/// The descriptions of model `model`'s scored table: its `[[model]]` description (or one
/// saying what the table holds) and every column's.
fn scored_descriptions(model: &str, description: Option<&str>, key: &[String]) -> Descriptions {
    let table = description.map_or_else(
        || format!("Predictions of model {model}, with explanations and lineage"),
        str::to_string,
    );
    let keys = key.iter().map(|column| {
        let text = format!("Key of the scored row in the source table ({column})");
        (column.clone(), text)
    });
    let columns = COLUMN_DESCRIPTIONS
        .iter()
        .map(|(column, text)| (column.to_string(), text.to_string()));
    Descriptions {
        table: Some(table),
        columns: keys.chain(columns).collect(),
    }
}

/// What a scoring run did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreReport {
    /// The model version used, `name:version`.
    pub model: String,
    /// The input table and version.
    pub input: (TableName, u64),
    /// The output table.
    pub output: TableName,
    /// The output's new version, or None when this input version was already scored.
    pub version: Option<u64>,
    /// Rows scored.
    pub rows: u64,
    /// The run.
    pub run_id: String,
    /// How long scoring took.
    pub elapsed: Duration,
}

/// A scoring run: `cx.score(model, input).await`.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Score {
    cx: RunContext,
    model: String,
    input: String,
    output: Option<String>,
}

impl RunContext {
    /// Scores `input` (`schema.name` or `schema.name@VERSION`) with `model` (a model
    /// reference).
    pub fn score(&self, model: impl Into<String>, input: impl Into<String>) -> Score {
        Score {
            cx: self.clone(),
            model: model.into(),
            input: input.into(),
            output: None,
        }
    }
}

impl Score {
    /// Writes into `output` (default `scored.<model name>`).
    pub fn with_output(mut self, output: Option<String>) -> Self {
        self.output = output;
        self
    }

    async fn run(self) -> Result<ScoreReport> {
        let reference = ModelRef::parse(&self.model)?;
        let manifest = Registry::new(self.cx.lakehouse().clone())
            .resolve(&reference)
            .await?;
        if manifest.key.is_empty() {
            return Err(Error::Usage(format!(
                "model '{}' declares no key: add key = [\"id column\", ...] to its [[model]] so every prediction names its row, then train it again",
                manifest.name
            )));
        }
        let (input, pinned) = TableName::parse_at(&self.input)?;
        let input_version = match pinned {
            Some(version) => version,
            None => self.cx.lakehouse().latest_version(&input).await?,
        };
        let output = TableName::parse(
            &self
                .output
                .clone()
                .unwrap_or_else(|| scored_table(&manifest.name)),
        )?;
        let model_text = format!("{}:{}", manifest.name, manifest.version);
        let mut report = ScoreReport {
            model: model_text.clone(),
            input: (input.clone(), input_version),
            output: output.clone(),
            version: None,
            rows: 0,
            run_id: self.cx.run_id().to_string(),
            elapsed: Duration::ZERO,
        };
        let inputs = json!([{"table": input.to_string(), "version": input_version}]);
        let metadata = commit_metadata(
            self.cx.run_id(),
            inputs.clone(),
            [
                (SCORED_WITH, json!(model_text)),
                (MODEL_SHA256, json!(manifest.artifact_sha256)),
                (
                    TRAINING_TABLE,
                    json!(format!(
                        "{}@{}",
                        manifest.training_table, manifest.training_table_version
                    )),
                ),
            ],
        );
        let description = self
            .cx
            .project()
            .config
            .models
            .iter()
            .find(|m| m.name == manifest.name)
            .and_then(|m| m.description.as_deref());
        let descriptions = scored_descriptions(&manifest.name, description, &manifest.key);
        let properties = || CommitProperties::default().with_metadata(metadata.clone());
        if self
            .already_scored(&output, &manifest, (&input, input_version), &inputs)
            .await?
        {
            // A run stopped between its rows and their descriptions describes them now.
            if let Some(table) = self.cx.lakehouse().open_if_exists(&output).await? {
                describe(&table, &descriptions, properties()).await?;
            }
            return Ok(report);
        }
        let session = crate::ml::sql_session(self.cx.lakehouse().clone())
            .functions(self.cx.project().config.functions.clone())
            .pins(Pins::from([(input.clone(), input_version)]))
            .engine(self.cx.project().config.engine.clone())
            .build()
            .await?;
        let quote = quote_identifier;
        let text = quote_literal;
        let keys: Vec<String> = manifest.key.iter().map(|k| quote(k)).collect();
        let features: Vec<String> = manifest.features.iter().map(|f| quote(&f.name)).collect();
        let id_prefix = [
            manifest.name.clone(),
            manifest.version.to_string(),
            input.to_string(),
            input_version.to_string(),
        ]
        .join("|");
        let id_keys: Vec<String> = keys
            .iter()
            .map(|k| format!("coalesce(CAST({k} AS VARCHAR), '')"))
            .collect();
        session.context().register_udf(prediction_id_function());
        let sql = format!(
            "SELECT {PREDICTION_ID}({prefix}{ids}) AS prediction_id, {keys}, \
             scored['prediction'] AS prediction, scored['probability'] AS probability, \
             scored['confidence'] AS confidence, scored['top_features'] AS top_features, \
             {name} AS model_name, CAST({version} AS BIGINT) AS model_version, {sha} AS model_sha256, \
             {training} AS training_table, CAST({training_version} AS BIGINT) AS training_table_version, \
             {source} AS source_table, CAST({input_version} AS BIGINT) AS source_table_version, \
             {run} AS run_id, arrow_cast(now(), 'Timestamp(Microsecond, Some(\"UTC\"))') AS scored_at \
             FROM (SELECT {keys}, predict({model}, {features}) AS scored FROM {input_table})",
            prefix = text(&id_prefix),
            ids = id_keys.iter().map(|k| format!(", {k}")).collect::<String>(),
            keys = keys.join(", "),
            name = text(&manifest.name),
            version = manifest.version,
            sha = text(&manifest.artifact_sha256),
            training = text(&manifest.training_table),
            training_version = manifest.training_table_version,
            source = text(&input.to_string()),
            run = text(self.cx.run_id()),
            model = text(&model_text),
            features = features.join(", "),
            input_table = input.quoted(),
        );
        let frame = session.sql(&sql).await?;
        let frame = if session.runs_on_cluster() {
            // The cluster spreads the table's files over its executors' tasks.
            session.for_write(frame).await?
        } else {
            spread_over_cores(frame)?
        };
        let table = table_for_write(self.cx.lakehouse(), &output).await?;
        crate::fault::check("score-commit")?;
        // Ids are hashes and probabilities have every bit of their mantissa in use; no
        // reader skips files by the explanations' features, values or contributions.
        let layout = ColumnLayout {
            incompressible: &["prediction_id", "probability", "confidence"],
            unsummarized: &["top_features"],
        };
        let written =
            append_per_partition(table, frame, metadata.clone(), &descriptions, layout).await?;
        report.version = Some(describe(&written, &descriptions, properties()).await?);
        report.rows = added_rows(&written).await;
        Ok(report)
    }

    /// True when `output` already holds this scoring: rows of this model version and
    /// artifact scored from this input version (read from the rows' lineage columns, so
    /// Parquet statistics skip the other files and the table's history is never read; it
    /// holds after old log entries are cleaned up), or, for an input without rows, a newest
    /// commit that recorded it.
    async fn already_scored(
        &self,
        output: &TableName,
        manifest: &Manifest,
        (input, input_version): (&TableName, u64),
        inputs: &Value,
    ) -> Result<bool> {
        let lakehouse = self.cx.lakehouse();
        let Some(table) = lakehouse.open_if_exists(output).await? else {
            return Ok(false);
        };
        let provider = table_provider(&table).await?;
        let schema = provider.schema();
        if let Some(missing) = LINEAGE_COLUMNS
            .iter()
            .find(|column| schema.field_with_name(column).is_err())
        {
            return Err(Error::Usage(format!(
                "{output} is not a scored table: it has no column '{missing}'. Score into a new table (--output schema.name) or one that lakescore score wrote"
            )));
        }
        let this_scoring = col("model_name")
            .eq(lit(manifest.name.clone()))
            .and(col("model_version").eq(lit(manifest.version as i64)))
            .and(col("model_sha256").eq(lit(manifest.artifact_sha256.clone())))
            .and(col("source_table").eq(lit(input.to_string())))
            .and(col("source_table_version").eq(lit(input_version as i64)));
        let rows = SessionContext::new()
            .read_table(provider)?
            .filter(this_scoring)?
            .limit(0, Some(1))?
            .count()
            .await?;
        if rows > 0 {
            return Ok(true);
        }
        let model = json!(format!("{}:{}", manifest.name, manifest.version));
        Ok(last_commit_info(lakehouse, output)
            .await?
            .is_some_and(|info| records(&info, &[(SCORED_WITH, &model), (INPUTS, inputs)])))
    }
}

/// `frame` with each table it scans spread round-robin over every core, batch by batch,
/// so one large file (or files of uneven row groups) keeps all cores scoring. A file is
/// read as one stream: split into byte ranges, its row groups would go to the cores
/// whole (a file of three, 2:1), and the planner drops a round-robin over a scan that
/// already has a stream per core.
fn spread_over_cores(frame: DataFrame) -> Result<DataFrame> {
    let (state, plan) = frame.into_parts();
    let mut config = state.config().clone();
    config.options_mut().optimizer.repartition_file_scans = false;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    let cores = state.config().target_partitions();
    let plan = plan
        .transform_up(|node| {
            Ok(match node {
                LogicalPlan::TableScan(_) => {
                    Transformed::yes(LogicalPlan::Repartition(Repartition {
                        input: Arc::new(node),
                        partitioning_scheme: Partitioning::RoundRobinBatch(cores),
                    }))
                }
                other => Transformed::no(other),
            })
        })?
        .data;
    Ok(DataFrame::new(state, plan))
}

impl IntoFuture for Score {
    type Output = Result<ScoreReport>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let started = Instant::now();
            let mut report = self.run().await?;
            report.elapsed = started.elapsed();
            Ok(report)
        })
    }
}

impl Report for ScoreReport {
    fn data_moved(&self) -> DataMoved {
        let (input, input_version) = &self.input;
        DataMoved {
            rows_read: self.rows,
            rows_written: self.version.map_or(0, |_| self.rows),
            tables_read: vec![format!("{input}@{input_version}")],
            tables_written: self
                .version
                .map(|v| format!("{}@{v}", self.output))
                .into_iter()
                .collect(),
        }
    }

    fn summary(&self) -> String {
        let (input, input_version) = &self.input;
        match self.version {
            Some(version) => format!(
                "scored {} rows with {} into {}@{version}",
                self.rows, self.model, self.output
            ),
            None => format!(
                "{input}@{input_version} was already scored with {}",
                self.model
            ),
        }
    }
}

impl fmt::Display for ScoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (input, input_version) = &self.input;
        match self.version {
            Some(written) => writeln!(
                f,
                "{} <- {input}@{input_version} scored with {}: {} rows -> version {written} in {:.1}s",
                self.output,
                self.model,
                self.rows,
                self.elapsed.as_secs_f64()
            )?,
            None => writeln!(
                f,
                "{} <- {input}@{input_version}: already scored with {}, nothing added",
                self.output, self.model
            )?,
        }
        write!(f, "run id {}", self.run_id)
    }
}

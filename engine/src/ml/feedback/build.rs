//! `lakescore feedback MODEL`: corrections joined with the predictions they correct into
//! `training.<model>_feedback`, one row per corrected prediction, and the corrections
//! that cannot be used into the feedback table's quarantine.
//!
//! One DataFusion plan does the work (built as DataFrames in [`super::plan`]): the
//! feedback table at one version, the scored table and the online table
//! (`scored.<model>_online`, the HTTP API's predictions) at one version each, and the
//! feature rows each batch prediction was computed from, read at `source_table_version`
//! so no value written after the prediction leaks into its training row. An online
//! prediction brings the values it was scored with. A correction names its prediction by
//! `prediction_id`, or by the model's key columns, in which case it corrects the newest
//! prediction for that key scored at or before `corrected_at`.
//!
//! The training set is rebuilt from every correction at each new feedback version
//! (an overwrite: one new Delta version), so a later correction of the same prediction
//! re-resolves it by the policy; the commit records the feedback version and policy it
//! was built from, and a run that finds both unchanged adds nothing. Quarantined
//! corrections are appended once: a rerun skips those already there.

use std::fmt;
use std::future::IntoFuture;

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::execution::FunctionRegistry;
use deltalake::kernel::transaction::CommitProperties;
use serde_json::{Value, json};

use super::performance::{PerformanceReport, RecordPerformance};
use super::plan::FeedbackPlan;
use crate::config::{CorrectionPolicy, ModelConfig};
use crate::error::{Error, Result};
use crate::ml::models::registry::{ModelRef, Registry};
use crate::ml::models::train::model_config;
use crate::run::{DataMoved, OperationFuture, Report, RunContext};
use crate::sql::functions::PARSE_TIMESTAMP_ANY;
use crate::sql::session::{Pins, SqlSession};
use crate::storage::commit::{
    FEEDBACK, FEEDBACK_FOR, POLICY, commit_metadata, last_commit_info, records,
};
use crate::storage::descriptions::Descriptions;
use crate::storage::lakehouse::TableName;
use crate::storage::quarantine::{quarantine_schema, quarantine_table};
use crate::storage::system_tables::{feedback_training_table, online_table};
use crate::storage::write::{
    WriteMode, added_rows, committed_version, table_for_write, write_batch, write_frame,
};

/// Columns every feedback table needs besides the label column and the match columns.
pub const REQUIRED_COLUMNS: [&str; 2] = ["corrected_by", "corrected_at"];
/// The optional free-text column.
pub const COMMENT: &str = "comment";
/// The column naming the corrected prediction.
pub const PREDICTION_ID: &str = "prediction_id";

/// What a feedback run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackReport {
    /// The model.
    pub model: String,
    /// The feedback table and the version read (None: the table does not exist yet, so
    /// there is nothing to do until corrections are landed).
    pub feedback: (TableName, Option<u64>),
    /// The prediction tables read (the scored table, the online table) and their
    /// versions: those that exist.
    pub predictions: Vec<(TableName, u64)>,
    /// The training set written.
    pub output: TableName,
    /// Its new version, or None when it was already built from this feedback version.
    pub version: Option<u64>,
    /// Rows in the feedback table version.
    pub corrections: u64,
    /// Corrected predictions in the training set.
    pub rows: u64,
    /// Corrections newly quarantined.
    pub quarantined: u64,
    /// Where they went.
    pub quarantine: TableName,
    /// How several corrections of a prediction were resolved.
    pub policy: CorrectionPolicy,
    /// Realized metrics, when the training set changed.
    pub performance: Option<PerformanceReport>,
    /// The columns the feedback table needs, for the message when it does not exist.
    pub expected_columns: String,
    /// The run.
    pub run_id: String,
}

/// A feedback run: `cx.build_feedback(model).await`.
#[must_use = "an operation does nothing until it is awaited"]
pub struct BuildFeedback {
    cx: RunContext,
    model: String,
    policy: Option<CorrectionPolicy>,
}

impl RunContext {
    /// Builds the feedback training set of `[[model]]` `model`.
    pub fn build_feedback(&self, model: impl Into<String>) -> BuildFeedback {
        BuildFeedback {
            cx: self.clone(),
            model: model.into(),
            policy: None,
        }
    }
}

impl BuildFeedback {
    /// Resolves several corrections of one prediction by `policy` instead of the
    /// model's `[model.feedback] policy`.
    pub fn with_policy(mut self, policy: Option<CorrectionPolicy>) -> Self {
        self.policy = policy;
        self
    }

    async fn run(self) -> Result<FeedbackReport> {
        let config = model_config(self.cx.project(), &self.model)?;
        let policy = self.policy.unwrap_or(config.feedback.policy);
        let feedback = TableName::parse(&config.feedback.table_of(&config.name))?;
        let scored = TableName::parse(&config.feedback.scored_table_of(&config.name))?;
        let feedback_version = self
            .cx
            .lakehouse()
            .latest_version_if_exists(&feedback)
            .await?;
        let online = online_table(&config.name);
        let scored_version = self
            .cx
            .lakehouse()
            .latest_version_if_exists(&scored)
            .await?;
        // A scored table declared as the online table is read once.
        let online_version = if online == scored {
            None
        } else {
            self.cx
                .lakehouse()
                .latest_version_if_exists(&online)
                .await?
        };
        let predictions: Vec<(TableName, u64)> = [
            (scored.clone(), scored_version),
            (online.clone(), online_version),
        ]
        .into_iter()
        .filter_map(|(table, version)| Some((table, version?)))
        .collect();
        if predictions.is_empty() {
            return Err(Error::Usage(format!(
                "model '{}' has no predictions to correct: neither {scored} nor {online} exists. Score a table first (lakescore score {} --input TABLE) or serve the model over HTTP (lakescore serve --http)",
                config.name, config.name
            )));
        }
        let output = feedback_training_table(&config.name);
        let mut report = FeedbackReport {
            model: config.name.clone(),
            feedback: (feedback.clone(), feedback_version),
            predictions: predictions.clone(),
            output: output.clone(),
            version: None,
            corrections: 0,
            rows: 0,
            quarantined: 0,
            quarantine: quarantine_table(&feedback),
            policy,
            performance: None,
            expected_columns: expected_columns(config),
            run_id: self.cx.run_id().to_string(),
        };
        let Some(feedback_version) = feedback_version else {
            return Ok(report);
        };
        let marker = format!("{feedback}@{feedback_version}");
        if self.built_from(&output, &marker, policy).await? {
            return Ok(report);
        }
        let champion = Registry::new(self.cx.lakehouse().clone())
            .resolve(&ModelRef::parse(&config.name)?)
            .await?;
        let session = crate::ml::sql_session(self.cx.lakehouse().clone())
            .functions(self.cx.project().config.functions.clone())
            .pins(
                predictions
                    .iter()
                    .cloned()
                    .chain([(feedback.clone(), feedback_version)])
                    .collect::<Pins>(),
            )
            .build()
            .await?;
        let columns = feedback_columns(&session, &feedback).await?;
        if champion.key != config.key {
            return Err(Error::Usage(format!(
                "model '{}': the champion {}:{} was trained with key ({}) but [[model]] declares ({}); retrain before collecting feedback",
                config.name,
                champion.name,
                champion.version,
                champion.key.join(", "),
                config.key.join(", ")
            )));
        }
        let tables: Vec<TableName> = predictions.iter().map(|(t, _)| t.clone()).collect();
        let plan = FeedbackPlan::new(config, &champion.classes, &feedback, &tables, &columns)?;
        report.corrections = session.count_rows(&feedback.quoted()).await?;
        let parse_timestamp = session
            .context()
            .udf(PARSE_TIMESTAMP_ANY)
            .map_err(Error::from)?;
        let corrections = plan.corrections(session.table(&feedback).await?, &parse_timestamp)?;
        let batch = match scored_version {
            Some(_) => Some(session.table(&scored).await?),
            None => None,
        };
        let served = match online_version {
            Some(_) => Some(session.table(&online).await?),
            None => None,
        };
        let matched = plan.matched(corrections, plan.predictions(batch, served)?)?;
        let sources = source_versions(plan.sources(matched.clone())?).await?;
        let mut features = plan.no_features(session.context().read_empty()?)?;
        for (table, version) in &sources {
            let frame = session
                .table_at(&TableName::parse(table)?, *version)
                .await?;
            features = features.union(plan.features(table, *version, frame)?)?;
        }
        let classified = plan.classified(matched, features)?;

        report.quarantined = self
            .quarantine(
                &session,
                &plan,
                classified.clone(),
                &report.quarantine,
                (&feedback, feedback_version),
            )
            .await?;

        let frame = plan.resolved(classified, policy, feedback_version)?;
        let inputs: Vec<Value> = [(feedback.to_string(), feedback_version)]
            .into_iter()
            .chain(
                predictions
                    .iter()
                    .map(|(table, version)| (table.to_string(), *version)),
            )
            .map(|(table, version)| json!({"table": table, "version": version}))
            .chain(
                sources
                    .iter()
                    .map(|(table, version)| json!({"table": table, "version": version})),
            )
            .collect();
        let metadata = commit_metadata(
            self.cx.run_id(),
            Value::Array(inputs),
            [
                (FEEDBACK_FOR, json!(config.name)),
                (FEEDBACK, json!(marker)),
                (POLICY, json!(policy.as_str())),
            ],
        );
        let table = table_for_write(self.cx.lakehouse(), &output).await?;
        crate::fault::check("feedback-commit")?;
        let written = write_frame(
            table,
            frame,
            WriteMode::Overwrite,
            CommitProperties::default().with_metadata(metadata),
            &Descriptions::default(),
        )
        .await?;
        let version = committed_version(&written)?;
        report.version = Some(version);
        report.rows = added_rows(&written).await;
        report.performance = Some(
            RecordPerformance::new(&self.cx, config, &champion, (&output, version))
                .run()
                .await?,
        );
        Ok(report)
    }

    /// True when `output`'s latest commit was built from `marker` with `policy`.
    async fn built_from(
        &self,
        output: &TableName,
        marker: &str,
        policy: CorrectionPolicy,
    ) -> Result<bool> {
        let last = last_commit_info(self.cx.lakehouse(), output).await?;
        Ok(last.is_some_and(|info| {
            records(
                &info,
                &[
                    (FEEDBACK, &json!(marker)),
                    (POLICY, &json!(policy.as_str())),
                ],
            )
        }))
    }

    /// Appends the unusable corrections not quarantined yet; returns how many.
    async fn quarantine(
        &self,
        session: &SqlSession,
        plan: &FeedbackPlan<'_>,
        classified: DataFrame,
        quarantine: &TableName,
        (feedback, feedback_version): (&TableName, u64),
    ) -> Result<u64> {
        let already = match self
            .cx
            .lakehouse()
            .latest_version_if_exists(quarantine)
            .await?
        {
            Some(version) => Some(session.table_at(quarantine, version).await?),
            None => None,
        };
        let batches = plan
            .quarantined(classified, already, self.cx.run_id())?
            .collect()
            .await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(0);
        }
        // The SQL's columns are nullable views; the quarantine schema's are plain text.
        let schema = quarantine_schema();
        let batches = batches
            .into_iter()
            .map(|batch| {
                let columns = batch
                    .columns()
                    .iter()
                    .zip(schema.fields())
                    .map(|(column, field)| cast(column, field.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(datafusion::arrow::record_batch::RecordBatch::try_new(
                    schema.clone(),
                    columns,
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = concat_batches(&schema, &batches)?;
        let metadata = commit_metadata(
            self.cx.run_id(),
            json!([{"table": feedback.to_string(), "version": feedback_version}]),
            [(FEEDBACK_FOR, json!(self.model))],
        );
        write_batch(
            self.cx.lakehouse(),
            quarantine,
            batch,
            WriteMode::Append,
            metadata,
        )
        .await?;
        Ok(rows as u64)
    }
}

impl IntoFuture for BuildFeedback {
    type Output = Result<FeedbackReport>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl Report for FeedbackReport {
    fn data_moved(&self) -> DataMoved {
        let (feedback, feedback_version) = &self.feedback;
        let Some(feedback_version) = feedback_version else {
            return DataMoved::default();
        };
        DataMoved {
            rows_read: self.corrections,
            rows_written: self.rows + self.quarantined,
            tables_read: [(feedback, feedback_version)]
                .into_iter()
                .chain(
                    self.predictions
                        .iter()
                        .map(|(table, version)| (table, version)),
                )
                .map(|(table, version)| format!("{table}@{version}"))
                .collect(),
            tables_written: self
                .version
                .map(|v| format!("{}@{v}", self.output))
                .into_iter()
                .collect(),
        }
    }

    fn summary(&self) -> String {
        let (feedback, feedback_version) = &self.feedback;
        let Some(feedback_version) = feedback_version else {
            return format!("no corrections yet: {feedback} does not exist");
        };
        match self.version {
            Some(version) => format!(
                "{}@{version}: {} corrected predictions, {} corrections quarantined{}",
                self.output,
                self.rows,
                self.quarantined,
                match self
                    .performance
                    .as_ref()
                    .and_then(|p| p.request_id.as_ref())
                {
                    Some(id) => format!(", retraining requested ({id})"),
                    None => String::new(),
                }
            ),
            None => format!("{feedback}@{feedback_version} was already used"),
        }
    }
}

impl fmt::Display for FeedbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (feedback, feedback_version) = &self.feedback;
        let Some(feedback_version) = feedback_version else {
            return write!(
                f,
                "no corrections yet: {feedback} does not exist. Land them with a [[source]] whose table = \"{feedback}\", with the columns {}",
                self.expected_columns
            );
        };
        let Some(version) = self.version else {
            return write!(
                f,
                "{} is up to date: already built from {feedback}@{feedback_version} with policy {}",
                self.output,
                self.policy.as_str()
            );
        };
        write!(
            f,
            "{}@{version}: {} corrected predictions from {} corrections in {feedback}@{feedback_version} (policy {}), features as of each prediction",
            self.output,
            self.rows,
            self.corrections,
            self.policy.as_str()
        )?;
        if self.quarantined > 0 {
            write!(
                f,
                "\n{} corrections quarantined: select error, raw from {} where _ingest_batch = '{}'",
                self.quarantined, self.quarantine, self.run_id
            )?;
        }
        if let Some(performance) = &self.performance {
            write!(f, "\n{performance}")?;
        }
        Ok(())
    }
}

/// The columns a model's feedback table needs, for messages.
pub fn expected_columns(config: &ModelConfig) -> String {
    format!(
        "{}, corrected_by, corrected_at and optionally comment",
        match_description(config)
    )
}

/// How a model's corrections name their prediction, for messages.
fn match_description(config: &ModelConfig) -> String {
    if config.key.is_empty() {
        format!("{PREDICTION_ID}, {}", config.feedback.label_column)
    } else {
        format!(
            "{PREDICTION_ID} (or the key {}), {}",
            config.key.join(", "),
            config.feedback.label_column
        )
    }
}

/// The feedback table's columns and their types.
async fn feedback_columns(
    session: &SqlSession,
    feedback: &TableName,
) -> Result<Vec<(String, DataType)>> {
    let frame = session
        .sql(&format!("SELECT * FROM {} LIMIT 0", feedback.quoted()))
        .await?;
    Ok(frame
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect())
}

/// The `(table, version)` rows of [`FeedbackPlan::sources`].
async fn source_versions(sources: DataFrame) -> Result<Vec<(String, u64)>> {
    let mut versions = Vec::new();
    for batch in sources.collect().await? {
        let tables = cast(batch.column(0), &DataType::Utf8)?;
        let numbers = cast(batch.column(1), &DataType::Int64)?;
        let (Some(tables), Some(numbers)) = (
            tables.as_any().downcast_ref::<StringArray>(),
            numbers.as_any().downcast_ref::<Int64Array>(),
        ) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            if tables.is_valid(row) && numbers.is_valid(row) {
                versions.push((tables.value(row).to_string(), numbers.value(row) as u64));
            }
        }
    }
    Ok(versions)
}

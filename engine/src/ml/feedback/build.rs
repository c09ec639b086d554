//! `lakescore feedback MODEL`: corrections joined with the predictions they correct into
//! `training.<model>_feedback`, one row per corrected prediction, and the corrections
//! that cannot be used into the feedback table's quarantine.
//!
//! One DataFusion plan does the work: the feedback table at one version, the scored
//! table at one version, and the feature rows each prediction was computed from, read
//! with `table_at(source_table, source_table_version)` so no value written after the
//! prediction leaks into its training row. A correction names its prediction by
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

use chrono::Utc;
use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::DataType;
use deltalake::kernel::transaction::CommitProperties;
use futures::TryStreamExt;
use serde_json::{Value, json};

use super::performance::{PerformanceReport, RecordPerformance};
use crate::config::{CorrectionPolicy, FeatureKind, ModelConfig, Task};
use crate::error::{Error, Result};
use crate::ml::models::registry::{Manifest, ModelRef, Registry};
use crate::ml::models::train::model_config;
use crate::run::{DataMoved, OperationFuture, Report, RunContext};
use crate::sql::session::{Pins, SqlSession};
use crate::storage::commit::commit_metadata;
use crate::storage::lakehouse::{TableName, TableVersion, quote_identifier, quote_literal};
use crate::storage::quarantine::{SOURCE_FILE, SOURCE_ROW, quarantine_schema, quarantine_table};
use crate::storage::write::{
    WriteMode, added_rows, committed_version, table_for_write, write_batch, write_frame,
};

/// Columns every feedback table needs besides the label column and the match columns.
pub const REQUIRED_COLUMNS: [&str; 2] = ["corrected_by", "corrected_at"];
/// The optional free-text column.
pub const COMMENT: &str = "comment";
/// The column naming the corrected prediction.
pub const PREDICTION_ID: &str = "prediction_id";

/// The training set of model `model`: `training.<model>_feedback`.
pub fn feedback_training_table(model: &str) -> TableName {
    TableName {
        schema: String::from("training"),
        name: format!("{model}_feedback"),
    }
}

/// What a feedback run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackReport {
    /// The model.
    pub model: String,
    /// The feedback table and the version read (None: the table does not exist yet, so
    /// there is nothing to do until corrections are landed).
    pub feedback: (TableName, Option<u64>),
    /// The scored table and the version read.
    pub scored: (TableName, u64),
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
        let feedback_version = match self.cx.lakehouse().latest_version(&feedback).await {
            Ok(version) => Some(version),
            Err(Error::UnknownTable { .. }) => None,
            Err(other) => return Err(other),
        };
        let scored_version = self.scored_version(&scored, config).await?;
        let output = feedback_training_table(&config.name);
        let mut report = FeedbackReport {
            model: config.name.clone(),
            feedback: (feedback.clone(), feedback_version),
            scored: (scored.clone(), scored_version),
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
            .pins(Pins::from([
                (feedback.clone(), feedback_version),
                (scored.clone(), scored_version),
            ]))
            .build()
            .await?;
        let columns = feedback_columns(&session, &feedback).await?;
        let plan = FeedbackPlan::new(config, &champion, &feedback, &scored, &columns)?;
        report.corrections = session.count_rows(&feedback.quoted()).await?;
        let sources = plan.sources(&session).await?;
        let classified = plan.classified_sql(&sources);

        report.quarantined = self
            .quarantine(
                &session,
                &plan,
                &classified,
                &report.quarantine,
                feedback_version,
            )
            .await?;

        let frame = session
            .sql(&format!(
                "{classified} {}",
                plan.resolved_select(policy, feedback_version)
            ))
            .await?;
        let inputs: Vec<Value> = [
            json!({"table": feedback.to_string(), "version": feedback_version}),
            json!({"table": scored.to_string(), "version": scored_version}),
        ]
        .into_iter()
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
                ("feedback_for", json!(config.name)),
                ("feedback", json!(marker)),
                ("policy", json!(policy.as_str())),
            ],
        );
        let table = table_for_write(self.cx.lakehouse(), &output).await?;
        crate::fault::check("feedback-commit")?;
        let written = write_frame(
            table,
            frame,
            WriteMode::Overwrite,
            CommitProperties::default().with_metadata(metadata),
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

    /// The latest version of the scored table, or an error saying how to create it.
    async fn scored_version(&self, scored: &TableName, config: &ModelConfig) -> Result<u64> {
        match self.cx.lakehouse().latest_version(scored).await {
            Err(Error::UnknownTable { .. }) => Err(Error::Usage(format!(
                "model '{}' has no predictions to correct: {scored} does not exist. Score a table first (lakescore score {} --input TABLE)",
                config.name, config.name
            ))),
            other => other,
        }
    }

    /// True when `output`'s latest commit was built from `marker` with `policy`.
    async fn built_from(
        &self,
        output: &TableName,
        marker: &str,
        policy: CorrectionPolicy,
    ) -> Result<bool> {
        let table = match self
            .cx
            .lakehouse()
            .open_table(output, TableVersion::Latest)
            .await
        {
            Ok(table) => table,
            Err(Error::UnknownTable { .. }) => return Ok(false),
            Err(other) => return Err(other),
        };
        let last: Vec<_> = table
            .history(Some(1))
            .try_collect()
            .await
            .map_err(|source| Error::Delta {
                uri: table.table_url().to_string(),
                source,
            })?;
        Ok(last.first().is_some_and(|commit| {
            commit.info.get("lakescore.feedback") == Some(&json!(marker))
                && commit.info.get("lakescore.policy") == Some(&json!(policy.as_str()))
        }))
    }

    /// Appends the unusable corrections not quarantined yet; returns how many.
    async fn quarantine(
        &self,
        session: &SqlSession,
        plan: &FeedbackPlan<'_>,
        classified: &str,
        quarantine: &TableName,
        feedback_version: u64,
    ) -> Result<u64> {
        let already = match self.cx.lakehouse().latest_version(quarantine).await {
            Ok(_) => Some(quarantine.quoted()),
            Err(Error::UnknownTable { .. }) => None,
            Err(other) => return Err(other),
        };
        let sql = format!(
            "{classified} {}",
            plan.quarantine_select(self.cx.run_id(), already.as_deref())
        );
        let batches = session.sql(&sql).await?.collect().await?;
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
            json!([{"table": plan.feedback.to_string(), "version": feedback_version}]),
            [("feedback_for", json!(plan.config.name))],
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
        let (scored, scored_version) = &self.scored;
        DataMoved {
            rows_read: self.corrections,
            rows_written: self.rows + self.quarantined,
            tables_read: vec![
                format!("{feedback}@{feedback_version}"),
                format!("{scored}@{scored_version}"),
            ],
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

/// The SQL of one feedback run.
struct FeedbackPlan<'a> {
    config: &'a ModelConfig,
    feedback: &'a TableName,
    scored: &'a TableName,
    /// The feedback table has `prediction_id`: rows that fill it match on it.
    by_id: bool,
    /// The feedback table has the key columns: rows without an id match the newest
    /// prediction for their key scored at or before `corrected_at`.
    by_key: bool,
    classes: Vec<String>,
    has_comment: bool,
    has_lineage: bool,
    corrected_at_is_text: bool,
}

impl<'a> FeedbackPlan<'a> {
    /// Checks the feedback table has the columns corrections need.
    fn new(
        config: &'a ModelConfig,
        champion: &Manifest,
        feedback: &'a TableName,
        scored: &'a TableName,
        columns: &[(String, DataType)],
    ) -> Result<Self> {
        let has = |name: &str| columns.iter().any(|(c, _)| c == name);
        let by_id = has(PREDICTION_ID);
        let by_key = !config.key.is_empty() && config.key.iter().all(|k| has(k));
        if !by_id && !by_key {
            return Err(missing_columns(config, feedback, PREDICTION_ID, columns));
        }
        for required in [config.feedback.label_column.as_str()]
            .into_iter()
            .chain(REQUIRED_COLUMNS)
        {
            if !has(required) {
                return Err(missing_columns(config, feedback, required, columns));
            }
        }
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
        if config.key.is_empty() {
            return Err(Error::Usage(format!(
                "model '{}' declares no key: feedback needs key = [...] so each correction finds the features its prediction was made from",
                config.name
            )));
        }
        Ok(Self {
            config,
            feedback,
            scored,
            by_id,
            by_key,
            classes: champion.classes.clone(),
            has_comment: has(COMMENT),
            has_lineage: has(SOURCE_FILE) && has(SOURCE_ROW),
            corrected_at_is_text: columns.iter().any(|(c, t)| {
                c == "corrected_at"
                    && matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            }),
        })
    }

    /// True for a correction that names its prediction by id.
    const HAS_ID: &'static str = "(fb_prediction_id IS NOT NULL AND trim(fb_prediction_id) <> '')";

    fn model_filter(&self) -> String {
        format!("model_name = {}", quote_literal(&self.config.name))
    }

    /// The scored predictions' source table versions the corrections need features from.
    async fn sources(&self, session: &SqlSession) -> Result<Vec<(String, u64)>> {
        let sql = format!(
            "{} SELECT DISTINCT source_table, source_table_version FROM matched WHERE s_prediction_id IS NOT NULL ORDER BY source_table, source_table_version",
            self.matched_sql()
        );
        let batches = session.sql(&sql).await?.collect().await?;
        let mut sources = Vec::new();
        for batch in batches {
            let tables = cast(batch.column(0), &DataType::Utf8)?;
            let versions = cast(batch.column(1), &DataType::Int64)?;
            let (Some(tables), Some(versions)) = (
                tables.as_any().downcast_ref::<StringArray>(),
                versions.as_any().downcast_ref::<Int64Array>(),
            ) else {
                continue;
            };
            for row in 0..batch.num_rows() {
                if tables.is_valid(row) && versions.is_valid(row) {
                    sources.push((tables.value(row).to_string(), versions.value(row) as u64));
                }
            }
        }
        Ok(sources)
    }

    /// `WITH fb AS (...), sc AS (...), matched AS (...)`: each correction with the
    /// prediction it names, if any.
    fn matched_sql(&self) -> String {
        let config = self.config;
        let q = quote_identifier;
        let keys = &config.key;
        let text = |column: &str| format!("CAST({} AS VARCHAR)", q(column));
        let (file, row) = if self.has_lineage {
            (
                text(SOURCE_FILE),
                format!("CAST({} AS BIGINT)", q(SOURCE_ROW)),
            )
        } else {
            (
                quote_literal(&self.feedback.to_string()),
                String::from("CAST(0 AS BIGINT)"),
            )
        };
        let mut raw_columns: Vec<String> = Vec::new();
        if self.by_id {
            raw_columns.push(PREDICTION_ID.to_string());
        }
        if self.by_key {
            raw_columns.extend(keys.iter().cloned());
        }
        raw_columns.push(config.feedback.label_column.clone());
        raw_columns.extend(REQUIRED_COLUMNS.iter().map(|c| c.to_string()));
        if self.has_comment {
            raw_columns.push(COMMENT.to_string());
        }
        let raw = raw_columns
            .iter()
            .map(|c| {
                format!(
                    "concat({}, coalesce({}, ''))",
                    quote_literal(&format!("{c}=")),
                    text(c)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let corrected_at = if self.corrected_at_is_text {
            format!("parse_timestamp_any({})", q("corrected_at"))
        } else {
            format!(
                "arrow_cast({}, 'Timestamp(Microsecond, Some(\"UTC\"))')",
                q("corrected_at")
            )
        };
        let null_text = String::from("CAST(NULL AS VARCHAR)");
        let match_columns: Vec<String> = std::iter::once(format!(
            "{} AS fb_prediction_id",
            if self.by_id {
                text(PREDICTION_ID)
            } else {
                null_text.clone()
            }
        ))
        .chain(keys.iter().enumerate().map(|(i, k)| {
            format!(
                "{} AS fb_k{i}",
                if self.by_key {
                    text(k)
                } else {
                    null_text.clone()
                }
            )
        }))
        .collect();
        let comment = if self.has_comment {
            text(COMMENT)
        } else {
            String::from("CAST(NULL AS VARCHAR)")
        };
        let fb = format!(
            "fb AS (SELECT concat({file}, ':', CAST({row} AS VARCHAR)) AS feedback_ref, {file} AS fb_file, {row} AS fb_row, \
             concat_ws(', ', {raw}) AS fb_raw, {matches}, {label} AS label_raw, {corrected_at} AS corrected_at, \
             {by} AS corrected_by, {comment} AS comment FROM {table})",
            matches = match_columns.join(", "),
            label = text(&config.feedback.label_column),
            by = text("corrected_by"),
            table = self.feedback.quoted(),
        );
        let scored_keys: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{} AS s_k{i}", text(k)))
            .collect();
        let sc = format!(
            "sc AS (SELECT CAST(prediction_id AS VARCHAR) AS s_prediction_id, {keys}, CAST(prediction AS VARCHAR) AS original_prediction, \
             CAST(probability AS DOUBLE) AS original_probability, model_name, CAST(model_version AS BIGINT) AS model_version, \
             CAST(source_table AS VARCHAR) AS source_table, CAST(source_table_version AS BIGINT) AS source_table_version, \
             arrow_cast(scored_at, 'Timestamp(Microsecond, Some(\"UTC\"))') AS scored_at FROM {table} WHERE {filter})",
            keys = scored_keys.join(", "),
            table = self.scored.quoted(),
            filter = self.model_filter(),
        );
        let key_columns = |prefix: &str| -> Vec<String> {
            (0..keys.len()).map(|i| format!("{prefix}_k{i}")).collect()
        };
        let columns: Vec<String> = [
            "feedback_ref",
            "fb_file",
            "fb_row",
            "fb_raw",
            "fb_prediction_id",
        ]
        .into_iter()
        .map(String::from)
        .chain(key_columns("fb"))
        .chain(
            [
                "label_raw",
                "corrected_at",
                "corrected_by",
                "comment",
                "s_prediction_id",
            ]
            .map(String::from),
        )
        .chain(key_columns("s"))
        .chain(
            [
                "original_prediction",
                "original_probability",
                "model_name",
                "model_version",
                "source_table",
                "source_table_version",
                "scored_at",
            ]
            .map(String::from),
        )
        .collect();
        let columns = columns.join(", ");
        let has_id = Self::HAS_ID;
        let mut parts = Vec::new();
        if self.by_id {
            let rows = if self.by_key { has_id } else { "true" };
            parts.push(format!(
                "SELECT {columns} FROM fb LEFT JOIN sc ON fb.fb_prediction_id = sc.s_prediction_id WHERE {rows}"
            ));
        }
        if self.by_key {
            let on: Vec<String> = key_columns("")
                .iter()
                .map(|k| format!("fb.fb{k} = sc.s{k}"))
                .collect();
            parts.push(format!(
                "SELECT {columns} FROM (SELECT fb.*, sc.*, row_number() OVER (PARTITION BY fb.feedback_ref, fb.fb_raw ORDER BY sc.scored_at DESC NULLS LAST) AS candidate \
                 FROM fb LEFT JOIN sc ON {on} AND sc.scored_at <= fb.corrected_at WHERE NOT {has_id}) WHERE candidate = 1",
                on = on.join(" AND ")
            ));
        }
        let matched = format!("matched AS ({})", parts.join(" UNION ALL "));
        format!("WITH {fb}, {sc}, {matched}")
    }

    /// The feature kinds' SQL types.
    fn feature_type(kind: FeatureKind) -> &'static str {
        match kind {
            FeatureKind::Numeric => "DOUBLE",
            FeatureKind::Categorical => "VARCHAR",
            FeatureKind::Boolean => "BOOLEAN",
        }
    }

    /// `..., features AS (...), classified AS (...)`: every correction with its
    /// prediction, its features at prediction time, its label and why it cannot be used
    /// (`error`, NULL when it can).
    fn classified_sql(&self, sources: &[(String, u64)]) -> String {
        let config = self.config;
        let q = quote_identifier;
        let keys = &config.key;
        let feature_columns = |source: Option<(&str, u64)>| {
            let key_columns = keys.iter().enumerate().map(|(i, k)| match source {
                Some(_) => format!("CAST({} AS VARCHAR) AS f_k{i}", q(k)),
                None => format!("CAST(NULL AS VARCHAR) AS f_k{i}"),
            });
            let features = config.features.iter().enumerate().map(|(i, (name, kind))| {
                let value = if source.is_some() {
                    q(name)
                } else {
                    String::from("NULL")
                };
                format!("CAST({value} AS {}) AS x{i}", Self::feature_type(*kind))
            });
            let (table, version) = match source {
                Some((table, version)) => (quote_literal(table), version.to_string()),
                None => (String::from("CAST(NULL AS VARCHAR)"), String::from("NULL")),
            };
            let mut columns = vec![
                format!("{table} AS f_source_table"),
                format!("CAST({version} AS BIGINT) AS f_source_version"),
            ];
            columns.extend(key_columns);
            columns.extend(features);
            columns.join(", ")
        };
        let features = if sources.is_empty() {
            format!("SELECT {} WHERE false", feature_columns(None))
        } else {
            sources
                .iter()
                .map(|(table, version)| {
                    format!(
                        "SELECT {} FROM table_at({}, {version})",
                        feature_columns(Some((table, *version))),
                        quote_literal(table)
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        };
        let on: Vec<String> = std::iter::once(String::from(
            "matched.source_table = features.f_source_table AND matched.source_table_version = features.f_source_version",
        ))
        .chain((0..keys.len()).map(|i| format!("matched.s_k{i} = features.f_k{i}")))
        .collect();
        let label = self.label_sql();
        let class_list = self.classes.join(", ");
        let has_id = Self::HAS_ID;
        let key_text = keys.join(", ");
        let any_key_empty = (0..keys.len())
            .map(|i| format!("fb_k{i} IS NULL OR trim(fb_k{i}) = ''"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let (missing_match, missing_text) = match (self.by_id, self.by_key) {
            (true, true) => (
                format!("NOT {has_id} AND ({any_key_empty})"),
                format!("{PREDICTION_ID} and {key_text} are empty"),
            ),
            (true, false) => (format!("NOT {has_id}"), format!("{PREDICTION_ID} is empty")),
            _ => (any_key_empty, format!("{key_text} is empty")),
        };
        let unknown_match = format!(
            "CASE WHEN {has_id} THEN concat({unknown_id}, fb_prediction_id, {check}) ELSE {unknown_key} END",
            unknown_id = quote_literal(&format!(
                "unknown prediction_id: {} has no prediction of {} with id ",
                self.scored, config.name
            )),
            check = quote_literal(&format!("; check the id against {}", self.scored)),
            unknown_key = quote_literal(&format!(
                "unknown key: {} has no prediction of {} for this {key_text} scored at or before corrected_at",
                self.scored, config.name
            )),
        );
        let match_column = format!(
            "CASE WHEN {has_id} THEN {} ELSE {} END",
            quote_literal(PREDICTION_ID),
            quote_literal(&key_text)
        );
        let label_column = &config.feedback.label_column;
        let wrong_label = match config.task {
            Task::Classification => format!(
                "concat({}, label_raw, {})",
                quote_literal(&format!("{label_column} '")),
                quote_literal(&format!(
                    "' is not a class of {} ({class_list})",
                    config.name
                )),
            ),
            Task::Regression => format!(
                "concat({}, label_raw, ''' is not a number')",
                quote_literal(&format!("{label_column} '"))
            ),
        };
        let error = format!(
            "CASE WHEN {missing_match} THEN {missing_text} \
             WHEN s_prediction_id IS NULL THEN {unknown_match} \
             WHEN label_raw IS NULL OR trim(label_raw) = '' THEN {no_label} \
             WHEN label_value IS NULL THEN {wrong_label} \
             WHEN corrected_at IS NULL THEN 'corrected_at is empty or not a timestamp (write e.g. 2026-11-20T09:30:00Z)' \
             WHEN corrected_by IS NULL OR trim(corrected_by) = '' THEN 'corrected_by is empty: every correction names who made it' \
             WHEN f_source_table IS NULL THEN concat('the features of this prediction are not in ', source_table, '@', CAST(source_table_version AS VARCHAR)) \
             END",
            missing_text = quote_literal(&missing_text),
            no_label = quote_literal(&format!("{label_column} is empty")),
        );
        let error_column = format!(
            "CASE WHEN {missing_match} OR s_prediction_id IS NULL THEN {match_column} \
             WHEN label_value IS NULL THEN {label} \
             WHEN corrected_at IS NULL THEN 'corrected_at' \
             WHEN corrected_by IS NULL OR trim(corrected_by) = '' THEN 'corrected_by' END",
            label = quote_literal(label_column),
        );
        format!(
            "{matched}, features AS ({features}), \
             joined AS (SELECT matched.*, features.*, {label} AS label_value FROM matched LEFT JOIN features ON {on}), \
             classified AS (SELECT *, {error} AS error, {error_column} AS error_column FROM joined)",
            matched = self.matched_sql(),
            on = on.join(" AND "),
        )
    }

    /// The corrected label as the model's classes spell it (NULL when it is not one), or
    /// as a number for regression.
    fn label_sql(&self) -> String {
        match self.config.task {
            Task::Regression => String::from("TRY_CAST(trim(label_raw) AS DOUBLE)"),
            Task::Classification => {
                let mut spellings: Vec<(String, String)> = self
                    .classes
                    .iter()
                    .map(|c| (c.to_lowercase(), c.clone()))
                    .collect();
                let boolean = {
                    let mut lower: Vec<String> =
                        self.classes.iter().map(|c| c.to_lowercase()).collect();
                    lower.sort();
                    lower == ["false", "true"]
                };
                if boolean {
                    let class = |wanted: &str| {
                        self.classes
                            .iter()
                            .find(|c| c.eq_ignore_ascii_case(wanted))
                            .cloned()
                            .unwrap_or_default()
                    };
                    for (alias, target) in [
                        ("yes", "true"),
                        ("y", "true"),
                        ("1", "true"),
                        ("no", "false"),
                        ("n", "false"),
                        ("0", "false"),
                    ] {
                        spellings.push((alias.to_string(), class(target)));
                    }
                }
                let arms: Vec<String> = spellings
                    .iter()
                    .map(|(spelled, class)| {
                        format!(
                            "WHEN {} THEN {}",
                            quote_literal(spelled),
                            quote_literal(class)
                        )
                    })
                    .collect();
                format!("CASE lower(trim(label_raw)) {} END", arms.join(" "))
            }
        }
    }

    /// The quarantine rows: unusable corrections not in `already` (the quarantine table,
    /// when it exists).
    fn quarantine_select(&self, run_id: &str, already: Option<&str>) -> String {
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let anti_join = already
            .map(|table| {
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM {table} q WHERE q.{file} = c.fb_file AND q.{row} = c.fb_row AND q.raw = c.fb_raw)",
                    file = quote_identifier(SOURCE_FILE),
                    row = quote_identifier(SOURCE_ROW),
                )
            })
            .unwrap_or_default();
        format!(
            "SELECT {source} AS source, c.fb_file AS {file}, c.fb_row AS {row}, c.error_column AS \"column\", c.error AS error, \
             c.fb_raw AS raw, {run} AS _ingest_batch, arrow_cast({now}, 'Timestamp(Microsecond, Some(\"UTC\"))') AS _ingested_at \
             FROM classified c WHERE c.error IS NOT NULL{anti_join} ORDER BY c.fb_file, c.fb_row",
            source = quote_literal(&format!("feedback {}", self.config.name)),
            file = quote_identifier(SOURCE_FILE),
            row = quote_identifier(SOURCE_ROW),
            run = quote_literal(run_id),
            now = quote_literal(&now),
        )
    }

    /// One row per corrected prediction, resolved by `policy`.
    fn resolved_select(&self, policy: CorrectionPolicy, feedback_version: u64) -> String {
        let config = self.config;
        let q = quote_identifier;
        let order = match policy {
            CorrectionPolicy::Latest => "corrected_at DESC, feedback_ref DESC",
            CorrectionPolicy::First => "corrected_at ASC, feedback_ref ASC",
            CorrectionPolicy::Majority => {
                "votes DESC, label_last_at DESC, corrected_at DESC, feedback_ref DESC"
            }
        };
        let keys: Vec<String> = config
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("s_k{i} AS {}", q(k)))
            .collect();
        let features: Vec<String> = config
            .features
            .keys()
            .enumerate()
            .map(|(i, name)| format!("x{i} AS {}", q(name)))
            .collect();
        format!(
            ", usable AS (SELECT *, count(*) OVER (PARTITION BY s_prediction_id) AS corrections, \
             count(*) OVER (PARTITION BY s_prediction_id, label_value) AS votes, \
             max(corrected_at) OVER (PARTITION BY s_prediction_id, label_value) AS label_last_at FROM classified WHERE error IS NULL), \
             ranked AS (SELECT *, row_number() OVER (PARTITION BY s_prediction_id ORDER BY {order}) AS resolution FROM usable) \
             SELECT s_prediction_id AS prediction_id, {keys}, {features}, label_value AS {label}, \
             original_prediction, original_probability, model_name, model_version, source_table, source_table_version, scored_at, \
             corrected_at, corrected_by, comment, feedback_ref, corrections, {policy} AS correction_policy, \
             {feedback} AS feedback_table, CAST({feedback_version} AS BIGINT) AS feedback_table_version FROM ranked WHERE resolution = 1 ORDER BY scored_at, prediction_id",
            keys = keys.join(", "),
            features = features.join(", "),
            label = q(&config.label),
            policy = quote_literal(policy.as_str()),
            feedback = quote_literal(&self.feedback.to_string()),
        )
    }
}

fn missing_columns(
    config: &ModelConfig,
    feedback: &TableName,
    missing: &str,
    columns: &[(String, DataType)],
) -> Error {
    let found: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    Error::Usage(format!(
        "{feedback} has no column '{missing}': feedback for model '{}' needs {} (found: {}). Rename the columns in the [[source]] or set [model.feedback] label_column",
        config.name,
        expected_columns(config),
        found.join(", ")
    ))
}

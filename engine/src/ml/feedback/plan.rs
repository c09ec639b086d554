//! The plan of one feedback run, built as DataFusion DataFrames (no SQL text, no quoting):
//! each piece takes the frames it reads and returns a frame, so each is tested alone.
//!
//! 1. [`FeedbackPlan::corrections`]: the feedback table's rows with their file and line,
//!    the raw text kept for quarantine, and the columns that name a prediction;
//! 2. [`FeedbackPlan::predictions`]: the model's scored rows, batch and online (the
//!    online ones carry the features they were scored with);
//! 3. [`FeedbackPlan::matched`]: each correction with the prediction it names, by
//!    `prediction_id`, or by key (the newest prediction scored at or before
//!    `corrected_at`);
//! 4. [`FeedbackPlan::features`]: the features of the matched batch predictions, read
//!    from each source table at the version the prediction was scored from (online
//!    predictions bring their own);
//! 5. [`FeedbackPlan::classified`]: the corrected label as a class (or number) and why a
//!    correction cannot be used (`error`, NULL when it can);
//! 6. [`FeedbackPlan::quarantined`] and [`FeedbackPlan::resolved`]: the unusable
//!    corrections not quarantined yet, and one row per corrected prediction by policy.

use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::functions::core::expr_ext::FieldAccessor;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    ExprFunctionExt, ScalarUDF, SortExpr, WindowFunctionDefinition, case,
};
use datafusion::prelude::{
    Expr, JoinType, Not, cast, col, concat, concat_ws, ident, lit, lower, trim, try_cast, when,
};

use super::build::{COMMENT, PREDICTION_ID, REQUIRED_COLUMNS, expected_columns};
use crate::config::{CorrectionPolicy, FeatureKind, ModelConfig, Task};
use crate::error::{Error, Result};
use crate::storage::lakehouse::TableName;
use crate::storage::quarantine::{SOURCE_FILE, SOURCE_ROW};
use crate::storage::system_tables::ONLINE_FEATURES;

/// The columns of the corrected prediction that [`FeedbackPlan::predictions`] reads from
/// the scored table, carried through the match into the training set.
const PREDICTION_COLUMNS: [&str; 7] = [
    "original_prediction",
    "original_probability",
    "model_name",
    "model_version",
    "source_table",
    "source_table_version",
    "scored_at",
];

/// The text type SQL's `VARCHAR` plans to, so the frames match what SQL models write.
const TEXT: DataType = DataType::Utf8View;

/// Timestamps as the scored table and the quarantine keep them.
fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

fn text(expr: Expr) -> Expr {
    cast(expr, TEXT)
}

fn is_blank(expr: Expr) -> Expr {
    expr.clone().is_null().or(trim(vec![expr]).eq(lit("")))
}

/// `function(argument) OVER (PARTITION BY partition)` for an aggregate function.
fn over(
    function: Arc<datafusion::logical_expr::AggregateUDF>,
    argument: Expr,
    partition: Vec<Expr>,
) -> Result<Expr> {
    let window = WindowFunction::new(
        WindowFunctionDefinition::AggregateUDF(function),
        vec![argument],
    );
    Ok(Expr::from(window).partition_by(partition).build()?)
}

/// The newest row first by `column`, rows without one last.
fn newest_first(column: &str) -> SortExpr {
    col(column).sort(false, false)
}

/// How one feedback run reads its tables.
pub(super) struct FeedbackPlan<'a> {
    config: &'a ModelConfig,
    feedback: &'a TableName,
    /// The prediction tables read (the scored table and the online table, those that
    /// exist), for messages.
    predictions: &'a [TableName],
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
    /// Checks the feedback table (of `columns`) has what corrections need; `classes` are
    /// the champion's classes the corrected labels must be one of, `predictions` the
    /// tables of the predictions they correct.
    pub(super) fn new(
        config: &'a ModelConfig,
        classes: &[String],
        feedback: &'a TableName,
        predictions: &'a [TableName],
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
        if config.key.is_empty() {
            return Err(Error::Usage(format!(
                "model '{}' declares no key: feedback needs key = [...] so each correction finds the features its prediction was made from",
                config.name
            )));
        }
        Ok(Self {
            config,
            feedback,
            predictions,
            by_id,
            by_key,
            classes: classes.to_vec(),
            has_comment: has(COMMENT),
            has_lineage: has(SOURCE_FILE) && has(SOURCE_ROW),
            corrected_at_is_text: columns.iter().any(|(c, t)| {
                c == "corrected_at"
                    && matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            }),
        })
    }

    fn key_count(&self) -> usize {
        self.config.key.len()
    }

    /// True for a correction that names its prediction by id.
    fn has_id() -> Expr {
        col("fb_prediction_id")
            .is_not_null()
            .and(trim(vec![col("fb_prediction_id")]).not_eq(lit("")))
    }

    /// Step 1, over the feedback table: `parse_timestamp` is the session's
    /// `parse_timestamp_any`, for `corrected_at` given as text.
    pub(super) fn corrections(
        &self,
        feedback: DataFrame,
        parse_timestamp: &ScalarUDF,
    ) -> Result<DataFrame> {
        let config = self.config;
        let (file, row) = if self.has_lineage {
            (
                text(ident(SOURCE_FILE)),
                cast(ident(SOURCE_ROW), DataType::Int64),
            )
        } else {
            (lit(self.feedback.to_string()), lit(0_i64))
        };
        let mut raw_columns: Vec<&str> = Vec::new();
        if self.by_id {
            raw_columns.push(PREDICTION_ID);
        }
        if self.by_key {
            raw_columns.extend(config.key.iter().map(String::as_str));
        }
        raw_columns.push(&config.feedback.label_column);
        raw_columns.extend(REQUIRED_COLUMNS);
        if self.has_comment {
            raw_columns.push(COMMENT);
        }
        let raw = raw_columns
            .iter()
            .map(|c| {
                concat(vec![
                    lit(format!("{c}=")),
                    datafusion::prelude::coalesce(vec![text(ident(*c)), lit("")]),
                ])
            })
            .collect();
        let corrected_at = if self.corrected_at_is_text {
            parse_timestamp.call(vec![ident("corrected_at"), lit("iso8601")])
        } else {
            cast(ident("corrected_at"), utc_micros())
        };
        let null_text = || cast(lit(ScalarValue::Null), TEXT);
        let mut columns = vec![
            concat(vec![file.clone(), lit(":"), text(row.clone())]).alias("feedback_ref"),
            file.alias("fb_file"),
            row.alias("fb_row"),
            concat_ws(lit(", "), raw).alias("fb_raw"),
            // Ids are hex: spaces around one are an export's, not the id's.
            if self.by_id {
                trim(vec![text(ident(PREDICTION_ID))])
            } else {
                null_text()
            }
            .alias("fb_prediction_id"),
        ];
        columns.extend(config.key.iter().enumerate().map(|(i, k)| {
            if self.by_key {
                text(ident(k))
            } else {
                null_text()
            }
            .alias(format!("fb_k{i}"))
        }));
        columns.extend([
            text(ident(&config.feedback.label_column)).alias("label_raw"),
            corrected_at.alias("corrected_at"),
            text(ident("corrected_by")).alias("corrected_by"),
            if self.has_comment {
                text(ident(COMMENT))
            } else {
                null_text()
            }
            .alias("comment"),
        ]);
        Ok(feedback.select(columns)?)
    }

    /// Step 2: the model's predictions, from the batch scored table and from the online
    /// table (`lakescore serve`'s HTTP API), whichever exist. Online rows carry the
    /// features they were scored with in their `features` struct (`o_x<i>`, NULL for a
    /// feature the serving model version did not read); batch rows read theirs from the
    /// source table in step 4.
    pub(super) fn predictions(
        &self,
        scored: Option<DataFrame>,
        online: Option<DataFrame>,
    ) -> Result<DataFrame> {
        let null = |kind: FeatureKind| cast(lit(ScalarValue::Null), feature_type(kind));
        let mut parts = Vec::new();
        if let Some(scored) = scored {
            let features = self.config.features.values().map(|kind| null(*kind));
            parts.push(self.prediction_rows(scored, false, features.collect())?);
        }
        if let Some(online) = online {
            let carried = struct_fields(&online, ONLINE_FEATURES);
            let features = self.config.features.iter().map(|(name, kind)| {
                if carried.contains(name) {
                    cast(
                        ident(ONLINE_FEATURES).field(name.as_str()),
                        feature_type(*kind),
                    )
                } else {
                    null(*kind)
                }
            });
            parts.push(self.prediction_rows(online, true, features.collect())?);
        }
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or_else(|| {
            Error::Usage(format!(
                "model '{}' has no predictions to correct: no scored or online table was read",
                self.config.name
            ))
        })?;
        parts.try_fold(first, |all, part| Ok(all.union(part)?))
    }

    /// `"<table> has no"`, or `"neither <scored> nor <online> has a"`, for messages.
    fn none_has(&self) -> String {
        match self.predictions {
            [one] => format!("{one} has no"),
            tables => format!(
                "neither {} has a",
                tables
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" nor ")
            ),
        }
    }

    /// The model's rows of one prediction table, with `features` as `o_x<i>`.
    fn prediction_rows(
        &self,
        predictions: DataFrame,
        online: bool,
        features: Vec<Expr>,
    ) -> Result<DataFrame> {
        let mut columns = vec![text(col("prediction_id")).alias("s_prediction_id")];
        columns.extend(
            self.config
                .key
                .iter()
                .enumerate()
                .map(|(i, k)| text(ident(k)).alias(format!("s_k{i}"))),
        );
        columns.extend([
            text(col("prediction")).alias("original_prediction"),
            cast(col("probability"), DataType::Float64).alias("original_probability"),
            col("model_name"),
            cast(col("model_version"), DataType::Int64).alias("model_version"),
            text(col("source_table")).alias("source_table"),
            cast(col("source_table_version"), DataType::Int64).alias("source_table_version"),
            cast(col("scored_at"), utc_micros()).alias("scored_at"),
            lit(online).alias("s_online"),
        ]);
        columns.extend(
            features
                .into_iter()
                .enumerate()
                .map(|(i, feature)| feature.alias(format!("o_x{i}"))),
        );
        Ok(predictions
            .filter(col("model_name").eq(lit(self.config.name.clone())))?
            .select(columns)?)
    }

    /// The columns of [`Self::matched`], in order.
    fn matched_columns(&self) -> Vec<Expr> {
        let keys = |prefix: &'static str| {
            (0..self.key_count()).map(move |i| col(format!("{prefix}_k{i}")))
        };
        [
            "feedback_ref",
            "fb_file",
            "fb_row",
            "fb_raw",
            "fb_prediction_id",
        ]
        .into_iter()
        .map(col)
        .chain(keys("fb"))
        .chain(
            [
                "label_raw",
                "corrected_at",
                "corrected_by",
                "comment",
                "s_prediction_id",
            ]
            .map(col),
        )
        .chain(keys("s"))
        .chain(PREDICTION_COLUMNS.map(col))
        .chain([col("s_online")])
        .chain((0..self.config.features.len()).map(|i| col(format!("o_x{i}"))))
        .collect()
    }

    /// Step 3: every correction with the prediction it names (prediction columns NULL
    /// when it names none).
    pub(super) fn matched(
        &self,
        corrections: DataFrame,
        predictions: DataFrame,
    ) -> Result<DataFrame> {
        let mut parts = Vec::new();
        if self.by_id {
            let named = if self.by_key {
                corrections.clone().filter(Self::has_id())?
            } else {
                corrections.clone()
            };
            parts.push(
                named
                    .join_on(
                        predictions.clone(),
                        JoinType::Left,
                        [col("fb_prediction_id").eq(col("s_prediction_id"))],
                    )?
                    .select(self.matched_columns())?,
            );
        }
        if self.by_key {
            let on: Vec<Expr> = (0..self.key_count())
                .map(|i| col(format!("fb_k{i}")).eq(col(format!("s_k{i}"))))
                .chain([col("scored_at").lt_eq(col("corrected_at"))])
                .collect();
            let newest = row_number()
                .partition_by(vec![col("feedback_ref"), col("fb_raw")])
                .order_by(vec![newest_first("scored_at")])
                .build()?;
            parts.push(
                corrections
                    .filter(Self::has_id().not())?
                    .join_on(predictions, JoinType::Left, on)?
                    .with_column("candidate", newest)?
                    .filter(col("candidate").eq(lit(1_u64)))?
                    .select(self.matched_columns())?,
            );
        }
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or_else(|| {
            Error::Usage(format!(
                "{}: corrections match neither by {PREDICTION_ID} nor by key",
                self.feedback
            ))
        })?;
        parts.try_fold(first, |all, part| Ok(all.union(part)?))
    }

    /// The batch predictions' source table versions the matched corrections need
    /// features from, as a frame of `source_table`, `source_table_version`.
    pub(super) fn sources(&self, matched: DataFrame) -> Result<DataFrame> {
        Ok(matched
            .filter(
                col("s_prediction_id")
                    .is_not_null()
                    .and(col("s_online").is_not_true()),
            )?
            .select(vec![col("source_table"), col("source_table_version")])?
            .distinct()?
            .sort(vec![
                col("source_table").sort(true, false),
                col("source_table_version").sort(true, false),
            ])?)
    }

    /// Step 4, one part per source table version: the key and features of the rows of
    /// `frame`, source `table` read at `version`.
    pub(super) fn features(
        &self,
        table: &str,
        version: u64,
        frame: DataFrame,
    ) -> Result<DataFrame> {
        let config = self.config;
        let mut columns = vec![
            text(lit(table.to_string())).alias("f_source_table"),
            lit(version as i64).alias("f_source_version"),
        ];
        columns.extend(
            config
                .key
                .iter()
                .enumerate()
                .map(|(i, k)| text(ident(k)).alias(format!("f_k{i}"))),
        );
        columns.extend(config.features.iter().enumerate().map(|(i, (name, kind))| {
            cast(ident(name), feature_type(*kind)).alias(format!("x{i}"))
        }));
        Ok(frame.select(columns)?)
    }

    /// Step 4 when no correction matched a prediction: no rows, the same columns.
    pub(super) fn no_features(&self, empty: DataFrame) -> Result<DataFrame> {
        let null = || lit(ScalarValue::Null);
        let mut columns = vec![
            cast(null(), TEXT).alias("f_source_table"),
            cast(null(), DataType::Int64).alias("f_source_version"),
        ];
        columns.extend((0..self.key_count()).map(|i| cast(null(), TEXT).alias(format!("f_k{i}"))));
        columns.extend(
            self.config
                .features
                .values()
                .enumerate()
                .map(|(i, kind)| cast(null(), feature_type(*kind)).alias(format!("x{i}"))),
        );
        Ok(empty.select(columns)?.filter(lit(false))?)
    }

    /// Step 5: the matched corrections with their features (read from the source table
    /// for batch predictions, carried for online ones), label and verdict.
    pub(super) fn classified(&self, matched: DataFrame, features: DataFrame) -> Result<DataFrame> {
        let on: Vec<Expr> = [
            col("source_table").eq(col("f_source_table")),
            col("source_table_version").eq(col("f_source_version")),
            col("s_online").is_not_true(),
        ]
        .into_iter()
        .chain((0..self.key_count()).map(|i| col(format!("s_k{i}")).eq(col(format!("f_k{i}")))))
        .collect();
        let mut joined = matched.join_on(features, JoinType::Left, on)?;
        for i in 0..self.config.features.len() {
            let feature = when(col("s_online").is_true(), col(format!("o_x{i}")))
                .otherwise(col(format!("x{i}")))?;
            joined = joined.with_column(&format!("x{i}"), feature)?;
        }
        Ok(joined
            .with_column("label_value", self.label_value()?)?
            .with_column("error", self.error()?)?
            .with_column("error_column", self.error_column()?)?)
    }

    /// The corrected label as the model's classes spell it (NULL when it is not one),
    /// or as a number for regression.
    fn label_value(&self) -> Result<Expr> {
        let raw = || trim(vec![col("label_raw")]);
        match self.config.task {
            Task::Regression => Ok(try_cast(raw(), DataType::Float64)),
            Task::Classification => {
                let mut spellings: Vec<(String, String)> = self
                    .classes
                    .iter()
                    .map(|c| (c.to_lowercase(), c.clone()))
                    .collect();
                let mut lower_classes: Vec<String> =
                    self.classes.iter().map(|c| c.to_lowercase()).collect();
                lower_classes.sort();
                if lower_classes == ["false", "true"] {
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
                let mut arms = spellings.into_iter();
                let Some((spelled, class)) = arms.next() else {
                    return Ok(cast(lit(ScalarValue::Null), TEXT));
                };
                let mut builder = case(lower(raw())).when(lit(spelled), lit(class));
                for (spelled, class) in arms {
                    builder = builder.when(lit(spelled), lit(class));
                }
                Ok(builder.end()?)
            }
        }
    }

    /// The correction names no prediction at all (no id and no complete key).
    fn names_nothing(&self) -> Expr {
        let any_key_blank = (0..self.key_count())
            .map(|i| is_blank(col(format!("fb_k{i}"))))
            .reduce(Expr::or)
            .unwrap_or(lit(false));
        match (self.by_id, self.by_key) {
            (true, true) => Self::has_id().not().and(any_key_blank),
            (true, false) => Self::has_id().not(),
            _ => any_key_blank,
        }
    }

    /// Why a correction cannot be used, NULL when it can.
    fn error(&self) -> Result<Expr> {
        let config = self.config;
        let key_text = config.key.join(", ");
        let names_nothing_text = match (self.by_id, self.by_key) {
            (true, true) => format!("{PREDICTION_ID} and {key_text} are empty"),
            (true, false) => format!("{PREDICTION_ID} is empty"),
            _ => format!("{key_text} is empty"),
        };
        let unknown = when(
            Self::has_id(),
            concat(vec![
                lit(format!(
                    "unknown prediction_id: {} prediction of {} with id ",
                    self.none_has(),
                    config.name
                )),
                col("fb_prediction_id"),
                lit(format!(
                    "; check the id against {}",
                    self.predictions
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" and ")
                )),
            ]),
        )
        .otherwise(lit(format!(
            "unknown key: {} prediction of {} for this {key_text} scored at or before corrected_at",
            self.none_has(),
            config.name
        )))?;
        let label_column = &config.feedback.label_column;
        let wrong_label = match config.task {
            Task::Classification => concat(vec![
                lit(format!("{label_column} '")),
                col("label_raw"),
                lit(format!(
                    "' is not a class of {} ({})",
                    config.name,
                    self.classes.join(", ")
                )),
            ]),
            Task::Regression => concat(vec![
                lit(format!("{label_column} '")),
                col("label_raw"),
                lit("' is not a number"),
            ]),
        };
        Ok(when(self.names_nothing(), lit(names_nothing_text))
            .when(col("s_prediction_id").is_null(), unknown)
            .when(
                is_blank(col("label_raw")),
                lit(format!("{label_column} is empty")),
            )
            .when(col("label_value").is_null(), wrong_label)
            .when(
                col("corrected_at").is_null(),
                lit("corrected_at is empty or not a timestamp (write e.g. 2026-11-20T09:30:00Z)"),
            )
            .when(
                is_blank(col("corrected_by")),
                lit("corrected_by is empty: every correction names who made it"),
            )
            .when(
                col("f_source_table")
                    .is_null()
                    .and(col("s_online").is_not_true()),
                concat(vec![
                    lit("the features of this prediction are not in "),
                    col("source_table"),
                    lit("@"),
                    text(col("source_table_version")),
                ]),
            )
            .end()?)
    }

    /// The column an unusable correction is wrong in.
    fn error_column(&self) -> Result<Expr> {
        let match_column =
            when(Self::has_id(), lit(PREDICTION_ID)).otherwise(lit(self.config.key.join(", ")))?;
        Ok(when(
            self.names_nothing().or(col("s_prediction_id").is_null()),
            match_column,
        )
        .when(
            col("label_value").is_null(),
            lit(self.config.feedback.label_column.clone()),
        )
        .when(col("corrected_at").is_null(), lit("corrected_at"))
        .when(is_blank(col("corrected_by")), lit("corrected_by"))
        .end()?)
    }

    /// Step 6a: the quarantine rows of the unusable corrections not in `already` (the
    /// quarantine table, when it exists).
    pub(super) fn quarantined(
        &self,
        classified: DataFrame,
        already: Option<DataFrame>,
        run_id: &str,
    ) -> Result<DataFrame> {
        let mut unusable = classified.filter(col("error").is_not_null())?;
        if let Some(already) = already {
            let kept = already.select(vec![
                ident(SOURCE_FILE).alias("q_file"),
                ident(SOURCE_ROW).alias("q_row"),
                col("raw").alias("q_raw"),
            ])?;
            unusable = unusable.join_on(
                kept,
                JoinType::LeftAnti,
                [
                    col("fb_file").eq(col("q_file")),
                    col("fb_row").eq(col("q_row")),
                    col("fb_raw").eq(col("q_raw")),
                ],
            )?;
        }
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        Ok(unusable
            .sort(vec![
                col("fb_file").sort(true, false),
                col("fb_row").sort(true, false),
            ])?
            .select(vec![
                lit(format!("feedback {}", self.config.name)).alias("source"),
                col("fb_file").alias(SOURCE_FILE),
                col("fb_row").alias(SOURCE_ROW),
                col("error_column").alias("column"),
                col("error"),
                col("fb_raw").alias("raw"),
                lit(run_id.to_string()).alias("_ingest_batch"),
                cast(lit(now), utc_micros()).alias("_ingested_at"),
            ])?)
    }

    /// Step 6b: one row per corrected prediction, resolved by `policy`, read from
    /// version `feedback_version` of the feedback table.
    pub(super) fn resolved(
        &self,
        classified: DataFrame,
        policy: CorrectionPolicy,
        feedback_version: u64,
    ) -> Result<DataFrame> {
        let config = self.config;
        let prediction = || vec![col("s_prediction_id")];
        let prediction_and_label = || vec![col("s_prediction_id"), col("label_value")];
        let order = match policy {
            CorrectionPolicy::Latest => vec![
                col("corrected_at").sort(false, true),
                col("feedback_ref").sort(false, true),
            ],
            CorrectionPolicy::First => vec![
                col("corrected_at").sort(true, false),
                col("feedback_ref").sort(true, false),
            ],
            CorrectionPolicy::Majority => vec![
                col("votes").sort(false, true),
                col("label_last_at").sort(false, true),
                col("corrected_at").sort(false, true),
                col("feedback_ref").sort(false, true),
            ],
        };
        let resolution = row_number()
            .partition_by(prediction())
            .order_by(order)
            .build()?;
        let mut columns = vec![col("s_prediction_id").alias(PREDICTION_ID)];
        columns.extend(
            config
                .key
                .iter()
                .enumerate()
                .map(|(i, k)| col(format!("s_k{i}")).alias(k)),
        );
        columns.extend(
            config
                .features
                .keys()
                .enumerate()
                .map(|(i, name)| col(format!("x{i}")).alias(name)),
        );
        columns.push(col("label_value").alias(&config.label));
        columns.extend(PREDICTION_COLUMNS.map(col));
        columns.extend(
            [
                "corrected_at",
                "corrected_by",
                "comment",
                "feedback_ref",
                "corrections",
            ]
            .map(col),
        );
        columns.extend([
            lit(policy.as_str()).alias("correction_policy"),
            lit(self.feedback.to_string()).alias("feedback_table"),
            lit(feedback_version as i64).alias("feedback_table_version"),
        ]);
        Ok(classified
            .filter(col("error").is_null())?
            .with_column("corrections", over(count_udaf(), lit(1), prediction())?)?
            .with_column("votes", over(count_udaf(), lit(1), prediction_and_label())?)?
            .with_column(
                "label_last_at",
                over(max_udaf(), col("corrected_at"), prediction_and_label())?,
            )?
            .with_column("resolution", resolution)?
            .filter(col("resolution").eq(lit(1_u64)))?
            .select(columns)?
            .sort(vec![
                col("scored_at").sort(true, false),
                col(PREDICTION_ID).sort(true, false),
            ])?)
    }
}

/// The names of the fields of struct column `column` of `frame` (none when it is not a
/// struct).
fn struct_fields(frame: &DataFrame, column: &str) -> Vec<String> {
    match frame
        .schema()
        .field_with_unqualified_name(column)
        .map(|field| field.data_type())
    {
        Ok(DataType::Struct(fields)) => fields.iter().map(|f| f.name().clone()).collect(),
        _ => Vec::new(),
    }
}

/// The feature kinds' types in the training set.
fn feature_type(kind: FeatureKind) -> DataType {
    match kind {
        FeatureKind::Numeric => DataType::Float64,
        FeatureKind::Categorical => TEXT,
        FeatureKind::Boolean => DataType::Boolean,
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, StructArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::compute::cast as cast_array;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::execution::FunctionRegistry;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::sql::functions::{FunctionWarnings, ParseTimestampAny};

    const SCORED: &str = "scored.churn";
    const ONLINE: &str = "scored.churn_online";
    const FEEDBACK: &str = "feedback.churn";

    fn model() -> ModelConfig {
        toml::from_str(
            r#"
name = "churn"
task = "classification"
algorithm = "logistic_regression"
training_table = "curated.customers"
label = "churned"
key = ["customer_id"]
features = { tenure = "numeric", plan = "categorical" }
"#,
        )
        .expect("model config")
    }

    fn table(name: &str) -> TableName {
        TableName::parse(name).expect("table name")
    }

    fn texts(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn frame(ctx: &SessionContext, columns: Vec<(&str, ArrayRef)>) -> DataFrame {
        let schema = Schema::new(
            columns
                .iter()
                .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            columns.into_iter().map(|(_, array)| array).collect(),
        )
        .expect("batch");
        ctx.read_batch(batch).expect("frame")
    }

    fn micros(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("timestamp")
            .timestamp_micros()
    }

    /// Three predictions of customer c1 (days 1 and 3) and c2 (day 2), by model churn,
    /// and one of another model.
    fn predictions(ctx: &SessionContext) -> DataFrame {
        let at = |days: &[&str]| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from(
                    days.iter()
                        .map(|d| micros(&format!("2026-11-0{d}T00:00:00Z")))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            )
        };
        frame(
            ctx,
            vec![
                (
                    "prediction_id",
                    texts(&[Some("p1"), Some("p2"), Some("p3"), Some("p9")]),
                ),
                (
                    "customer_id",
                    texts(&[Some("c1"), Some("c2"), Some("c1"), Some("c1")]),
                ),
                (
                    "prediction",
                    texts(&[Some("false"), Some("true"), Some("false"), Some("true")]),
                ),
                (
                    "probability",
                    Arc::new(Float64Array::from(vec![0.2, 0.7, 0.3, 0.9])),
                ),
                (
                    "model_name",
                    texts(&[Some("churn"), Some("churn"), Some("churn"), Some("other")]),
                ),
                (
                    "model_version",
                    Arc::new(Int64Array::from(vec![1, 1, 1, 1])),
                ),
                ("source_table", texts(&[Some("curated.customers"); 4])),
                (
                    "source_table_version",
                    Arc::new(Int64Array::from(vec![0, 0, 1, 1])),
                ),
                ("scored_at", at(&["1", "2", "3", "3"])),
            ],
        )
    }

    /// Two online predictions of model churn on day 6: o1 for c1 from the features sent
    /// in the request, o2 for c2 looked up in curated.customers@1; their `features`
    /// struct has `plan` only when `with_plan` (a model version that did not read it).
    fn online(ctx: &SessionContext, with_plan: bool) -> DataFrame {
        let mut fields: Vec<(Arc<Field>, ArrayRef)> = vec![(
            Arc::new(Field::new("tenure", DataType::Float64, true)),
            Arc::new(Float64Array::from(vec![99.5, 21.0])),
        )];
        if with_plan {
            fields.push((
                Arc::new(Field::new("plan", DataType::Utf8, true)),
                texts(&[Some("gold"), Some("pro")]),
            ));
        }
        let day6 = micros("2026-11-06T00:00:00Z");
        frame(
            ctx,
            vec![
                ("prediction_id", texts(&[Some("o1"), Some("o2")])),
                ("customer_id", texts(&[Some("c1"), Some("c2")])),
                ("prediction", texts(&[Some("true"), Some("false")])),
                ("probability", Arc::new(Float64Array::from(vec![0.8, 0.1]))),
                ("model_name", texts(&[Some("churn"), Some("churn")])),
                ("model_version", Arc::new(Int64Array::from(vec![2, 2]))),
                (
                    "source_table",
                    texts(&[Some("online"), Some("curated.customers")]),
                ),
                (
                    "source_table_version",
                    Arc::new(Int64Array::from(vec![None, Some(1)])),
                ),
                ("features", Arc::new(StructArray::from(fields)) as ArrayRef),
                (
                    "scored_at",
                    Arc::new(
                        TimestampMicrosecondArray::from(vec![day6, day6]).with_timezone("UTC"),
                    ),
                ),
            ],
        )
    }

    struct Correction<'a> {
        id: Option<&'a str>,
        key: Option<&'a str>,
        label: Option<&'a str>,
        at: Option<&'a str>,
        by: Option<&'a str>,
    }

    fn corrections<'a>(ctx: &SessionContext, rows: &[Correction<'a>]) -> DataFrame {
        let column = |pick: fn(&Correction<'a>) -> Option<&'a str>| {
            texts(&rows.iter().map(pick).collect::<Vec<_>>())
        };
        let lines: Vec<i64> = (1..=rows.len() as i64).collect();
        frame(
            ctx,
            vec![
                ("prediction_id", column(|r| r.id)),
                ("customer_id", column(|r| r.key)),
                ("corrected_label", column(|r| r.label)),
                ("corrected_at", column(|r| r.at)),
                ("corrected_by", column(|r| r.by)),
                (
                    "_source_file",
                    texts(&vec![Some("corrections.csv"); rows.len()]),
                ),
                ("_source_row", Arc::new(Int64Array::from(lines))),
            ],
        )
    }

    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.register_udf(ScalarUDF::from(ParseTimestampAny::new(
            FunctionWarnings::default(),
        )));
        ctx
    }

    fn columns_of(frame: &DataFrame) -> Vec<(String, DataType)> {
        frame
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    }

    async fn column(frame: DataFrame, name: &str) -> Vec<Option<String>> {
        let mut values = Vec::new();
        for batch in frame.collect().await.expect("collect") {
            let index = batch.schema().index_of(name).expect("column");
            let array = cast_array(batch.column(index), &DataType::Utf8).expect("cast");
            let array = array
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("text")
                .clone();
            values.extend(
                (0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i).to_string())),
            );
        }
        values
    }

    /// A churn model's feedback, its tables and its champion's classes, in one session.
    struct Fixture {
        ctx: SessionContext,
        config: ModelConfig,
        feedback: TableName,
        predictions: Vec<TableName>,
        classes: Vec<String>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                ctx: context(),
                config: model(),
                feedback: table(FEEDBACK),
                predictions: vec![table(SCORED), table(ONLINE)],
                classes: vec![String::from("false"), String::from("true")],
            }
        }

        /// The plan over the feedback table `raw`.
        fn plan(&self, raw: &DataFrame) -> FeedbackPlan<'_> {
            FeedbackPlan::new(
                &self.config,
                &self.classes,
                &self.feedback,
                &self.predictions,
                &columns_of(raw),
            )
            .expect("plan")
        }

        /// [`Self::classified`] in the order of `rows`.
        async fn classified_in_order(&self, rows: &[Correction<'_>]) -> DataFrame {
            self.classified(rows)
                .await
                .sort(vec![col("fb_row").sort(true, false)])
                .expect("sort")
        }

        /// The classified corrections of `rows`, with features for every source version.
        async fn classified(&self, rows: &[Correction<'_>]) -> DataFrame {
            let ctx = &self.ctx;
            let raw = corrections(ctx, rows);
            let plan = self.plan(&raw);
            let parse = ctx.udf("parse_timestamp_any").expect("udf");
            let matched = plan
                .matched(
                    plan.corrections(raw, &parse).expect("corrections"),
                    plan.predictions(Some(predictions(ctx)), Some(online(ctx, true)))
                        .expect("predictions"),
                )
                .expect("matched");
            let source = |version: i64| {
                frame(
                    ctx,
                    vec![
                        ("customer_id", texts(&[Some("c1"), Some("c2")])),
                        (
                            "tenure",
                            Arc::new(Int64Array::from(vec![10 + version, 20 + version])),
                        ),
                        ("plan", texts(&[Some("basic"), Some("pro")])),
                    ],
                )
            };
            let mut features = plan
                .no_features(ctx.read_empty().expect("empty"))
                .expect("no features");
            for version in [0, 1] {
                let part = plan
                    .features("curated.customers", version as u64, source(version))
                    .expect("features");
                features = features.union(part).expect("union");
            }
            plan.classified(matched, features).expect("classified")
        }
    }

    fn ok<'a>(
        id: Option<&'a str>,
        key: Option<&'a str>,
        label: &'a str,
        at: &'a str,
    ) -> Correction<'a> {
        Correction {
            id,
            key,
            label: Some(label),
            at: Some(at),
            by: Some("ana"),
        }
    }

    #[tokio::test]
    async fn corrections_match_by_id_or_by_the_newest_prediction_of_their_key() {
        let fixture = Fixture::new();
        let rows = [
            ok(Some(" p2 "), None, "false", "2026-11-05T00:00:00Z"),
            // Key c1 corrected on day 2: the day-1 prediction, not the later day-3 one.
            ok(None, Some("c1"), "yes", "2026-11-02T12:00:00Z"),
            // Key c1 corrected after day 3: the day-3 prediction.
            ok(None, Some("c1"), "1", "2026-11-04T00:00:00Z"),
        ];
        let frame = fixture.classified_in_order(&rows).await;
        assert_eq!(
            column(frame.clone(), "s_prediction_id").await,
            [Some("p2"), Some("p1"), Some("p3")].map(|v| v.map(String::from))
        );
        assert_eq!(
            column(frame.clone(), "label_value").await,
            [Some("false"), Some("true"), Some("true")].map(|v| v.map(String::from))
        );
        // Features come from the source version each prediction was scored from.
        assert_eq!(
            column(frame.clone(), "x0").await,
            [Some("20.0"), Some("10.0"), Some("11.0")].map(|v| v.map(String::from))
        );
        assert_eq!(column(frame, "error").await, [None, None, None]);
    }

    #[tokio::test]
    async fn online_predictions_are_corrected_with_the_features_they_were_scored_with() {
        let fixture = Fixture::new();
        let rows = [
            ok(Some("o1"), None, "false", "2026-11-07T00:00:00Z"),
            // After day 6 the newest prediction of c2 is the online one.
            ok(None, Some("c2"), "true", "2026-11-07T00:00:00Z"),
        ];
        let frame = fixture.classified_in_order(&rows).await;
        let values = |v: [&str; 2]| v.map(|v| Some(v.to_string()));
        assert_eq!(
            column(frame.clone(), "s_prediction_id").await,
            values(["o1", "o2"])
        );
        // The values sent (o1) or looked up when it was scored (o2), not the source
        // table's: curated.customers@1 has tenure 21 and plan pro for c2 as well, but
        // 11 and basic for c1.
        assert_eq!(column(frame.clone(), "x0").await, values(["99.5", "21.0"]));
        assert_eq!(column(frame.clone(), "x1").await, values(["gold", "pro"]));
        assert_eq!(
            column(frame.clone(), "source_table").await,
            values(["online", "curated.customers"])
        );
        assert_eq!(column(frame, "error").await, [None, None]);
    }

    #[tokio::test]
    async fn a_feature_the_serving_version_did_not_read_is_missing_in_its_training_row() {
        let fixture = Fixture::new();
        let ctx = &fixture.ctx;
        let raw = corrections(
            ctx,
            &[ok(Some("o1"), None, "false", "2026-11-07T00:00:00Z")],
        );
        let plan = fixture.plan(&raw);
        let parse = ctx.udf("parse_timestamp_any").expect("udf");
        let matched = plan
            .matched(
                plan.corrections(raw, &parse).expect("corrections"),
                plan.predictions(None, Some(online(ctx, false)))
                    .expect("predictions"),
            )
            .expect("matched");
        let features = plan
            .no_features(ctx.read_empty().expect("empty"))
            .expect("no features");
        let frame = plan.classified(matched, features).expect("classified");
        assert_eq!(column(frame.clone(), "x0").await, [Some("99.5".into())]);
        assert_eq!(column(frame.clone(), "x1").await, [None]);
        assert_eq!(column(frame, "error").await, [None]);
    }

    #[test]
    fn a_model_without_any_prediction_table_is_refused() {
        let fixture = Fixture::new();
        let raw = corrections(&fixture.ctx, &[]);
        let error = fixture
            .plan(&raw)
            .predictions(None, None)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("model 'churn' has no predictions to correct"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn unusable_corrections_say_what_is_wrong_and_in_which_column() {
        let fixture = Fixture::new();
        let rows = [
            ok(Some("p404"), None, "true", "2026-11-05T00:00:00Z"),
            ok(None, Some("c2"), "true", "2026-11-01T00:00:00Z"),
            ok(Some("p1"), None, "maybe", "2026-11-05T00:00:00Z"),
            Correction {
                by: Some(" "),
                ..ok(Some("p1"), None, "true", "2026-11-05T00:00:00Z")
            },
            ok(Some("p1"), None, "true", "not a time"),
            Correction {
                id: None,
                key: None,
                ..ok(None, None, "true", "2026-11-05T00:00:00Z")
            },
        ];
        let frame = fixture.classified_in_order(&rows).await;
        let errors = column(frame.clone(), "error").await;
        let expected = [
            "unknown prediction_id: neither scored.churn nor scored.churn_online has a prediction of churn with id p404; check the id against scored.churn and scored.churn_online",
            "unknown key: neither scored.churn nor scored.churn_online has a prediction of churn for this customer_id scored at or before corrected_at",
            "corrected_label 'maybe' is not a class of churn (false, true)",
            "corrected_by is empty: every correction names who made it",
            "corrected_at is empty or not a timestamp (write e.g. 2026-11-20T09:30:00Z)",
            "prediction_id and customer_id are empty",
        ];
        assert_eq!(errors, expected.map(|e| Some(e.to_string())));
        assert_eq!(
            column(frame, "error_column").await,
            [
                "prediction_id",
                "customer_id",
                "corrected_label",
                "corrected_by",
                "corrected_at",
                "customer_id"
            ]
            .map(|c| Some(c.to_string()))
        );
    }

    #[tokio::test]
    async fn several_corrections_of_one_prediction_resolve_by_policy() {
        let fixture = Fixture::new();
        let rows = [
            ok(Some("p2"), None, "true", "2026-11-03T00:00:00Z"),
            ok(Some("p2"), None, "true", "2026-11-04T00:00:00Z"),
            ok(Some("p2"), None, "false", "2026-11-05T00:00:00Z"),
        ];
        let plan = fixture.plan(&corrections(&fixture.ctx, &rows));
        for (policy, label, corrected_at) in [
            (CorrectionPolicy::Latest, "false", "2026-11-05"),
            (CorrectionPolicy::First, "true", "2026-11-03"),
            (CorrectionPolicy::Majority, "true", "2026-11-04"),
        ] {
            let resolved = plan
                .resolved(fixture.classified(&rows).await, policy, 7)
                .expect("resolved");
            assert_eq!(
                column(resolved.clone(), "churned").await,
                [Some(label.to_string())],
                "{policy:?}"
            );
            let at = column(resolved.clone(), "corrected_at").await;
            assert!(
                at[0]
                    .as_deref()
                    .is_some_and(|t| t.starts_with(corrected_at)),
                "{policy:?}: {at:?}"
            );
            assert_eq!(
                column(resolved.clone(), "corrections").await,
                [Some(String::from("3"))]
            );
            assert_eq!(
                column(resolved.clone(), "feedback_table_version").await,
                [Some(String::from("7"))]
            );
            assert_eq!(
                column(resolved, "customer_id").await,
                [Some(String::from("c2"))]
            );
        }
    }

    #[tokio::test]
    async fn a_quarantined_correction_is_not_quarantined_again() {
        let fixture = Fixture::new();
        let rows = [
            ok(Some("p404"), None, "true", "2026-11-05T00:00:00Z"),
            ok(Some("p405"), None, "true", "2026-11-05T00:00:00Z"),
        ];
        let plan = fixture.plan(&corrections(&fixture.ctx, &rows));
        let first = plan
            .quarantined(fixture.classified(&rows).await, None, "run-1")
            .expect("quarantined");
        assert_eq!(
            column(first.clone(), "_source_row").await,
            [Some("1".into()), Some("2".into())]
        );
        let already = first
            .filter(col(SOURCE_ROW).eq(lit(1_i64)))
            .expect("first row");
        let again = plan
            .quarantined(fixture.classified(&rows).await, Some(already), "run-2")
            .expect("quarantined");
        assert_eq!(
            column(again.clone(), "_source_row").await,
            [Some("2".into())]
        );
        assert_eq!(
            column(again.clone(), "_ingest_batch").await,
            [Some("run-2".into())]
        );
        assert_eq!(
            column(again, "column").await,
            [Some("prediction_id".into())]
        );
    }

    #[test]
    fn a_feedback_table_without_a_label_column_is_refused_with_what_it_needs() {
        let config = model();
        let (feedback, scored) = (table(FEEDBACK), [table(SCORED)]);
        let columns = vec![
            (String::from("prediction_id"), DataType::Utf8),
            (String::from("corrected_by"), DataType::Utf8),
            (String::from("corrected_at"), DataType::Utf8),
        ];
        let error = FeedbackPlan::new(&config, &[], &feedback, &scored, &columns)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("feedback.churn has no column 'corrected_label'")
                && error.contains("(found: prediction_id, corrected_by, corrected_at)"),
            "{error}"
        );
    }
}

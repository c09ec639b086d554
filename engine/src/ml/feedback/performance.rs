//! Realized performance: each model version's metrics on the predictions staff have
//! labeled, per prediction-time window, in `monitoring.model_performance`, and a retrain
//! request when the champion's newest window falls below a `[model.monitoring]` floor.
//!
//! Labels are the resolved corrections of `training.<model>_feedback` (a confirmation,
//! a correction equal to the prediction, counts as a label too). Classification:
//! ROC AUC of the positive-class probability, accuracy, precision and recall of the
//! positive class and the expected calibration error (10 equal-width probability bins,
//! weighted by their rows). Regression: RMSE and MAE. Each run replaces the model's rows
//! in one commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{col, lit};
use futures::StreamExt;
use serde_json::json;

use crate::config::{Floor, ModelConfig, Task};
use crate::error::Result;
use crate::ml::models::metrics::roc_auc;
use crate::ml::models::registry::Manifest;
use crate::ml::retrain_requests::{RetrainRequest, raise};
use crate::run::RunContext;
use crate::sql::session::Pins;
use crate::storage::commit::{FOR_MODEL, commit_metadata};
use crate::storage::lakehouse::{TableName, quote_identifier};
use crate::storage::quarantine::timestamp_type;
use crate::storage::system_tables::MODEL_PERFORMANCE;
use crate::storage::write::{WriteMode, write_batch};

/// Bins of the expected calibration error.
const CALIBRATION_BINS: usize = 10;

/// One model version's realized metrics in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowMetrics {
    /// The model version.
    pub model_version: u64,
    /// The window's start (predictions scored from here, for `window`).
    pub window_start: DateTime<Utc>,
    /// Labeled predictions in the window.
    pub rows: u64,
    /// Labeled positives (classification).
    pub positives: Option<u64>,
    /// Metric name → value.
    pub metrics: BTreeMap<&'static str, f64>,
}

/// What a performance run found.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceReport {
    /// Every window of every version, oldest first.
    pub windows: Vec<WindowMetrics>,
    /// The floors the champion's newest window breached, with the value.
    pub breaches: Vec<(Floor, f64)>,
    /// The retrain request raised by this run (none when the breached window had
    /// already raised one).
    pub request_id: Option<String>,
}

/// What the command line prints: the champion's newest window, breached floors and
/// any retrain request.
impl std::fmt::Display for PerformanceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(window) = self.windows.last() {
            let metrics: Vec<String> = window
                .metrics
                .iter()
                .map(|(name, value)| format!("{name}={value:.3}"))
                .collect();
            writeln!(
                f,
                "realized metrics of version {} from {} ({} labeled): {}",
                window.model_version,
                window.window_start.format("%Y-%m-%d %H:%M UTC"),
                window.rows,
                metrics.join(" ")
            )?;
        }
        for (floor, value) in &self.breaches {
            writeln!(
                f,
                "below floor: {} = {value:.3} ({} = {})",
                floor.metric, floor.setting, floor.limit
            )?;
        }
        if let Some(id) = &self.request_id {
            writeln!(
                f,
                "retraining requested: {id} in monitoring.retrain_requests"
            )?;
        }
        write!(
            f,
            "all windows: select * from monitoring.model_performance order by window_start"
        )
    }
}

/// A performance run over the labeled predictions in a feedback training set version:
/// a step of the feedback operation, run in its context.
pub(super) struct RecordPerformance<'a> {
    cx: &'a RunContext,
    config: &'a ModelConfig,
    champion: &'a Manifest,
    labels: (&'a TableName, u64),
}

impl<'a> RecordPerformance<'a> {
    /// Computes `config`'s realized metrics from `labels` (the feedback training set at a
    /// version), checking `champion`'s newest window against the floors.
    pub(super) fn new(
        cx: &'a RunContext,
        config: &'a ModelConfig,
        champion: &'a Manifest,
        labels: (&'a TableName, u64),
    ) -> Self {
        Self {
            cx,
            config,
            champion,
            labels,
        }
    }

    pub(super) async fn run(self) -> Result<PerformanceReport> {
        let (table, version) = self.labels;
        let windows = self.windows().await?;
        self.record(&windows).await?;
        let newest = windows
            .iter()
            .filter(|w| {
                w.model_version == self.champion.version
                    && w.rows >= self.config.monitoring.min_rows
            })
            .max_by_key(|w| w.window_start);
        let breaches: Vec<(Floor, f64)> = newest
            .map(|window| {
                self.config
                    .monitoring
                    .floors()
                    .into_iter()
                    .filter_map(|floor| {
                        let value = *window.metrics.get(floor.metric)?;
                        floor.breached_by(value).then_some((floor, value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut request_id = None;
        if let (Some(window), false) = (newest, breaches.is_empty()) {
            let start = window.window_start.format("%Y-%m-%dT%H:%M:%SZ");
            let described: Vec<String> = breaches
                .iter()
                .map(|(floor, value)| {
                    format!(
                        "{} {value:.3} is {} {} = {}",
                        floor.metric,
                        if floor.is_minimum { "below" } else { "above" },
                        floor.setting,
                        floor.limit
                    )
                })
                .collect();
            let request = RetrainRequest {
                request_id: format!(
                    "performance-{}-{}-{start}",
                    self.champion.name, self.champion.version
                ),
                model: self.champion.name.clone(),
                model_version: self.champion.version,
                reason: format!(
                    "{} in the window from {start} ({} labeled predictions, {table}@{version})",
                    described.join("; "),
                    window.rows
                ),
                metrics: json!(
                    breaches
                        .iter()
                        .map(|(floor, value)| json!({"metric": floor.metric, "value": value, "limit": floor.limit, "setting": floor.setting}))
                        .collect::<Vec<_>>()
                ),
                run_id: self.cx.run_id().to_string(),
            };
            if raise(self.cx.lakehouse(), &request).await? {
                request_id = Some(request.request_id);
            }
        }
        Ok(PerformanceReport {
            windows,
            breaches,
            request_id,
        })
    }

    /// Streams the labeled predictions into per-version, per-window accumulators.
    async fn windows(&self) -> Result<Vec<WindowMetrics>> {
        let (table, version) = self.labels;
        let session = crate::ml::sql_session(self.cx.lakehouse().clone())
            .pins(Pins::from([(table.clone(), version)]))
            .build()
            .await?;
        let seconds = self.config.monitoring.window.as_secs().max(1);
        let sql = format!(
            "SELECT model_version, arrow_cast(date_bin(INTERVAL '{seconds} seconds', scored_at, {origin}), {micros}) AS window_start, \
             CAST({label} AS VARCHAR) AS actual, original_prediction, original_probability FROM {table}",
            label = quote_identifier(&self.config.label),
            table = table.quoted(),
            origin = "arrow_cast('1970-01-01T00:00:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))')",
            micros = "'Timestamp(Microsecond, Some(\"UTC\"))'",
        );
        let mut stream = session.sql(&sql).await?.execute_stream().await?;
        let mut groups: BTreeMap<(u64, i64), Accumulator> = BTreeMap::new();
        let positive = self.champion.positive_class.clone();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let versions = cast(batch.column(0), &DataType::Int64)?;
            let starts = cast(batch.column(1), &DataType::Int64)?;
            let actual = cast(batch.column(2), &DataType::Utf8)?;
            let predicted = cast(batch.column(3), &DataType::Utf8)?;
            let probabilities = cast(batch.column(4), &DataType::Float64)?;
            let versions = int64(&versions);
            let starts = int64(&starts);
            let actual = text(&actual);
            let predicted = text(&predicted);
            let probabilities = probabilities
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .unwrap_or_else(|| Float64Array::new_null(batch.num_rows()));
            for row in 0..batch.num_rows() {
                if !(versions.is_valid(row) && starts.is_valid(row) && actual.is_valid(row)) {
                    continue;
                }
                let key = (versions.value(row) as u64, starts.value(row));
                let accumulator = groups.entry(key).or_default();
                let prediction = predicted.is_valid(row).then(|| predicted.value(row));
                let probability = probabilities
                    .is_valid(row)
                    .then(|| probabilities.value(row));
                accumulator.add(
                    actual.value(row),
                    prediction,
                    probability,
                    positive.as_deref(),
                );
            }
        }
        Ok(groups
            .into_iter()
            .map(|((model_version, start), accumulator)| WindowMetrics {
                model_version,
                window_start: Utc.timestamp_micros(start).single().unwrap_or_default(),
                rows: accumulator.rows,
                positives: (self.config.task == Task::Classification)
                    .then_some(accumulator.positives),
                metrics: accumulator.metrics(self.config.task),
            })
            .collect())
    }

    /// Replaces the model's rows of `monitoring.model_performance` with `windows`.
    async fn record(&self, windows: &[WindowMetrics]) -> Result<()> {
        let (table, version) = self.labels;
        let n = windows.len();
        let window = self.config.monitoring.window;
        let same = |value: String| Arc::new(StringArray::from(vec![value; n])) as ArrayRef;
        let metric = |name: &str| {
            Arc::new(Float64Array::from_iter(
                windows.iter().map(|w| w.metrics.get(name).copied()),
            )) as ArrayRef
        };
        let micros = |at: DateTime<Utc>| at.timestamp_micros();
        let window_micros = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let metric_names = [
            "roc_auc",
            "accuracy",
            "precision",
            "recall",
            "calibration_error",
            "rmse",
            "mae",
        ];
        let mut fields = vec![
            Field::new("model", DataType::Utf8, false),
            Field::new("model_version", DataType::Int64, false),
            Field::new("window_start", timestamp_type(), false),
            Field::new("window_end", timestamp_type(), false),
            Field::new("labeled_rows", DataType::Int64, false),
            Field::new("positives", DataType::Int64, true),
        ];
        fields.extend(
            metric_names
                .iter()
                .map(|m| Field::new(*m, DataType::Float64, true)),
        );
        fields.extend([
            Field::new("labels_table", DataType::Utf8, false),
            Field::new("labels_version", DataType::Int64, false),
            Field::new("computed_at", timestamp_type(), false),
            Field::new("run_id", DataType::Utf8, false),
        ]);
        let mut columns: Vec<ArrayRef> = vec![
            same(self.config.name.clone()),
            Arc::new(Int64Array::from_iter_values(
                windows.iter().map(|w| w.model_version as i64),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    windows.iter().map(|w| micros(w.window_start)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    windows
                        .iter()
                        .map(|w| micros(w.window_start).saturating_add(window_micros)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(
                windows.iter().map(|w| w.rows as i64),
            )),
            Arc::new(Int64Array::from_iter(
                windows.iter().map(|w| w.positives.map(|p| p as i64)),
            )),
        ];
        columns.extend(metric_names.iter().map(|m| metric(m)));
        columns.extend([
            same(table.to_string()),
            Arc::new(Int64Array::from(vec![version as i64; n])) as ArrayRef,
            Arc::new(
                TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros(); n])
                    .with_timezone("UTC"),
            ),
            same(self.cx.run_id().to_string()),
        ]);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let metadata = commit_metadata(
            self.cx.run_id(),
            json!([{"table": table.to_string(), "version": version}]),
            [(FOR_MODEL, json!(self.config.name))],
        );
        write_batch(
            self.cx.lakehouse(),
            &TableName::parse(MODEL_PERFORMANCE)?,
            batch,
            WriteMode::ReplaceWhere(col("model").eq(lit(self.config.name.clone()))),
            metadata,
        )
        .await?;
        Ok(())
    }
}

fn int64(array: &ArrayRef) -> Int64Array {
    array
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .unwrap_or_else(|| Int64Array::new_null(array.len()))
}

fn text(array: &ArrayRef) -> StringArray {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .unwrap_or_else(|| StringArray::new_null(array.len()))
}

/// The labeled predictions of one version and window.
#[derive(Debug, Default)]
struct Accumulator {
    rows: u64,
    positives: u64,
    correct: u64,
    true_positives: u64,
    predicted_positives: u64,
    /// (positive-class probability, actually positive).
    scores: Vec<(f64, bool)>,
    squared_error: f64,
    absolute_error: f64,
    errors: u64,
}

impl Accumulator {
    fn add(
        &mut self,
        actual: &str,
        predicted: Option<&str>,
        probability: Option<f64>,
        positive: Option<&str>,
    ) {
        self.rows += 1;
        let is_positive = positive == Some(actual);
        self.positives += u64::from(is_positive);
        if let Some(predicted) = predicted {
            self.correct += u64::from(predicted == actual);
            let predicted_positive = positive == Some(predicted);
            self.predicted_positives += u64::from(predicted_positive);
            self.true_positives += u64::from(predicted_positive && is_positive);
            if let (Ok(value), Ok(truth)) = (predicted.parse::<f64>(), actual.parse::<f64>()) {
                self.squared_error += (value - truth).powi(2);
                self.absolute_error += (value - truth).abs();
                self.errors += 1;
            }
        }
        if let (Some(probability), Some(_)) = (probability, positive) {
            self.scores.push((probability, is_positive));
        }
    }

    fn metrics(&self, task: Task) -> BTreeMap<&'static str, f64> {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let mut metrics = BTreeMap::new();
        let mut put = |name, value: Option<f64>| {
            if let Some(value) = value {
                metrics.insert(name, value);
            }
        };
        match task {
            Task::Classification => {
                put("accuracy", ratio(self.correct, self.rows));
                put(
                    "precision",
                    ratio(self.true_positives, self.predicted_positives),
                );
                put("recall", ratio(self.true_positives, self.positives));
                let both_classes =
                    self.scores.iter().any(|s| s.1) && self.scores.iter().any(|s| !s.1);
                put("roc_auc", both_classes.then(|| roc_auc(&self.scores)));
                put("calibration_error", calibration_error(&self.scores));
            }
            Task::Regression => {
                put(
                    "rmse",
                    (self.errors > 0).then(|| (self.squared_error / self.errors as f64).sqrt()),
                );
                put(
                    "mae",
                    (self.errors > 0).then(|| self.absolute_error / self.errors as f64),
                );
            }
        }
        metrics
    }
}

/// Expected calibration error: the row-weighted gap between the mean predicted
/// probability and the positive share in each of 10 equal-width probability bins.
pub fn calibration_error(scores: &[(f64, bool)]) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let mut bins = [(0.0f64, 0.0f64, 0u64); CALIBRATION_BINS];
    for (probability, positive) in scores {
        let bin = ((probability.clamp(0.0, 1.0) * CALIBRATION_BINS as f64) as usize)
            .min(CALIBRATION_BINS - 1);
        bins[bin].0 += probability;
        bins[bin].1 += f64::from(u8::from(*positive));
        bins[bin].2 += 1;
    }
    let total = scores.len() as f64;
    Some(
        bins.iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(sum, positives, n)| {
                let n = *n as f64;
                (sum / n - positives / n).abs() * n / total
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_error_by_hand() {
        // Bin 0.8–0.9: mean 0.85, 1 of 2 positive → gap 0.35, weight 2/4.
        // Bin 0.1–0.2: mean 0.1, 0 of 2 positive → gap 0.1, weight 2/4.
        let scores = [(0.82, true), (0.88, false), (0.1, false), (0.1, false)];
        let ece = calibration_error(&scores).unwrap();
        assert!((ece - (0.35 * 0.5 + 0.1 * 0.5)).abs() < 1e-12, "{ece}");
        assert_eq!(calibration_error(&[]), None);
    }

    #[test]
    fn classification_metrics_by_hand() {
        let mut accumulator = Accumulator::default();
        // actual, predicted, probability of "true"
        let rows = [
            ("true", "true", 0.9),
            ("true", "false", 0.4),
            ("false", "true", 0.6),
            ("false", "false", 0.2),
            ("true", "true", 0.7),
        ];
        for (actual, predicted, probability) in rows {
            accumulator.add(actual, Some(predicted), Some(probability), Some("true"));
        }
        let metrics = accumulator.metrics(Task::Classification);
        assert_eq!(accumulator.positives, 3);
        assert!((metrics["accuracy"] - 3.0 / 5.0).abs() < 1e-12);
        assert!((metrics["precision"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((metrics["recall"] - 2.0 / 3.0).abs() < 1e-12);
        // Positives 0.9, 0.4, 0.7 against negatives 0.6, 0.2: 5 of 6 pairs ordered right.
        assert!((metrics["roc_auc"] - 5.0 / 6.0).abs() < 1e-12);
        assert!(!metrics.contains_key("rmse"));
    }

    #[test]
    fn regression_metrics_by_hand() {
        let mut accumulator = Accumulator::default();
        for (actual, predicted) in [("10", "12"), ("20", "18"), ("30", "30")] {
            accumulator.add(actual, Some(predicted), None, None);
        }
        let metrics = accumulator.metrics(Task::Regression);
        assert!((metrics["rmse"] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((metrics["mae"] - 4.0 / 3.0).abs() < 1e-12);
    }
}

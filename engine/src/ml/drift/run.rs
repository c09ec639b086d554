//! A drift run: profile the baseline and the current data in one streaming pass each,
//! compare every feature and the model's output, decide on retraining, and record it all.
//!
//! The baseline is the model version's training table at the version it was trained on.
//! The current data is a table version, the rows after a version (by a time column), or a
//! time window. It may be the model's online table (`scored.<model>_online`, the HTTP
//! API's traffic): its features are read from each prediction's `features` struct, its
//! time column is `scored_at`, and its own predictions are the output compared. Results
//! go to `monitoring.drift_metrics` (one commit per run), a triggered retrain to
//! `monitoring.retrain_requests`, and the HTML report to
//! `<root>/_reports/drift/<model>/<run id>.html`.

use std::fmt;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use super::compare::{ColumnDrift, compare_categorical, compare_numeric, compare_prediction};
use super::record::{record_metrics, request_retrain};
use super::report::render_html;
use super::sketch::{CategoricalSketch, NumericDistribution, NumericSketch};
use crate::config::{DriftConfig, FeatureKind};
use crate::error::{Error, Result};
use crate::ml::models::profile::ColumnProfile;
use crate::ml::models::registry::{Manifest, ModelRef, Registry};
use crate::run::{DataMoved, OperationFuture, Report, RunContext};
use crate::sql::session::Pins;
use crate::storage::lakehouse::{
    TableName, TableVersion, commit_time, quote_identifier, quote_literal,
};
use crate::storage::system_tables::{ONLINE_FEATURES, online_table, scored_table};

/// Which rows of the table are "current".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// One version (None: the newest).
    Version(Option<u64>),
    /// The rows whose time column is later than this version's commit.
    Since(u64),
    /// The rows whose time column falls in this long before now.
    Last(Duration),
}

/// The outcome of a drift run.
#[derive(Debug, Clone)]
pub struct DriftReport {
    /// The model version compared, `name:version`.
    pub model: String,
    /// The baseline: training table and version.
    pub baseline: (TableName, u64),
    /// The current data, described (`curated.customers@7`, or with its window).
    pub current: String,
    /// Every feature, drifted ones first.
    pub features: Vec<ColumnDrift>,
    /// The model's output, when the scored table has rows for this data.
    pub prediction: Option<ColumnDrift>,
    /// Why retraining was requested, when it was.
    pub retrain_reason: Option<String>,
    /// Where the HTML report was kept in the lakehouse.
    pub report_uri: String,
    /// The file the report was also written to, when asked.
    pub report_path: Option<PathBuf>,
    /// The run.
    pub run_id: String,
}

impl DriftReport {
    /// The features that drifted.
    pub fn drifted_features(&self) -> Vec<&str> {
        self.features
            .iter()
            .filter(|f| f.drifted)
            .map(|f| f.column.as_str())
            .collect()
    }
}

/// A drift run: `cx.drift(model, table).await`.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Drift {
    cx: RunContext,
    model: String,
    table: String,
    window: Window,
    time_column: Option<String>,
    report_path: Option<PathBuf>,
}

/// Where the current rows are: a table of features, or the model's online table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Traffic {
    /// A table with the features as columns, scored into the model's scored table.
    Batch,
    /// The model's online table: features in the `features` struct, predictions beside.
    Online,
}

/// A feature as profiled: its column and how it is read.
struct Column {
    name: String,
    kind: FeatureKind,
}

enum Sketch {
    Numeric(NumericSketch),
    Categorical(CategoricalSketch),
}

impl Sketch {
    fn rows(&self) -> u64 {
        match self {
            Sketch::Numeric(sketch) => sketch.rows(),
            Sketch::Categorical(sketch) => sketch.rows(),
        }
    }
}

impl RunContext {
    /// Compares model `model` (NAME, NAME@alias or NAME:VERSION) on table `table`
    /// (`schema.name`, or `schema.name@VERSION`).
    pub fn drift(&self, model: impl Into<String>, table: impl Into<String>) -> Drift {
        Drift {
            cx: self.clone(),
            model: model.into(),
            table: table.into(),
            window: Window::Version(None),
            time_column: None,
            report_path: None,
        }
    }
}

impl Drift {
    /// Chooses the current rows (default: the table's newest version).
    pub fn with_window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// The timestamp column `Since` and `Last` windows filter on (default `_ingested_at`,
    /// or `scored_at` on the model's online table).
    pub fn with_time_column(mut self, column: Option<String>) -> Self {
        self.time_column = column;
        self
    }

    /// Also writes the HTML report to this file.
    pub fn with_report(mut self, path: Option<PathBuf>) -> Self {
        self.report_path = path;
        self
    }

    async fn run(self) -> Result<DriftReport> {
        let manifest = Registry::new(self.cx.lakehouse().clone())
            .resolve(&ModelRef::parse(&self.model)?)
            .await?;
        let declared = self
            .cx
            .project()
            .config
            .models
            .iter()
            .find(|m| m.name == manifest.name);
        let config = declared.map(|m| m.drift.clone()).unwrap_or_default();
        // Where the model's predictions are: `[model.feedback] scored_table`, by default
        // `scored.<model>`.
        let scored = match declared {
            Some(model) => model.feedback.scored_table_of(&model.name),
            None => scored_table(&manifest.name),
        };
        let scored = TableName::parse(&scored)?;
        let columns: Vec<Column> = manifest
            .features
            .iter()
            .map(|f| Column {
                name: f.name.clone(),
                kind: f.kind,
            })
            .collect();
        let baseline_table = TableName::parse(&manifest.training_table)?;
        let baseline_version = manifest.training_table_version;
        let baseline = self
            .profile(
                &baseline_table,
                baseline_version,
                &columns,
                None,
                Traffic::Batch,
            )
            .await?;
        let (table, pinned) = TableName::parse_at(&self.table)?;
        let traffic = if table == online_table(&manifest.name) {
            Traffic::Online
        } else {
            Traffic::Batch
        };
        let (version, filter, current_text) = self.current_rows(&table, pinned, traffic).await?;
        let current = self
            .profile(&table, version, &columns, filter.as_deref(), traffic)
            .await?;
        if current.first().is_some_and(|sketch| sketch.rows() == 0) {
            return Err(Error::Usage(format!(
                "no rows to compare: {current_text} selects none; choose an earlier --since version or a longer --window"
            )));
        }
        let mut features = Vec::with_capacity(columns.len());
        for ((column, base), now) in columns.iter().zip(baseline).zip(current) {
            let thresholds = config.thresholds_for(&column.name);
            features.push(match (base, now) {
                (Sketch::Numeric(b), Sketch::Numeric(c)) => compare_numeric(
                    &column.name,
                    &b.finish(),
                    &c.finish(),
                    config.bins,
                    &thresholds,
                ),
                (Sketch::Categorical(b), Sketch::Categorical(c)) => {
                    let kind = if column.kind == FeatureKind::Boolean {
                        "boolean"
                    } else {
                        "categorical"
                    };
                    compare_categorical(&column.name, kind, &b, &c, &thresholds)
                }
                _ => unreachable!("both profiles are built from the same feature kinds"),
            });
        }
        features.sort_by_key(|f| !f.drifted);
        let outputs = match traffic {
            Traffic::Batch => Outputs::ScoredFrom {
                scored: &scored,
                table: &table,
                version: pinned.map(|_| version),
            },
            Traffic::Online => Outputs::Online {
                table: &table,
                version,
                filter: filter.as_deref(),
            },
        };
        let prediction = self.prediction_drift(&manifest, outputs, &config).await?;
        let retrain_reason = retrain_reason(&features, prediction.as_ref(), &config);
        let mut report = DriftReport {
            model: format!("{}:{}", manifest.name, manifest.version),
            baseline: (baseline_table, baseline_version),
            current: current_text,
            features,
            prediction,
            retrain_reason,
            report_uri: String::new(),
            report_path: self.report_path.clone(),
            run_id: self.cx.run_id().to_string(),
        };
        record_metrics(self.cx.lakehouse(), &manifest, &report, (&table, version)).await?;
        if let Some(reason) = &report.retrain_reason {
            request_retrain(self.cx.lakehouse(), &manifest, &report, reason).await?;
        }
        report.report_uri = self.keep_report(&manifest, &report).await?;
        Ok(report)
    }

    /// The version to read, the row filter, and the description of the current rows.
    async fn current_rows(
        &self,
        table: &TableName,
        pinned: Option<u64>,
        traffic: Traffic,
    ) -> Result<(u64, Option<String>, String)> {
        let latest = self.cx.lakehouse().latest_version(table).await?;
        let time_column = self.time_column.as_deref().unwrap_or(match traffic {
            Traffic::Batch => "_ingested_at",
            Traffic::Online => "scored_at",
        });
        let column = quote_identifier(time_column);
        let after = |time: DateTime<Utc>| {
            format!(
                "{column} > TIMESTAMP '{}'",
                time.format("%Y-%m-%dT%H:%M:%S%.6f")
            )
        };
        match self.window {
            Window::Version(version) => {
                let version = version.or(pinned).unwrap_or(latest);
                Ok((version, None, format!("{table}@{version}")))
            }
            Window::Since(since) => {
                let snapshot = self
                    .cx
                    .lakehouse()
                    .open_table(table, TableVersion::Version(since))
                    .await?;
                let time = commit_time(&snapshot).ok_or_else(|| {
                    Error::Usage(format!(
                        "{table}@{since} has no commit time to compare with"
                    ))
                })?;
                Ok((
                    latest,
                    Some(after(time)),
                    format!("{table}@{latest}, rows with {time_column} after version {since}"),
                ))
            }
            Window::Last(window) => {
                let start = Utc::now()
                    - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
                Ok((
                    latest,
                    Some(after(start)),
                    format!(
                        "{table}@{latest}, rows with {time_column} in the last {}",
                        humantime::format_duration(window)
                    ),
                ))
            }
        }
    }

    /// Profiles `columns` of `table` at `version` (rows passing `filter`) in one pass.
    async fn profile(
        &self,
        table: &TableName,
        version: u64,
        columns: &[Column],
        filter: Option<&str>,
        traffic: Traffic,
    ) -> Result<Vec<Sketch>> {
        let session = crate::ml::sql_session(self.cx.lakehouse().clone())
            .pins(Pins::from([(table.clone(), version)]))
            .build()
            .await?;
        let expressions: Vec<String> = columns
            .iter()
            .map(|c| {
                let name = match traffic {
                    Traffic::Batch => quote_identifier(&c.name),
                    Traffic::Online => {
                        format!("{ONLINE_FEATURES}[{}]", quote_literal(&c.name))
                    }
                };
                match c.kind {
                    FeatureKind::Numeric => format!("TRY_CAST({name} AS DOUBLE)"),
                    FeatureKind::Categorical => format!("CAST({name} AS VARCHAR)"),
                    FeatureKind::Boolean => format!(
                        "CASE WHEN TRY_CAST({name} AS BOOLEAN) THEN 'true' \
                         WHEN NOT TRY_CAST({name} AS BOOLEAN) THEN 'false' END"
                    ),
                }
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {}{}",
            expressions.join(", "),
            table.quoted(),
            filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
        );
        let mut sketches: Vec<Sketch> = columns
            .iter()
            .map(|c| match c.kind {
                FeatureKind::Numeric => Sketch::Numeric(NumericSketch::default()),
                _ => Sketch::Categorical(CategoricalSketch::default()),
            })
            .collect();
        let mut stream = session.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            add_batch(&mut sketches, &batch?)?;
        }
        Ok(sketches)
    }

    /// The output distribution of this model version on the current rows: those of a
    /// table it scored into its scored table, or its online predictions.
    async fn prediction_drift(
        &self,
        manifest: &Manifest,
        outputs: Outputs<'_>,
        config: &DriftConfig,
    ) -> Result<Option<ColumnDrift>> {
        let ColumnProfile::Numeric {
            quantiles,
            histogram,
            mean,
            ..
        } = &manifest.prediction_profile
        else {
            return Ok(None);
        };
        let (predictions, version, filter) = match outputs {
            Outputs::ScoredFrom {
                scored,
                table,
                version,
            } => {
                let Some(scored_version) =
                    self.cx.lakehouse().latest_version_if_exists(scored).await?
                else {
                    return Ok(None);
                };
                let filter = format!(
                    "source_table = {}{}",
                    quote_literal(&table.to_string()),
                    version
                        .map(|v| format!(" AND source_table_version = {v}"))
                        .unwrap_or_default()
                );
                (scored, scored_version, filter)
            }
            Outputs::Online {
                table,
                version,
                filter,
            } => (table, version, filter.unwrap_or("TRUE").to_string()),
        };
        let session = crate::ml::sql_session(self.cx.lakehouse().clone())
            .pins(Pins::from([(predictions.clone(), version)]))
            .build()
            .await?;
        let sql = format!(
            "SELECT coalesce(probability, TRY_CAST(prediction AS DOUBLE)) FROM {} \
             WHERE model_version = {} AND {filter}",
            predictions.quoted(),
            manifest.version,
        );
        let mut sketch = vec![Sketch::Numeric(NumericSketch::default())];
        let mut stream = session.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            add_batch(&mut sketch, &batch?)?;
        }
        let Some(Sketch::Numeric(sketch)) = sketch.pop() else {
            return Ok(None);
        };
        let current: NumericDistribution = sketch.finish();
        if current.rows == 0 || quantiles.len() < 3 {
            return Ok(None);
        }
        let edges = &quantiles[1..quantiles.len() - 1];
        let counts: Vec<f64> = histogram.iter().map(|c| *c as f64).collect();
        let thresholds = config.thresholds_for("");
        Ok(Some(compare_prediction(
            edges,
            &counts,
            *mean,
            &current,
            &thresholds,
        )))
    }

    /// Writes the report under `_reports/` (and to `--report`); returns its URI.
    async fn keep_report(&self, manifest: &Manifest, report: &DriftReport) -> Result<String> {
        let html = render_html(report);
        if let Some(path) = &self.report_path {
            std::fs::write(path, &html).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        let location = StorePath::from_iter([
            "_reports",
            "drift",
            manifest.name.as_str(),
            &format!("{}.html", self.cx.run_id()),
        ]);
        let store = self.cx.lakehouse().store()?;
        store
            .put(&location, PutPayload::from(html.into_bytes()))
            .await
            .map_err(|e| Error::Storage {
                uri: location.to_string(),
                cause: e.to_string(),
            })?;
        Ok(format!(
            "{}/{location}",
            self.cx.lakehouse().root().as_str().trim_end_matches('/')
        ))
    }
}

impl IntoFuture for Drift {
    type Output = Result<DriftReport>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The predictions the output distribution is read from.
enum Outputs<'a> {
    /// The rows of `table` (at `version`, or any) the model scored into `scored`.
    ScoredFrom {
        scored: &'a TableName,
        table: &'a TableName,
        version: Option<u64>,
    },
    /// The online table itself at `version`, its rows passing `filter`.
    Online {
        table: &'a TableName,
        version: u64,
        filter: Option<&'a str>,
    },
}

/// Adds a batch's columns (in feature order) to the sketches.
fn add_batch(sketches: &mut [Sketch], batch: &RecordBatch) -> Result<()> {
    for (sketch, column) in sketches.iter_mut().zip(batch.columns()) {
        match sketch {
            Sketch::Numeric(sketch) => {
                let numbers = cast(column, &DataType::Float64)?;
                let numbers = numbers.as_primitive::<Float64Type>();
                for i in 0..numbers.len() {
                    sketch.add((!numbers.is_null(i)).then(|| numbers.value(i)));
                }
            }
            Sketch::Categorical(sketch) => {
                let texts = cast(column, &DataType::Utf8)?;
                let texts = texts.as_string::<i32>();
                for i in 0..texts.len() {
                    sketch.add((!texts.is_null(i)).then(|| texts.value(i)));
                }
            }
        }
    }
    Ok(())
}

/// Why a retrain is requested: enough drifted features, or drifted predictions.
fn retrain_reason(
    features: &[ColumnDrift],
    prediction: Option<&ColumnDrift>,
    config: &DriftConfig,
) -> Option<String> {
    let drifted: Vec<&str> = features
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.column.as_str())
        .collect();
    let share = drifted.len() as f64 / features.len().max(1) as f64;
    let mut reasons = Vec::new();
    if !drifted.is_empty() && share >= config.drift_share {
        reasons.push(format!(
            "{} of {} features drifted ({}), at least drift_share = {}",
            drifted.len(),
            features.len(),
            drifted.join(", "),
            config.drift_share
        ));
    }
    if prediction.is_some_and(|p| p.drifted) {
        reasons.push(String::from("the model's predictions drifted"));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

impl Report for DriftReport {
    fn data_moved(&self) -> DataMoved {
        DataMoved {
            tables_read: vec![
                format!("{}@{}", self.baseline.0, self.baseline.1),
                self.current.clone(),
            ],
            ..DataMoved::default()
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} of {} features drifted{}",
            self.drifted_features().len(),
            self.features.len(),
            if self.retrain_reason.is_some() {
                ", retraining requested"
            } else {
                ""
            }
        )
    }
}

impl fmt::Display for DriftReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} on {} against its training data {}@{}",
            self.model, self.current, self.baseline.0, self.baseline.1
        )?;
        writeln!(
            f,
            "{:<24} {:<12} {:<8}  metrics (drifted ones marked *)",
            "column", "type", "verdict"
        )?;
        for column in self.prediction.iter().chain(&self.features) {
            writeln!(f, "{column}")?;
        }
        match &self.retrain_reason {
            Some(reason) => writeln!(f, "retraining requested: {reason}")?,
            None => writeln!(f, "no retraining needed")?,
        }
        writeln!(f, "report: {}", self.report_uri)?;
        if let Some(path) = &self.report_path {
            writeln!(f, "        {}", path.display())?;
        }
        write!(
            f,
            "metrics: select * from monitoring.drift_metrics where run_id = '{}'",
            self.run_id
        )
    }
}

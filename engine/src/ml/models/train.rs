//! `lakescore train MODEL`: reads the training table at a pinned version, splits the rows,
//! learns the preprocessing and the model on the training rows, evaluates on the holdout,
//! profiles the data and registers a new version.

use std::collections::BTreeSet;
use std::fmt;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::compiled::{CompiledModel, RawOutput};
use super::dataset::{LabelColumn, is_holdout, read_dataset, unit_hash};
use super::features::{NumericEncoding, Preprocessor, RawColumn};
use super::learner::{Labels, TrainingData, train};
use super::metrics::{Metrics, classification, regression};
use super::parallel::{cores, map_in_order};
use super::profile::{self, ColumnProfile};
use super::registry::{ARTIFACT_FORMAT, Artifact, FeatureEntry, Manifest, Registry, RowCounts};
use crate::config::{Algorithm, FeatureKind, ModelConfig, Project};
use crate::error::{Error, Result};
use crate::run::{DataMoved, OperationFuture, Report, RunContext};
use crate::sql::session::Pins;
use crate::storage::lakehouse::TableName;

/// What a training run registered.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// The new version's manifest.
    pub manifest: Manifest,
    /// Whether the new version is the champion (the first version of a model is).
    pub champion: bool,
    /// How long training took.
    pub elapsed: Duration,
}

/// A training run: `cx.train(name).await` registers a new version.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Train {
    cx: RunContext,
    name: String,
}

impl RunContext {
    /// Trains `[[model]]` `name` and registers the new version.
    pub fn train(&self, name: impl Into<String>) -> Train {
        Train {
            cx: self.clone(),
            name: name.into(),
        }
    }
}

impl Train {
    async fn run(self) -> Result<TrainReport> {
        let started = Instant::now();
        let candidate = fit(&self.cx, &self.name, None).await?;
        let registry = Registry::new(self.cx.lakehouse().clone());
        let manifest = registry
            .register(candidate.manifest, &candidate.artifact)
            .await?;
        let aliases = registry.aliases(&manifest.name).await?;
        Ok(TrainReport {
            champion: aliases.current.get("champion") == Some(&manifest.version),
            manifest,
            elapsed: started.elapsed(),
        })
    }
}

/// Trains and evaluates a new version of `[[model]]` `name` without registering it;
/// `feedback` adds the rows of a feedback training set version, each training row counted
/// `weight` times.
pub(super) async fn fit(
    cx: &RunContext,
    name: &str,
    feedback: Option<&FeedbackRows>,
) -> Result<Candidate> {
    let config = model_config(cx.project(), name)?;
    let (table, pinned) = TableName::parse_at(&config.training_table)?;
    let version = match pinned {
        Some(version) => version,
        None => cx.lakehouse().latest_version(&table).await?,
    };
    let mut pins = Pins::from([(table.clone(), version)]);
    if let Some(rows) = feedback {
        pins.insert(rows.table.clone(), rows.version);
    }
    let session = crate::ml::sql_session(cx.lakehouse().clone())
        .functions(cx.project().config.functions.clone())
        .pins(pins)
        .build()
        .await?;
    let started = Instant::now();
    let mut dataset = read_dataset(&session, config, &table.quoted()).await?;
    tracing::debug!(table = %table, version, rows = dataset.keys.len(), elapsed = ?started.elapsed(), "read the training table");
    if dataset.keys.is_empty() {
        return Err(Error::Usage(format!(
            "model '{}': {table}@{version} has no rows with a label in '{}' to train on",
            config.name, config.label
        )));
    }
    let base_rows = dataset.keys.len();
    let mut copies = vec![1usize; base_rows];
    if let Some(rows) = feedback {
        let extra = read_dataset(&session, config, &rows.table.quoted()).await?;
        copies.extend((0..extra.keys.len()).map(|i| {
            let whole = rows.weight.trunc() as usize;
            let fraction = rows.weight.fract();
            let token = format!("{}#{i}", extra.keys[i]);
            whole + usize::from(unit_hash(config.seed, "feedback weight", &token) < fraction)
        }));
        dataset.append(extra);
    }
    let (classes, labels) = encode_labels(config, &dataset.labels)?;
    let positive = positive_class(config, &classes)?;
    let (train_rows, holdout_rows): (Vec<usize>, Vec<usize>) = (0..dataset.keys.len())
        .partition(|i| !is_holdout(config.seed, config.holdout, &dataset.keys[*i]));
    let train_rows: Vec<usize> = train_rows
        .into_iter()
        .flat_map(|i| std::iter::repeat_n(i, copies[i]))
        .collect();
    if train_rows.is_empty() {
        return Err(Error::Usage(format!(
            "model '{}': every row fell into the holdout; lower holdout = {}",
            config.name, config.holdout
        )));
    }
    let features: Vec<(String, FeatureKind)> = config
        .features
        .iter()
        .map(|(n, k)| (n.clone(), *k))
        .collect();
    let training_columns = select_rows(&dataset.features, &train_rows);
    let numbers = match config.algorithm {
        Algorithm::LogisticRegression
        | Algorithm::LinearRegression
        | Algorithm::RidgeRegression => NumericEncoding::Standardized,
        Algorithm::DecisionTree | Algorithm::RandomForest | Algorithm::GradientBoosting => {
            NumericEncoding::MissingKept
        }
    };
    let preprocessing =
        Preprocessor::fit(&features, &training_columns, numbers, config.max_categories);
    let width = preprocessing.encoded_names().len();
    let rows = dataset.keys.len();
    let started = Instant::now();
    let encoded = encode_rows(&preprocessing, &dataset.features, rows);
    let training_labels = select_labels(&labels, &train_rows);
    let mut training_values = Vec::with_capacity(train_rows.len() * width);
    for row in &train_rows {
        training_values.extend_from_slice(&encoded[row * width..(row + 1) * width]);
    }
    tracing::debug!(rows, width, elapsed = ?started.elapsed(), "encoded the rows");
    let started = Instant::now();
    let trained = train(
        config.algorithm,
        config.task,
        &config.params,
        config.seed,
        TrainingData {
            values: &training_values,
            rows: train_rows.len(),
            width,
            labels: &training_labels,
            classes: classes.len(),
        },
    )
    .map_err(|problem| Error::Usage(format!("model '{}': {problem}", config.name)))?;
    tracing::debug!(rows = train_rows.len(), elapsed = ?started.elapsed(), "fitted the model");
    let encoded_means = column_means(&training_values, width);
    drop(training_values);

    let started = Instant::now();
    let (evaluated_on, evaluated) = if holdout_rows.is_empty() {
        ("training", train_rows.clone())
    } else {
        ("holdout", holdout_rows.clone())
    };
    let evaluated_columns = select_rows(&dataset.features, &evaluated);
    // Every row read is scored once: the holdout's outputs are evaluated, and the table
    // version's (labeled or not) are the baseline of prediction drift, as scoring that
    // version would give.
    let outputs = score_every_row(&trained.compiled, &encoded, width, rows);
    let evaluated_outputs: Vec<RawOutput> =
        evaluated.iter().map(|row| outputs[*row].clone()).collect();
    let metrics = evaluate(
        &labels,
        &evaluated,
        &evaluated_outputs,
        classes.len(),
        positive,
    );
    let prediction = |output: &RawOutput| match &labels {
        Labels::Classes(_) => output.probabilities.get(positive).copied().unwrap_or(0.0),
        Labels::Values(_) => output.value,
    };
    let unlabeled_rows = dataset.rows_without_label as usize;
    let unlabeled = encode_rows(&preprocessing, &dataset.unlabeled, unlabeled_rows);
    let predictions: Vec<Option<f64>> = outputs[..base_rows]
        .iter()
        .chain(&score_every_row(
            &trained.compiled,
            &unlabeled,
            width,
            unlabeled_rows,
        ))
        .map(|output| Some(prediction(output)))
        .collect();
    tracing::debug!(elapsed = ?started.elapsed(), "evaluated and scored the table version");

    let manifest = Manifest {
        name: config.name.clone(),
        version: 0,
        task: config.task,
        algorithm: config.algorithm,
        params: trained.params,
        features: features
            .iter()
            .map(|(name, kind)| FeatureEntry {
                name: name.clone(),
                kind: *kind,
            })
            .collect(),
        encoded_features: preprocessing.encoded_names(),
        label: config.label.clone(),
        key: config.key.clone(),
        positive_class: (classes.len() == 2).then(|| classes[positive].clone()),
        classes: classes.clone(),
        training_table: table.to_string(),
        training_table_version: version,
        seed: config.seed,
        holdout: config.holdout,
        rows: RowCounts {
            table_rows: dataset.table_rows,
            rows_without_label: dataset.rows_without_label,
            sample_fraction: dataset.sample_fraction,
            training: train_rows.len() as u64,
            holdout: holdout_rows.len() as u64,
        },
        metrics,
        evaluated_on: evaluated_on.to_string(),
        feature_profiles: profiles(&features, &training_columns),
        prediction_profile: profile::numeric(&predictions),
        artifact_sha256: String::new(),
        artifact_bytes: 0,
        created_at: Utc::now(),
        run_id: cx.run_id().to_string(),
        retrain: None,
    };
    let artifact = Artifact {
        format: ARTIFACT_FORMAT,
        smartcore: trained.smartcore,
        preprocessing,
        compiled: trained.compiled,
        encoded_means,
    };
    let feedback_in = |rows: &[usize]| rows.iter().filter(|r| **r >= base_rows).count() as u64;
    Ok(Candidate {
        manifest,
        artifact,
        holdout: Holdout {
            columns: evaluated_columns,
            labels: select_labels(&labels, &evaluated),
            classes,
            positive,
            feedback_rows: feedback_in(&evaluated),
        },
        feedback_training_rows: feedback_in(&train_rows),
    })
}

/// A feedback training set version to train on, and how much each of its rows counts.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRows {
    /// `training.<model>_feedback`.
    pub table: TableName,
    /// The version read.
    pub version: u64,
    /// How many times each training row counts (fractions sample the remainder).
    pub weight: f64,
}

/// A trained, evaluated, unregistered version.
pub(super) struct Candidate {
    /// Its manifest (version 0 until registered).
    pub manifest: Manifest,
    /// Its artifact.
    pub artifact: Artifact,
    /// The rows it was evaluated on.
    pub holdout: Holdout,
    /// Feedback rows among the training rows, counting copies.
    pub feedback_training_rows: u64,
}

/// The evaluated rows: raw feature columns and labels, so another version can be
/// evaluated on exactly the same rows.
pub(super) struct Holdout {
    /// One column per feature.
    pub columns: Vec<RawColumn>,
    /// Class indexes (into `classes`) or values.
    pub labels: Labels,
    /// The classes.
    pub classes: Vec<String>,
    /// The positive class's index.
    pub positive: usize,
    /// How many of the rows came from feedback.
    pub feedback_rows: u64,
}

fn select_labels(labels: &Labels, rows: &[usize]) -> Labels {
    match labels {
        Labels::Classes(all) => Labels::Classes(rows.iter().map(|i| all[*i]).collect()),
        Labels::Values(all) => Labels::Values(rows.iter().map(|i| all[*i]).collect()),
    }
}

impl IntoFuture for Train {
    type Output = Result<TrainReport>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl Report for TrainReport {
    fn data_moved(&self) -> DataMoved {
        let manifest = &self.manifest;
        DataMoved {
            rows_read: manifest.rows.table_rows,
            tables_read: vec![format!(
                "{}@{}",
                manifest.training_table, manifest.training_table_version
            )],
            ..DataMoved::default()
        }
    }

    fn summary(&self) -> String {
        let manifest = &self.manifest;
        format!(
            "registered {}:{} trained on {} rows",
            manifest.name, manifest.version, manifest.rows.training
        )
    }
}

impl fmt::Display for TrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let manifest = &self.manifest;
        writeln!(
            f,
            "{}:{} trained on {}@{} ({} rows, {} held out) with {} in {:.1}s{}",
            manifest.name,
            manifest.version,
            manifest.training_table,
            manifest.training_table_version,
            manifest.rows.training,
            manifest.rows.holdout,
            manifest.algorithm.as_str(),
            self.elapsed.as_secs_f64(),
            if self.champion { ", now champion" } else { "" }
        )?;
        if manifest.rows.sample_fraction < 1.0 {
            writeln!(
                f,
                "  sampled {:.1}% of {} rows (max_training_rows), by key hash with seed {}",
                manifest.rows.sample_fraction * 100.0,
                manifest.rows.table_rows,
                manifest.seed
            )?;
        }
        if manifest.rows.rows_without_label > 0 {
            writeln!(
                f,
                "  {} rows without a label were not used",
                manifest.rows.rows_without_label
            )?;
        }
        writeln!(
            f,
            "  {} metrics: {}",
            manifest.evaluated_on,
            manifest.metrics.headline()
        )?;
        write!(f, "  artifact sha256 {}", manifest.artifact_sha256)?;
        if !self.champion {
            write!(
                f,
                "\n  promote it with: lakescore models promote {} {} --alias champion",
                manifest.name, manifest.version
            )?;
        }
        Ok(())
    }
}

/// The `[[model]]` named `name`.
pub fn model_config<'a>(project: &'a Project, name: &str) -> Result<&'a ModelConfig> {
    project
        .config
        .models
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = project
                .config
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            Error::Usage(if known.is_empty() {
                format!("unknown model '{name}': the project declares no [[model]]")
            } else {
                format!(
                    "unknown model '{name}': the project declares {}",
                    known.join(", ")
                )
            })
        })
}

/// Classes in sort order and each row's label as a class index or value.
fn encode_labels(config: &ModelConfig, labels: &LabelColumn) -> Result<(Vec<String>, Labels)> {
    match labels {
        LabelColumn::Texts(texts) => {
            let classes: Vec<String> = texts
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if classes.len() < 2 {
                return Err(Error::Usage(format!(
                    "model '{}': the label '{}' has only {} distinct value(s); classification needs at least two",
                    config.name,
                    config.label,
                    classes.len()
                )));
            }
            let indexes = texts
                .iter()
                .map(|t| classes.binary_search(t).map_or(0, |i| i as i32))
                .collect();
            Ok((classes, Labels::Classes(indexes)))
        }
        LabelColumn::Numbers(values) => Ok((Vec::new(), Labels::Values(values.clone()))),
    }
}

/// The positive class: the configured one, else one spelled true/1/yes, else the last.
fn positive_class(config: &ModelConfig, classes: &[String]) -> Result<usize> {
    if classes.is_empty() {
        return Ok(0);
    }
    if let Some(wanted) = &config.positive_class {
        return classes.iter().position(|c| c == wanted).ok_or_else(|| {
            Error::Usage(format!(
                "model '{}': positive_class '{wanted}' is not among the label's values {}",
                config.name,
                classes.join(", ")
            ))
        });
    }
    Ok(classes
        .iter()
        .position(|c| matches!(c.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        .unwrap_or(classes.len() - 1))
}

/// Rows per piece of work when encoding or scoring on every core.
const ROWS_PER_TASK: usize = 16_384;

/// Every row of `columns`, encoded, row-major; on every core.
fn encode_rows(preprocessing: &Preprocessor, columns: &[RawColumn], rows: usize) -> Vec<f64> {
    let pieces = map_in_order(rows.div_ceil(ROWS_PER_TASK), cores(), |piece| {
        let end = ((piece + 1) * ROWS_PER_TASK).min(rows);
        let mut values = Vec::new();
        let mut row_values = Vec::new();
        for row in piece * ROWS_PER_TASK..end {
            preprocessing.encode_row(columns, row, &mut row_values);
            values.extend_from_slice(&row_values);
        }
        values
    });
    pieces.concat()
}

/// What `model` says about each of the `rows` rows of the encoded `values` (`width` each),
/// in order; on every core.
fn score_every_row(
    model: &CompiledModel,
    values: &[f64],
    width: usize,
    rows: usize,
) -> Vec<RawOutput> {
    let pieces = map_in_order(rows.div_ceil(ROWS_PER_TASK), cores(), |piece| {
        let end = ((piece + 1) * ROWS_PER_TASK).min(rows);
        (piece * ROWS_PER_TASK..end)
            .map(|row| model.score(&values[row * width..(row + 1) * width]))
            .collect::<Vec<_>>()
    });
    pieces.concat()
}

/// Each encoded column's mean over the rows where it is not missing.
fn column_means(values: &[f64], width: usize) -> Vec<f64> {
    let mut sums = vec![0.0; width];
    let mut counts = vec![0.0; width];
    for row in values.chunks(width.max(1)) {
        for ((sum, count), value) in sums.iter_mut().zip(&mut counts).zip(row) {
            if !value.is_nan() {
                *sum += value;
                *count += 1.0;
            }
        }
    }
    sums.iter()
        .zip(&counts)
        .map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 })
        .collect()
}

fn select_rows(columns: &[RawColumn], rows: &[usize]) -> Vec<RawColumn> {
    columns
        .iter()
        .map(|column| match column {
            RawColumn::Numbers(values) => {
                RawColumn::Numbers(rows.iter().map(|r| values[*r]).collect())
            }
            RawColumn::Texts(values) => {
                RawColumn::Texts(rows.iter().map(|r| values[*r].clone()).collect())
            }
        })
        .collect()
}

/// Metrics of the outputs for the evaluated rows.
pub(super) fn evaluate(
    labels: &Labels,
    rows: &[usize],
    outputs: &[RawOutput],
    classes: usize,
    positive: usize,
) -> Metrics {
    match labels {
        Labels::Classes(all) => {
            let actual: Vec<usize> = rows.iter().map(|r| all[*r] as usize).collect();
            let probabilities: Vec<Vec<f64>> =
                outputs.iter().map(|o| o.probabilities.clone()).collect();
            classification(&probabilities, &actual, classes, positive)
        }
        Labels::Values(all) => {
            let actual: Vec<f64> = rows.iter().map(|r| all[*r]).collect();
            let predicted: Vec<f64> = outputs.iter().map(|o| o.value).collect();
            regression(&predicted, &actual)
        }
    }
}

fn profiles(
    features: &[(String, FeatureKind)],
    columns: &[RawColumn],
) -> Vec<(String, ColumnProfile)> {
    features
        .iter()
        .zip(columns)
        .map(|((name, kind), column)| {
            (
                name.clone(),
                profile::column(column, *kind == FeatureKind::Boolean),
            )
        })
        .collect()
}

//! `lakescore retrain MODEL`: trains a challenger on the training table plus the
//! feedback training set, evaluates it and the champion on the same holdout rows (chosen
//! by the model's seed from both tables, so recent feedback is evaluated too), and
//! promotes the challenger only when it beats the champion by `[model.retrain]
//! min_improvement` on the configured metric. The decision, both metric sets and the
//! data versions are kept in the new version's manifest (and `ops.model_versions`), and
//! the retrain requests pending when the run started are marked done.

use std::fmt;
use std::future::IntoFuture;

use super::compiled::RawOutput;
use super::features::RawColumn;
use super::learner::Labels;
use super::metrics::Metrics;
use super::registry::{LoadedModel, Manifest, ModelRef, Registry, RetrainRecord};
use super::train::{FeedbackRows, Holdout, evaluate, fit, model_config};
use crate::error::{Error, Result};
use crate::ml::retrain_requests::{pending, resolve};
use crate::run::{DataMoved, OperationFuture, Report, RunContext};
use crate::storage::system_tables::feedback_training_table;

/// What a retrain did.
#[derive(Debug, Clone, PartialEq)]
pub enum RetrainOutcome {
    /// Nothing: the run only retrains on request and none was pending.
    NotRequested {
        /// The model.
        model: String,
    },
    /// A challenger was trained, compared and registered.
    Trained {
        /// The new version, with its comparison in `retrain`.
        challenger: Box<Manifest>,
    },
}

/// A retrain: `cx.retrain(name).await`.
#[must_use = "an operation does nothing until it is awaited"]
pub struct Retrain {
    cx: RunContext,
    name: String,
    only_if_requested: bool,
}

impl RunContext {
    /// Retrains `[[model]]` `name`.
    pub fn retrain(&self, name: impl Into<String>) -> Retrain {
        Retrain {
            cx: self.clone(),
            name: name.into(),
            only_if_requested: false,
        }
    }
}

impl Retrain {
    /// Retrains only when a request is pending in `monitoring.retrain_requests`.
    pub fn with_only_if_requested(mut self, only: bool) -> Self {
        self.only_if_requested = only;
        self
    }

    async fn run(self) -> Result<RetrainOutcome> {
        let config = model_config(self.cx.project(), &self.name)?;
        let lakehouse = self.cx.lakehouse();
        let requests = pending(lakehouse, &config.name).await?;
        if self.only_if_requested && requests.is_empty() {
            return Ok(RetrainOutcome::NotRequested {
                model: config.name.clone(),
            });
        }
        let registry = Registry::new(lakehouse.clone());
        let champion = registry.resolve(&ModelRef::parse(&config.name)?).await?;
        let champion = registry.load(champion).await?;
        let configured: Vec<&str> = config.features.keys().map(String::as_str).collect();
        let trained_on: Vec<&str> = champion
            .manifest
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        if configured != trained_on {
            return Err(Error::Usage(format!(
                "model '{}': the champion {}:{} reads the features ({}) but [[model]] now declares ({}); a retrain compares both on the same rows, so train the new feature set with `lakescore train {}` and promote it with `lakescore models promote` when it is better",
                config.name,
                config.name,
                champion.manifest.version,
                trained_on.join(", "),
                configured.join(", "),
                config.name
            )));
        }
        let feedback_table = feedback_training_table(&config.name);
        let feedback = lakehouse
            .latest_version_if_exists(&feedback_table)
            .await?
            .map(|version| FeedbackRows {
                table: feedback_table,
                version,
                weight: config.retrain.feedback_weight,
            });
        let candidate = fit(&self.cx, &config.name, feedback.as_ref()).await?;
        let champion_metrics = evaluate_on(&champion, &candidate.holdout)?;
        let (metric, higher_is_better) = config.retrain.metric_for(config.task);
        let value_of = |metrics: &Metrics, whose: &str| {
            metrics.get(&metric).ok_or_else(|| {
                Error::Usage(format!(
                    "model '{}': the {whose}'s evaluation has no metric '{metric}'",
                    config.name
                ))
            })
        };
        let champion_value = value_of(&champion_metrics, "champion")?;
        let challenger_value = value_of(&candidate.manifest.metrics, "challenger")?;
        let improvement = if higher_is_better {
            challenger_value - champion_value
        } else {
            champion_value - challenger_value
        };
        let margin = config.retrain.min_improvement;
        let promoted = improvement > 0.0 && improvement >= margin;
        let comparison = format!(
            "{metric} {challenger_value:.4} vs champion {}:{} {champion_value:.4} on {} holdout rows ({} from feedback)",
            config.name,
            champion.manifest.version,
            candidate.holdout.columns.first().map_or(0, RawColumn::len),
            candidate.holdout.feedback_rows
        );
        let reason = if promoted {
            format!("promoted: {comparison}, better by {improvement:.4} (min_improvement {margin})")
        } else {
            format!(
                "kept as challenger: {comparison}; {} (min_improvement {margin})",
                if improvement > 0.0 {
                    format!("better by only {improvement:.4}")
                } else {
                    String::from("not better")
                }
            )
        };
        let mut manifest = candidate.manifest;
        manifest.retrain = Some(RetrainRecord {
            champion_version: champion.manifest.version,
            champion_metrics,
            metric,
            champion_value,
            challenger_value,
            min_improvement: margin,
            promoted,
            reason: reason.clone(),
            feedback_training_table: feedback.as_ref().map(|f| f.table.to_string()),
            feedback_training_version: feedback.as_ref().map(|f| f.version),
            feedback_training_rows: candidate.feedback_training_rows,
            feedback_holdout_rows: candidate.holdout.feedback_rows,
            feedback_weight: config.retrain.feedback_weight,
            requests: requests.clone(),
        });
        let challenger = registry.register(manifest, &candidate.artifact).await?;
        crate::fault::check("retrain-promote")?;
        let alias = if promoted { "champion" } else { "challenger" };
        registry
            .move_alias(&challenger.name, alias, challenger.version, &reason)
            .await?;
        let outcome = format!("{}:{} {reason}", challenger.name, challenger.version);
        resolve(
            lakehouse,
            &config.name,
            &requests,
            &outcome,
            self.cx.run_id(),
        )
        .await?;
        Ok(RetrainOutcome::Trained {
            challenger: Box::new(challenger),
        })
    }
}

impl IntoFuture for Retrain {
    type Output = Result<RetrainOutcome>;
    type IntoFuture = OperationFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl Report for RetrainOutcome {
    fn data_moved(&self) -> DataMoved {
        let RetrainOutcome::Trained { challenger } = self else {
            return DataMoved::default();
        };
        let record = challenger.retrain.as_ref();
        DataMoved {
            rows_read: challenger.rows.table_rows
                + record.map_or(0, |r| r.feedback_training_rows + r.feedback_holdout_rows),
            tables_read: std::iter::once(format!(
                "{}@{}",
                challenger.training_table, challenger.training_table_version
            ))
            .chain(record.and_then(|r| {
                Some(format!(
                    "{}@{}",
                    r.feedback_training_table.as_ref()?,
                    r.feedback_training_version?
                ))
            }))
            .collect(),
            ..DataMoved::default()
        }
    }

    fn summary(&self) -> String {
        match self {
            RetrainOutcome::NotRequested { model } => {
                format!("no retrain request for {model} is pending")
            }
            RetrainOutcome::Trained { challenger } => format!(
                "{}:{} {}",
                challenger.name,
                challenger.version,
                challenger
                    .retrain
                    .as_ref()
                    .map_or("", |r| r.reason.as_str())
            ),
        }
    }
}

impl fmt::Display for RetrainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let challenger = match self {
            RetrainOutcome::NotRequested { model } => {
                return write!(f, "{model}: no retrain request is pending; nothing to do");
            }
            RetrainOutcome::Trained { challenger } => challenger,
        };
        let Some(record) = &challenger.retrain else {
            return write!(f, "{}:{} trained", challenger.name, challenger.version);
        };
        writeln!(
            f,
            "{}:{} trained on {}@{} plus {} feedback rows{}",
            challenger.name,
            challenger.version,
            challenger.training_table,
            challenger.training_table_version,
            record.feedback_training_rows,
            match (
                &record.feedback_training_table,
                record.feedback_training_version
            ) {
                (Some(table), Some(version)) => format!(" from {table}@{version}"),
                _ => String::new(),
            }
        )?;
        writeln!(f, "{}", record.reason)?;
        if !record.requests.is_empty() {
            writeln!(
                f,
                "resolved retrain requests: {}",
                record.requests.join(", ")
            )?;
        }
        write!(f, "compare: lakescore models show {}", challenger.name)
    }
}

/// `model`'s metrics on the holdout rows, its classes matched to the holdout's by name.
fn evaluate_on(model: &LoadedModel, holdout: &Holdout) -> Result<Metrics> {
    let rows = holdout.columns.first().map_or(0, RawColumn::len);
    let preprocessing = &model.artifact.preprocessing;
    let width = preprocessing.encoded_names().len();
    let mut encoded = Vec::with_capacity(width);
    let outputs: Vec<RawOutput> = (0..rows)
        .map(|row| {
            preprocessing.encode_row(&holdout.columns, row, &mut encoded);
            model.artifact.compiled.score(&encoded)
        })
        .collect();
    let manifest = &model.manifest;
    let labels = match &holdout.labels {
        Labels::Values(values) => Labels::Values(values.clone()),
        Labels::Classes(indexes) => {
            let mut mapped = Vec::with_capacity(indexes.len());
            for index in indexes {
                let class = &holdout.classes[*index as usize];
                let position = manifest.classes.iter().position(|c| c == class).ok_or_else(|| {
                    Error::Usage(format!(
                        "model '{}': the holdout has class '{class}', which the champion {}:{} never saw ({}); it cannot be compared",
                        manifest.name,
                        manifest.name,
                        manifest.version,
                        manifest.classes.join(", ")
                    ))
                })?;
                mapped.push(position as i32);
            }
            Labels::Classes(mapped)
        }
    };
    let positive = manifest
        .positive_class
        .as_ref()
        .and_then(|p| manifest.classes.iter().position(|c| c == p))
        .unwrap_or(holdout.positive);
    let all: Vec<usize> = (0..rows).collect();
    Ok(evaluate(
        &labels,
        &all,
        &outputs,
        manifest.classes.len(),
        positive,
    ))
}

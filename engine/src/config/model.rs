//! `[[model]]` entries of the project file: what a machine-learning model learns from,
//! which features it reads and how it is trained.

use indexmap::IndexMap;
use serde::Deserialize;

/// One `[[model]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's name, used by `lakescore train NAME` and `predict('NAME', ...)`.
    pub name: String,
    /// What the model predicts, for people: the description of its scored table.
    pub description: Option<String>,
    /// What it predicts.
    pub task: Task,
    /// The learning algorithm.
    pub algorithm: Algorithm,
    /// The algorithm's settings (docs/src/models.md lists each algorithm's keys).
    #[serde(default)]
    pub params: toml::Table,
    /// The table it learns from, `schema.name`, optionally pinned as `schema.name@VERSION`.
    pub training_table: String,
    /// The column holding the value to predict.
    pub label: String,
    /// The class that counts as positive for binary classification metrics (default: a
    /// class spelled `true`, `1` or `yes`, else the last class in sort order).
    pub positive_class: Option<String>,
    /// Entity id columns, carried into every prediction.
    #[serde(default)]
    pub key: Vec<String>,
    /// The features, in order, with their kind.
    pub features: IndexMap<String, FeatureKind>,
    /// Share of the rows held out for evaluation, chosen by a hash of the key and the seed.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Seed of the split, the sampling and the algorithm.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Most rows trained on; larger tables are sampled by key hash (recorded in the manifest).
    #[serde(default = "default_max_training_rows")]
    pub max_training_rows: u64,
    /// Most categories one-hot encoded per categorical feature; rarer values share the
    /// "other" bucket with values never seen in training.
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
    /// `[model.drift]`: drift bins, thresholds and the retrain rule.
    #[serde(default)]
    pub drift: super::DriftConfig,
    /// `[model.feedback]`: where corrections come from and how they resolve.
    #[serde(default)]
    pub feedback: super::FeedbackConfig,
    /// `[model.retrain]`: when a retrained challenger is promoted.
    #[serde(default)]
    pub retrain: super::RetrainConfig,
    /// `[model.monitoring]`: realized-metric windows and the floors that request retraining.
    #[serde(default)]
    pub monitoring: super::MonitoringConfig,
    /// `[model.online]`: how the HTTP API finds a row's features from its key.
    pub online: Option<OnlineConfig>,
}

/// `[model.online]` of a `[[model]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineConfig {
    /// The table holding each key's current features (`schema.name`), held in memory by
    /// `lakescore serve` and refreshed when a new version is committed.
    pub features: String,
}

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A class (the label's distinct values).
    Classification,
    /// A number.
    Regression,
}

/// Learning algorithms (smartcore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Logistic regression (classification).
    LogisticRegression,
    /// Ordinary least squares (regression).
    LinearRegression,
    /// L2-regularized least squares (regression).
    RidgeRegression,
    /// One CART tree (classification or regression).
    DecisionTree,
    /// A random forest (classification or regression).
    RandomForest,
    /// Gradient-boosted trees (classification or regression).
    GradientBoosting,
}

impl Task {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

impl Algorithm {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::LogisticRegression => "logistic_regression",
            Algorithm::LinearRegression => "linear_regression",
            Algorithm::RidgeRegression => "ridge_regression",
            Algorithm::DecisionTree => "decision_tree",
            Algorithm::RandomForest => "random_forest",
            Algorithm::GradientBoosting => "gradient_boosting",
        }
    }

    /// True when the algorithm can learn `task`.
    pub fn supports(self, task: Task) -> bool {
        match self {
            Algorithm::LogisticRegression => task == Task::Classification,
            Algorithm::LinearRegression | Algorithm::RidgeRegression => task == Task::Regression,
            Algorithm::DecisionTree | Algorithm::RandomForest | Algorithm::GradientBoosting => true,
        }
    }
}

/// How a feature column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// A number; missing values are imputed with the training mean.
    Numeric,
    /// Text categories, one-hot encoded.
    Categorical,
    /// True or false; missing values are imputed with the training majority.
    Boolean,
}

fn default_holdout() -> f64 {
    0.2
}

fn default_seed() -> u64 {
    42
}

fn default_max_training_rows() -> u64 {
    1_000_000
}

fn default_max_categories() -> usize {
    50
}

impl ModelConfig {
    /// Checks the settings that serde cannot: task and algorithm fit, fractions, names.
    pub fn check(&self) -> Result<(), String> {
        let problem = if !self.algorithm.supports(self.task) {
            Some(format!(
                "algorithm \"{}\" cannot learn task \"{}\"",
                self.algorithm.as_str(),
                self.task.as_str()
            ))
        } else if !(0.0..1.0).contains(&self.holdout) {
            Some(format!(
                "holdout = {} must be at least 0 and below 1",
                self.holdout
            ))
        } else if self.features.is_empty() {
            Some(String::from("[model.features] needs at least one feature"))
        } else if self.features.contains_key(&self.label) {
            Some(format!(
                "the label '{}' cannot also be a feature",
                self.label
            ))
        } else if self.max_training_rows == 0 {
            Some(String::from("max_training_rows must be positive"))
        } else if self.online.is_some() && self.key.is_empty() {
            Some(String::from(
                "[model.online] features looks rows up by the model's key: set key = [\"...\"]",
            ))
        } else {
            self.drift
                .check(&self.features)
                .and_then(|()| {
                    super::feedback::check_feedback_settings(
                        self.task,
                        &self.retrain,
                        &self.monitoring,
                    )
                })
                .err()
        };
        match problem {
            Some(problem) => Err(format!("[[model]] '{}': {problem}", self.name)),
            None => Ok(()),
        }
    }
}

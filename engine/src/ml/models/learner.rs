//! Training: one function per algorithm family, each returning lakescore's compiled view
//! of the model and, for the algorithms smartcore trains (linear and ridge regression),
//! smartcore's serialized model.
//!
//! Logistic regression ([`super::logistic`]) and the tree models ([`super::trees`]:
//! `decision_tree`, `random_forest`, `gradient_boosting`) are lakescore's own learners and
//! use every core; the result does not depend on how many there are.
//!
//! `params` from the project file are laid over the algorithm's defaults; a key the
//! algorithm does not have is an error listing the ones it has. The `seed` key, when the
//! algorithm has one, defaults to the model's seed, and ridge regression's `normalize`
//! defaults to false because lakescore's preprocessing already standardizes.

use super::compiled::CompiledModel;
use super::logistic::{LogisticParameters, Problem};
use super::trees::bins::BinnedColumns;
use super::trees::boosting::{BoostingParameters, train_boosting};
use super::trees::forest::{ForestParameters, TreeParameters, train_forest};
use crate::config::{Algorithm, Task};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};

/// A trained model: the compiled view and, when smartcore trained it, its serialized form.
pub struct Trained {
    /// The smartcore model (null for lakescore's own learners).
    pub smartcore: Value,
    /// The compiled view used to score.
    pub compiled: CompiledModel,
    /// The parameters used, defaults included.
    pub params: Value,
}

/// What training needs: encoded rows (row-major), labels, and settings.
pub struct TrainingData<'a> {
    /// Encoded feature values, `rows × width`, row after row.
    pub values: &'a [f64],
    /// Rows.
    pub rows: usize,
    /// Encoded width.
    pub width: usize,
    /// Class indexes (classification) or values (regression).
    pub labels: &'a Labels,
    /// Classes of a classifier.
    pub classes: usize,
}

/// Training labels.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Class indexes.
    Classes(Vec<i32>),
    /// Values.
    Values(Vec<f64>),
}

/// Trains `algorithm` for `task` on `data`.
pub fn train(
    algorithm: Algorithm,
    task: Task,
    params: &toml::Table,
    seed: u64,
    data: TrainingData<'_>,
) -> Result<Trained, String> {
    let threads = super::parallel::cores();
    let own = |compiled: CompiledModel, params: Value| Trained {
        smartcore: Value::Null,
        compiled,
        params,
    };
    match (algorithm, task, data.labels) {
        (Algorithm::LogisticRegression, _, Labels::Classes(classes)) => {
            let params: LogisticParameters = own_params(params, seed, algorithm)?;
            let problem = Problem {
                values: data.values,
                width: data.width,
                classes,
                class_count: data.classes,
            };
            let compiled = super::logistic::fit(&problem, &params, threads);
            Ok(own(compiled, to_value(&params)?))
        }
        (Algorithm::DecisionTree | Algorithm::RandomForest, _, labels) => {
            let (forest, shown) = if algorithm == Algorithm::DecisionTree {
                let params: TreeParameters = own_params(params, seed, algorithm)?;
                (ForestParameters::from(&params), to_value(&params)?)
            } else {
                let params: ForestParameters = own_params(params, seed, algorithm)?;
                let shown = to_value(&params)?;
                (params, shown)
            };
            let binned = BinnedColumns::new(data.values, data.rows, data.width);
            let classes = class_count(task, data.classes);
            let compiled = train_forest(&binned, labels, classes, &forest, threads);
            Ok(own(compiled, shown))
        }
        (Algorithm::GradientBoosting, _, labels) => {
            let params: BoostingParameters = own_params(params, seed, algorithm)?;
            let binned = BinnedColumns::new(data.values, data.rows, data.width);
            let classes = class_count(task, data.classes);
            let compiled = train_boosting(data.values, &binned, labels, classes, &params, threads);
            Ok(own(compiled, to_value(&params)?))
        }
        (Algorithm::LinearRegression | Algorithm::RidgeRegression, _, Labels::Values(y)) => {
            train_smartcore_linear(algorithm, params, seed, &data, y)
        }
        _ => Err(format!(
            "algorithm {} does not fit these labels",
            algorithm.as_str()
        )),
    }
}

/// Classes a tree model predicts: 0 for regression.
fn class_count(task: Task, classes: usize) -> usize {
    match task {
        Task::Classification => classes,
        Task::Regression => 0,
    }
}

fn to_value<P: Serialize>(params: &P) -> Result<Value, String> {
    serde_json::to_value(params).map_err(|e| e.to_string())
}

/// Linear or ridge regression with smartcore.
fn train_smartcore_linear(
    algorithm: Algorithm,
    params: &toml::Table,
    seed: u64,
    data: &TrainingData<'_>,
    y: &Vec<f64>,
) -> Result<Trained, String> {
    let check = Check {
        values: data.values,
        width: data.width,
    };
    let x = DenseMatrix::new(data.rows, data.width, data.values.to_vec(), false)
        .map_err(|e| e.to_string())?;
    if algorithm == Algorithm::LinearRegression {
        let params: LinearRegressionParameters = merge_params(params, seed, algorithm)?;
        let model = LinearRegression::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
        let compiled = linear_view(model.coefficients(), *model.intercept());
        finish(&check, &model, compiled, &params, |m| m.predict(&x))
    } else {
        let params: RidgeRegressionParameters<f64> = merge_params(params, seed, algorithm)?;
        let model = RidgeRegression::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
        let compiled = linear_view(model.coefficients(), *model.intercept());
        finish(&check, &model, compiled, &params, |m| m.predict(&x))
    }
}

/// The training rows, to check the compiled view against smartcore.
struct Check<'a> {
    values: &'a [f64],
    width: usize,
}

/// Serializes the model and checks that the compiled view predicts what smartcore does
/// on every training row.
fn finish<M: Serialize, P: Serialize>(
    check: &Check<'_>,
    model: &M,
    compiled: CompiledModel,
    params: &P,
    smartcore_predictions: impl Fn(&M) -> Result<Vec<f64>, smartcore::error::Failed>,
) -> Result<Trained, String> {
    let smartcore = serde_json::to_value(model).map_err(|e| e.to_string())?;
    let params = to_value(params)?;
    let expected = smartcore_predictions(model).map_err(|e| e.to_string())?;
    let rows = check.values.chunks(check.width.max(1));
    for (index, (row, want)) in rows.zip(&expected).enumerate() {
        let got = compiled.score(row).value;
        if (got - want).abs() > 1e-6 * (1.0 + want.abs()) {
            return Err(format!(
                "lakescore's compiled view of the model predicts {got} for training row {index} where smartcore predicts {want}; the model was not registered"
            ));
        }
    }
    Ok(Trained {
        smartcore,
        compiled,
        params,
    })
}

fn linear_view(coefficients: &DenseMatrix<f64>, intercept: f64) -> CompiledModel {
    let (rows, columns) = coefficients.shape();
    let weights = if columns == 1 {
        (0..rows).map(|i| *coefficients.get((i, 0))).collect()
    } else {
        (0..columns).map(|j| *coefficients.get((0, j))).collect()
    };
    CompiledModel::Linear {
        weights,
        intercept,
        logistic: false,
    }
}

/// Parameters of lakescore's own learners, which name a setting out of range.
pub trait Checked {
    /// The first setting out of range, as a sentence.
    fn problem(&self) -> Option<String>;
}

/// [`merge_params`] for lakescore's own learners: also refuses settings out of range.
fn own_params<P: Default + Serialize + DeserializeOwned + Checked>(
    params: &toml::Table,
    seed: u64,
    algorithm: Algorithm,
) -> Result<P, String> {
    let merged: P = merge_params(params, seed, algorithm)?;
    match merged.problem() {
        Some(problem) => Err(format!("params: {problem}")),
        None => Ok(merged),
    }
}

/// The algorithm's default parameters with the project's `params` laid over them.
fn merge_params<P: Default + Serialize + DeserializeOwned>(
    params: &toml::Table,
    seed: u64,
    algorithm: Algorithm,
) -> Result<P, String> {
    let mut merged = serde_json::to_value(P::default()).map_err(|e| e.to_string())?;
    let Value::Object(fields) = &mut merged else {
        return Err(String::from("algorithm parameters are not a table"));
    };
    if fields.contains_key("seed") {
        fields.insert(String::from("seed"), Value::from(seed));
    }
    // lakescore standardizes numeric features itself; smartcore's own rescaling would
    // refuse the constant one-hot columns an unseen-category bucket often is.
    if fields.contains_key("normalize") {
        fields.insert(String::from("normalize"), Value::Bool(false));
    }
    for (key, value) in params {
        if !fields.contains_key(key) {
            let known: Vec<&str> = fields.keys().map(String::as_str).collect();
            return Err(format!(
                "params: {} has no parameter '{key}'; it has {}",
                algorithm.as_str(),
                known.join(", ")
            ));
        }
        if let toml::Value::Float(number) = value
            && !number.is_finite()
        {
            return Err(format!("params: {key} = {number} is not a finite number"));
        }
        let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
        fields.insert(key.clone(), value);
    }
    serde_json::from_value(merged).map_err(|e| format!("params: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(algorithm: Algorithm, params: &str) -> String {
        let params: toml::Table = toml::from_str(params).unwrap();
        let labels = Labels::Classes(vec![0, 1, 0, 1]);
        let data = TrainingData {
            values: &[0.0, 1.0, 2.0, 3.0],
            rows: 4,
            width: 1,
            labels: &labels,
            classes: 2,
        };
        match train(algorithm, Task::Classification, &params, 1, data) {
            Ok(_) => panic!("{params:?} was accepted"),
            Err(problem) => problem,
        }
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        for (algorithm, setting, refused) in [
            (
                Algorithm::RandomForest,
                "m = 0",
                "params: m (columns tried per split) must be at least 1; leave it out for the default",
            ),
            (
                Algorithm::RandomForest,
                "n_trees = 0",
                "params: n_trees must be at least 1",
            ),
            (
                Algorithm::LogisticRegression,
                "alpha = -1.0",
                "params: alpha must be 0 or more, not -1",
            ),
            (
                Algorithm::LogisticRegression,
                "tolerance = nan",
                "params: tolerance = NaN is not a finite number",
            ),
            (
                Algorithm::GradientBoosting,
                "learning_rate = inf",
                "params: learning_rate = inf is not a finite number",
            ),
            (
                Algorithm::GradientBoosting,
                "subsample = 0.0",
                "params: subsample must be in (0, 1], not 0",
            ),
        ] {
            assert_eq!(refusal(algorithm, setting), refused, "{setting}");
        }
        assert!(
            refusal(Algorithm::GradientBoosting, "max_leaves = -3").starts_with("params: "),
            "a negative count is not a count"
        );
    }
}

//! Training with smartcore: one function per algorithm family, each returning the
//! serialized smartcore model (the artifact) and lakescore's compiled view of it.
//!
//! `params` from the project file are laid over the algorithm's defaults; a key the
//! algorithm does not have is an error listing the ones it has. The `seed` key, when the
//! algorithm has one, defaults to the model's seed, and ridge regression's `normalize`
//! defaults to false because lakescore's preprocessing already standardizes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};
use smartcore::xgboost::xgb_regressor::{XGRegressor, XGRegressorParameters};

use super::compiled::{CompiledModel, Tree};
use crate::config::{Algorithm, Task};

/// A trained model: smartcore's serialized form and the compiled view.
pub struct Trained {
    /// The smartcore model as JSON: the artifact stored in the registry.
    pub artifact: String,
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
    let check = Check {
        values: data.values,
        width: data.width,
    };
    let x = DenseMatrix::new(data.rows, data.width, data.values.to_vec(), false)
        .map_err(|e| e.to_string())?;
    match (algorithm, task, data.labels) {
        (Algorithm::LogisticRegression, _, Labels::Classes(y)) => {
            let params: LogisticRegressionParameters<f64> = merge_params(params, seed, algorithm)?;
            let model =
                LogisticRegression::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let coefficients = model.coefficients();
            let intercept = model.intercept();
            let (k, width) = coefficients.shape();
            let compiled = if data.classes == 2 {
                CompiledModel::Linear {
                    weights: (0..width).map(|j| *coefficients.get((0, j))).collect(),
                    intercept: *intercept.get((0, 0)),
                    logistic: true,
                }
            } else {
                CompiledModel::Softmax {
                    weights: (0..k)
                        .map(|c| (0..width).map(|j| *coefficients.get((c, j))).collect())
                        .collect(),
                    intercepts: (0..k).map(|c| *intercept.get((c, 0))).collect(),
                }
            };
            finish(&check, &model, compiled, &params, |m| {
                m.predict(&x).map(|p| p.iter().map(|c| *c as f64).collect())
            })
        }
        (Algorithm::LinearRegression, _, Labels::Values(y)) => {
            let params: LinearRegressionParameters = merge_params(params, seed, algorithm)?;
            let model = LinearRegression::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let compiled = linear_view(model.coefficients(), *model.intercept());
            finish(&check, &model, compiled, &params, |m| m.predict(&x))
        }
        (Algorithm::RidgeRegression, _, Labels::Values(y)) => {
            let params: RidgeRegressionParameters<f64> = merge_params(params, seed, algorithm)?;
            let model = RidgeRegression::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let compiled = linear_view(model.coefficients(), *model.intercept());
            finish(&check, &model, compiled, &params, |m| m.predict(&x))
        }
        (Algorithm::DecisionTree, Task::Classification, Labels::Classes(y)) => {
            let params: DecisionTreeClassifierParameters = merge_params(params, seed, algorithm)?;
            let model =
                DecisionTreeClassifier::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let compiled = trees_view(&model, data.classes)?;
            finish(&check, &model, compiled, &params, |m| {
                m.predict(&x).map(|p| p.iter().map(|c| *c as f64).collect())
            })
        }
        (Algorithm::DecisionTree, Task::Regression, Labels::Values(y)) => {
            let params: DecisionTreeRegressorParameters = merge_params(params, seed, algorithm)?;
            let model =
                DecisionTreeRegressor::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let compiled = trees_view(&model, 0)?;
            finish(&check, &model, compiled, &params, |m| m.predict(&x))
        }
        (Algorithm::RandomForest, Task::Classification, Labels::Classes(y)) => {
            let params: RandomForestClassifierParameters = merge_params(params, seed, algorithm)?;
            let model =
                RandomForestClassifier::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let compiled = trees_view(&model, data.classes)?;
            finish(&check, &model, compiled, &params, |m| {
                m.predict(&x).map(|p| p.iter().map(|c| *c as f64).collect())
            })
        }
        (Algorithm::RandomForest, Task::Regression, Labels::Values(y)) => {
            let params: RandomForestRegressorParameters = merge_params(params, seed, algorithm)?;
            let model =
                RandomForestRegressor::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let compiled = trees_view(&model, 0)?;
            finish(&check, &model, compiled, &params, |m| m.predict(&x))
        }
        (Algorithm::GradientBoosting, Task::Regression, Labels::Values(y)) => {
            let params: XGRegressorParameters = merge_params(params, seed, algorithm)?;
            let model = XGRegressor::fit(&x, y, params.clone()).map_err(|e| e.to_string())?;
            let serialized = serde_json::to_value(&model).map_err(|e| e.to_string())?;
            let compiled = CompiledModel::Boosted {
                trees: Tree::from_serialized_boosting(&serialized)?,
                base_score: params.base_score,
                learning_rate: params.learning_rate,
            };
            finish(&check, &model, compiled, &params, |m| m.predict(&x))
        }
        _ => Err(format!(
            "algorithm {} does not fit these labels",
            algorithm.as_str()
        )),
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
    let artifact = serde_json::to_string(model).map_err(|e| e.to_string())?;
    let params = serde_json::to_value(params).map_err(|e| e.to_string())?;
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
        artifact,
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

fn trees_view<M: Serialize>(model: &M, classes: usize) -> Result<CompiledModel, String> {
    let serialized = serde_json::to_value(model).map_err(|e| e.to_string())?;
    Ok(CompiledModel::Trees {
        trees: Tree::from_serialized(&serialized)?,
        classes,
    })
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
        let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
        fields.insert(key.clone(), value);
    }
    serde_json::from_value(merged).map_err(|e| format!("params: {e}"))
}

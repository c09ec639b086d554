//! Gradient boosting on the histogram learner: regression (squared error), binary
//! classification (log loss) and multiclass classification (softmax, one tree per class
//! per round).
//!
//! Each round fits trees to the negative gradients with the hessians as weights, so a
//! leaf's value is the Newton step `−G / (H + λ)`; the model adds `learning_rate ×` the
//! leaf values to a starting score (the mean, or the log-odds / log-shares of the
//! classes). Rows and columns can be sampled per round; with `early_stopping_rounds`, a
//! seeded share of the training rows is held back and boosting stops when their loss has
//! not improved for that many rounds, keeping the best round's trees.

use serde::{Deserialize, Serialize};

use super::bins::BinnedColumns;
use super::grow::{GrowSettings, GrownTree, Targets, grow};
use super::rng::Rng;
use crate::ml::models::compiled::{CompiledModel, Tree, sigmoid, softmax_into};
use crate::ml::models::learner::{Checked, Labels};
use crate::ml::models::parallel::pieces_in_parallel;

/// `gradient_boosting`'s parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BoostingParameters {
    /// Boosting rounds (trees per class).
    pub n_estimators: usize,
    /// Shrinkage applied to every tree.
    pub learning_rate: f64,
    /// Deepest split level; unlimited when absent.
    pub max_depth: Option<usize>,
    /// Most leaves per tree; 0 for no limit.
    pub max_leaves: usize,
    /// Fewest training rows in a leaf.
    pub min_samples_leaf: usize,
    /// Least hessian sum in a leaf.
    pub min_child_weight: f64,
    /// L2 regularization of leaf values.
    pub lambda: f64,
    /// Share of the training rows each round samples (without replacement).
    pub subsample: f64,
    /// Share of the encoded columns each tree may split on.
    pub colsample: f64,
    /// Stop when the validation loss has not improved for this many rounds; 0: off.
    pub early_stopping_rounds: usize,
    /// Share of the training rows held back for early stopping.
    pub validation_fraction: f64,
    /// The random seed.
    pub seed: u64,
}

impl Default for BoostingParameters {
    fn default() -> Self {
        Self {
            n_estimators: 100,
            learning_rate: 0.1,
            max_depth: None,
            max_leaves: 31,
            min_samples_leaf: 20,
            min_child_weight: 1e-3,
            lambda: 0.0,
            subsample: 1.0,
            colsample: 1.0,
            early_stopping_rounds: 0,
            validation_fraction: 0.1,
            seed: 0,
        }
    }
}

impl Checked for BoostingParameters {
    fn problem(&self) -> Option<String> {
        let share = |value: f64| value > 0.0 && value <= 1.0;
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Some(format!(
                "learning_rate must be above 0, not {}",
                self.learning_rate
            ));
        }
        if !share(self.subsample) {
            return Some(format!(
                "subsample must be in (0, 1], not {}",
                self.subsample
            ));
        }
        if !share(self.colsample) {
            return Some(format!(
                "colsample must be in (0, 1], not {}",
                self.colsample
            ));
        }
        if self.early_stopping_rounds > 0
            && !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0)
        {
            return Some(format!(
                "validation_fraction must be in (0, 1) with early stopping, not {}",
                self.validation_fraction
            ));
        }
        if self.lambda < 0.0 || self.min_child_weight < 0.0 {
            return Some(String::from(
                "lambda and min_child_weight cannot be negative",
            ));
        }
        None
    }
}

/// The loss boosted, from the labels.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Loss {
    Squared,
    Logistic,
    Softmax(usize),
}

impl Loss {
    fn scores(self) -> usize {
        match self {
            Loss::Softmax(classes) => classes,
            _ => 1,
        }
    }
}

/// Trains gradient-boosted trees on `binned` (and the same rows' encoded `values`, row
/// major, to route rows a round did not train on).
pub fn train_boosting(
    values: &[f64],
    binned: &BinnedColumns,
    labels: &Labels,
    classes: usize,
    params: &BoostingParameters,
    threads: usize,
) -> CompiledModel {
    let rows = binned.rows;
    let width = binned.width();
    let loss = match (labels, classes) {
        (Labels::Values(_), _) => Loss::Squared,
        (Labels::Classes(_), 0..=2) => Loss::Logistic,
        (Labels::Classes(_), classes) => Loss::Softmax(classes),
    };
    let scores = loss.scores();
    let targets = one_hot(labels, loss);
    let mut split = Rng::new(params.seed, u64::MAX);
    let held_back: Vec<bool> = (0..rows)
        .map(|_| params.early_stopping_rounds > 0 && split.unit() < params.validation_fraction)
        .collect();
    let training: Vec<u32> = (0..rows as u32)
        .filter(|r| !held_back[*r as usize])
        .collect();
    let validation: Vec<usize> = (0..rows).filter(|r| held_back[*r]).collect();
    // Too few rows to hold any back: every round is kept.
    let stopping = params.early_stopping_rounds > 0 && !validation.is_empty();
    let base = base_scores(&targets, scores, &training, loss);
    let mut raw: Vec<f64> = (0..rows).flat_map(|_| base.iter().copied()).collect();
    let settings = GrowSettings {
        max_depth: params.max_depth,
        max_leaves: (params.max_leaves > 0).then_some(params.max_leaves.max(2)),
        min_samples_leaf: params.min_samples_leaf,
        min_samples_split: 2,
        min_child_weight: params.min_child_weight,
        lambda: params.lambda,
        features_per_split: None,
        threads,
    };
    let all_columns: Vec<usize> = (0..width).collect();
    let mut probabilities = vec![0.0; rows * scores];
    let mut gradients = vec![0.0; rows];
    let mut hessians = vec![0.0; rows];
    let mut in_round = vec![false; rows];
    let mut trees: Vec<Tree> = Vec::new();
    let mut best = (f64::INFINITY, 0usize);
    for round in 0..params.n_estimators {
        let mut rng = Rng::new(params.seed, round as u64);
        let columns = if params.colsample < 1.0 {
            let count = (params.colsample * width as f64).ceil().max(1.0) as usize;
            rng.sample(&all_columns, count)
        } else {
            all_columns.clone()
        };
        let sample: Vec<u32> = if params.subsample < 1.0 {
            training
                .iter()
                .copied()
                .filter(|_| rng.unit() < params.subsample)
                .collect()
        } else {
            training.clone()
        };
        in_round.iter_mut().for_each(|r| *r = false);
        for row in &sample {
            in_round[*row as usize] = true;
        }
        link(loss, &raw, &mut probabilities, threads);
        for score in 0..scores {
            // Every row's gradient and hessian (the grower reads the sampled rows' only).
            pieces_in_parallel(&mut gradients, ROWS_PER_PIECE, threads, |first, piece| {
                for (row, gradient) in (first..).zip(piece.iter_mut()) {
                    let at = row * scores + score;
                    *gradient = targets[at] - probabilities[at];
                }
            });
            if loss != Loss::Squared {
                pieces_in_parallel(&mut hessians, ROWS_PER_PIECE, threads, |first, piece| {
                    for (row, hessian) in (first..).zip(piece.iter_mut()) {
                        let p = probabilities[row * scores + score];
                        *hessian = (p * (1.0 - p)).max(1e-16);
                    }
                });
            }
            let fitted = Targets {
                outputs: 1,
                sums: &gradients,
                weights: (loss != Loss::Squared).then_some(&hessians[..]),
            };
            let mut order = sample.clone();
            let grown = grow(binned, &fitted, &mut order, &columns, &settings, &mut rng);
            for (node, range) in &grown.leaves {
                let step = params.learning_rate * grown.nodes[*node].output;
                for row in &order[range.clone()] {
                    raw[*row as usize * scores + score] += step;
                }
            }
            let tree = boosted_tree(grown);
            for row in (0..rows).filter(|r| !in_round[*r]) {
                raw[row * scores + score] += params.learning_rate
                    * tree.leaf(&values[row * width..(row + 1) * width]).output;
            }
            trees.push(tree);
        }
        if stopping {
            let loss_now = validation_loss(loss, &raw, &targets, &validation);
            if loss_now < best.0 {
                best = (loss_now, round);
            } else if round - best.1 >= params.early_stopping_rounds {
                break;
            }
        }
    }
    if stopping {
        trees.truncate((best.1 + 1) * scores);
    }
    match loss {
        Loss::Squared => CompiledModel::Boosted {
            trees,
            base_score: base[0],
            learning_rate: params.learning_rate,
        },
        _ => CompiledModel::BoostedClassifier {
            trees,
            classes: classes.max(2),
            base_scores: base,
            learning_rate: params.learning_rate,
        },
    }
}

/// Per row, what the scores fit: the value, the class-1 indicator, or one-hot classes.
fn one_hot(labels: &Labels, loss: Loss) -> Vec<f64> {
    match (labels, loss) {
        (Labels::Values(values), _) => values.clone(),
        (Labels::Classes(indexes), Loss::Softmax(classes)) => {
            let mut one_hot = vec![0.0; indexes.len() * classes];
            for (row, class) in indexes.iter().enumerate() {
                one_hot[row * classes + *class as usize] = 1.0;
            }
            one_hot
        }
        (Labels::Classes(indexes), _) => indexes
            .iter()
            .map(|c| f64::from(u8::from(*c == 1)))
            .collect(),
    }
}

/// The starting scores: the training mean, the log-odds of class 1, or each class's
/// log-share.
fn base_scores(targets: &[f64], scores: usize, training: &[u32], loss: Loss) -> Vec<f64> {
    let count = training.len().max(1) as f64;
    let mean = |score: usize| {
        training
            .iter()
            .map(|r| targets[*r as usize * scores + score])
            .sum::<f64>()
            / count
    };
    let clamp = |share: f64| share.clamp(1e-12, 1.0 - 1e-12);
    match loss {
        Loss::Squared => vec![mean(0)],
        Loss::Logistic => {
            let share = clamp(mean(0));
            vec![(share / (1.0 - share)).ln()]
        }
        Loss::Softmax(classes) => (0..classes).map(|k| clamp(mean(k)).ln()).collect(),
    }
}

/// Rows per piece of element-wise work spread over the cores.
const ROWS_PER_PIECE: usize = 16_384;

/// Probabilities (or values) from raw scores, on every core.
fn link(loss: Loss, raw: &[f64], out: &mut [f64], threads: usize) {
    let scores = loss.scores();
    pieces_in_parallel(out, ROWS_PER_PIECE * scores, threads, |first, piece| {
        let raw = &raw[first..first + piece.len()];
        match loss {
            Loss::Squared => piece.copy_from_slice(raw),
            Loss::Logistic => {
                for (p, r) in piece.iter_mut().zip(raw) {
                    *p = sigmoid(*r);
                }
            }
            Loss::Softmax(classes) => {
                for (p, r) in piece.chunks_mut(classes).zip(raw.chunks(classes)) {
                    softmax_into(r, p);
                }
            }
        }
    });
}

fn validation_loss(loss: Loss, raw: &[f64], targets: &[f64], rows: &[usize]) -> f64 {
    let scores = loss.scores();
    let mut probabilities = vec![0.0; scores];
    let total: f64 = rows
        .iter()
        .map(|&row| {
            let at = row * scores;
            let row_raw = &raw[at..at + scores];
            match loss {
                Loss::Squared => (row_raw[0] - targets[row]).powi(2),
                Loss::Logistic => {
                    let p = sigmoid(row_raw[0]).clamp(1e-15, 1.0 - 1e-15);
                    -(targets[row] * p.ln() + (1.0 - targets[row]) * (1.0 - p).ln())
                }
                Loss::Softmax(_) => {
                    softmax_into(row_raw, &mut probabilities);
                    let truth = &targets[at..at + scores];
                    -truth
                        .iter()
                        .zip(&probabilities)
                        .map(|(t, p)| t * p.clamp(1e-15, 1.0).ln())
                        .sum::<f64>()
                }
            }
        })
        .sum();
    total / rows.len().max(1) as f64
}

/// A boosted tree with node values for explanations: a leaf's value, and for an inner
/// node the hessian-weighted mean of the leaf values below it, so path attributions add
/// up to the leaf value.
fn boosted_tree(grown: GrownTree) -> Tree {
    let mut node_values: Vec<f64> = grown.nodes.iter().map(|n| n.output).collect();
    for at in (0..grown.nodes.len()).rev() {
        if let Some((left, right)) = grown.nodes[at].children() {
            let (wl, wr) = (grown.covers[left], grown.covers[right]);
            node_values[at] = if wl + wr > 0.0 {
                (wl * node_values[left] + wr * node_values[right]) / (wl + wr)
            } else {
                (node_values[left] + node_values[right]) / 2.0
            };
        }
    }
    Tree {
        nodes: grown.nodes,
        node_values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::models::trees::forest::tests::{holdout_auc, noisy_rows};

    fn boost(
        values: &[f64],
        labels: &Labels,
        classes: usize,
        params: &BoostingParameters,
    ) -> CompiledModel {
        let binned = BinnedColumns::new(
            values,
            labels_len(labels),
            values.len() / labels_len(labels),
        );
        train_boosting(values, &binned, labels, classes, params, 2)
    }

    fn labels_len(labels: &Labels) -> usize {
        match labels {
            Labels::Classes(c) => c.len(),
            Labels::Values(v) => v.len(),
        }
    }

    #[test]
    fn binary_boosting_ranks_well_and_is_reproducible() {
        let (values, classes) = noisy_rows(6000, 1);
        let labels = Labels::Classes(classes);
        let params = BoostingParameters {
            n_estimators: 50,
            seed: 3,
            subsample: 0.8,
            colsample: 1.0,
            ..BoostingParameters::default()
        };
        let model = boost(&values, &labels, 2, &params);
        let auc = holdout_auc(&model);
        assert!(auc > 0.8, "holdout AUC {auc}");
        assert!(model.score(&[f64::NAN, 0.1]).probabilities[1] > 0.6);
        let binned = BinnedColumns::new(&values, 6000, 2);
        assert_eq!(
            train_boosting(&values, &binned, &labels, 2, &params, 1),
            model
        );
    }

    #[test]
    fn early_stopping_keeps_the_best_rounds() {
        let (values, classes) = noisy_rows(3000, 2);
        let labels = Labels::Classes(classes);
        let params = BoostingParameters {
            n_estimators: 500,
            learning_rate: 0.5,
            early_stopping_rounds: 5,
            ..BoostingParameters::default()
        };
        let CompiledModel::BoostedClassifier { trees, .. } = boost(&values, &labels, 2, &params)
        else {
            panic!("a classifier");
        };
        assert!(
            trees.len() < 100,
            "stopped early after {} rounds",
            trees.len()
        );
    }

    #[test]
    fn regression_and_softmax_boosting() {
        let values: Vec<f64> = (0..3000).map(|i| f64::from(i % 300) / 100.0).collect();
        let targets: Vec<f64> = values.iter().map(|x| x * x).collect();
        let regression = boost(
            &values,
            &Labels::Values(targets),
            0,
            &BoostingParameters::default(),
        );
        assert!(matches!(regression, CompiledModel::Boosted { .. }));
        assert!((regression.score(&[2.0]).value - 4.0).abs() < 0.1);
        let classes: Vec<i32> = values.iter().map(|x| (*x as i32).min(2)).collect();
        let multiclass = boost(
            &values,
            &Labels::Classes(classes),
            3,
            &BoostingParameters::default(),
        );
        let CompiledModel::BoostedClassifier {
            trees, base_scores, ..
        } = &multiclass
        else {
            panic!("{multiclass:?}");
        };
        assert_eq!(
            (trees.len(), base_scores.len()),
            (300, 3),
            "one tree per class per round"
        );
        assert_eq!(multiclass.score(&[0.5]).value, 0.0);
        assert_eq!(multiclass.score(&[1.5]).value, 1.0);
        assert_eq!(multiclass.score(&[2.5]).value, 2.0);
    }

    #[test]
    fn early_stopping_without_rows_to_hold_back_keeps_every_round() {
        let values = [0.0, 1.0, 2.0, 3.0];
        let labels = Labels::Classes(vec![0, 0, 1, 1]);
        let params = BoostingParameters {
            n_estimators: 7,
            min_samples_leaf: 1,
            early_stopping_rounds: 2,
            validation_fraction: 1e-12,
            ..BoostingParameters::default()
        };
        let CompiledModel::BoostedClassifier { trees, .. } = boost(&values, &labels, 2, &params)
        else {
            panic!("a classifier");
        };
        assert_eq!(trees.len(), 7);
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let params = BoostingParameters {
            subsample: 0.0,
            ..BoostingParameters::default()
        };
        assert_eq!(
            params.problem().as_deref(),
            Some("subsample must be in (0, 1], not 0")
        );
    }
}

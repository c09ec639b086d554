//! Random forests and single decision trees on the histogram learner.
//!
//! A forest classifier votes softly, as scikit-learn's does: its probabilities are the
//! mean over trees of the class shares of the leaf a row reaches, so every node keeps the
//! class shares of its training rows (one value, the share of class 1, for two classes).
//! A regressor averages its trees' leaf means. Trees grow in parallel, one per thread at
//! a time, each from its own random stream, so the forest does not depend on the number
//! of threads.

use serde::{Deserialize, Serialize};

use super::bins::BinnedColumns;
use super::grow::{GrowSettings, GrownTree, Targets, grow};
use super::rng::Rng;
use crate::ml::models::compiled::{CompiledModel, Tree};
use crate::ml::models::learner::{Checked, Labels};
use crate::ml::models::parallel::map_in_order;

/// `random_forest`'s parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForestParameters {
    /// Trees.
    pub n_trees: usize,
    /// Deepest split level; unlimited when absent.
    pub max_depth: Option<usize>,
    /// Most leaves per tree; unlimited when absent.
    pub max_leaves: Option<usize>,
    /// Fewest training rows in a leaf.
    pub min_samples_leaf: usize,
    /// Fewest training rows in a node that is split.
    pub min_samples_split: usize,
    /// Encoded columns tried per split: √columns for classification, all for regression
    /// when absent (scikit-learn's defaults).
    pub m: Option<usize>,
    /// Whether each tree trains on a bootstrap sample (rows drawn with replacement).
    pub bootstrap: bool,
    /// The random seed.
    pub seed: u64,
}

impl Default for ForestParameters {
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_depth: None,
            max_leaves: None,
            min_samples_leaf: 1,
            min_samples_split: 2,
            m: None,
            bootstrap: true,
            seed: 0,
        }
    }
}

impl Checked for ForestParameters {
    fn problem(&self) -> Option<String> {
        if self.n_trees == 0 {
            return Some(String::from("n_trees must be at least 1"));
        }
        if self.m == Some(0) {
            return Some(String::from(
                "m (columns tried per split) must be at least 1; leave it out for the default",
            ));
        }
        None
    }
}

/// `decision_tree`'s parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TreeParameters {
    /// Deepest split level; unlimited when absent.
    pub max_depth: Option<usize>,
    /// Most leaves; unlimited when absent.
    pub max_leaves: Option<usize>,
    /// Fewest training rows in a leaf.
    pub min_samples_leaf: usize,
    /// Fewest training rows in a node that is split.
    pub min_samples_split: usize,
}

impl Default for TreeParameters {
    fn default() -> Self {
        Self {
            max_depth: None,
            max_leaves: None,
            min_samples_leaf: 1,
            min_samples_split: 2,
        }
    }
}

impl Checked for TreeParameters {
    fn problem(&self) -> Option<String> {
        None
    }
}

impl From<&TreeParameters> for ForestParameters {
    /// One tree on every training row, every column tried at each split.
    fn from(tree: &TreeParameters) -> Self {
        Self {
            n_trees: 1,
            max_depth: tree.max_depth,
            max_leaves: tree.max_leaves,
            min_samples_leaf: tree.min_samples_leaf,
            min_samples_split: tree.min_samples_split,
            m: Some(usize::MAX),
            bootstrap: false,
            seed: 0,
        }
    }
}

/// Trains a forest on `binned` training rows: a [`CompiledModel::Forest`] for `classes`
/// classes, or (`classes` 0) a regression [`CompiledModel::Trees`].
pub fn train_forest(
    binned: &BinnedColumns,
    labels: &Labels,
    classes: usize,
    params: &ForestParameters,
    threads: usize,
) -> CompiledModel {
    let targets = forest_targets(labels, classes);
    let outputs = if classes > 2 { classes } else { 1 };
    let width = binned.width();
    let columns: Vec<usize> = (0..width).collect();
    let per_split = params.m.unwrap_or(if classes > 0 {
        (width as f64).sqrt().floor().max(1.0) as usize
    } else {
        width
    });
    let settings = GrowSettings {
        max_depth: params.max_depth,
        max_leaves: params.max_leaves,
        min_samples_leaf: params.min_samples_leaf,
        min_samples_split: params.min_samples_split,
        min_child_weight: 0.0,
        lambda: 0.0,
        features_per_split: Some(per_split),
        threads: 1,
    };
    let grow_tree = |index: usize| {
        let mut rng = Rng::new(params.seed, index as u64);
        let mut rows: Vec<u32> = if params.bootstrap {
            (0..binned.rows)
                .map(|_| rng.below(binned.rows) as u32)
                .collect()
        } else {
            (0..binned.rows as u32).collect()
        };
        let targets = Targets {
            outputs,
            sums: &targets,
            weights: None,
        };
        let grown = grow(binned, &targets, &mut rows, &columns, &settings, &mut rng);
        into_tree(grown)
    };
    let trees = map_in_order(params.n_trees, threads, grow_tree);
    if classes == 0 {
        CompiledModel::Trees { trees, classes: 0 }
    } else {
        CompiledModel::Forest { trees, classes }
    }
}

/// What a forest's trees fit: the value, the class-1 indicator (two classes), or one-hot
/// classes.
fn forest_targets(labels: &Labels, classes: usize) -> Vec<f64> {
    match labels {
        Labels::Values(values) => values.clone(),
        Labels::Classes(indexes) if classes <= 2 => indexes
            .iter()
            .map(|c| f64::from(u8::from(*c == 1)))
            .collect(),
        Labels::Classes(indexes) => {
            let mut one_hot = vec![0.0; indexes.len() * classes];
            for (row, class) in indexes.iter().enumerate() {
                one_hot[row * classes + *class as usize] = 1.0;
            }
            one_hot
        }
    }
}

fn into_tree(grown: GrownTree) -> Tree {
    Tree {
        nodes: grown.nodes,
        node_values: grown.values,
    }
}

#[cfg(test)]
pub(in crate::ml::models) mod tests {
    use super::*;
    use crate::ml::models::metrics::classification;

    /// Rows of two numeric columns where class 1 is likely when x0 + x1 > 1, x0 missing
    /// for a tenth of the rows, which are mostly class 1.
    pub(in crate::ml::models) fn noisy_rows(rows: usize, seed: u64) -> (Vec<f64>, Vec<i32>) {
        let mut rng = Rng::new(seed, 0);
        let mut values = Vec::with_capacity(rows * 2);
        let mut classes = Vec::with_capacity(rows);
        for _ in 0..rows {
            let (a, b) = (rng.unit(), rng.unit());
            let missing = rng.unit() < 0.1;
            let likely = if missing {
                0.9
            } else if a + b > 1.0 {
                0.8
            } else {
                0.15
            };
            classes.push(i32::from(rng.unit() < likely));
            values.push(if missing { f64::NAN } else { a });
            values.push(b);
        }
        (values, classes)
    }

    /// The holdout AUC of `model` on fresh rows.
    pub(in crate::ml::models) fn holdout_auc(model: &CompiledModel) -> f64 {
        let (values, classes) = noisy_rows(4000, 99);
        let probabilities: Vec<Vec<f64>> = values
            .chunks(2)
            .map(|row| model.score(row).probabilities)
            .collect();
        let labels: Vec<usize> = classes.iter().map(|c| *c as usize).collect();
        classification(&probabilities, &labels, 2, 1)
            .get("roc_auc")
            .unwrap_or(0.0)
    }

    #[test]
    fn a_soft_voting_forest_ranks_well_routes_missing_values_and_ignores_thread_count() {
        let (values, classes) = noisy_rows(6000, 1);
        let binned = BinnedColumns::new(&values, 6000, 2);
        let params = ForestParameters {
            n_trees: 20,
            max_depth: Some(6),
            m: Some(2),
            seed: 7,
            ..ForestParameters::default()
        };
        let labels = Labels::Classes(classes);
        let model = train_forest(&binned, &labels, 2, &params, 2);
        let auc = holdout_auc(&model);
        assert!(auc > 0.8, "holdout AUC {auc}");
        // Missing x0 means class 1 most of the time.
        let missing = model.score(&[f64::NAN, 0.1]);
        assert!(missing.probabilities[1] > 0.6, "{missing:?}");
        // Soft votes: probabilities strictly between 0 and 1 on uncertain rows.
        let uncertain = model.score(&[0.2, 0.2]);
        assert!(uncertain.probabilities[1] > 0.0 && uncertain.probabilities[1] < 0.5);
        assert_eq!(train_forest(&binned, &labels, 2, &params, 1), model);
        let other_seed = ForestParameters { seed: 8, ..params };
        assert_ne!(train_forest(&binned, &labels, 2, &other_seed, 2), model);
    }

    #[test]
    fn a_single_tree_is_pure_where_the_data_is() {
        // Class = x > 5, exactly.
        let values: Vec<f64> = (0..100).map(f64::from).map(|x| x / 10.0).collect();
        let classes: Vec<i32> = values.iter().map(|x| i32::from(*x > 5.0)).collect();
        let binned = BinnedColumns::new(&values, 100, 1);
        let params = ForestParameters::from(&TreeParameters::default());
        let model = train_forest(&binned, &Labels::Classes(classes), 2, &params, 2);
        let CompiledModel::Forest { trees, .. } = &model else {
            panic!("{model:?}");
        };
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].nodes.len(), 3, "one split: {trees:?}");
        assert_eq!(trees[0].nodes[0].threshold, 5.05);
        assert_eq!(model.score(&[5.0]).probabilities, vec![1.0, 0.0]);
        assert_eq!(model.score(&[5.1]).probabilities, vec![0.0, 1.0]);
    }

    #[test]
    fn regression_and_multiclass_forests() {
        let values: Vec<f64> = (0..3000).map(|i| f64::from(i % 300) / 100.0).collect();
        let binned = BinnedColumns::new(&values, 3000, 1);
        let params = ForestParameters {
            n_trees: 10,
            ..ForestParameters::default()
        };
        let targets: Vec<f64> = values.iter().map(|x| x * x).collect();
        let regression = train_forest(&binned, &Labels::Values(targets), 0, &params, 2);
        assert!((regression.score(&[2.0]).value - 4.0).abs() < 0.1);
        let classes: Vec<i32> = values.iter().map(|x| (*x as i32).min(2)).collect();
        let multiclass = train_forest(&binned, &Labels::Classes(classes), 3, &params, 2);
        let out = multiclass.score(&[1.5]);
        assert_eq!(out.value, 1.0, "{out:?}");
        assert!((out.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}

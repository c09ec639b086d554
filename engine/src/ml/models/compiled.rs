//! lakescore's own view of a trained model: plain arrays that score a row and are what
//! explanations are computed from.
//!
//! Models from lakescore's own learners (logistic regression, the tree models) are
//! these arrays. Models trained by smartcore (linear and ridge regression, and every
//! version registered before lakescore had its own learners) are compiled from smartcore's
//! serialized form (linear coefficients, or the tree nodes) and checked at training time:
//! the view must predict exactly what smartcore predicts on every training row.

use serde::{Deserialize, Serialize};

use super::tree_walk::TreePaths;

/// A trained model as arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CompiledModel {
    /// `intercept + weights · x`, optionally through the logistic function.
    Linear {
        /// One weight per encoded feature.
        weights: Vec<f64>,
        /// The intercept.
        intercept: f64,
        /// True for binary logistic regression: the output is the positive-class probability.
        logistic: bool,
    },
    /// Multiclass logistic regression: one linear score per class, softmax.
    Softmax {
        /// Per class, one weight per encoded feature.
        weights: Vec<Vec<f64>>,
        /// Per class intercepts.
        intercepts: Vec<f64>,
    },
    /// Gradient-boosted regression trees: `base_score + learning_rate × Σ leaf values`.
    Boosted {
        /// The trees, in boosting order.
        trees: Vec<Tree>,
        /// The starting prediction.
        base_score: f64,
        /// The shrinkage applied to every tree.
        learning_rate: f64,
    },
    /// Gradient-boosted classification: per class (one score for two classes) a raw
    /// score `base_score + learning_rate × Σ leaf values of its trees`, through the
    /// logistic function (two classes) or softmax.
    BoostedClassifier {
        /// The trees, round by round, each round one tree per score.
        trees: Vec<Tree>,
        /// Classes predicted.
        classes: usize,
        /// The starting raw score of each score.
        base_scores: Vec<f64>,
        /// The shrinkage applied to every tree.
        learning_rate: f64,
    },
    /// A soft-voting forest classifier: the probabilities are the mean over trees of the
    /// class shares of the leaf a row reaches (`node_values`: per node the share of class
    /// 1 for two classes, else one share per class).
    Forest {
        /// The trees.
        trees: Vec<Tree>,
        /// Classes predicted.
        classes: usize,
    },
    /// Trees whose leaves hold a class index (a hard-voting classifier, as trained
    /// before lakescore had its own tree learner) or a value (the mean, regression).
    Trees {
        /// The trees.
        trees: Vec<Tree>,
        /// Classes voted on; 0 for regression.
        classes: usize,
    },
}

/// One tree as a node array; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes.
    pub nodes: Vec<TreeNode>,
    /// Per node, what path attributions are measured in: the mean target of the training
    /// rows that reach it (the label for regression, 1 for the positive class of a binary
    /// classifier), a forest classifier's class shares, or a boosted tree's leaf values.
    /// Empty when not computed.
    #[serde(default)]
    pub node_values: Vec<f64>,
}

/// A node: a split (`feature <= threshold` goes to `left`) or a leaf with its output.
/// Scoring walks a compact copy of the nodes ([`super::tree_walk`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// The encoded feature split on.
    pub feature: u32,
    /// Rows with the feature at most this go left.
    pub threshold: f64,
    /// The left child, None for a leaf.
    pub left: Option<u32>,
    /// The right child, None for a leaf.
    pub right: Option<u32>,
    /// The leaf's class index or value (for inner nodes, the node's majority or mean).
    pub output: f64,
    /// Whether rows missing the feature (NaN) go left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing_left: bool,
}

impl TreeNode {
    /// A leaf with `output`.
    pub fn leaf(output: f64) -> Self {
        Self {
            feature: 0,
            threshold: 0.0,
            left: None,
            right: None,
            output,
            missing_left: false,
        }
    }

    /// The encoded column split on.
    pub fn column(&self) -> usize {
        self.feature as usize
    }

    /// The left and right children; None for a leaf.
    pub fn children(&self) -> Option<(usize, usize)> {
        match (self.left, self.right) {
            (Some(left), Some(right)) => Some((left as usize, right as usize)),
            _ => None,
        }
    }

    /// The child `row` goes to; None for a leaf.
    pub fn next(&self, row: &[f64]) -> Option<usize> {
        let (left, right) = self.children()?;
        Some(if self.goes_left(row) { left } else { right })
    }

    /// Whether `row` goes to the left child.
    pub fn goes_left(&self, row: &[f64]) -> bool {
        let value = row[self.column()];
        if value.is_nan() {
            self.missing_left
        } else {
            value <= self.threshold
        }
    }
}

/// What a model says about one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutput {
    /// For classifiers, the probability of each class; for regressors, empty.
    pub probabilities: Vec<f64>,
    /// For regressors, the predicted value; for classifiers, the winning class index.
    pub value: f64,
}

impl Tree {
    /// The leaf `row` falls into.
    pub fn leaf(&self, row: &[f64]) -> &TreeNode {
        &self.nodes[self.leaf_index(row)]
    }

    /// The index of the leaf `row` falls into.
    pub fn leaf_index(&self, row: &[f64]) -> usize {
        let mut at = 0;
        while let Some(next) = self.nodes[at].next(row) {
            at = next;
        }
        at
    }
}

impl CompiledModel {
    /// Scores one encoded row.
    pub fn score(&self, row: &[f64]) -> RawOutput {
        let mut probabilities = Vec::new();
        let value = self.score_with(row, |_, tree, row| tree.leaf_index(row), &mut probabilities);
        RawOutput {
            probabilities,
            value,
        }
    }

    /// The trees, for the models made of them.
    pub(crate) fn trees(&self) -> Option<&[Tree]> {
        match self {
            CompiledModel::Linear { .. } | CompiledModel::Softmax { .. } => None,
            CompiledModel::Boosted { trees, .. }
            | CompiledModel::BoostedClassifier { trees, .. }
            | CompiledModel::Forest { trees, .. }
            | CompiledModel::Trees { trees, .. } => Some(trees),
        }
    }

    /// Scores encoded row `row` of the block whose paths
    /// [`FlatTrees::walk_block`](super::tree_walk::FlatTrees::walk_block) recorded: the probabilities into `probabilities` (cleared first; empty for
    /// regressors), and returns the value (the winning class index for classifiers).
    pub fn score_walked(
        &self,
        encoded: &[f64],
        paths: &TreePaths,
        row: usize,
        probabilities: &mut Vec<f64>,
    ) -> f64 {
        self.score_with(
            encoded,
            |tree, _, _| paths.leaf(tree, row).unwrap_or(0),
            probabilities,
        )
    }

    /// Scores one encoded row, finding the leaf of each tree (with its index), in order,
    /// with `leaf`; the probabilities go into `probabilities` (cleared first).
    fn score_with(
        &self,
        row: &[f64],
        mut leaf: impl FnMut(usize, &Tree, &[f64]) -> usize,
        probabilities: &mut Vec<f64>,
    ) -> f64 {
        probabilities.clear();
        match self {
            CompiledModel::Linear {
                weights,
                intercept,
                logistic,
            } => {
                let linear = intercept + dot(weights, row);
                if *logistic {
                    let positive = sigmoid(linear);
                    probabilities.extend([1.0 - positive, positive]);
                    f64::from(u8::from(positive > 0.5))
                } else {
                    linear
                }
            }
            CompiledModel::Softmax {
                weights,
                intercepts,
            } => {
                probabilities.extend(weights.iter().zip(intercepts).map(|(w, b)| b + dot(w, row)));
                softmax_in_place(probabilities);
                argmax(probabilities) as f64
            }
            CompiledModel::Boosted {
                trees,
                base_score,
                learning_rate,
            } => {
                base_score
                    + learning_rate
                        * trees
                            .iter()
                            .enumerate()
                            .map(|(at, t)| t.nodes[leaf(at, t, row)].output)
                            .sum::<f64>()
            }
            CompiledModel::BoostedClassifier {
                trees,
                classes,
                base_scores,
                learning_rate,
            } => {
                probabilities.extend_from_slice(base_scores);
                let scores = probabilities.len().max(1);
                for (at, tree) in trees.iter().enumerate() {
                    if let Some(raw) = probabilities.get_mut(at % scores) {
                        *raw += learning_rate * tree.nodes[leaf(at, tree, row)].output;
                    }
                }
                if scores == 1 {
                    let positive = sigmoid(probabilities.first().copied().unwrap_or(0.0));
                    probabilities.clear();
                    probabilities.extend([1.0 - positive, positive]);
                } else {
                    probabilities.resize(*classes, 0.0);
                    softmax_in_place(probabilities);
                }
                argmax(probabilities) as f64
            }
            CompiledModel::Forest { trees, classes } => {
                probabilities.resize((*classes).max(2), 0.0);
                let n = trees.len().max(1) as f64;
                for (index, tree) in trees.iter().enumerate() {
                    let at = leaf(index, tree, row);
                    if *classes <= 2 {
                        probabilities[1] += tree.node_values[at] / n;
                    } else {
                        let shares = &tree.node_values[at * classes..(at + 1) * classes];
                        for (p, share) in probabilities.iter_mut().zip(shares) {
                            *p += share / n;
                        }
                    }
                }
                if *classes <= 2 {
                    probabilities[0] = 1.0 - probabilities[1];
                }
                argmax(probabilities) as f64
            }
            CompiledModel::Trees { trees, classes: 0 } => {
                let sum: f64 = trees
                    .iter()
                    .enumerate()
                    .map(|(at, t)| t.nodes[leaf(at, t, row)].output)
                    .sum();
                sum / trees.len() as f64
            }
            CompiledModel::Trees { trees, classes } => {
                probabilities.resize(*classes, 0.0);
                for (at, tree) in trees.iter().enumerate() {
                    let class = tree.nodes[leaf(at, tree, row)].output as usize;
                    if let Some(vote) = probabilities.get_mut(class) {
                        *vote += 1.0;
                    }
                }
                let n = trees.len() as f64;
                probabilities.iter_mut().for_each(|vote| *vote /= n);
                argmax(probabilities) as f64
            }
        }
    }
}

fn dot(weights: &[f64], row: &[f64]) -> f64 {
    weights.iter().zip(row).map(|(w, x)| w * x).sum()
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Replaces `scores` by their softmax.
fn softmax_in_place(scores: &mut [f64]) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    scores.iter_mut().for_each(|s| *s = (*s - max).exp());
    let total: f64 = scores.iter().sum();
    scores.iter_mut().for_each(|p| *p /= total);
}

/// The softmax of `scores` into `probabilities` (the same length).
pub fn softmax_into(scores: &[f64], probabilities: &mut [f64]) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for (p, s) in probabilities.iter_mut().zip(scores) {
        *p = (s - max).exp();
    }
    let total: f64 = probabilities.iter().sum();
    probabilities.iter_mut().for_each(|p| *p /= total);
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if *v > best.1 { (i, *v) } else { best }
        })
        .0
}

#[cfg(test)]
pub(in crate::ml::models) mod tests {
    use super::*;

    /// A split on `feature` at `threshold` into `left` and `right`.
    pub(in crate::ml::models) fn split(
        feature: u32,
        threshold: f64,
        left: u32,
        right: u32,
    ) -> TreeNode {
        TreeNode {
            feature,
            threshold,
            left: Some(left),
            right: Some(right),
            output: 0.0,
            missing_left: false,
        }
    }

    fn leaf(output: f64) -> TreeNode {
        TreeNode::leaf(output)
    }

    #[test]
    fn hard_voting_trees_of_earlier_versions_count_votes() {
        let model = CompiledModel::Trees {
            trees: vec![
                Tree {
                    nodes: vec![split(0, 1.5, 1, 2), leaf(0.0), leaf(1.0)],
                    node_values: Vec::new(),
                },
                Tree {
                    nodes: vec![leaf(1.0)],
                    node_values: Vec::new(),
                },
            ],
            classes: 2,
        };
        assert_eq!(model.score(&[1.0]).probabilities, vec![0.5, 0.5]);
        let high = model.score(&[2.0]);
        assert_eq!((high.probabilities, high.value), (vec![0.0, 1.0], 1.0));
    }

    #[test]
    fn soft_voting_forests_average_leaf_shares_and_route_missing_values() {
        let mut first = split(0, 1.5, 1, 2);
        first.missing_left = true;
        let model = CompiledModel::Forest {
            trees: vec![
                Tree {
                    nodes: vec![first, leaf(0.0), leaf(1.0)],
                    // Share of class 1 per node.
                    node_values: vec![0.5, 0.2, 0.9],
                },
                Tree {
                    nodes: vec![leaf(1.0)],
                    node_values: vec![0.6],
                },
            ],
            classes: 2,
        };
        let low = model.score(&[1.0]);
        assert!((low.probabilities[1] - 0.4).abs() < 1e-12, "{low:?}");
        assert!((low.probabilities[0] - 0.6).abs() < 1e-12);
        assert_eq!(low.value, 0.0);
        let high = model.score(&[2.0]);
        assert!((high.probabilities[1] - 0.75).abs() < 1e-12);
        assert_eq!(high.value, 1.0);
        assert_eq!(
            model.score(&[f64::NAN]),
            low,
            "missing goes left like low values"
        );
    }

    #[test]
    fn boosted_classifiers_add_shrunk_leaves_to_the_base_score() {
        let tree = Tree {
            nodes: vec![split(0, 0.0, 1, 2), leaf(-1.0), leaf(2.0)],
            node_values: Vec::new(),
        };
        let binary = CompiledModel::BoostedClassifier {
            trees: vec![tree.clone(), tree.clone()],
            classes: 2,
            base_scores: vec![0.5],
            learning_rate: 0.1,
        };
        let out = binary.score(&[1.0]);
        assert!((out.probabilities[1] - sigmoid(0.5 + 0.4)).abs() < 1e-12);
        assert_eq!(out.value, 1.0);
        // Three classes, one round: tree t scores class t.
        let flat = Tree {
            nodes: vec![leaf(0.0)],
            node_values: Vec::new(),
        };
        let multiclass = CompiledModel::BoostedClassifier {
            trees: vec![flat.clone(), tree, flat],
            classes: 3,
            base_scores: vec![0.0, 0.0, 0.0],
            learning_rate: 1.0,
        };
        assert_eq!(multiclass.score(&[1.0]).value, 1.0);
        assert_eq!(multiclass.score(&[-1.0]).value, 0.0);
    }

    #[test]
    fn linear_and_softmax_outputs() {
        let logistic = CompiledModel::Linear {
            weights: vec![2.0],
            intercept: -1.0,
            logistic: true,
        };
        let out = logistic.score(&[0.5]);
        assert_eq!(out.probabilities, vec![0.5, 0.5]);
        let softmax = CompiledModel::Softmax {
            weights: vec![vec![0.0], vec![1.0], vec![2.0]],
            intercepts: vec![0.0, 0.0, 0.0],
        };
        let out = softmax.score(&[1.0]);
        assert_eq!(out.value, 2.0);
        assert!((out.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}

//! lakescore's own view of a trained model: plain arrays that score a row without
//! smartcore, give forest vote fractions smartcore does not expose, and are what
//! explanations are computed from.
//!
//! It is built from the trained smartcore model (linear coefficients, or the tree nodes
//! found in its serialized form) and checked at training time: it must predict exactly
//! what smartcore predicts on every training row.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// Trees whose leaves hold a class index (majority vote) or a value (mean).
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
    /// Per node, the mean target of the training rows that reach it (the label for
    /// regression, 1 for the positive class of a binary classifier): what path
    /// attributions are measured in. Empty when not computed.
    #[serde(default)]
    pub node_values: Vec<f64>,
}

/// A node: a split (`feature <= threshold` goes to `left`) or a leaf with its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// The encoded feature split on.
    pub feature: usize,
    /// Rows with the feature at most this go left.
    pub threshold: f64,
    /// The left child, None for a leaf.
    pub left: Option<usize>,
    /// The right child, None for a leaf.
    pub right: Option<usize>,
    /// The leaf's class index or value (for inner nodes, the node's majority or mean).
    pub output: f64,
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
        let mut at = 0;
        while let (Some(left), Some(right)) = (self.nodes[at].left, self.nodes[at].right) {
            let node = &self.nodes[at];
            at = if row[node.feature] <= node.threshold {
                left
            } else {
                right
            };
        }
        &self.nodes[at]
    }

    /// The nodes `row` passes, root first, leaf last.
    pub fn path(&self, row: &[f64]) -> Vec<usize> {
        let mut path = vec![0];
        let mut at = 0;
        while let (Some(left), Some(right)) = (self.nodes[at].left, self.nodes[at].right) {
            let node = &self.nodes[at];
            at = if row[node.feature] <= node.threshold {
                left
            } else {
                right
            };
            path.push(at);
        }
        path
    }

    /// Sets `node_values` from training rows (`width` values each) and their targets.
    pub fn learn_node_values(&mut self, rows: &[f64], width: usize, targets: &[f64]) {
        let mut sums = vec![0.0; self.nodes.len()];
        let mut counts = vec![0.0; self.nodes.len()];
        for (row, target) in rows.chunks(width.max(1)).zip(targets) {
            for node in self.path(row) {
                sums[node] += target;
                counts[node] += 1.0;
            }
        }
        let root = if counts[0] > 0.0 {
            sums[0] / counts[0]
        } else {
            0.0
        };
        self.node_values = sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| if *c > 0.0 { s / c } else { root })
            .collect();
    }

    /// The trees of a serialized smartcore gradient-boosting model: each entry of
    /// `regressors` is a tree of nested `left`/`right` nodes.
    pub fn from_serialized_boosting(model: &Value) -> Result<Vec<Tree>, String> {
        let regressors = model
            .get("regressors")
            .and_then(Value::as_array)
            .ok_or_else(|| String::from("the serialized model holds no boosted trees"))?;
        regressors
            .iter()
            .map(|root| {
                let mut nodes = Vec::new();
                flatten_nested(root, &mut nodes)?;
                Ok(Tree {
                    nodes,
                    node_values: Vec::new(),
                })
            })
            .collect()
    }

    /// Every tree found in a serialized smartcore model: each array named `nodes`.
    pub fn from_serialized(model: &Value) -> Result<Vec<Tree>, String> {
        let mut trees = Vec::new();
        collect_trees(model, &mut trees)?;
        if trees.is_empty() {
            return Err(String::from("the serialized model holds no tree nodes"));
        }
        Ok(trees)
    }
}

fn collect_trees(value: &Value, trees: &mut Vec<Tree>) -> Result<(), String> {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                match (name.as_str(), field) {
                    ("nodes", Value::Array(nodes)) => trees.push(Tree {
                        nodes: nodes.iter().map(node_from).collect::<Result<_, _>>()?,
                        node_values: Vec::new(),
                    }),
                    _ => collect_trees(field, trees)?,
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_trees(item, trees)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Appends `node` and its subtree to `nodes` (parents before children); returns its index.
fn flatten_nested(node: &Value, nodes: &mut Vec<TreeNode>) -> Result<usize, String> {
    let at = nodes.len();
    nodes.push(TreeNode {
        feature: node
            .get("split_feature_idx")
            .and_then(Value::as_u64)
            .unwrap_or_default() as usize,
        threshold: node.get("threshold").and_then(Value::as_f64).unwrap_or(0.0),
        left: None,
        right: None,
        output: node
            .get("value")
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("a boosted tree node has no value: {node}"))?,
    });
    if let (Some(left), Some(right)) = (
        node.get("left").filter(|v| !v.is_null()),
        node.get("right").filter(|v| !v.is_null()),
    ) {
        let left = flatten_nested(left, nodes)?;
        let right = flatten_nested(right, nodes)?;
        nodes[at].left = Some(left);
        nodes[at].right = Some(right);
    }
    Ok(at)
}

fn node_from(node: &Value) -> Result<TreeNode, String> {
    let number = |key: &str| node.get(key).and_then(Value::as_f64);
    let index = |key: &str| node.get(key).and_then(Value::as_u64).map(|i| i as usize);
    Ok(TreeNode {
        feature: index("split_feature").unwrap_or_default(),
        // Leaves have no split; their threshold is never read.
        threshold: number("split_value").unwrap_or(0.0),
        left: index("true_child"),
        right: index("false_child"),
        output: number("output").ok_or_else(|| format!("a tree node has no output: {node}"))?,
    })
}

impl CompiledModel {
    /// Scores one encoded row.
    pub fn score(&self, row: &[f64]) -> RawOutput {
        match self {
            CompiledModel::Linear {
                weights,
                intercept,
                logistic,
            } => {
                let linear = intercept + dot(weights, row);
                if *logistic {
                    let positive = sigmoid(linear);
                    RawOutput {
                        probabilities: vec![1.0 - positive, positive],
                        value: f64::from(u8::from(positive > 0.5)),
                    }
                } else {
                    RawOutput {
                        probabilities: Vec::new(),
                        value: linear,
                    }
                }
            }
            CompiledModel::Softmax {
                weights,
                intercepts,
            } => {
                let scores: Vec<f64> = weights
                    .iter()
                    .zip(intercepts)
                    .map(|(w, b)| b + dot(w, row))
                    .collect();
                let probabilities = softmax(&scores);
                RawOutput {
                    value: argmax(&probabilities) as f64,
                    probabilities,
                }
            }
            CompiledModel::Boosted {
                trees,
                base_score,
                learning_rate,
            } => RawOutput {
                probabilities: Vec::new(),
                value: base_score
                    + learning_rate * trees.iter().map(|t| t.leaf(row).output).sum::<f64>(),
            },
            CompiledModel::Trees { trees, classes: 0 } => {
                let sum: f64 = trees.iter().map(|t| t.leaf(row).output).sum();
                RawOutput {
                    probabilities: Vec::new(),
                    value: sum / trees.len() as f64,
                }
            }
            CompiledModel::Trees { trees, classes } => {
                let mut votes = vec![0.0; *classes];
                for tree in trees {
                    let class = tree.leaf(row).output as usize;
                    if let Some(vote) = votes.get_mut(class) {
                        *vote += 1.0;
                    }
                }
                let probabilities: Vec<f64> =
                    votes.iter().map(|v| v / trees.len() as f64).collect();
                RawOutput {
                    value: argmax(&probabilities) as f64,
                    probabilities,
                }
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

fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
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
mod tests {
    use super::*;

    #[test]
    fn trees_from_a_serialized_forest_vote() -> Result<(), String> {
        let forest = serde_json::json!({
            "trees": [
                {"nodes": [
                    {"output": 0, "split_feature": 0, "split_value": 1.5, "true_child": 1, "false_child": 2},
                    {"output": 0, "split_feature": 0, "split_value": null, "true_child": null, "false_child": null},
                    {"output": 1, "split_feature": 0, "split_value": null, "true_child": null, "false_child": null}
                ]},
                {"nodes": [{"output": 1, "split_feature": 0, "split_value": null, "true_child": null, "false_child": null}]}
            ]
        });
        let model = CompiledModel::Trees {
            trees: Tree::from_serialized(&forest)?,
            classes: 2,
        };
        assert_eq!(model.score(&[1.0]).probabilities, vec![0.5, 0.5]);
        let high = model.score(&[2.0]);
        assert_eq!((high.probabilities, high.value), (vec![0.0, 1.0], 1.0));
        Ok(())
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

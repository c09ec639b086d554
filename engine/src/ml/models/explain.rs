//! Explanations: how much each feature moved one prediction away from the model's
//! baseline. Contributions add up exactly: `baseline + Σ contributions = output`.
//!
//! - Linear models (linear, ridge and logistic regression): the contribution of an
//!   encoded column is `weight × (value − training mean)`; the baseline is the output at
//!   the training means. For logistic regression the output is the logit (log-odds) of
//!   the positive class (multiclass: of the predicted class). Cost: one multiply per column.
//! - Trees and forests: path attribution (Saabas). Each node knows the mean target of the
//!   training rows reaching it (the value, or the positive-class share); walking a row
//!   from the root to its leaf, each split's feature is credited with the change of that
//!   mean. The baseline is the root mean; for a forest both are averaged over the trees,
//!   so the output explained is the mean leaf value (for classifiers: the mean of the
//!   leaves' positive-class shares, which is close to but not the vote fraction). Cost:
//!   one root-to-leaf walk per tree. Multiclass trees are not explained.
//! - Gradient boosting: the same path attribution on each tree, measured in the tree's
//!   own leaf values (the mean leaf value of the training rows reaching a node), scaled by
//!   the learning rate; the baseline is `base_score + learning_rate × Σ root means`, so the
//!   contributions add up exactly to the boosted prediction.
//!
//! One-hot columns of a categorical feature are summed into that feature.

use super::compiled::{CompiledModel, Tree};
use super::registry::Artifact;

/// A prediction's explanation, per feature in the model's feature order.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The output with every feature at its baseline.
    pub baseline: f64,
    /// Per feature, how much it moved the output.
    pub contributions: Vec<f64>,
}

impl Explanation {
    /// `baseline + Σ contributions`: the output explained.
    pub fn output(&self) -> f64 {
        self.baseline + self.contributions.iter().sum::<f64>()
    }
}

/// Explains the prediction for one encoded row; `class` is the predicted class of a
/// multiclass linear model. None when the model kind has no explanation.
pub fn explain(artifact: &Artifact, encoded: &[f64], class: usize) -> Option<Explanation> {
    let mut contributions = Vec::new();
    let baseline = explain_into(
        artifact,
        encoded,
        class,
        &mut Vec::new(),
        &mut contributions,
    )?;
    Some(Explanation {
        baseline,
        contributions,
    })
}

/// [`explain`] into buffers a caller reuses across rows: `per_column` (scratch, one value
/// per encoded column) and `contributions` (per feature, in the model's feature order).
/// Returns the baseline; None when the model kind has no explanation.
pub fn explain_into(
    artifact: &Artifact,
    encoded: &[f64],
    class: usize,
    per_column: &mut Vec<f64>,
    contributions: &mut Vec<f64>,
) -> Option<f64> {
    per_column.clear();
    per_column.resize(encoded.len(), 0.0);
    let means = &artifact.encoded_means;
    let baseline = match &artifact.compiled {
        CompiledModel::Linear {
            weights, intercept, ..
        } => linear(weights, *intercept, means, encoded, per_column),
        CompiledModel::Softmax {
            weights,
            intercepts,
        } => linear(
            weights.get(class)?,
            *intercepts.get(class)?,
            means,
            encoded,
            per_column,
        ),
        CompiledModel::Trees { trees, .. } => {
            let n = trees.len().max(1) as f64;
            let baseline = path_attributions(trees, encoded, per_column)?;
            per_column.iter_mut().for_each(|c| *c /= n);
            baseline / n
        }
        CompiledModel::Boosted {
            trees,
            base_score,
            learning_rate,
        } => {
            let baseline = path_attributions(trees, encoded, per_column)?;
            per_column.iter_mut().for_each(|c| *c *= learning_rate);
            base_score + learning_rate * baseline
        }
    };
    contributions.clear();
    let mut at = 0;
    for encoder in &artifact.preprocessing.encoders {
        let width = encoder.width();
        contributions.push(
            per_column
                .get(at..at + width)
                .map_or(0.0, |c| c.iter().sum()),
        );
        at += width;
    }
    Some(baseline)
}

/// Summed over the trees into `per_column`: each encoded column's credited changes along
/// the row's root-to-leaf paths; returns the summed root values. None when node values
/// were not learned.
fn path_attributions(trees: &[Tree], encoded: &[f64], per_column: &mut [f64]) -> Option<f64> {
    if trees.iter().any(|t| t.node_values.len() != t.nodes.len()) {
        return None;
    }
    let mut baseline = 0.0;
    for tree in trees {
        baseline += tree.node_values[0];
        let mut at = 0;
        while let (Some(left), Some(right)) = (tree.nodes[at].left, tree.nodes[at].right) {
            let node = &tree.nodes[at];
            let next = if encoded[node.feature] <= node.threshold {
                left
            } else {
                right
            };
            if let Some(slot) = per_column.get_mut(node.feature) {
                *slot += tree.node_values[next] - tree.node_values[at];
            }
            at = next;
        }
    }
    Some(baseline)
}

/// Writes `weight × (value − mean)` per encoded column into `per_column`; returns the
/// output at the means.
fn linear(
    weights: &[f64],
    intercept: f64,
    means: &[f64],
    encoded: &[f64],
    per_column: &mut [f64],
) -> f64 {
    let mean = |j: usize| means.get(j).copied().unwrap_or(0.0);
    for (j, ((w, x), slot)) in weights
        .iter()
        .zip(encoded)
        .zip(per_column.iter_mut())
        .enumerate()
    {
        *slot = w * (x - mean(j));
    }
    intercept
        + weights
            .iter()
            .enumerate()
            .map(|(j, w)| w * mean(j))
            .sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeatureKind;
    use crate::ml::models::compiled::{Tree, TreeNode, sigmoid};
    use crate::ml::models::features::{Preprocessor, RawColumn};

    fn preprocessing() -> Preprocessor {
        Preprocessor::fit(
            &[
                ("x".into(), FeatureKind::Numeric),
                ("c".into(), FeatureKind::Categorical),
            ],
            &[
                RawColumn::Numbers(vec![Some(0.0), Some(2.0)]),
                RawColumn::Texts(vec![Some("a".into()), Some("b".into())]),
            ],
            false,
            10,
        )
    }

    #[test]
    fn linear_contributions_add_up_to_the_logit() {
        // Encoded columns: x, c=a, c=b, c=(other).
        let artifact = Artifact {
            smartcore: serde_json::Value::Null,
            preprocessing: preprocessing(),
            compiled: CompiledModel::Linear {
                weights: vec![0.5, 1.0, -2.0, 0.0],
                intercept: 0.25,
                logistic: true,
            },
            encoded_means: vec![1.0, 0.5, 0.5, 0.0],
        };
        let row = [3.0, 0.0, 1.0, 0.0];
        let explanation = explain(&artifact, &row, 1).unwrap();
        let logit = 0.25 + 0.5 * 3.0 - 2.0;
        assert!((explanation.output() - logit).abs() < 1e-12);
        assert_eq!(
            explanation.contributions,
            vec![0.5 * (3.0 - 1.0), 1.0 * (0.0 - 0.5) + -2.0 * (1.0 - 0.5)]
        );
        let probability = artifact.compiled.score(&row).probabilities[1];
        assert!((sigmoid(explanation.output()) - probability).abs() < 1e-12);
    }

    #[test]
    fn tree_path_attributions_add_up_to_the_mean_leaf_value() {
        let leaf = |output| TreeNode {
            feature: 0,
            threshold: 0.0,
            left: None,
            right: None,
            output,
        };
        let mut first = Tree {
            nodes: vec![
                TreeNode {
                    feature: 0,
                    threshold: 1.0,
                    left: Some(1),
                    right: Some(2),
                    output: 0.0,
                },
                TreeNode {
                    feature: 1,
                    threshold: 0.5,
                    left: Some(3),
                    right: Some(4),
                    output: 0.0,
                },
                leaf(1.0),
                leaf(0.0),
                leaf(1.0),
            ],
            node_values: Vec::new(),
        };
        let mut second = Tree {
            nodes: vec![
                TreeNode {
                    feature: 2,
                    threshold: 0.5,
                    left: Some(1),
                    right: Some(2),
                    output: 0.0,
                },
                leaf(0.0),
                leaf(1.0),
            ],
            node_values: Vec::new(),
        };
        let rows = [
            0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0,
        ];
        let targets = [0.0, 1.0, 1.0, 1.0];
        first.learn_node_values(&rows, 4, &targets);
        second.learn_node_values(&rows, 4, &targets);
        let artifact = Artifact {
            smartcore: serde_json::Value::Null,
            preprocessing: preprocessing(),
            compiled: CompiledModel::Trees {
                trees: vec![first.clone(), second.clone()],
                classes: 2,
            },
            encoded_means: Vec::new(),
        };
        for row in rows.chunks(4) {
            let explanation = explain(&artifact, row, 0).unwrap();
            let mean_leaf = (first.node_values[*first.path(row).last().unwrap()]
                + second.node_values[*second.path(row).last().unwrap()])
                / 2.0;
            assert!((explanation.output() - mean_leaf).abs() < 1e-12, "{row:?}");
            assert_eq!(explanation.baseline, 0.75);
        }
    }

    #[test]
    fn boosted_attributions_add_up_to_the_boosted_prediction() {
        let leaf = |output| TreeNode {
            feature: 0,
            threshold: 0.0,
            left: None,
            right: None,
            output,
        };
        let mut tree = Tree {
            nodes: vec![
                TreeNode {
                    feature: 0,
                    threshold: 1.0,
                    left: Some(1),
                    right: Some(2),
                    output: 0.0,
                },
                leaf(-2.0),
                leaf(4.0),
            ],
            node_values: Vec::new(),
        };
        let rows = [0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0];
        let leaves: Vec<f64> = rows.chunks(4).map(|r| tree.leaf(r).output).collect();
        tree.learn_node_values(&rows, 4, &leaves);
        let artifact = Artifact {
            smartcore: serde_json::Value::Null,
            preprocessing: preprocessing(),
            compiled: CompiledModel::Boosted {
                trees: vec![tree.clone(), tree],
                base_score: 0.5,
                learning_rate: 0.1,
            },
            encoded_means: Vec::new(),
        };
        for row in rows.chunks(4) {
            let explanation = explain(&artifact, row, 0).unwrap();
            let predicted = artifact.compiled.score(row).value;
            assert!((explanation.output() - predicted).abs() < 1e-12, "{row:?}");
            assert!((explanation.baseline - (0.5 + 0.1 * 2.0 * 2.0)).abs() < 1e-12);
        }
    }
}

//! Explanations: how much each feature moved one prediction away from the model's
//! baseline. Contributions add up exactly: `baseline + Σ contributions = output`.
//! A classifier's explanation is about one class: the positive class of a binary model,
//! the predicted class of a multiclass one.
//!
//! - Linear models (linear, ridge and logistic regression): the contribution of an
//!   encoded column is `weight × (value − training mean)`; the baseline is the output at
//!   the training means. For logistic regression the output is the logit (log-odds) of
//!   the class explained. Cost: one multiply per column.
//! - Trees and forests: path attribution (Saabas). Each node knows the mean target of the
//!   training rows reaching it (the value, or the class's share); walking a row from the
//!   root to its leaf, each split's feature is credited with the change of that mean. The
//!   baseline is the root mean; for a forest both are averaged over the trees. A forest
//!   classifier's probability is that mean of leaf shares (soft voting), so the
//!   explanation adds up to the probability. Forests registered before soft voting vote
//!   hard; their explanation is of the mean leaf share, close to but not the vote
//!   fraction, and multiclass ones are not explained. Cost: one root-to-leaf walk per tree,
//!   or, when scoring recorded the row's paths (as `predict` does), one pass over them.
//! - Gradient boosting: the same path attribution on each tree, measured in the tree's
//!   own leaf values (for an inner node, the hessian-weighted mean leaf value below it),
//!   scaled by the learning rate; the baseline is `base_score + learning_rate × Σ root
//!   values`, so the contributions add up exactly to the boosted prediction: the value,
//!   or the log-odds of the class explained (multiclass: its raw softmax score).
//!
//! One-hot columns of a categorical feature are summed into that feature.

use super::compiled::{CompiledModel, Tree};
use super::registry::Artifact;
use super::tree_walk::RowPaths;

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

/// Explains the prediction for one encoded row about `class` (the positive class of a
/// binary classifier, the predicted class of a multiclass one). None when the model kind
/// has no explanation.
pub fn explain(artifact: &Artifact, encoded: &[f64], class: usize) -> Option<Explanation> {
    let mut contributions = Vec::new();
    let baseline = explain_into(
        artifact,
        encoded,
        class,
        None,
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
/// `paths`, when scoring recorded this row's (see
/// [`FlatTrees::walk_block`](super::tree_walk::FlatTrees::walk_block)), spare walking the
/// trees again.
/// Returns the baseline; None when the model kind has no explanation.
pub fn explain_into(
    artifact: &Artifact,
    encoded: &[f64],
    class: usize,
    paths: Option<RowPaths<'_>>,
    per_column: &mut Vec<f64>,
    contributions: &mut Vec<f64>,
) -> Option<f64> {
    per_column.clear();
    per_column.resize(encoded.len(), 0.0);
    let means = &artifact.encoded_means;
    let row = ExplainedRow { encoded, paths };
    let baseline = match &artifact.compiled {
        CompiledModel::Linear {
            weights,
            intercept,
            logistic,
        } => {
            let logit = linear(weights, *intercept, means, encoded, per_column);
            if *logistic && class == 0 {
                negate(per_column);
                -logit
            } else {
                logit
            }
        }
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
            let baseline =
                path_attributions(trees.iter().enumerate(), Measure::ONE, row, per_column)?;
            per_column.iter_mut().for_each(|c| *c /= n);
            baseline / n
        }
        CompiledModel::Forest { trees, classes } => {
            let n = trees.len().max(1) as f64;
            let measure = if *classes <= 2 {
                Measure::ONE
            } else {
                Measure {
                    stride: *classes,
                    offset: class,
                }
            };
            let baseline =
                path_attributions(trees.iter().enumerate(), measure, row, per_column)? / n;
            per_column.iter_mut().for_each(|c| *c /= n);
            if *classes <= 2 && class == 0 {
                negate(per_column);
                1.0 - baseline
            } else {
                baseline
            }
        }
        CompiledModel::Boosted {
            trees,
            base_score,
            learning_rate,
        } => {
            let baseline =
                path_attributions(trees.iter().enumerate(), Measure::ONE, row, per_column)?;
            per_column.iter_mut().for_each(|c| *c *= learning_rate);
            base_score + learning_rate * baseline
        }
        CompiledModel::BoostedClassifier {
            trees,
            base_scores,
            learning_rate,
            ..
        } => {
            let scores = base_scores.len().max(1);
            let score = if scores == 1 { 0 } else { class };
            let own = trees.iter().enumerate().skip(score).step_by(scores);
            let baseline = path_attributions(own, Measure::ONE, row, per_column)?;
            per_column.iter_mut().for_each(|c| *c *= learning_rate);
            let raw = base_scores.get(score)? + learning_rate * baseline;
            if scores == 1 && class == 0 {
                negate(per_column);
                -raw
            } else {
                raw
            }
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

/// Which of a node's values a path attribution is measured in: `node_values[node ×
/// stride + offset]`.
#[derive(Debug, Clone, Copy)]
struct Measure {
    stride: usize,
    offset: usize,
}

impl Measure {
    /// One value per node.
    const ONE: Measure = Measure {
        stride: 1,
        offset: 0,
    };
}

/// The row a tree explanation follows: its encoded values, and the paths scoring
/// recorded for it through the trees, if any.
#[derive(Clone, Copy)]
struct ExplainedRow<'a> {
    encoded: &'a [f64],
    paths: Option<RowPaths<'a>>,
}

/// Summed over the trees (with their index in the model) into `per_column`: each encoded
/// column's credited changes along the row's root-to-leaf paths; returns the summed root
/// values. None when node values were not learned.
fn path_attributions<'a>(
    trees: impl IntoIterator<Item = (usize, &'a Tree)>,
    measure: Measure,
    row: ExplainedRow<'_>,
    per_column: &mut [f64],
) -> Option<f64> {
    let mut baseline = 0.0;
    for (index, tree) in trees {
        if tree.node_values.len() < tree.nodes.len() * measure.stride {
            return None;
        }
        let value = |node: usize| tree.node_values[node * measure.stride + measure.offset];
        baseline += value(0);
        let followed = row
            .paths
            .is_some_and(|paths| paths.credit(index, measure.stride, measure.offset, per_column));
        if !followed {
            let mut at = 0;
            while let Some(next) = tree.nodes[at].next(row.encoded) {
                if let Some(slot) = per_column.get_mut(tree.nodes[at].column()) {
                    *slot += value(next) - value(at);
                }
                at = next;
            }
        }
    }
    Some(baseline)
}

fn negate(values: &mut [f64]) {
    values.iter_mut().for_each(|v| *v = -*v);
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
    use crate::ml::models::features::{NumericEncoding, Preprocessor, RawColumn};

    /// Sets `node_values` to the mean target of the rows (`width` values each) reaching
    /// each node.
    fn learn_node_values(tree: &mut Tree, rows: &[f64], width: usize, targets: &[f64]) {
        let mut sums = vec![0.0; tree.nodes.len()];
        let mut counts = vec![0.0; tree.nodes.len()];
        for (row, target) in rows.chunks(width).zip(targets) {
            let mut at = 0;
            loop {
                sums[at] += target;
                counts[at] += 1.0;
                match tree.nodes[at].next(row) {
                    Some(next) => at = next,
                    None => break,
                }
            }
        }
        tree.node_values = sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 })
            .collect();
    }

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
            NumericEncoding::Standardized,
            10,
        )
    }

    #[test]
    fn linear_contributions_add_up_to_the_logit() {
        // Encoded columns: x, c=a, c=b, c=(other).
        let artifact = Artifact {
            format: 1,
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
        let leaf = TreeNode::leaf;
        let mut first = Tree {
            nodes: vec![
                TreeNode {
                    feature: 0,
                    threshold: 1.0,
                    left: Some(1),
                    right: Some(2),
                    output: 0.0,
                    missing_left: false,
                },
                TreeNode {
                    feature: 1,
                    threshold: 0.5,
                    left: Some(3),
                    right: Some(4),
                    output: 0.0,
                    missing_left: false,
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
                    missing_left: false,
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
        learn_node_values(&mut first, &rows, 4, &targets);
        learn_node_values(&mut second, &rows, 4, &targets);
        let artifact = Artifact {
            format: 1,
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
            let mean_leaf = (first.node_values[first.leaf_index(row)]
                + second.node_values[second.leaf_index(row)])
                / 2.0;
            assert!((explanation.output() - mean_leaf).abs() < 1e-12, "{row:?}");
            assert_eq!(explanation.baseline, 0.75);
        }
    }

    #[test]
    fn boosted_attributions_add_up_to_the_boosted_prediction() {
        let leaf = TreeNode::leaf;
        let mut tree = Tree {
            nodes: vec![
                TreeNode {
                    feature: 0,
                    threshold: 1.0,
                    left: Some(1),
                    right: Some(2),
                    output: 0.0,
                    missing_left: false,
                },
                leaf(-2.0),
                leaf(4.0),
            ],
            node_values: Vec::new(),
        };
        let rows = [0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0];
        let leaves: Vec<f64> = rows.chunks(4).map(|r| tree.leaf(r).output).collect();
        learn_node_values(&mut tree, &rows, 4, &leaves);
        let artifact = Artifact {
            format: 1,
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

#[cfg(test)]
mod learned_model_tests {
    use super::*;
    use crate::config::FeatureKind;
    use crate::ml::models::compiled::sigmoid;
    use crate::ml::models::features::{NumericEncoding, Preprocessor, RawColumn};
    use crate::ml::models::learner::Labels;
    use crate::ml::models::tree_walk::{FlatTrees, TreePaths};
    use crate::ml::models::trees::bins::BinnedColumns;
    use crate::ml::models::trees::boosting::{BoostingParameters, train_boosting};
    use crate::ml::models::trees::forest::tests::noisy_rows;
    use crate::ml::models::trees::forest::{ForestParameters, train_forest};

    fn artifact(compiled: CompiledModel) -> Artifact {
        let numbers = RawColumn::Numbers(vec![Some(0.0), Some(1.0)]);
        Artifact {
            format: crate::ml::models::registry::ARTIFACT_FORMAT,
            smartcore: serde_json::Value::Null,
            preprocessing: Preprocessor::fit(
                &[
                    ("a".into(), FeatureKind::Numeric),
                    ("b".into(), FeatureKind::Numeric),
                ],
                &[numbers.clone(), numbers],
                NumericEncoding::MissingKept,
                10,
            ),
            compiled,
            encoded_means: Vec::new(),
        }
    }

    /// Explanations of both classes of a binary model add up to what it outputs.
    #[test]
    fn soft_forest_and_boosted_explanations_add_up_to_the_probability_and_log_odds() {
        let (values, classes) = noisy_rows(3000, 4);
        let binned = BinnedColumns::new(&values, 3000, 2);
        let labels = Labels::Classes(classes);
        let forest = artifact(train_forest(
            &binned,
            &labels,
            2,
            &ForestParameters {
                n_trees: 15,
                max_depth: Some(5),
                ..ForestParameters::default()
            },
            2,
        ));
        let boosted = artifact(train_boosting(
            &values,
            &binned,
            &labels,
            2,
            &BoostingParameters {
                n_estimators: 30,
                ..BoostingParameters::default()
            },
            2,
        ));
        // Scoring walks the trees a block of rows at a time.
        let block = &values[..600];
        let (mut forest_paths, mut boosted_paths) = (TreePaths::default(), TreePaths::default());
        let forest_trees = FlatTrees::new(&forest.compiled, 2).unwrap();
        let boosted_trees = FlatTrees::new(&boosted.compiled, 2).unwrap();
        forest_trees.walk_block(block, 2, &mut forest_paths);
        boosted_trees.walk_block(block, 2, &mut boosted_paths);
        let mut probabilities = Vec::new();
        for (index, row) in block.chunks(2).enumerate() {
            let probability = forest.compiled.score(row).probabilities;
            for class in [0, 1] {
                let explained = explain(&forest, row, class).unwrap().output();
                assert!((explained - probability[class]).abs() < 1e-9, "{row:?}");
            }
            let positive = boosted.compiled.score(row).probabilities[1];
            let log_odds = explain(&boosted, row, 1).unwrap().output();
            assert!((sigmoid(log_odds) - positive).abs() < 1e-9, "{row:?}");
            let against = explain(&boosted, row, 0).unwrap().output();
            assert!((against + log_odds).abs() < 1e-9);
            // Following the paths scoring recorded gives the very same explanation, and
            // scoring from them the very same output.
            for (model, trees, paths, explained) in [
                (&forest, &forest_trees, &forest_paths, 0),
                (&forest, &forest_trees, &forest_paths, 1),
                (&boosted, &boosted_trees, &boosted_paths, 1),
            ] {
                let value = model
                    .compiled
                    .score_walked(row, paths, index, &mut probabilities);
                let scored = model.compiled.score(row);
                assert_eq!(
                    (value, &probabilities),
                    (scored.value, &scored.probabilities)
                );
                let (mut per_column, mut followed) = (Vec::new(), Vec::new());
                let baseline = explain_into(
                    model,
                    row,
                    explained,
                    Some(paths.row(trees, index)),
                    &mut per_column,
                    &mut followed,
                )
                .unwrap();
                let walked = explain(model, row, explained).unwrap();
                assert_eq!(
                    (baseline, followed),
                    (walked.baseline, walked.contributions)
                );
            }
        }
    }
}

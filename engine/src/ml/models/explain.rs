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
//!   fraction, and multiclass ones are not explained. Cost: one root-to-leaf walk per tree
//!   ([`explain`]), or, for a block of rows whose paths scoring recorded (as `predict`
//!   does), one pass over each tree's paths for the whole block ([`explain_block`]).
//! - Gradient boosting: the same path attribution on each tree, measured in the tree's
//!   own leaf values (for an inner node, the hessian-weighted mean leaf value below it),
//!   scaled by the learning rate; the baseline is `base_score + learning_rate × Σ root
//!   values`, so the contributions add up exactly to the boosted prediction: the value,
//!   or the log-odds of the class explained (multiclass: its raw softmax score).
//!
//! One-hot columns of a categorical feature are summed into that feature.

use super::compiled::{CompiledModel, Tree};
use super::registry::Artifact;
use super::tree_walk::{FlatTrees, RowPaths, TreePaths};

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
/// binary classifier, the predicted class of a multiclass one), walking the trees. None
/// when the model kind has no explanation.
pub fn explain(artifact: &Artifact, encoded: &[f64], class: usize) -> Option<Explanation> {
    let mut per_column = vec![0.0; encoded.len()];
    let row = ExplainedRow {
        encoded,
        paths: None,
    };
    let baseline = explain_row(artifact, row, class, &mut per_column)?;
    let mut contributions = Vec::new();
    per_feature(artifact, &per_column, &mut contributions);
    Some(Explanation {
        baseline,
        contributions,
    })
}

/// A block of rows scoring walked: their encoded values (`width` each) and their paths
/// through the trees.
#[derive(Debug, Clone, Copy)]
pub struct WalkedBlock<'a> {
    /// The encoded rows, one after another.
    pub encoded: &'a [f64],
    /// Values per row.
    pub width: usize,
    /// The trees walked.
    pub trees: &'a FlatTrees,
    /// The rows' paths through them.
    pub paths: &'a TreePaths,
}

/// The explanations of a block of rows, in buffers reused from block to block.
#[derive(Debug, Default)]
pub struct BlockExplanations {
    /// Per row, its credited change per encoded column.
    per_column: Vec<f64>,
    /// Per row, the summed root values of the trees explained.
    roots: Vec<f64>,
    /// Per row, how its tree explanation is made; None when it has none.
    plans: Vec<Option<TreeExplanation>>,
    /// Per row, its contributions per feature.
    contributions: Vec<f64>,
    /// Per row, whether it is explained.
    explained: Vec<bool>,
    /// Features per row.
    features: usize,
}

impl BlockExplanations {
    /// Row `row`'s contributions per feature, in the model's feature order; None when it
    /// has no explanation.
    pub fn row(&self, row: usize) -> Option<&[f64]> {
        if !*self.explained.get(row)? {
            return None;
        }
        self.contributions
            .get(row * self.features..(row + 1) * self.features)
    }
}

/// Explains every row of `block` about its class in `classes` (as [`explain`] does, with
/// the very same sums) into `explained`, from the steps the walk added up or else
/// following the paths it recorded. Those are followed one tree at a time over the whole
/// block, so a tree's credits stay in cache while every row adds up its path's.
pub fn explain_block(
    artifact: &Artifact,
    block: WalkedBlock<'_>,
    classes: &[usize],
    explained: &mut BlockExplanations,
) {
    let rows = classes.len();
    let width = block.width;
    explained.features = artifact.preprocessing.encoders.len();
    explained.per_column.clear();
    explained.per_column.resize(rows * width, 0.0);
    explained.contributions.clear();
    explained.explained.clear();
    let row_of = |at: usize| ExplainedRow {
        encoded: &block.encoded[at * width..(at + 1) * width],
        paths: Some(block.paths.row(block.trees, at)),
    };
    let Some(trees) = artifact.compiled.trees() else {
        for (at, &class) in classes.iter().enumerate() {
            let per_column = &mut explained.per_column[at * width..(at + 1) * width];
            let baseline = explain_row(artifact, row_of(at), class, per_column);
            finish_row(
                artifact,
                baseline.is_some(),
                per_column,
                &mut explained.contributions,
                &mut explained.explained,
            );
        }
        return;
    };
    explained.plans.clear();
    explained.plans.extend(
        classes
            .iter()
            .map(|&class| TreeExplanation::of(&artifact.compiled, class)),
    );
    explained.roots.clear();
    explained.roots.resize(rows, 0.0);
    // Rows whose steps the walk added up need only the trees' root values: the same sum,
    // in the same order, for each of them.
    let credited = |at: usize, plan: &TreeExplanation| {
        block.paths.credited(at).filter(|_| plan.takes_every_tree())
    };
    let every_root = trees
        .iter()
        .try_fold(0.0, |sum, tree| Some(sum + tree.node_values.first()?));
    let followed = |at: usize, plans: &[Option<TreeExplanation>]| {
        plans[at].is_some_and(|plan| credited(at, &plan).is_none())
    };
    if (0..rows).any(|at| followed(at, &explained.plans)) {
        for (index, tree) in trees.iter().enumerate() {
            for at in 0..rows {
                if !followed(at, &explained.plans) {
                    continue;
                }
                let Some(plan) = explained.plans[at].filter(|plan| plan.includes(index)) else {
                    continue;
                };
                let per_column = &mut explained.per_column[at * width..(at + 1) * width];
                match attribute_tree(index, tree, plan.measure, row_of(at), per_column) {
                    Some(root) => explained.roots[at] += root,
                    None => explained.plans[at] = None,
                }
            }
        }
    }
    for at in 0..rows {
        let per_column = &mut explained.per_column[at * width..(at + 1) * width];
        if let Some(plan) = explained.plans[at]
            && let Some(steps) = credited(at, &plan)
        {
            per_column
                .iter_mut()
                .zip(steps)
                .for_each(|(sum, step)| *sum = *step);
            match every_root {
                Some(roots) => explained.roots[at] = roots,
                None => explained.plans[at] = None,
            }
        }
        let plan = explained.plans[at];
        if let Some(plan) = plan {
            plan.finish(explained.roots[at], per_column);
        }
        finish_row(
            artifact,
            plan.is_some(),
            per_column,
            &mut explained.contributions,
            &mut explained.explained,
        );
    }
}

/// Whether every explanation `compiled` gives takes every tree in the first of its node
/// values (binary classifiers and regressors), so a walk can add the steps up as it goes
/// (see [`FlatTrees::walk_block`]).
pub fn explained_over_every_tree(compiled: &CompiledModel) -> bool {
    TreeExplanation::of(compiled, 0).is_some_and(|plan| plan.takes_every_tree())
}

/// Appends whether a row is explained to `flags`, and its contributions per feature
/// (zeros when it is not) to `contributions`.
fn finish_row(
    artifact: &Artifact,
    is_explained: bool,
    per_column: &[f64],
    contributions: &mut Vec<f64>,
    flags: &mut Vec<bool>,
) {
    flags.push(is_explained);
    if is_explained {
        per_feature(artifact, per_column, contributions);
    } else {
        let features = artifact.preprocessing.encoders.len();
        contributions.extend(std::iter::repeat_n(0.0, features));
    }
}

/// Appends the contributions per encoded column summed per feature (a categorical
/// feature's one-hot columns into that feature), in the model's feature order.
fn per_feature(artifact: &Artifact, per_column: &[f64], contributions: &mut Vec<f64>) {
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
}

/// Explains one row about `class` into `per_column` (zeros, one per encoded column);
/// returns the baseline, None when the model kind has no explanation.
fn explain_row(
    artifact: &Artifact,
    row: ExplainedRow<'_>,
    class: usize,
    per_column: &mut [f64],
) -> Option<f64> {
    let means = &artifact.encoded_means;
    match &artifact.compiled {
        CompiledModel::Linear {
            weights,
            intercept,
            logistic,
        } => {
            let logit = linear(weights, *intercept, means, row.encoded, per_column);
            Some(if *logistic && class == 0 {
                negate(per_column);
                -logit
            } else {
                logit
            })
        }
        CompiledModel::Softmax {
            weights,
            intercepts,
        } => Some(linear(
            weights.get(class)?,
            *intercepts.get(class)?,
            means,
            row.encoded,
            per_column,
        )),
        compiled => {
            let plan = TreeExplanation::of(compiled, class)?;
            let mut roots = 0.0;
            for (index, tree) in compiled.trees()?.iter().enumerate() {
                if plan.includes(index) {
                    roots += attribute_tree(index, tree, plan.measure, row, per_column)?;
                }
            }
            Some(plan.finish(roots, per_column))
        }
    }
}

/// How a tree model's explanation of one class is made: which trees' path attributions
/// it adds up, in which node values, and how their sums become the explanation.
#[derive(Debug, Clone, Copy)]
struct TreeExplanation {
    measure: Measure,
    /// The first tree explained, then every `every`-th.
    first: usize,
    every: usize,
    finish: Finish,
}

/// How summed path attributions become an explanation.
#[derive(Debug, Clone, Copy)]
enum Finish {
    /// The mean over `trees` trees; `complement`: of the other class of two (the
    /// contributions negated, the baseline one minus the mean).
    Mean { trees: f64, complement: bool },
    /// `base + rate × sum`, contributions times `rate`; `negated`: of the other class of
    /// two (all negated, in log-odds).
    Scaled { base: f64, rate: f64, negated: bool },
}

impl TreeExplanation {
    /// How `compiled`'s explanation of `class` is made; None for models without trees or
    /// a class they do not have.
    fn of(compiled: &CompiledModel, class: usize) -> Option<Self> {
        let all = |measure, finish| TreeExplanation {
            measure,
            first: 0,
            every: 1,
            finish,
        };
        match compiled {
            CompiledModel::Linear { .. } | CompiledModel::Softmax { .. } => None,
            CompiledModel::Trees { trees, .. } => Some(all(
                Measure::ONE,
                Finish::Mean {
                    trees: trees.len().max(1) as f64,
                    complement: false,
                },
            )),
            CompiledModel::Forest { trees, classes } => {
                let measure = if *classes <= 2 {
                    Measure::ONE
                } else {
                    Measure {
                        stride: *classes,
                        offset: class,
                    }
                };
                Some(all(
                    measure,
                    Finish::Mean {
                        trees: trees.len().max(1) as f64,
                        complement: *classes <= 2 && class == 0,
                    },
                ))
            }
            CompiledModel::Boosted {
                base_score,
                learning_rate,
                ..
            } => Some(all(
                Measure::ONE,
                Finish::Scaled {
                    base: *base_score,
                    rate: *learning_rate,
                    negated: false,
                },
            )),
            CompiledModel::BoostedClassifier {
                base_scores,
                learning_rate,
                ..
            } => {
                let scores = base_scores.len().max(1);
                let score = if scores == 1 { 0 } else { class };
                Some(TreeExplanation {
                    measure: Measure::ONE,
                    first: score,
                    every: scores,
                    finish: Finish::Scaled {
                        base: *base_scores.get(score)?,
                        rate: *learning_rate,
                        negated: scores == 1 && class == 0,
                    },
                })
            }
        }
    }

    /// Whether every tree is explained, in the first of its node values: what a walk that
    /// credits adds up.
    fn takes_every_tree(&self) -> bool {
        self.measure.stride == 1 && self.measure.offset == 0 && self.first == 0 && self.every == 1
    }

    /// Whether tree `index` is explained.
    fn includes(&self, index: usize) -> bool {
        index >= self.first && (index - self.first).is_multiple_of(self.every)
    }

    /// The explanation's baseline from the trees' summed root values `roots`, turning
    /// `per_column`'s summed credits into contributions.
    fn finish(&self, roots: f64, per_column: &mut [f64]) -> f64 {
        match self.finish {
            Finish::Mean { trees, complement } => {
                let baseline = roots / trees;
                per_column.iter_mut().for_each(|c| *c /= trees);
                if complement {
                    negate(per_column);
                    1.0 - baseline
                } else {
                    baseline
                }
            }
            Finish::Scaled {
                base,
                rate,
                negated,
            } => {
                per_column.iter_mut().for_each(|c| *c *= rate);
                let raw = base + rate * roots;
                if negated {
                    negate(per_column);
                    -raw
                } else {
                    raw
                }
            }
        }
    }
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

/// Adds to `per_column` each encoded column's credited changes along the row's path
/// through tree `index` (following the recorded path, else walking the tree); returns the
/// root's value. None when the tree's node values were not learned.
fn attribute_tree(
    index: usize,
    tree: &Tree,
    measure: Measure,
    row: ExplainedRow<'_>,
    per_column: &mut [f64],
) -> Option<f64> {
    if tree.node_values.len() < tree.nodes.len() * measure.stride {
        return None;
    }
    let value = |node: usize| tree.node_values[node * measure.stride + measure.offset];
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
    Some(value(0))
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
    use crate::ml::models::tree_walk::tests::chain;
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

    /// A forest (`trees` trees of at most `depth` levels) and a boosted model (`rounds`
    /// rounds) trained on `values` (rows of 2) labelled with `labels` of `classes` classes.
    fn forest_and_boosted(
        values: &[f64],
        labels: Vec<i32>,
        classes: usize,
        (trees, depth): (usize, usize),
        rounds: usize,
    ) -> (Artifact, Artifact) {
        let binned = BinnedColumns::new(values, values.len() / 2, 2);
        let labels = Labels::Classes(labels);
        let forest = ForestParameters {
            n_trees: trees,
            max_depth: Some(depth),
            ..ForestParameters::default()
        };
        let boosting = BoostingParameters {
            n_estimators: rounds,
            ..BoostingParameters::default()
        };
        (
            artifact(train_forest(&binned, &labels, classes, &forest, 2)),
            artifact(train_boosting(
                values, &binned, &labels, classes, &boosting, 2,
            )),
        )
    }

    /// Explanations of both classes of a binary model add up to what it outputs.
    #[test]
    fn soft_forest_and_boosted_explanations_add_up_to_the_probability_and_log_odds() {
        let (values, classes) = noisy_rows(3000, 4);
        let (forest, boosted) = forest_and_boosted(&values, classes, 2, (15, 5), 30);
        // Scoring walks the trees a block of rows at a time and explains them together.
        let block = &values[..600];
        let mut probabilities = Vec::new();
        let walks = [false, true].map(|credit| [(&forest, credit), (&boosted, credit)]);
        for (model, credit) in walks.into_iter().flatten() {
            let (paths, trees) = walked(model, block, credit);
            assert_eq!(
                paths.credited(0).is_some(),
                credit,
                "a binary model's trees are credited while walking when asked"
            );
            for (index, row) in block.chunks(2).enumerate() {
                let value = model
                    .compiled
                    .score_walked(row, &paths, index, &mut probabilities);
                let scored = model.compiled.score(row);
                assert_eq!(
                    (value, &probabilities),
                    (scored.value, &scored.probabilities)
                );
            }
            // Rows explained about either class in one block.
            let classes: Vec<usize> = (0..300).map(|row| row % 2).collect();
            assert_block_explains_as_walking(model, block, &trees, &paths, &classes);
        }
        for row in block.chunks(2) {
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
        }
    }

    /// The trees of `model` laid out, and `block`'s paths through them (with `credit`,
    /// added up while walking where the trees allow it).
    fn walked(model: &Artifact, block: &[f64], credit: bool) -> (TreePaths, FlatTrees) {
        let trees = FlatTrees::new(&model.compiled, 2).unwrap();
        let mut paths = TreePaths::default();
        trees.walk_block(block, 2, &mut paths, credit);
        (paths, trees)
    }

    /// Explaining `block` (rows of 2) in one go, each row about its class in `classes`,
    /// explains every row, with the very contributions explaining it alone gives.
    fn assert_block_explains_as_walking(
        model: &Artifact,
        block: &[f64],
        trees: &FlatTrees,
        paths: &TreePaths,
        classes: &[usize],
    ) {
        let mut explained = BlockExplanations::default();
        let walked = WalkedBlock {
            encoded: block,
            width: 2,
            trees,
            paths,
        };
        explain_block(model, walked, classes, &mut explained);
        // Bit for bit (a missing value makes a linear contribution NaN).
        let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (index, (row, &class)) in block.chunks(2).zip(classes).enumerate() {
            let alone = explain(model, row, class).expect("every row is explained");
            assert_eq!(
                explained.row(index).map(bits),
                Some(bits(&alone.contributions)),
                "row {row:?}, class {class}"
            );
        }
        assert_eq!(explained.row(classes.len()), None, "no row past the block");
    }

    /// Multiclass forests and boosted models explain each row of a block about its own
    /// class (another node value, or other trees); a class the model lacks is not
    /// explained; linear models explain blocks too.
    #[test]
    fn blocks_explain_each_row_about_its_own_class() {
        let (values, classes) = noisy_rows(2000, 9);
        let three: Vec<i32> = classes
            .iter()
            .zip(values.chunks(2))
            .map(|(&class, row)| if row[1] > 0.8 { 2 } else { class })
            .collect();
        let (forest, boosted) = forest_and_boosted(&values, three, 3, (6, 4), 5);
        let block = &values[..512];
        let per_row: Vec<usize> = (0..256).map(|row| row % 3).collect();
        // Crediting while walking serves only explanations of every tree: a multiclass
        // forest's trees are not credited, and a multiclass boosted model's rows follow
        // their own class's trees.
        for model in [&forest, &boosted] {
            for credit in [false, true] {
                let (paths, trees) = walked(model, block, credit);
                assert_block_explains_as_walking(model, block, &trees, &paths, &per_row);
            }
        }
        assert!(!explained_over_every_tree(&forest.compiled));
        assert!(!explained_over_every_tree(&boosted.compiled));
        let (paths, trees) = walked(&boosted, block, false);
        let mut explained = BlockExplanations::default();
        let walked_block = WalkedBlock {
            encoded: block,
            width: 2,
            trees: &trees,
            paths: &paths,
        };
        let unknown: Vec<usize> = (0..256).map(|row| if row == 7 { 3 } else { 0 }).collect();
        explain_block(&boosted, walked_block, &unknown, &mut explained);
        assert_eq!(explained.row(7), None, "boosted has no fourth class");
        assert!(explained.row(6).is_some());
        // A tree deeper than the paths scoring records is walked again to be explained.
        let deep = artifact(CompiledModel::Forest {
            trees: vec![chain(100), chain(3)],
            classes: 2,
        });
        let ramp: Vec<f64> = (0..256)
            .flat_map(|row| [f64::from(row % 120), 0.0])
            .collect();
        for credit in [false, true] {
            let (paths, trees) = walked(&deep, &ramp, credit);
            assert_block_explains_as_walking(&deep, &ramp, &trees, &paths, &[1; 256]);
        }
        assert!(explained_over_every_tree(&deep.compiled));
        let logistic = artifact(CompiledModel::Linear {
            weights: vec![0.5, -1.5],
            intercept: 0.25,
            logistic: true,
        });
        let (paths, trees) = walked(&logistic, block, true);
        assert_block_explains_as_walking(&logistic, block, &trees, &paths, &per_row);
    }
}

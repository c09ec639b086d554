//! Growing one tree from histograms of binned columns: at each node, per column and bin,
//! the sums of the targets, the weight and the row count; the best split is found by
//! scanning the bins, and the rows missing the column go to whichever side gains more.
//!
//! One learner serves every tree model. A node's score is `Σₖ sumₖ² / (weight + λ)`:
//! with one-hot classes as targets and unit weights that is the Gini decrease (random
//! forest and decision tree classifiers), with values the variance decrease (regression),
//! and with negative gradients and hessians the second-order gain of gradient boosting.
//! A node's value is `sumₖ / (weight + λ)`: class shares, the mean, or the Newton step.
//!
//! Without a leaf limit a tree grows depth first, so only the histograms along one path
//! are held; with `max_leaves` it grows best first (the leaf whose split gains most). The
//! larger child's histogram is the parent's minus the smaller child's when every node
//! looks at the same columns. Histograms of many rows are built column-parallel; each
//! column is summed in row order by one thread, so the tree is the same on any number of
//! threads.

use super::bins::BinnedColumns;
use super::rng::Rng;
use crate::ml::models::compiled::TreeNode;

/// How a tree grows.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowSettings {
    /// Deepest level a split may happen at (the root is depth 0); None: no limit.
    pub max_depth: Option<usize>,
    /// Most leaves; None: no limit (the tree grows depth first).
    pub max_leaves: Option<usize>,
    /// Fewest rows in a leaf.
    pub min_samples_leaf: usize,
    /// Fewest rows in a node that is split.
    pub min_samples_split: usize,
    /// Least weight (hessian sum) in a leaf.
    pub min_child_weight: f64,
    /// L2 regularization of leaf values.
    pub lambda: f64,
    /// Columns drawn at random for each split (random forests); None: all of the tree's.
    pub features_per_split: Option<usize>,
    /// Threads that build one histogram.
    pub threads: usize,
}

/// What a tree fits, per training row.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// Target values per row.
    pub outputs: usize,
    /// `rows × outputs` target values, row-major.
    pub sums: &'a [f64],
    /// Per row weight (hessian); None: every row weighs 1.
    pub weights: Option<&'a [f64]>,
}

/// A grown tree.
#[derive(Debug, Clone, PartialEq)]
pub struct GrownTree {
    /// The nodes, root first; a leaf's output is its value (one output) or the index of
    /// its largest value.
    pub nodes: Vec<TreeNode>,
    /// Per node, `outputs` values: `sum / (weight + λ)` of its training rows.
    pub values: Vec<f64>,
    /// Per node, the weight of its training rows.
    pub covers: Vec<f64>,
    /// Per leaf: its node and the range of `rows` (as reordered by growing) it holds.
    pub leaves: Vec<(usize, std::ops::Range<usize>)>,
}

/// Sums over a set of rows.
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    sums: Vec<f64>,
    weight: f64,
    count: f64,
}

impl Stats {
    fn zero(outputs: usize) -> Self {
        Self {
            sums: vec![0.0; outputs],
            weight: 0.0,
            count: 0.0,
        }
    }

    fn of_rows(targets: &Targets<'_>, rows: &[u32]) -> Self {
        let mut stats = Self::zero(targets.outputs);
        for row in rows {
            let row = *row as usize;
            let at = row * targets.outputs;
            for (sum, value) in stats.sums.iter_mut().zip(&targets.sums[at..]) {
                *sum += value;
            }
            stats.weight += targets.weights.map_or(1.0, |w| w[row]);
            stats.count += 1.0;
        }
        stats
    }

    /// From one histogram bin (`outputs` sums, weight, count).
    fn from_bin(bin: &[f64]) -> Self {
        let outputs = bin.len() - 2;
        Self {
            sums: bin[..outputs].to_vec(),
            weight: bin[outputs],
            count: bin[outputs + 1],
        }
    }

    fn add_bin(&mut self, bin: &[f64]) {
        let outputs = self.sums.len();
        for (sum, value) in self.sums.iter_mut().zip(bin) {
            *sum += value;
        }
        self.weight += bin[outputs];
        self.count += bin[outputs + 1];
    }

    fn minus(&self, other: &Stats) -> Stats {
        Stats {
            sums: self
                .sums
                .iter()
                .zip(&other.sums)
                .map(|(a, b)| a - b)
                .collect(),
            weight: self.weight - other.weight,
            count: self.count - other.count,
        }
    }

    fn score(&self, lambda: f64) -> f64 {
        let denominator = self.weight + lambda;
        if denominator <= 0.0 {
            return 0.0;
        }
        self.sums.iter().map(|s| s * s).sum::<f64>() / denominator
    }

    fn values(&self, lambda: f64) -> impl Iterator<Item = f64> + '_ {
        let denominator = self.weight + lambda;
        self.sums.iter().map(move |s| {
            if denominator > 0.0 {
                s / denominator
            } else {
                0.0
            }
        })
    }
}

/// Per column, the bins' sums (`outputs` target sums, weight, count per bin); empty for
/// columns not built.
#[derive(Debug, Clone)]
struct Histogram {
    columns: Vec<Vec<f64>>,
}

/// The best split of a node.
#[derive(Debug, Clone)]
struct Split {
    column: usize,
    /// The last value bin that goes left.
    bin: usize,
    missing_left: bool,
    gain: f64,
    left: Stats,
}

/// A leaf that may still be split.
struct Leaf {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    stats: Stats,
    histogram: Option<Histogram>,
    split: Option<Split>,
}

/// Grows one tree on `rows` (indexes into `binned` and `targets`, repeats allowed) over
/// `columns`; `rows` is reordered so each leaf's rows are contiguous.
pub fn grow(
    binned: &BinnedColumns,
    targets: &Targets<'_>,
    rows: &mut [u32],
    columns: &[usize],
    settings: &GrowSettings,
    rng: &mut Rng,
) -> GrownTree {
    let mut grower = Grower {
        binned,
        targets,
        columns,
        settings,
        tree: GrownTree {
            nodes: Vec::new(),
            values: Vec::new(),
            covers: Vec::new(),
            leaves: Vec::new(),
        },
    };
    let stats = Stats::of_rows(targets, rows);
    let root = grower.add_node(&stats);
    let mut pending = Vec::new();
    let mut root = Leaf {
        node: root,
        start: 0,
        end: rows.len(),
        depth: 0,
        stats,
        histogram: None,
        split: None,
    };
    grower.evaluate(&mut root, rows, rng);
    pending.push(root);
    let mut leaves = 1;
    while let Some(at) = grower.next_to_split(&pending) {
        let leaf = pending.swap_remove(at);
        let Some(split) = leaf.split.clone() else {
            grower.tree.leaves.push((leaf.node, leaf.start..leaf.end));
            continue;
        };
        if settings.max_leaves.is_some_and(|max| leaves >= max) {
            grower.tree.leaves.push((leaf.node, leaf.start..leaf.end));
            continue;
        }
        leaves += 1;
        let (mut left, mut right) = grower.split(leaf, &split, rows);
        grower.evaluate(&mut left, rows, rng);
        grower.evaluate(&mut right, rows, rng);
        pending.push(right);
        pending.push(left);
    }
    for leaf in pending {
        grower.tree.leaves.push((leaf.node, leaf.start..leaf.end));
    }
    grower.tree
}

struct Grower<'a> {
    binned: &'a BinnedColumns,
    targets: &'a Targets<'a>,
    columns: &'a [usize],
    settings: &'a GrowSettings,
    tree: GrownTree,
}

impl Grower<'_> {
    fn add_node(&mut self, stats: &Stats) -> usize {
        let values: Vec<f64> = stats.values(self.settings.lambda).collect();
        let output = if values.len() == 1 {
            values[0]
        } else {
            crate::ml::models::compiled::argmax(&values) as f64
        };
        self.tree.nodes.push(TreeNode {
            feature: 0,
            threshold: 0.0,
            left: None,
            right: None,
            output,
            missing_left: false,
        });
        self.tree.values.extend(values);
        self.tree.covers.push(stats.weight);
        self.tree.nodes.len() - 1
    }

    /// The pending leaf to take next: without a leaf limit the last one (depth first),
    /// with one the leaf whose split gains most.
    fn next_to_split(&self, pending: &[Leaf]) -> Option<usize> {
        if pending.is_empty() {
            return None;
        }
        if self.settings.max_leaves.is_none() {
            return Some(pending.len() - 1);
        }
        let gain = |leaf: &Leaf| leaf.split.as_ref().map_or(f64::NEG_INFINITY, |s| s.gain);
        let best = (0..pending.len()).fold(0, |best, at| {
            let (a, b) = (gain(&pending[at]), gain(&pending[best]));
            if a > b || (a == b && pending[at].node < pending[best].node) {
                at
            } else {
                best
            }
        });
        Some(best)
    }

    /// Finds the leaf's best split, when it may be split at all.
    fn evaluate(&self, leaf: &mut Leaf, rows: &[u32], rng: &mut Rng) {
        let settings = self.settings;
        let splittable = settings.max_depth.is_none_or(|max| leaf.depth < max)
            && leaf.stats.count >= 2.0 * settings.min_samples_leaf.max(1) as f64
            && leaf.stats.count >= settings.min_samples_split as f64
            && leaf.stats.weight >= 2.0 * settings.min_child_weight;
        if !splittable {
            leaf.histogram = None;
            return;
        }
        let sampled;
        let columns = match settings.features_per_split {
            Some(count) if count < self.columns.len() => {
                sampled = rng.sample(self.columns, count);
                leaf.histogram = None;
                &sampled[..]
            }
            _ => self.columns,
        };
        let histogram = match leaf.histogram.take() {
            Some(histogram) => histogram,
            None => self.histogram(&rows[leaf.start..leaf.end], columns),
        };
        leaf.split = self.best_split(&histogram, columns, &leaf.stats);
        // Kept for the children's subtraction only when they look at the same columns.
        if leaf.split.is_some() && columns.len() == self.columns.len() {
            leaf.histogram = Some(histogram);
        }
    }

    fn best_split(&self, histogram: &Histogram, columns: &[usize], node: &Stats) -> Option<Split> {
        let settings = self.settings;
        let stride = self.targets.outputs + 2;
        let parent = node.score(settings.lambda);
        let least_gain = 1e-10 * parent.abs().max(1e-300);
        let min_count = settings.min_samples_leaf.max(1) as f64;
        let allowed =
            |stats: &Stats| stats.count >= min_count && stats.weight >= settings.min_child_weight;
        let mut best: Option<Split> = None;
        for &column in columns {
            let bins = &histogram.columns[column];
            let value_bins = bins.len() / stride;
            let missing = Stats::from_bin(&bins[..stride]);
            let mut left = Stats::zero(self.targets.outputs);
            for bin in 1..value_bins.saturating_sub(1) {
                left.add_bin(&bins[bin * stride..(bin + 1) * stride]);
                if left.count == 0.0 {
                    continue;
                }
                let sides = [false, true];
                for missing_left in sides.into_iter().take(1 + usize::from(missing.count > 0.0)) {
                    let left = if missing_left {
                        let mut with = left.clone();
                        with.add_bin(&bins[..stride]);
                        with
                    } else {
                        left.clone()
                    };
                    let right = node.minus(&left);
                    if !allowed(&left) || !allowed(&right) {
                        continue;
                    }
                    let gain = left.score(settings.lambda) + right.score(settings.lambda) - parent;
                    if gain > least_gain && best.as_ref().is_none_or(|b| gain > b.gain) {
                        // Rows missing this column in scoring but not in training go
                        // with the larger side.
                        let missing_left =
                            missing_left || (missing.count == 0.0 && left.count > right.count);
                        best = Some(Split {
                            column,
                            bin,
                            missing_left,
                            gain,
                            left,
                        });
                    }
                }
            }
        }
        best
    }

    /// Splits `leaf`: reorders its rows left then right and adds the two child nodes.
    fn split(&mut self, leaf: Leaf, split: &Split, rows: &mut [u32]) -> (Leaf, Leaf) {
        let bins = &self.binned.bins[split.column];
        let span = &mut rows[leaf.start..leaf.end];
        let goes_left = |row: u32| match bins[row as usize] {
            0 => split.missing_left,
            bin => bin as usize <= split.bin,
        };
        let (mut low, mut high) = (0, span.len());
        while low < high {
            if goes_left(span[low]) {
                low += 1;
            } else {
                high -= 1;
                span.swap(low, high);
            }
        }
        let middle = leaf.start + low;
        let left_stats = split.left.clone();
        let right_stats = leaf.stats.minus(&left_stats);
        let left_node = self.add_node(&left_stats);
        let right_node = self.add_node(&right_stats);
        let node = &mut self.tree.nodes[leaf.node];
        node.feature = split.column;
        node.threshold = self.binned.upper[split.column][split.bin - 1];
        node.missing_left = split.missing_left;
        node.left = Some(left_node);
        node.right = Some(right_node);
        let (left_histogram, right_histogram) = match leaf.histogram {
            Some(parent) => {
                let left_rows = &rows[leaf.start..middle];
                let right_rows = &rows[middle..leaf.end];
                let left_smaller = left_rows.len() <= right_rows.len();
                let smaller = self.histogram(
                    if left_smaller { left_rows } else { right_rows },
                    self.columns,
                );
                let larger = subtract(parent, &smaller);
                if left_smaller {
                    (Some(smaller), Some(larger))
                } else {
                    (Some(larger), Some(smaller))
                }
            }
            None => (None, None),
        };
        let depth = leaf.depth + 1;
        (
            Leaf {
                node: left_node,
                start: leaf.start,
                end: middle,
                depth,
                stats: left_stats,
                histogram: left_histogram,
                split: None,
            },
            Leaf {
                node: right_node,
                start: middle,
                end: leaf.end,
                depth,
                stats: right_stats,
                histogram: right_histogram,
                split: None,
            },
        )
    }

    /// The histogram of `rows` over `columns`, column-parallel when there is enough work.
    fn histogram(&self, rows: &[u32], columns: &[usize]) -> Histogram {
        let mut histogram = Histogram {
            columns: vec![Vec::new(); self.binned.width()],
        };
        let threads = self.settings.threads.min(columns.len()).max(1);
        if threads == 1 || rows.len() * columns.len() < 50_000 {
            for &column in columns {
                histogram.columns[column] = self.column_histogram(rows, column);
            }
            return histogram;
        }
        let built: Vec<Vec<(usize, Vec<f64>)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|thread| {
                    scope.spawn(move || {
                        columns
                            .iter()
                            .skip(thread)
                            .step_by(threads)
                            .map(|&column| (column, self.column_histogram(rows, column)))
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| match worker.join() {
                    Ok(built) => built,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        for (column, bins) in built.into_iter().flatten() {
            histogram.columns[column] = bins;
        }
        histogram
    }

    fn column_histogram(&self, rows: &[u32], column: usize) -> Vec<f64> {
        let outputs = self.targets.outputs;
        let stride = outputs + 2;
        let mut bins = vec![0.0; self.binned.bin_count(column) * stride];
        let row_bins = &self.binned.bins[column];
        let sums = self.targets.sums;
        match (outputs, self.targets.weights) {
            (1, Some(weights)) => {
                for &row in rows {
                    let row = row as usize;
                    let at = row_bins[row] as usize * 3;
                    bins[at] += sums[row];
                    bins[at + 1] += weights[row];
                    bins[at + 2] += 1.0;
                }
            }
            (1, None) => {
                for &row in rows {
                    let row = row as usize;
                    let at = row_bins[row] as usize * 3;
                    bins[at] += sums[row];
                    bins[at + 1] += 1.0;
                    bins[at + 2] += 1.0;
                }
            }
            _ => {
                for &row in rows {
                    let row = row as usize;
                    let at = row_bins[row] as usize * stride;
                    let values = &sums[row * outputs..(row + 1) * outputs];
                    for (bin, value) in bins[at..at + outputs].iter_mut().zip(values) {
                        *bin += value;
                    }
                    bins[at + outputs] += self.targets.weights.map_or(1.0, |w| w[row]);
                    bins[at + outputs + 1] += 1.0;
                }
            }
        }
        bins
    }
}

/// The parent's histogram minus a child's: the other child's.
fn subtract(mut parent: Histogram, child: &Histogram) -> Histogram {
    for (bins, taken) in parent.columns.iter_mut().zip(&child.columns) {
        for (bin, value) in bins.iter_mut().zip(taken) {
            *bin -= value;
        }
    }
    parent
}

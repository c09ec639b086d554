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

use super::bins::{BinnedColumns, SET};
use super::rng::Rng;
use crate::ml::models::compiled::TreeNode;
use crate::ml::models::parallel::map_in_order;

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
        self.tree.nodes.push(TreeNode::leaf(output));
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
        let outputs = self.targets.outputs;
        let stride = outputs + 2;
        let lambda = settings.lambda;
        let parent = node.score(lambda);
        let least_gain = 1e-10 * parent.abs().max(1e-300);
        let min_count = settings.min_samples_leaf.max(1) as f64;
        let allowed =
            |weight: f64, count: f64| count >= min_count && weight >= settings.min_child_weight;
        // Σₖ sumₖ² / (weight + λ) of the left side and of the node minus it.
        let sides_score = |left: &[f64]| {
            let (weight, count) = (left[outputs], left[outputs + 1]);
            let (right_weight, right_count) = (node.weight - weight, node.count - count);
            if !allowed(weight, count) || !allowed(right_weight, right_count) {
                return None;
            }
            let (mut left_squares, mut right_squares) = (0.0, 0.0);
            for (sum, total) in left[..outputs].iter().zip(&node.sums) {
                left_squares += sum * sum;
                right_squares += (total - sum) * (total - sum);
            }
            let score = |squares: f64, weight: f64| {
                if weight + lambda > 0.0 {
                    squares / (weight + lambda)
                } else {
                    0.0
                }
            };
            Some(score(left_squares, weight) + score(right_squares, right_weight) - parent)
        };
        let mut best: Option<(f64, usize, usize, bool)> = None;
        let mut left = vec![0.0; stride];
        let mut with_missing = vec![0.0; stride];
        for &column in columns {
            let bins = &histogram.columns[column];
            let value_bins = bins.len() / stride;
            let missing = &bins[..stride];
            let has_missing = missing[outputs + 1] > 0.0;
            left.iter_mut().for_each(|v| *v = 0.0);
            for bin in 1..value_bins.saturating_sub(1) {
                for (l, b) in left.iter_mut().zip(&bins[bin * stride..(bin + 1) * stride]) {
                    *l += b;
                }
                if left[outputs + 1] == 0.0 {
                    continue;
                }
                let mut consider = |side: &[f64], missing_left: bool| {
                    if let Some(gain) = sides_score(side)
                        && gain > least_gain
                        && best.is_none_or(|b| gain > b.0)
                    {
                        best = Some((gain, column, bin, missing_left));
                    }
                };
                consider(&left, false);
                if has_missing {
                    for ((w, l), m) in with_missing.iter_mut().zip(&left).zip(missing) {
                        *w = l + m;
                    }
                    consider(&with_missing, true);
                }
            }
        }
        let (gain, column, bin, missing_left) = best?;
        let bins = &histogram.columns[column];
        let missing = &bins[..stride];
        let mut left = Stats::zero(outputs);
        for at in 1..=bin {
            left.add_bin(&bins[at * stride..(at + 1) * stride]);
        }
        if missing_left {
            left.add_bin(missing);
        }
        let right_count = node.count - left.count;
        // Rows missing this column in scoring but not in training go with the larger side.
        let missing_left =
            missing_left || (missing[outputs + 1] == 0.0 && left.count > right_count);
        Some(Split {
            column,
            bin,
            missing_left,
            gain,
            left,
        })
    }

    /// Splits `leaf`: reorders its rows left then right and adds the two child nodes.
    fn split(&mut self, leaf: Leaf, split: &Split, rows: &mut [u32]) -> (Leaf, Leaf) {
        let bins = &self.binned.bins[split.column];
        let span = &mut rows[leaf.start..leaf.end];
        let goes_left = |row: u32| match bins[row as usize] {
            0 => split.missing_left,
            bin => bin as usize <= split.bin,
        };
        // A stable partition: each side keeps its rows in order, so the histogram passes
        // below read every column's bins front to back.
        let mut right = Vec::with_capacity(span.len() / 2);
        let mut low = 0;
        for at in 0..span.len() {
            let row = span[at];
            if goes_left(row) {
                span[low] = row;
                low += 1;
            } else {
                right.push(row);
            }
        }
        span[low..].copy_from_slice(&right);
        let middle = leaf.start + low;
        let left_stats = split.left.clone();
        let right_stats = leaf.stats.minus(&left_stats);
        let left_node = self.add_node(&left_stats);
        let right_node = self.add_node(&right_stats);
        let node = &mut self.tree.nodes[leaf.node];
        node.feature = split.column as u32;
        node.threshold = self.binned.upper[split.column][split.bin - 1];
        node.missing_left = split.missing_left;
        node.left = Some(left_node as u32);
        node.right = Some(right_node as u32);
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

    /// The histogram of `rows` over `columns`: the rows' targets gathered once in row
    /// order, then one pass per column or bundle of columns, in parallel when there is
    /// enough work.
    fn histogram(&self, rows: &[u32], columns: &[usize]) -> Histogram {
        let gathered = self.gather(rows);
        let mut passes: Vec<Pass> = Vec::new();
        let mut bundles_wanted = vec![Vec::new(); self.binned.bundles.len()];
        for &column in columns {
            match self.binned.bundle_of[column] {
                Some(bundle) => bundles_wanted[bundle].push(column),
                None => passes.push(Pass::Column(column)),
            }
        }
        for (bundle, wanted) in bundles_wanted.into_iter().enumerate() {
            match wanted.len() {
                0 => {}
                1 => passes.push(Pass::Column(wanted[0])),
                _ => passes.push(Pass::Bundle(bundle, wanted)),
            }
        }
        // Few rows: not worth starting threads.
        let threads = if rows.len() * passes.len() < 400_000 {
            1
        } else {
            self.settings.threads
        };
        let built = map_in_order(passes.len(), threads, |at| {
            self.pass(&passes[at], rows, &gathered)
        });
        let mut histogram = Histogram {
            columns: vec![Vec::new(); self.binned.width()],
        };
        for (column, bins) in built.into_iter().flatten() {
            histogram.columns[column] = bins;
        }
        histogram
    }

    /// Per row of `rows`, in order: its `outputs` target values and its weight.
    fn gather(&self, rows: &[u32]) -> Vec<f64> {
        let outputs = self.targets.outputs;
        let mut gathered = Vec::with_capacity(rows.len() * (outputs + 1));
        for &row in rows {
            let row = row as usize;
            gathered.extend_from_slice(&self.targets.sums[row * outputs..(row + 1) * outputs]);
            gathered.push(self.targets.weights.map_or(1.0, |w| w[row]));
        }
        gathered
    }

    /// One pass over the rows: a column's histogram, or those of a bundle's wanted columns.
    fn pass(&self, pass: &Pass, rows: &[u32], gathered: &[f64]) -> Vec<(usize, Vec<f64>)> {
        let stride = self.targets.outputs + 2;
        match pass {
            Pass::Column(column) => {
                let codes = &self.binned.bins[*column];
                let bins = self.binned.bin_count(*column);
                vec![(*column, self.code_histogram(codes, bins, rows, gathered))]
            }
            Pass::Bundle(bundle, wanted) => {
                let bundle_columns = &self.binned.bundles[*bundle];
                let slots = self.code_histogram(
                    &bundle_columns.slots,
                    bundle_columns.columns.len() + 1,
                    rows,
                    gathered,
                );
                let mut total = vec![0.0; stride];
                for slot in slots.chunks(stride) {
                    total.iter_mut().zip(slot).for_each(|(t, v)| *t += v);
                }
                wanted
                    .iter()
                    .map(|column| {
                        let position = bundle_columns.columns.iter().position(|c| c == column);
                        let at = (position.unwrap_or_default() + 1) * stride;
                        let set = &slots[at..at + stride];
                        // Bin 0 (missing) stays empty, bin 1 is every row not set.
                        let mut bins = vec![0.0; 3 * stride];
                        for k in 0..stride {
                            bins[stride + k] = total[k] - set[k];
                            bins[usize::from(SET) * stride + k] = set[k];
                        }
                        (*column, bins)
                    })
                    .collect()
            }
        }
    }

    /// Per code (a column's bin, a bundle's slot): the summed targets, weight and count of
    /// the rows with it.
    fn code_histogram(
        &self,
        codes: &[u8],
        count: usize,
        rows: &[u32],
        gathered: &[f64],
    ) -> Vec<f64> {
        let outputs = self.targets.outputs;
        let stride = outputs + 2;
        let mut bins = vec![0.0; count * stride];
        if outputs == 1 {
            // Four copies of the histogram, one per row position modulo four: consecutive
            // rows with the same code then add into different memory, so the additions do
            // not wait on each other.
            let lane = count * 3;
            let mut lanes = vec![0.0; 4 * lane];
            let mut quads = rows.chunks_exact(4);
            let mut values = gathered.chunks_exact(8);
            for (quad, quad_values) in (&mut quads).zip(&mut values) {
                for k in 0..4 {
                    let at = k * lane + codes[quad[k] as usize] as usize * 3;
                    lanes[at] += quad_values[2 * k];
                    lanes[at + 1] += quad_values[2 * k + 1];
                    lanes[at + 2] += 1.0;
                }
            }
            for (&row, values) in quads
                .remainder()
                .iter()
                .zip(values.remainder().chunks_exact(2))
            {
                let at = codes[row as usize] as usize * 3;
                lanes[at] += values[0];
                lanes[at + 1] += values[1];
                lanes[at + 2] += 1.0;
            }
            for (at, bin) in bins.iter_mut().enumerate() {
                *bin = lanes[at] + lanes[lane + at] + lanes[2 * lane + at] + lanes[3 * lane + at];
            }
        } else {
            for (&row, values) in rows.iter().zip(gathered.chunks_exact(outputs + 1)) {
                let at = codes[row as usize] as usize * stride;
                for (bin, value) in bins[at..at + outputs + 1].iter_mut().zip(values) {
                    *bin += value;
                }
                bins[at + outputs + 1] += 1.0;
            }
        }
        bins
    }
}

/// One pass of a histogram build.
enum Pass {
    /// One column's bins.
    Column(usize),
    /// A bundle's slots, giving the listed columns of it.
    Bundle(usize, Vec<usize>),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A number and a four-valued category as one-hot columns.
    fn rows_with_one_hot(rows: usize) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Rng::new(5, 0);
        let mut values = Vec::new();
        let mut targets = Vec::new();
        for _ in 0..rows {
            let x = rng.unit();
            let category = rng.below(4);
            values.push(x);
            values.extend((0..4).map(|c| f64::from(u8::from(c == category))));
            targets.push(x + if category == 2 { 1.0 } else { 0.0 } + rng.unit() * 0.1);
        }
        (values, targets)
    }

    #[test]
    fn bundled_one_hot_histograms_equal_column_by_column_ones() {
        let (values, targets) = rows_with_one_hot(5000);
        let bundled = BinnedColumns::new(&values, 5000, 5);
        assert_eq!(bundled.bundles.len(), 1);
        let mut unbundled = bundled.clone();
        unbundled.bundles.clear();
        unbundled.bundle_of = vec![None; 5];
        let settings = GrowSettings {
            max_depth: Some(4),
            max_leaves: None,
            min_samples_leaf: 1,
            min_samples_split: 2,
            min_child_weight: 0.0,
            lambda: 0.0,
            features_per_split: None,
            threads: 2,
        };
        let weights: Vec<f64> = targets.iter().map(|t| 0.5 + t).collect();
        let fitted = Targets {
            outputs: 1,
            sums: &targets,
            weights: Some(&weights),
        };
        let columns: Vec<usize> = (0..5).collect();
        let rows: Vec<u32> = (0..5000).step_by(3).collect();
        let histogram = |binned: &BinnedColumns| {
            let grower = Grower {
                binned,
                targets: &fitted,
                columns: &columns,
                settings: &settings,
                tree: GrownTree {
                    nodes: Vec::new(),
                    values: Vec::new(),
                    covers: Vec::new(),
                    leaves: Vec::new(),
                },
            };
            grower.histogram(&rows, &columns).columns
        };
        let (with, without) = (histogram(&bundled), histogram(&unbundled));
        for (a, b) in with.iter().zip(&without) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-9, "{a:?} vs {b:?}");
            }
        }
        // And the tree finds the category that matters.
        let mut order: Vec<u32> = (0..5000).collect();
        let tree = grow(
            &bundled,
            &fitted,
            &mut order,
            &columns,
            &settings,
            &mut Rng::new(1, 1),
        );
        assert!(
            tree.nodes
                .iter()
                .any(|n| n.left.is_some() && n.column() == 3),
            "{:?}",
            tree.nodes
        );
    }
}

//! Growing one tree from histograms of binned columns ([`super::histogram`]): at each
//! node the best cut of every column is found by scanning its bins ([`super::split`]),
//! and the best of them splits the node.
//!
//! One learner serves every tree model. A node's score is `Σₖ sumₖ² / (weight + λ)`:
//! with one-hot classes as targets and unit weights that is the Gini decrease (random
//! forest and decision tree classifiers), with values the variance decrease (regression),
//! and with negative gradients and hessians the second-order gain of gradient boosting.
//! A node's value is `sumₖ / (weight + λ)`: class shares, the mean, or the Newton step.
//!
//! Without a leaf limit a tree grows depth first, so only the histograms along one path
//! are held; with `max_leaves` it grows best first (the leaf whose split gains most).
//! When every node looks at the same columns, both children of a split are scanned
//! together: the smaller child's histogram from its rows, the larger one's as the
//! parent's minus it. Per column (or bundle) that work is one task, and the tasks of
//! many rows run in parallel; each column is summed in row order by one thread, so the
//! tree is the same on any number of threads. Rows are partitioned in parallel too.

use super::bins::BinnedColumns;
use super::histogram::{Histogram, gather, minus, pass_histograms, passes};
use super::rng::Rng;
use super::split::{Cut, Split, Stats, best_column, best_cut, split_at};
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

/// A leaf that may still be split.
struct Leaf {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    stats: Stats,
    /// Its histogram over every column of the tree, kept for its children's subtraction.
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
        let (mut left, mut right, parent_histogram) = grower.split(leaf, &split, rows);
        match parent_histogram {
            Some(parent) => grower.evaluate_children(&mut left, &mut right, &parent, rows),
            None => {
                grower.evaluate(&mut left, rows, rng);
                grower.evaluate(&mut right, rows, rng);
            }
        }
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

/// A node's histogram over some columns, and per column its best cut (None also for the
/// columns not scanned, and for every column when the node's cuts were not wanted).
struct Scanned {
    histogram: Histogram,
    cuts: Vec<Option<Cut>>,
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

    /// Whether the settings allow splitting `leaf` at all.
    fn splittable(&self, leaf: &Leaf) -> bool {
        let settings = self.settings;
        settings.max_depth.is_none_or(|max| leaf.depth < max)
            && leaf.stats.count >= 2.0 * settings.min_samples_leaf.max(1) as f64
            && leaf.stats.count >= settings.min_samples_split as f64
            && leaf.stats.weight >= 2.0 * settings.min_child_weight
    }

    /// Finds the leaf's best split from its own rows, when it may be split at all.
    fn evaluate(&self, leaf: &mut Leaf, rows: &[u32], rng: &mut Rng) {
        if !self.splittable(leaf) {
            return;
        }
        let sampled;
        let columns = match self.settings.features_per_split {
            Some(count) if count < self.columns.len() => {
                sampled = rng.sample(self.columns, count);
                &sampled[..]
            }
            _ => self.columns,
        };
        let (scanned, _) = self.scan(
            &rows[leaf.start..leaf.end],
            columns,
            Some(&leaf.stats),
            None,
        );
        self.settle(leaf, scanned, columns);
    }

    /// Finds both children's best splits: the smaller child's histogram from its rows,
    /// the larger one's as the parent's minus it.
    fn evaluate_children(
        &self,
        left: &mut Leaf,
        right: &mut Leaf,
        parent: &Histogram,
        rows: &[u32],
    ) {
        let (left_splittable, right_splittable) = (self.splittable(left), self.splittable(right));
        if !left_splittable && !right_splittable {
            return;
        }
        let left_smaller = left.end - left.start <= right.end - right.start;
        let (smaller, larger, smaller_splittable, larger_splittable) = if left_smaller {
            (left, right, left_splittable, right_splittable)
        } else {
            (right, left, right_splittable, left_splittable)
        };
        let (scanned_smaller, scanned_larger) = self.scan(
            &rows[smaller.start..smaller.end],
            self.columns,
            smaller_splittable.then_some(&smaller.stats),
            Some((parent, larger_splittable.then_some(&larger.stats))),
        );
        if smaller_splittable {
            self.settle(smaller, scanned_smaller, self.columns);
        }
        if let Some(scanned) = scanned_larger
            && larger_splittable
        {
            self.settle(larger, scanned, self.columns);
        }
    }

    /// Takes the best of the scanned cuts as the leaf's split, and keeps its histogram for
    /// its children when it covers every column of the tree.
    fn settle(&self, leaf: &mut Leaf, scanned: Scanned, columns: &[usize]) {
        leaf.split = best_column(columns, &scanned.cuts).map(|(column, cut)| {
            split_at(column, cut, &scanned.histogram.columns[column], &leaf.stats)
        });
        if leaf.split.is_some() && columns.len() == self.columns.len() {
            leaf.histogram = Some(scanned.histogram);
        }
    }

    /// The histograms of `rows` over `columns` and, when `node` is given, each column's
    /// best cut for it; with a parent's histogram also the sibling's histograms (parent
    /// minus these) and, given its sums, its cuts. One pass per column or bundle, the
    /// passes in parallel when there is enough work.
    fn scan(
        &self,
        rows: &[u32],
        columns: &[usize],
        node: Option<&Stats>,
        sibling: Option<(&Histogram, Option<&Stats>)>,
    ) -> (Scanned, Option<Scanned>) {
        let outputs = self.targets.outputs;
        let passes = passes(self.binned, columns);
        let threads = if rows.len() * passes.len() < PARALLEL_ROW_VISITS {
            1
        } else {
            self.settings.threads
        };
        let gathered = gather(self.targets, rows, threads);
        let cut = |bins: &[f64], stats: Option<&Stats>| {
            stats.and_then(|stats| best_cut(bins, stats, self.settings))
        };
        let built = map_in_order(passes.len(), threads, |at| {
            pass_histograms(self.binned, outputs, &passes[at], rows, &gathered)
                .into_iter()
                .map(|(column, bins)| {
                    let mine = cut(&bins, node);
                    let theirs = sibling.map(|(parent, stats)| {
                        let bins = minus(&parent.columns[column], &bins);
                        let cut = cut(&bins, stats);
                        (bins, cut)
                    });
                    (column, (bins, mine), theirs)
                })
                .collect::<Vec<_>>()
        });
        let empty = || Scanned {
            histogram: Histogram {
                columns: vec![Vec::new(); self.binned.width()],
            },
            cuts: vec![None; self.binned.width()],
        };
        let mut scanned = empty();
        let mut sibling_scanned = sibling.map(|_| empty());
        for (column, (bins, cut), theirs) in built.into_iter().flatten() {
            scanned.histogram.columns[column] = bins;
            scanned.cuts[column] = cut;
            if let (Some(sibling), Some((bins, cut))) = (sibling_scanned.as_mut(), theirs) {
                sibling.histogram.columns[column] = bins;
                sibling.cuts[column] = cut;
            }
        }
        (scanned, sibling_scanned)
    }

    /// Splits `leaf`: reorders its rows left then right and adds the two child nodes.
    /// Returns the children and the leaf's histogram.
    fn split(
        &mut self,
        leaf: Leaf,
        split: &Split,
        rows: &mut [u32],
    ) -> (Leaf, Leaf, Option<Histogram>) {
        let bins = &self.binned.bins[split.column];
        let goes_left = |row: u32| match bins[row as usize] {
            0 => split.missing_left,
            bin => bin as usize <= split.bin,
        };
        let middle = leaf.start
            + stable_partition(
                &mut rows[leaf.start..leaf.end],
                goes_left,
                self.settings.threads,
            );
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
        let depth = leaf.depth + 1;
        let child = |node, start, end, stats| Leaf {
            node,
            start,
            end,
            depth,
            stats,
            histogram: None,
            split: None,
        };
        (
            child(left_node, leaf.start, middle, left_stats),
            child(right_node, middle, leaf.end, right_stats),
            leaf.histogram,
        )
    }
}

/// Row visits (rows × passes) from which a node's passes run in parallel: below it a
/// scan takes less than about a tenth of a millisecond, too little to start threads for.
const PARALLEL_ROW_VISITS: usize = 50_000;

/// Rows per piece when partitioning on several threads.
const PARTITION_PIECE_ROWS: usize = 65_536;

/// Reorders `span` so the rows going left come first, each side keeping its rows in
/// order (so the histogram passes read every column's bins front to back); returns how
/// many go left. A stable partition has one result, however the work is shared out.
fn stable_partition(
    span: &mut [u32],
    goes_left: impl Fn(u32) -> bool + Sync,
    threads: usize,
) -> usize {
    let pieces = span.len().div_ceil(PARTITION_PIECE_ROWS);
    if threads <= 1 || pieces < 2 {
        let mut right = Vec::with_capacity(span.len());
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
        return low;
    }
    let sides = map_in_order(pieces, threads, |piece| {
        let rows = &span
            [piece * PARTITION_PIECE_ROWS..((piece + 1) * PARTITION_PIECE_ROWS).min(span.len())];
        let (mut left, mut right) = (
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
        );
        for &row in rows {
            if goes_left(row) {
                left.push(row);
            } else {
                right.push(row);
            }
        }
        (left, right)
    });
    let mut at = 0;
    for (left, _) in &sides {
        span[at..at + left.len()].copy_from_slice(left);
        at += left.len();
    }
    let middle = at;
    for (_, right) in &sides {
        span[at..at + right.len()].copy_from_slice(right);
        at += right.len();
    }
    middle
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
            grower.scan(&rows, &columns, None, None).0.histogram.columns
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

    #[test]
    fn a_tree_is_the_same_on_one_thread_and_on_many() {
        // Enough rows that histogram passes, gathering and partitions all run in parallel.
        let rows = 150_000;
        let (values, targets) = rows_with_one_hot(rows);
        let binned = BinnedColumns::new(&values, rows, 5);
        let weights: Vec<f64> = targets.iter().map(|t| 0.25 + t / 4.0).collect();
        let fitted = Targets {
            outputs: 1,
            sums: &targets,
            weights: Some(&weights),
        };
        let columns: Vec<usize> = (0..5).collect();
        let grown = |threads: usize, max_leaves: Option<usize>| {
            let settings = GrowSettings {
                max_depth: None,
                max_leaves,
                min_samples_leaf: 20,
                min_samples_split: 2,
                min_child_weight: 1e-3,
                lambda: 1.0,
                features_per_split: None,
                threads,
            };
            let mut order: Vec<u32> = (0..rows as u32).collect();
            let tree = grow(
                &binned,
                &fitted,
                &mut order,
                &columns,
                &settings,
                &mut Rng::new(2, 0),
            );
            (tree, order)
        };
        for max_leaves in [Some(16), None] {
            let (one, one_order) = grown(1, max_leaves);
            let (many, many_order) = grown(3, max_leaves);
            assert_eq!(one, many);
            assert_eq!(one_order, many_order);
            if max_leaves.is_some() {
                assert_eq!(one.leaves.len(), 16);
            }
        }
    }

    #[test]
    fn partitions_in_parallel_keep_each_side_in_order() {
        let span: Vec<u32> = (0..200_003).map(|i| (i * 7919) % 200_003).collect();
        let goes_left = |row: u32| row.is_multiple_of(3);
        let mut serial = span.clone();
        let middle = stable_partition(&mut serial, goes_left, 1);
        let mut parallel = span.clone();
        assert_eq!(stable_partition(&mut parallel, goes_left, 4), middle);
        assert_eq!(serial, parallel);
        let (left, right): (Vec<u32>, Vec<u32>) = span.iter().partition(|row| goes_left(**row));
        assert_eq!(serial[..middle], left[..]);
        assert_eq!(serial[middle..], right[..]);
    }
}

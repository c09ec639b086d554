//! Walking a model's trees over blocks of rows, as `predict` scores them: a compact copy
//! of the trees laid out for the walk ([`FlatTrees`], checked when a model is loaded), the
//! root-to-leaf paths a block of rows takes ([`TreePaths`]), and what each step of a path
//! credits an explanation.
//!
//! The copy holds each node in 32 bytes with its two children side by side, breadth
//! first, so the top levels every row crosses share a few cache lines. Per node it also
//! keeps what moving into it from its parent credits an explanation: the encoded column
//! the parent split on, and the change of the node value. An explanation then adds up one
//! precomputed step per node of the path, exactly the sums walking the model's own trees
//! gives. When every tree is explained in the same node value (binary classifiers and
//! regressors), the walk adds the steps up per row as it goes and records no path; a
//! shallow enough tree is then walked through a second copy grown to full depth
//! ([`FullDepth`]), where every row takes the same number of steps.

use std::fmt;

use super::compiled::{CompiledModel, Tree};

/// A model's trees laid out for walking blocks of rows; no trees for linear models.
#[derive(Debug, Clone, Default)]
pub struct FlatTrees {
    trees: Vec<FlatTree>,
}

/// Why a model's trees cannot be walked: a tree in the artifact is malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tree {tree}, node {node}: {problem}")]
pub struct MalformedTree {
    /// The tree, counted from 0 in the model's order.
    pub tree: usize,
    /// The node, as numbered in the artifact.
    pub node: usize,
    /// What is wrong with it.
    pub problem: String,
}

#[derive(Debug, Clone)]
struct FlatTree {
    nodes: Vec<FlatNode>,
    /// Per node, its number in the model's tree.
    original: Vec<u32>,
    /// Per node, `stride` steps (one per node value): what moving into the node from its
    /// parent credits (nothing for the root); empty when the tree has no node values.
    steps: Vec<Step>,
    /// Node values per node.
    stride: usize,
    /// The most nodes a root-to-leaf path holds.
    longest: usize,
    /// The tree grown to full depth, when a crediting walk may use it (see
    /// [`FullDepth`]).
    full: Option<FullDepth>,
}

/// A tree of one node value per node laid out as if grown to full depth, for a walk that
/// credits: each leaf above the deepest level continues as a chain of splits every row
/// passes to the left, down to a slot at the deepest level that stands for the leaf. The
/// children of node `i` are `2i + 1` and `2i + 2`, so every row crosses the same number
/// of splits and the rows walked side by side step in lockstep, with no check for which
/// of them has arrived. The first step into a chain credits the leaf's real change, the
/// others +0.0, which leaves a sum unchanged (no credited sum is ever -0.0: every sum
/// starts at +0.0, and a sum is -0.0 only when both its terms are), so the credits are
/// bit for bit those of the tree itself.
#[derive(Debug, Clone)]
struct FullDepth {
    /// `2^(depth + 1) − 1` nodes, breadth first; those of the deepest level are the slots.
    nodes: Vec<FlatNode>,
    /// Splits every path crosses.
    depth: usize,
    /// Per slot, the leaf it stands for, numbered as in the model's tree.
    leaves: Vec<u32>,
}

/// Trees deeper than this are walked as they are: a full-depth layout of 32 bytes per
/// node holds 64 KiB at this depth.
const FULL_DEPTH_MOST: usize = 10;

/// A full-depth layout may hold at most this many times the tree's nodes, so a lopsided
/// tree is walked as it is instead of being padded out of cache.
const FULL_DEPTH_PADDING: usize = 4;

/// A split, or a leaf when `left` is 0 (no node has the root as a child).
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// Rows with the value at most this go left.
    threshold: f64,
    /// The encoded column split on; the top bit is set when missing values go left.
    feature: u32,
    /// The left child; the right one follows it.
    left: u32,
    /// What moving into this node from its parent credits in the first node value (a
    /// copy of `FlatTree::steps`' first), so a crediting walk reads one cache line per
    /// node.
    step: Step,
}

const MISSING_LEFT: u32 = 1 << 31;

/// What a step of a path credits an explanation: the change of a node value from the
/// parent's, to the column the parent splits on. Both in one place, so following a path
/// reads one cache line per node.
#[derive(Debug, Clone, Copy, Default)]
struct Step {
    change: f64,
    column: u32,
}

impl FlatNode {
    /// The child `row` goes to; None for a leaf.
    fn next(self, row: &[f64]) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        let value = row[(self.feature & !MISSING_LEFT) as usize];
        let left = if value.is_nan() {
            self.feature & MISSING_LEFT != 0
        } else {
            value <= self.threshold
        };
        Some(self.left + u32::from(!left))
    }
}

impl FlatTrees {
    /// Lays out `model`'s trees for rows of `width` encoded values, checking that every
    /// child is inside its tree and reached once, and every split is on one of the
    /// `width` columns.
    pub fn new(model: &CompiledModel, width: usize) -> Result<Self, MalformedTree> {
        let trees = model.trees().unwrap_or_default();
        let trees = trees
            .iter()
            .enumerate()
            .map(|(index, tree)| {
                FlatTree::new(tree, width).map_err(|(node, problem)| MalformedTree {
                    tree: index,
                    node,
                    problem,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { trees })
    }

    /// Walks every tree for each row of `block` (encoded rows of `width` values, one after
    /// another), one tree at a time, recording the paths into `paths` (laid out anew).
    /// [`CompiledModel::score_walked`] then scores each row from them.
    ///
    /// With `credit`, and when every tree has one node value per node, each step's credit
    /// is added up per row while walking instead (see [`TreePaths::credited`]), and no
    /// path is recorded: what an explanation of every tree in that value needs, without
    /// writing the paths and reading them again.
    pub fn walk_block(&self, block: &[f64], width: usize, paths: &mut TreePaths, credit: bool) {
        let rows = block.len().checked_div(width).unwrap_or(0);
        let credit = credit && self.trees.iter().all(|tree| tree.stride == 1);
        paths.lay_out(&self.trees, rows, credit.then_some(width));
        if width == 0 {
            return;
        }
        for (index, tree) in self.trees.iter().enumerate() {
            paths.walk(index, tree, block, width);
        }
    }
}

impl FlatTree {
    /// The layout of `tree`, or the node that is malformed and why.
    fn new(tree: &Tree, width: usize) -> Result<Self, (usize, String)> {
        let count = tree.nodes.len();
        if count == 0 {
            return Err((0, "the tree has no nodes".to_string()));
        }
        if count > MISSING_LEFT as usize {
            return Err((0, format!("the tree has {count} nodes, too many to walk")));
        }
        let stride = tree.node_values.len() / count;
        let mut placed = vec![false; count];
        placed[0] = true;
        let mut flat = Self {
            nodes: Vec::with_capacity(count),
            original: vec![0],
            steps: vec![Step::default(); stride],
            stride,
            longest: 1,
            full: None,
        };
        let mut depths = vec![1];
        // Breadth first: node `at` of the layout is `flat.original[at]` of the tree, and
        // its children are placed at the end of the layout as it is reached.
        let mut at = 0;
        while let Some(&number) = flat.original.get(at) {
            let node = &tree.nodes[number as usize];
            let mut laid = FlatNode {
                threshold: node.threshold,
                feature: node.feature,
                left: 0,
                step: flat.steps.get(at * stride).copied().unwrap_or_default(),
            };
            if let Some((left, right)) = node.children() {
                if node.column() >= width {
                    return Err((
                        number as usize,
                        format!(
                            "it splits on encoded column {}, but rows have {width}",
                            node.column()
                        ),
                    ));
                }
                if node.missing_left {
                    laid.feature |= MISSING_LEFT;
                }
                laid.left = flat.original.len() as u32;
                for child in [left, right] {
                    match placed.get_mut(child) {
                        None => {
                            return Err((
                                number as usize,
                                format!("its child {child} is outside the tree of {count} nodes"),
                            ));
                        }
                        Some(true) => {
                            return Err((
                                number as usize,
                                format!(
                                    "its child {child} is reached twice (the tree has a cycle or a shared node)"
                                ),
                            ));
                        }
                        Some(seen) => *seen = true,
                    }
                    flat.original.push(child as u32);
                    flat.steps.extend((0..stride).map(|offset| {
                        let value = |n: usize| tree.node_values[n * stride + offset];
                        Step {
                            change: value(child) - value(number as usize),
                            column: node.feature,
                        }
                    }));
                    depths.push(depths[at] + 1);
                    flat.longest = flat.longest.max(depths[at] + 1);
                }
            }
            flat.nodes.push(laid);
            at += 1;
        }
        flat.full = FullDepth::of(&flat);
        Ok(flat)
    }
}

impl FullDepth {
    /// `tree` laid out to full depth, when it has one node value per node, is at most
    /// [`FULL_DEPTH_MOST`] splits deep and padding it stays within [`FULL_DEPTH_PADDING`]
    /// times its nodes.
    fn of(tree: &FlatTree) -> Option<Self> {
        let depth = tree.longest - 1;
        if tree.stride != 1 || depth > FULL_DEPTH_MOST {
            return None;
        }
        let first_slot = (1_usize << depth) - 1;
        if 2 * first_slot + 1 > FULL_DEPTH_PADDING * tree.nodes.len() {
            return None;
        }
        // Rows at a padding split all go left (no value is above infinity, and missing
        // ones go left); it credits +0.0 to column 0. Those no row reaches stay so.
        let padding = FlatNode {
            threshold: f64::INFINITY,
            feature: MISSING_LEFT,
            left: 0,
            step: Step::default(),
        };
        let mut full = Self {
            nodes: vec![padding; 2 * first_slot + 1],
            depth,
            leaves: vec![0; first_slot + 1],
        };
        // (a node of the tree's layout, its place here, whether the place is the node
        // itself rather than the chain below a leaf)
        let mut placing = vec![(0_usize, 0_usize, true)];
        while let Some((at, place, itself)) = placing.pop() {
            let laid = tree.nodes[at];
            if itself {
                full.nodes[place].step = laid.step;
            }
            if place >= first_slot {
                full.leaves[place - first_slot] = tree.original[at];
                continue;
            }
            let children = 2 * place + 1;
            full.nodes[place].left = children as u32;
            if itself && laid.left != 0 {
                full.nodes[place].threshold = laid.threshold;
                full.nodes[place].feature = laid.feature;
                placing.push((laid.left as usize, children, true));
                placing.push((laid.left as usize + 1, children + 1, true));
            } else {
                // A leaf above the deepest level, or the chain below it: its rows all go
                // left, down to the slot that stands for the leaf.
                placing.push((at, children, false));
            }
        }
        Some(full)
    }

    /// Walks every row of `block` (`width` values each) down to its slot, a few rows side
    /// by side, adding each step's credit to the row's `width` values of `credits`, and
    /// records the leaf it reaches in `leaves`.
    fn walk(&self, block: &[f64], width: usize, credits: &mut [f64], leaves: &mut [u32]) {
        let first_slot = self.leaves.len() - 1;
        let groups = block
            .chunks(width * WALKED_TOGETHER)
            .zip(credits.chunks_mut(width * WALKED_TOGETHER))
            .zip(leaves.chunks_mut(WALKED_TOGETHER));
        for ((rows, credits), leaves) in groups {
            let mut at = [0_u32; WALKED_TOGETHER];
            for _ in 0..self.depth {
                let members = at
                    .iter_mut()
                    .zip(rows.chunks_exact(width))
                    .zip(credits.chunks_exact_mut(width));
                for ((at, row), credits) in members {
                    let node = self.nodes[*at as usize];
                    let value = row[(node.feature & !MISSING_LEFT) as usize];
                    let left = (value <= node.threshold)
                        | (value.is_nan() & (node.feature & MISSING_LEFT != 0));
                    *at = node.left + u32::from(!left);
                    let step = self.nodes[*at as usize].step;
                    credits[step.column as usize] += step.change;
                }
            }
            for (leaf, at) in leaves.iter_mut().zip(at) {
                *leaf = self.leaves[at as usize - first_slot];
            }
        }
    }
}

/// The root-to-leaf paths of a block of rows through each tree of a model. They are
/// walked one tree at a time over the whole block, so a tree's nodes stay in cache while
/// every row crosses it, and several rows at once, so the CPU waits for their nodes
/// together; scoring reads each path's leaf, and explanations follow the paths without
/// walking the trees again, or read the steps the walk added up.
#[derive(Debug, Default)]
pub struct TreePaths {
    /// Per tree, the most nodes a root-to-leaf path holds: each row's slot for it (0 when
    /// longer than [`RECORDED_PATH_NODES`]: its paths are not recorded).
    slots: Vec<usize>,
    /// Where each tree's slots start in `nodes`.
    starts: Vec<usize>,
    /// Each path's nodes (in the layout's numbering), root first: tree after tree, row
    /// after row, one slot each.
    nodes: Vec<u32>,
    /// How many nodes the path of (tree, row) holds, at index `tree × rows + row`.
    lengths: Vec<u32>,
    /// The leaf the path of (tree, row) ends in, numbered as in the model's tree.
    leaves: Vec<u32>,
    /// When the walk credits: per row, every tree's steps added up per encoded column.
    credited: Option<Vec<f64>>,
    /// Rows in the block.
    rows: usize,
}

/// Rows walked through a tree side by side.
const WALKED_TOGETHER: usize = 16;

/// The longest paths recorded: a tree with longer ones (grown without a depth limit on
/// awkward data) records only each row's leaf, so a block's paths stay a few MiB however
/// deep the trees, and its explanation walks the tree again.
const RECORDED_PATH_NODES: usize = 64;

impl TreePaths {
    /// The leaf (numbered as in the model's tree) tree `tree`'s path for row `row` of the
    /// block ends in; None when it was not walked.
    pub fn leaf(&self, tree: usize, row: usize) -> Option<usize> {
        if row >= self.rows {
            return None;
        }
        let leaf = self.leaves.get(tree * self.rows + row)?;
        Some(*leaf as usize)
    }

    /// When the walk credited (see [`FlatTrees::walk_block`]): row `row`'s steps through
    /// every tree added up per encoded column, tree after tree and root first, as
    /// following each path in turn adds them.
    pub fn credited(&self, row: usize) -> Option<&[f64]> {
        let credited = self.credited.as_ref()?;
        let width = credited.len().checked_div(self.rows)?;
        credited.get(row * width..(row + 1) * width)
    }

    /// Row `row`'s paths through `trees`, the trees they were walked through.
    pub fn row<'a>(&'a self, trees: &'a FlatTrees, row: usize) -> RowPaths<'a> {
        RowPaths {
            paths: self,
            trees,
            row,
        }
    }

    /// The nodes of tree `tree`'s path for row `row`, in the layout's numbering, root
    /// first; None when it was not walked.
    fn path(&self, tree: usize, row: usize) -> Option<&[u32]> {
        let slot = *self.slots.get(tree)?;
        if row >= self.rows || slot == 0 {
            return None;
        }
        let length = *self.lengths.get(tree * self.rows + row)? as usize;
        let start = self.starts[tree] + row * slot;
        self.nodes.get(start..start + length)
    }

    /// Makes room for `rows` rows' paths through `trees`, or, crediting rows of
    /// `credit_width` values, for their credits and leaves only.
    fn lay_out(&mut self, trees: &[FlatTree], rows: usize, credit_width: Option<usize>) {
        self.rows = rows;
        self.slots.clear();
        self.slots.extend(trees.iter().map(|tree| {
            if tree.longest <= RECORDED_PATH_NODES && credit_width.is_none() {
                tree.longest
            } else {
                0
            }
        }));
        match credit_width {
            None => self.credited = None,
            Some(width) => {
                let credited = self.credited.get_or_insert_with(Vec::new);
                credited.clear();
                credited.resize(rows * width, 0.0);
            }
        }
        self.starts.clear();
        let mut total = 0;
        for slot in &self.slots {
            self.starts.push(total);
            total += slot * rows;
        }
        self.nodes.resize(total, 0);
        self.lengths.clear();
        self.lengths.resize(trees.len() * rows, 0);
        self.leaves.clear();
        self.leaves.resize(trees.len() * rows, 0);
    }

    /// Walks tree `index` for every row of `block` (`width` values each), a few rows side
    /// by side, recording the leaves and (when the tree has a slot) the paths.
    fn walk(&mut self, index: usize, tree: &FlatTree, block: &[f64], width: usize) {
        if let (Some(full), Some(credited)) = (&tree.full, self.credited.as_deref_mut()) {
            let leaves = &mut self.leaves[index * self.rows..][..self.rows];
            full.walk(block, width, credited, leaves);
            return;
        }
        let slot = self.slots[index];
        let nodes = &mut self.nodes[self.starts[index]..][..slot * self.rows];
        let lengths = &mut self.lengths[index * self.rows..][..self.rows];
        let leaves = &mut self.leaves[index * self.rows..][..self.rows];
        let mut credited = self.credited.as_deref_mut();
        for (group, rows) in block.chunks(width * WALKED_TOGETHER).enumerate() {
            let first = group * WALKED_TOGETHER;
            let members = first..first + rows.len() / width;
            let paths = &mut nodes[members.start * slot..members.end * slot];
            let mut credits = credited
                .as_deref_mut()
                .map(|credited| &mut credited[members.start * width..members.end * width]);
            let mut at = [0_u32; WALKED_TOGETHER];
            let mut length = [1_u32; WALKED_TOGETHER];
            let mut walking = true;
            while walking {
                walking = false;
                for (member, row) in rows.chunks_exact(width).enumerate() {
                    let Some(next) = tree.nodes[at[member] as usize].next(row) else {
                        continue;
                    };
                    walking = true;
                    at[member] = next;
                    if slot > 0 {
                        paths[member * slot + length[member] as usize] = next;
                    }
                    if let Some(credits) = credits.as_deref_mut() {
                        let step = tree.nodes[next as usize].step;
                        credits[member * width + step.column as usize] += step.change;
                    }
                    length[member] += 1;
                }
            }
            for path in paths.chunks_mut(slot.max(1)) {
                path[0] = 0;
            }
            lengths[members.clone()].copy_from_slice(&length[..members.len()]);
            for (leaf, at) in leaves[members].iter_mut().zip(at) {
                *leaf = tree.original[at as usize];
            }
        }
    }
}

/// One row's paths within a walked block.
#[derive(Clone, Copy)]
pub struct RowPaths<'a> {
    paths: &'a TreePaths,
    trees: &'a FlatTrees,
    row: usize,
}

impl fmt::Debug for RowPaths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowPaths").field("row", &self.row).finish()
    }
}

impl RowPaths<'_> {
    /// Adds to `per_column` what each step of tree `tree`'s path credits, root first: the
    /// change of node value `offset` (of `stride` per node) to the column split on.
    /// False, adding nothing, when the path was not walked or the tree's node values are
    /// not `stride` per node.
    pub fn credit(self, tree: usize, stride: usize, offset: usize, per_column: &mut [f64]) -> bool {
        let (Some(path), Some(flat)) =
            (self.paths.path(tree, self.row), self.trees.trees.get(tree))
        else {
            return false;
        };
        if flat.stride != stride || offset >= stride {
            return false;
        }
        for &node in path.iter().skip(1) {
            let step = flat.steps[node as usize * stride + offset];
            if let Some(slot) = per_column.get_mut(step.column as usize) {
                *slot += step.change;
            }
        }
        true
    }
}

#[cfg(test)]
pub(in crate::ml::models) mod tests {
    use super::*;
    use crate::ml::models::compiled::TreeNode;
    use crate::ml::models::compiled::tests::split;

    fn leaf(output: f64) -> TreeNode {
        TreeNode::leaf(output)
    }

    /// The nodes (numbered as in the tree) `row` crosses from the root.
    fn walked(tree: &Tree, row: &[f64]) -> Vec<usize> {
        let mut path = vec![0];
        let mut node = 0;
        while let Some(next) = tree.nodes[node].next(row) {
            path.push(next);
            node = next;
        }
        path
    }

    #[test]
    fn block_walks_reach_each_rows_leaf_and_credit_its_path_through_unbalanced_trees() {
        // x0 <= 1 (missing goes left) -> leaf; else x1 <= 0 -> leaf; else x0 <= 5 -> leaf,
        // leaf. Numbered depth first, so the layout renumbers it.
        let mut root = split(0, 1.0, 1, 2);
        root.missing_left = true;
        let deep = Tree {
            nodes: vec![
                root,
                leaf(0.0),
                split(1, 0.0, 3, 4),
                leaf(1.0),
                split(0, 5.0, 6, 5),
                leaf(2.0),
                leaf(3.0),
            ],
            node_values: vec![0.5, 0.1, 0.6, 0.2, 0.7, 0.3, 0.9],
        };
        let stump = Tree {
            nodes: vec![leaf(1.0)],
            node_values: vec![0.4],
        };
        let model = CompiledModel::Forest {
            trees: vec![deep.clone(), stump, deep],
            classes: 2,
        };
        let flat = FlatTrees::new(&model, 2).unwrap();
        assert_eq!(
            flat.trees.iter().map(|t| t.longest).collect::<Vec<_>>(),
            [4, 1, 4]
        );
        assert!(
            flat.trees.iter().all(|tree| tree.full.is_some()),
            "the crediting walks below go through the full-depth layouts"
        );
        // 35 rows: two full groups walked side by side and a partial one; some missing.
        let block: Vec<f64> = (0..35)
            .flat_map(|row| {
                let x0 = if row == 11 || row == 33 {
                    f64::NAN
                } else {
                    f64::from(row % 7)
                };
                [x0, f64::from(row % 3) - 1.0]
            })
            .collect();
        let mut paths = TreePaths::default();
        flat.walk_block(&block, 2, &mut paths, false);
        let CompiledModel::Forest { trees, .. } = &model else {
            unreachable!("a forest")
        };
        let mut probabilities = Vec::new();
        for (index, row) in block.chunks(2).enumerate() {
            for (at, tree) in trees.iter().enumerate() {
                let path = walked(tree, row);
                assert_eq!(paths.leaf(at, index), path.last().copied(), "row {row:?}");
                assert_eq!(paths.path(at, index).map(<[u32]>::len), Some(path.len()));
                // The credits are those of walking the tree itself, in the same order.
                let mut expected = vec![0.0; 2];
                for step in path.windows(2) {
                    expected[tree.nodes[step[0]].column()] +=
                        tree.node_values[step[1]] - tree.node_values[step[0]];
                }
                let mut credited = vec![0.0; 2];
                assert!(paths.row(&flat, index).credit(at, 1, 0, &mut credited));
                assert_eq!(credited, expected, "row {row:?}");
            }
            let value = model.score_walked(row, &paths, index, &mut probabilities);
            let scored = model.score(row);
            assert_eq!(
                (value, &probabilities),
                (scored.value, &scored.probabilities)
            );
        }
        assert_eq!(paths.leaf(0, 35), None, "no row past the block");
        assert_eq!(paths.credited(0), None, "not asked to credit");

        // Crediting while walking adds up the very steps following each path adds, and
        // reaches the same leaves, recording no path.
        let mut crediting = TreePaths::default();
        flat.walk_block(&block, 2, &mut crediting, true);
        for index in 0..35 {
            let mut followed = vec![0.0; 2];
            for tree in 0..3 {
                assert_eq!(crediting.leaf(tree, index), paths.leaf(tree, index));
                assert!(paths.row(&flat, index).credit(tree, 1, 0, &mut followed));
                assert!(
                    !crediting
                        .row(&flat, index)
                        .credit(tree, 1, 0, &mut [0.0; 2])
                );
            }
            assert_eq!(
                crediting.credited(index),
                Some(&followed[..]),
                "row {index}"
            );
        }
        assert_eq!(crediting.credited(35), None);
        // Trees without node values (hard-voting forests of early versions) have no steps
        // to credit.
        let unvalued = CompiledModel::Trees {
            trees: vec![Tree {
                nodes: vec![split(0, 1.0, 1, 2), leaf(0.0), leaf(1.0)],
                node_values: Vec::new(),
            }],
            classes: 2,
        };
        let unvalued = FlatTrees::new(&unvalued, 2).unwrap();
        unvalued.walk_block(&block, 2, &mut crediting, true);
        assert_eq!(crediting.credited(0), None);
        assert_eq!(crediting.leaf(0, 1), Some(1));
        assert!(!paths.row(&flat, 35).credit(0, 1, 0, &mut [0.0; 2]));
        assert!(
            !paths.row(&flat, 0).credit(0, 2, 0, &mut [0.0; 2]),
            "node values are one per node"
        );
    }

    #[test]
    fn full_depth_layouts_pad_shallow_leaves_and_credit_each_slot_as_the_tree_does() {
        // x0 <= 0 -> leaf 1; else x1 <= 0 -> leaf 3, else leaf 4. Laid out 2 deep, leaf 1
        // continues to slot 0, and slot 1 is reached by no row.
        let tree = Tree {
            nodes: vec![
                split(0, 0.0, 1, 2),
                leaf(1.0),
                split(1, 0.0, 3, 4),
                leaf(2.0),
                leaf(3.0),
            ],
            node_values: vec![0.5, 0.25, 0.75, 0.5, 1.0],
        };
        let model = CompiledModel::Forest {
            trees: vec![tree, chain(6)],
            classes: 2,
        };
        let flat = FlatTrees::new(&model, 2).unwrap();
        let full = flat.trees[0].full.as_ref().expect("balanced enough to pad");
        assert_eq!((full.depth, &full.leaves[..]), (2, &[1, 0, 3, 4][..]));
        let steps: Vec<(u32, f64)> = full
            .nodes
            .iter()
            .map(|node| (node.step.column, node.step.change))
            .collect();
        // Into the root, leaf 1, split 2, leaf 1's chain, no row, leaves 3 and 4.
        assert_eq!(
            steps,
            [
                (0, 0.0),
                (0, -0.25),
                (0, 0.25),
                (0, 0.0),
                (0, 0.0),
                (1, -0.25),
                (1, 0.25)
            ]
        );
        assert!(
            flat.trees[1].full.is_none(),
            "a chain 6 deep would be padded from 13 nodes to 127"
        );
        // Rows, some missing (they go right) or infinite, reach the same leaves with the
        // same credits as following each tree's recorded path.
        let block = [
            [-1.0, 5.0],
            [1.0, -1.0],
            [1.0, 1.0],
            [f64::NAN, 0.0],
            [3.0, f64::NAN],
            [f64::INFINITY, f64::NEG_INFINITY],
        ]
        .concat();
        let mut crediting = TreePaths::default();
        flat.walk_block(&block, 2, &mut crediting, true);
        let mut following = TreePaths::default();
        flat.walk_block(&block, 2, &mut following, false);
        let leaves: Vec<_> = (0..6).filter_map(|row| crediting.leaf(0, row)).collect();
        assert_eq!(leaves, [1, 3, 4, 3, 4, 3]);
        for row in 0..6 {
            let mut followed = vec![0.0; 2];
            for tree in 0..2 {
                assert_eq!(crediting.leaf(tree, row), following.leaf(tree, row));
                assert!(following.row(&flat, row).credit(tree, 1, 0, &mut followed));
            }
            assert_eq!(crediting.credited(row), Some(&followed[..]), "row {row}");
        }
    }

    /// A chain of `splits` splits on column 0 (`x0 <= k` leaves at step k), deeper than
    /// the paths recorded.
    pub(in crate::ml::models) fn chain(splits: u32) -> Tree {
        let mut nodes = Vec::new();
        for k in 0..splits {
            nodes.push(split(0, f64::from(k), 2 * k + 1, 2 * k + 2));
            nodes.push(leaf(f64::from(k)));
        }
        nodes.push(leaf(f64::from(splits)));
        let node_values = (0..nodes.len()).map(|n| n as f64 / 100.0).collect();
        Tree { nodes, node_values }
    }

    #[test]
    fn trees_deeper_than_the_recorded_paths_record_only_their_leaves() {
        let deep = chain(100);
        let model = CompiledModel::Forest {
            trees: vec![deep.clone(), chain(3)],
            classes: 2,
        };
        let flat = FlatTrees::new(&model, 1).unwrap();
        assert_eq!(flat.trees[0].longest, 101);
        assert!(
            flat.trees[0].full.is_none(),
            "too deep to lay out to full depth"
        );
        let block: Vec<f64> = (0..20).map(|row| f64::from(row * 7 % 120)).collect();
        let mut paths = TreePaths::default();
        flat.walk_block(&block, 1, &mut paths, false);
        assert_eq!(
            paths.nodes.len(),
            20 * 4,
            "only the shallow tree's paths are kept"
        );
        for (index, row) in block.chunks(1).enumerate() {
            assert_eq!(paths.leaf(0, index), walked(&deep, row).last().copied());
            assert!(!paths.row(&flat, index).credit(0, 1, 0, &mut [0.0]));
            assert!(paths.row(&flat, index).credit(1, 1, 0, &mut [0.0]));
        }
    }

    #[test]
    fn malformed_trees_are_refused_naming_the_tree_and_node() {
        let forest = |tree: Tree| CompiledModel::Forest {
            trees: vec![
                Tree {
                    nodes: vec![leaf(1.0)],
                    node_values: Vec::new(),
                },
                tree,
            ],
            classes: 2,
        };
        let refused = |nodes: Vec<TreeNode>, width: usize| {
            FlatTrees::new(
                &forest(Tree {
                    nodes,
                    node_values: Vec::new(),
                }),
                width,
            )
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            refused(vec![split(0, 1.0, 1, 7), leaf(0.0)], 1),
            "tree 1, node 0: its child 7 is outside the tree of 2 nodes"
        );
        assert_eq!(
            refused(vec![split(0, 1.0, 1, 2), leaf(0.0), split(0, 2.0, 0, 1)], 1),
            "tree 1, node 2: its child 0 is reached twice (the tree has a cycle or a shared node)"
        );
        assert_eq!(
            refused(
                vec![
                    split(0, 1.0, 1, 2),
                    leaf(0.0),
                    split(3, 2.0, 3, 4),
                    leaf(1.0),
                    leaf(2.0)
                ],
                2
            ),
            "tree 1, node 2: it splits on encoded column 3, but rows have 2"
        );
        assert_eq!(
            refused(Vec::new(), 1),
            "tree 1, node 0: the tree has no nodes"
        );
        // A linear model has no trees to lay out.
        let linear = CompiledModel::Linear {
            weights: vec![1.0],
            intercept: 0.0,
            logistic: false,
        };
        let mut paths = TreePaths::default();
        FlatTrees::new(&linear, 1)
            .unwrap()
            .walk_block(&[1.0, 2.0], 1, &mut paths, true);
        assert_eq!(paths.leaf(0, 0), None);
    }
}

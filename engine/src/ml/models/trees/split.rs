//! Choosing a node's split from its histogram. A set of rows scores
//! `Σₖ sumₖ² / (weight + λ)`; a cut of a column gains the two sides' scores minus the
//! node's, and the rows missing the column go to whichever side gains more. Every column
//! is scanned on its own (so columns can be scanned in parallel), and the best cut of
//! all is picked in the caller's column order, the first of equal gains winning.

use super::grow::{GrowSettings, Targets};

/// Sums over a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stats {
    pub sums: Vec<f64>,
    pub weight: f64,
    pub count: f64,
}

impl Stats {
    pub fn zero(outputs: usize) -> Self {
        Self {
            sums: vec![0.0; outputs],
            weight: 0.0,
            count: 0.0,
        }
    }

    /// The sums of `rows`' targets.
    pub fn of_rows(targets: &Targets<'_>, rows: &[u32]) -> Self {
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

    /// Adds one histogram bin: `outputs` sums, the weight and the count.
    pub fn add_bin(&mut self, bin: &[f64]) {
        let outputs = self.sums.len();
        for (sum, value) in self.sums.iter_mut().zip(bin) {
            *sum += value;
        }
        self.weight += bin[outputs];
        self.count += bin[outputs + 1];
    }

    pub fn minus(&self, other: &Stats) -> Stats {
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

    pub fn score(&self, lambda: f64) -> f64 {
        let denominator = self.weight + lambda;
        if denominator <= 0.0 {
            return 0.0;
        }
        self.sums.iter().map(|s| s * s).sum::<f64>() / denominator
    }

    pub fn values(&self, lambda: f64) -> impl Iterator<Item = f64> + '_ {
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

/// The best cut of one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Cut {
    pub gain: f64,
    /// The last value bin that goes left.
    pub bin: usize,
    /// Whether the rows missing the column go left.
    pub missing_left: bool,
}

/// The best split of a node.
#[derive(Debug, Clone)]
pub(super) struct Split {
    pub column: usize,
    pub bin: usize,
    pub missing_left: bool,
    pub gain: f64,
    /// The left side's sums.
    pub left: Stats,
}

/// What a cut must leave on both sides, and what it is measured against.
struct Rules {
    lambda: f64,
    min_count: f64,
    min_weight: f64,
    /// The node's own score.
    parent: f64,
    /// Gains at most this are rounding noise, not a split.
    least_gain: f64,
}

impl Rules {
    fn new(node: &Stats, settings: &GrowSettings) -> Self {
        let parent = node.score(settings.lambda);
        Self {
            lambda: settings.lambda,
            min_count: settings.min_samples_leaf.max(1) as f64,
            min_weight: settings.min_child_weight,
            parent,
            least_gain: 1e-10 * parent.abs().max(1e-300),
        }
    }

    /// The gain of a cut whose sides have these squared sums, weights and counts; None
    /// when a side is below the limits or the gain is noise.
    fn gain(&self, squares: [f64; 2], weights: [f64; 2], counts: [f64; 2]) -> Option<f64> {
        let allowed =
            |side: usize| counts[side] >= self.min_count && weights[side] >= self.min_weight;
        if !allowed(0) || !allowed(1) {
            return None;
        }
        let score = |side: usize| {
            if weights[side] + self.lambda > 0.0 {
                squares[side] / (weights[side] + self.lambda)
            } else {
                0.0
            }
        };
        let gain = score(0) + score(1) - self.parent;
        (gain > self.least_gain).then_some(gain)
    }
}

/// The best cut of a column whose histogram is `bins` (`outputs` sums, weight and count
/// per bin, bin 0 the missing values) for a node of `node`'s sums; None when no cut
/// leaves both sides within the settings' limits with a gain.
pub(super) fn best_cut(bins: &[f64], node: &Stats, settings: &GrowSettings) -> Option<Cut> {
    let rules = Rules::new(node, settings);
    if node.sums.len() == 1 {
        best_cut_of_one_output(bins, node, &rules)
    } else {
        best_cut_of_outputs(bins, node, &rules)
    }
}

/// [`best_cut`] for any number of targets per row.
fn best_cut_of_outputs(bins: &[f64], node: &Stats, rules: &Rules) -> Option<Cut> {
    let outputs = node.sums.len();
    let stride = outputs + 2;
    // The gain of sending `left` (a side's sums, weight and count) left, the rest right.
    let gain_of = |left: &[f64]| {
        let (weight, count) = (left[outputs], left[outputs + 1]);
        let (mut left_squares, mut right_squares) = (0.0, 0.0);
        for (sum, total) in left[..outputs].iter().zip(&node.sums) {
            left_squares += sum * sum;
            right_squares += (total - sum) * (total - sum);
        }
        rules.gain(
            [left_squares, right_squares],
            [weight, node.weight - weight],
            [count, node.count - count],
        )
    };
    let value_bins = bins.len() / stride;
    let missing = &bins[..stride];
    let has_missing = missing[outputs + 1] > 0.0;
    let mut best: Option<Cut> = None;
    let mut left = vec![0.0; 2 * stride];
    let (left, with_missing) = left.split_at_mut(stride);
    for bin in 1..value_bins.saturating_sub(1) {
        for (l, b) in left.iter_mut().zip(&bins[bin * stride..(bin + 1) * stride]) {
            *l += b;
        }
        if left[outputs + 1] == 0.0 {
            continue;
        }
        let mut consider = |side: &[f64], missing_left: bool| {
            if let Some(gain) = gain_of(side)
                && best.is_none_or(|b| gain > b.gain)
            {
                best = Some(Cut {
                    gain,
                    bin,
                    missing_left,
                });
            }
        };
        consider(left, false);
        if has_missing {
            for ((w, l), m) in with_missing.iter_mut().zip(left.iter()).zip(missing) {
                *w = l + m;
            }
            consider(with_missing, true);
        }
    }
    best
}

/// [`best_cut`] for one target per row (gradient boosting, regression): the same sums in
/// the same order, on plain numbers, as it runs for every column of every node.
fn best_cut_of_one_output(bins: &[f64], node: &Stats, rules: &Rules) -> Option<Cut> {
    let (bins, _) = bins.as_chunks::<3>();
    let total = node.sums[0];
    let missing = bins[0];
    let has_missing = missing[2] > 0.0;
    let mut best: Option<Cut> = None;
    let [mut sum, mut weight, mut count] = [0.0; 3];
    for (bin, values) in bins
        .iter()
        .enumerate()
        .take(bins.len().saturating_sub(1))
        .skip(1)
    {
        sum += values[0];
        weight += values[1];
        count += values[2];
        if count == 0.0 {
            continue;
        }
        let mut consider = |sum: f64, weight: f64, count: f64, missing_left: bool| {
            let right = total - sum;
            if let Some(gain) = rules.gain(
                [sum * sum, right * right],
                [weight, node.weight - weight],
                [count, node.count - count],
            ) && best.is_none_or(|b| gain > b.gain)
            {
                best = Some(Cut {
                    gain,
                    bin,
                    missing_left,
                });
            }
        };
        consider(sum, weight, count, false);
        if has_missing {
            consider(
                sum + missing[0],
                weight + missing[1],
                count + missing[2],
                true,
            );
        }
    }
    best
}

/// The split of `column` at `cut`, its histogram `bins`, for a node of `node`'s sums.
pub(super) fn split_at(column: usize, cut: Cut, bins: &[f64], node: &Stats) -> Split {
    let outputs = node.sums.len();
    let stride = outputs + 2;
    let missing = &bins[..stride];
    let mut left = Stats::zero(outputs);
    for at in 1..=cut.bin {
        left.add_bin(&bins[at * stride..(at + 1) * stride]);
    }
    if cut.missing_left {
        left.add_bin(missing);
    }
    let right_count = node.count - left.count;
    // Rows missing this column in scoring but not in training go with the larger side.
    let missing_left =
        cut.missing_left || (missing[outputs + 1] == 0.0 && left.count > right_count);
    Split {
        column,
        bin: cut.bin,
        missing_left,
        gain: cut.gain,
        left,
    }
}

/// The best of per-column cuts, looked at in `columns` order (the first of equal gains
/// wins); `cuts[column]` is that column's best cut.
pub(super) fn best_column(columns: &[usize], cuts: &[Option<Cut>]) -> Option<(usize, Cut)> {
    let mut best: Option<(usize, Cut)> = None;
    for &column in columns {
        if let Some(cut) = cuts[column]
            && best.is_none_or(|(_, b)| cut.gain > b.gain)
        {
            best = Some((column, cut));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::models::trees::rng::Rng;

    #[test]
    fn the_one_output_scan_finds_the_cut_the_general_one_finds() {
        let settings = GrowSettings {
            max_depth: None,
            max_leaves: None,
            min_samples_leaf: 3,
            min_samples_split: 2,
            min_child_weight: 0.5,
            lambda: 1.0,
            features_per_split: None,
            threads: 1,
        };
        let mut rng = Rng::new(9, 0);
        let mut found = 0;
        for _ in 0..200 {
            let bins: Vec<f64> = (0..40)
                .flat_map(|_| {
                    let count = rng.below(6) as f64;
                    [rng.unit() * count - count / 2.0, count * rng.unit(), count]
                })
                .collect();
            let mut node = Stats::zero(1);
            for bin in bins.chunks(3) {
                node.add_bin(bin);
            }
            let rules = Rules::new(&node, &settings);
            let general = best_cut_of_outputs(&bins, &node, &rules);
            assert_eq!(best_cut_of_one_output(&bins, &node, &rules), general);
            assert_eq!(best_cut(&bins, &node, &settings), general);
            found += usize::from(general.is_some_and(|cut| cut.missing_left));
        }
        assert!(found > 20, "{found} cuts sending missing values left");
    }
}

//! Feature binning for the histogram tree learner: each encoded column is cut once per
//! training run into at most [`MAX_VALUE_BINS`] bins at quantiles of its training values,
//! and every training row is stored as one byte per column. Bin 0 holds missing values
//! (NaN), so a split can learn which side they go to.
//!
//! Columns of two values that are never set together in one row (a categorical feature's
//! one-hot columns) are bundled, as LightGBM's exclusive feature bundling does: one byte
//! per row says which of the bundle's columns is set, so one pass over the rows gives
//! every column of the bundle its histogram.

use crate::ml::models::parallel::{cores, map_in_order};

/// Most bins a column's values are cut into (bin 0, missing, comes on top).
pub const MAX_VALUE_BINS: usize = 255;

/// Values looked at per column to place the cuts: enough for stable quantiles, bounded so
/// binning stays cheap on large training sets.
const SAMPLE: usize = 200_000;

/// Columns binned together: one cache line of a row's values.
const COLUMNS_PER_GROUP: usize = 8;

/// The training rows as bins, column by column.
#[derive(Debug, Clone, PartialEq)]
pub struct BinnedColumns {
    /// Training rows.
    pub rows: usize,
    /// Per column, the bin of every row.
    pub bins: Vec<Vec<u8>>,
    /// Per column, the upper bound of each value bin: bin `b ≥ 1` holds the values in
    /// `(upper[b - 2], upper[b - 1]]`; the last bound is +∞.
    pub upper: Vec<Vec<f64>>,
    /// Bundles of two-valued columns never set (in their second value bin) in the same row.
    pub bundles: Vec<Bundle>,
    /// Per column, the bundle holding it.
    pub bundle_of: Vec<Option<usize>>,
}

/// Two-valued columns that are never set in the same row.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The columns, in order.
    pub columns: Vec<usize>,
    /// Per row, 1 + the position of the column set in it, or 0 when none is.
    pub slots: Vec<u8>,
}

/// The value bin of a two-valued column that marks it set.
pub const SET: u8 = 2;

impl BinnedColumns {
    /// Bins `rows × width` row-major `values`, columns in parallel on every core (each
    /// column's bins depend on its values alone).
    pub fn new(values: &[f64], rows: usize, width: usize) -> Self {
        let groups = width.div_ceil(COLUMNS_PER_GROUP);
        let (upper, bins): (Vec<Vec<f64>>, Vec<Vec<u8>>) = map_in_order(groups, cores(), |group| {
            let first = group * COLUMNS_PER_GROUP;
            let last = (first + COLUMNS_PER_GROUP).min(width);
            // The group's columns copied out in one pass over the rows, reading each row's
            // values of the group together.
            let mut columns: Vec<Vec<f64>> =
                (first..last).map(|_| Vec::with_capacity(rows)).collect();
            for row in values.chunks_exact(width.max(1)).take(rows) {
                for (column, value) in columns.iter_mut().zip(&row[first..last]) {
                    column.push(*value);
                }
            }
            columns
                .into_iter()
                .map(|column| {
                    let cuts = cuts(&column);
                    let column_bins = column.iter().map(|value| bin_of(&cuts, *value)).collect();
                    (cuts, column_bins)
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .unzip();
        let (bundles, bundle_of) = bundle(&bins, &upper, rows);
        Self {
            rows,
            bins,
            upper,
            bundles,
            bundle_of,
        }
    }

    /// Bins of column `column`, value bins and the missing bin (0) included.
    pub fn bin_count(&self, column: usize) -> usize {
        self.upper[column].len() + 1
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.bins.len()
    }
}

/// Greedily bundles consecutive two-valued columns without missing values while no row
/// has two of them set; bundles of one column are left out.
fn bundle(bins: &[Vec<u8>], upper: &[Vec<f64>], rows: usize) -> (Vec<Bundle>, Vec<Option<usize>>) {
    let mut bundles = Vec::new();
    let mut bundle_of = vec![None; bins.len()];
    let mut open = Bundle {
        columns: Vec::new(),
        slots: vec![0; rows],
    };
    for (column, column_bins) in bins.iter().enumerate() {
        let two_valued = upper[column].len() == 2 && !column_bins.contains(&0);
        if !two_valued {
            close(&mut open, rows, &mut bundles, &mut bundle_of);
            continue;
        }
        let clashes = |open: &Bundle| {
            column_bins
                .iter()
                .zip(&open.slots)
                .any(|(bin, slot)| *bin == SET && *slot != 0)
        };
        if open.columns.len() == usize::from(u8::MAX) - 1 || clashes(&open) {
            close(&mut open, rows, &mut bundles, &mut bundle_of);
        }
        open.columns.push(column);
        let slot = open.columns.len() as u8;
        for (bin, at) in column_bins.iter().zip(open.slots.iter_mut()) {
            if *bin == SET {
                *at = slot;
            }
        }
    }
    close(&mut open, rows, &mut bundles, &mut bundle_of);
    (bundles, bundle_of)
}

/// Ends the open bundle (keeping it when it has more than one column) and opens another.
fn close(
    open: &mut Bundle,
    rows: usize,
    bundles: &mut Vec<Bundle>,
    bundle_of: &mut [Option<usize>],
) {
    let done = std::mem::replace(
        open,
        Bundle {
            columns: Vec::new(),
            slots: vec![0; rows],
        },
    );
    if done.columns.len() > 1 {
        for column in &done.columns {
            bundle_of[*column] = Some(bundles.len());
        }
        bundles.push(done);
    }
}

/// The bin of `value`: 0 when missing, else the first value bin whose bound is at least it.
fn bin_of(upper: &[f64], value: f64) -> u8 {
    if value.is_nan() {
        return 0;
    }
    // At most MAX_VALUE_BINS bounds, so the index fits a byte.
    (upper.partition_point(|bound| *bound < value) + 1) as u8
}

/// The bin bounds of one column: every distinct value its own bin when there are few,
/// else cuts at equal shares of the sampled values; a bound lies halfway between the
/// last value of its bin and the first of the next.
fn cuts(column: &[f64]) -> Vec<f64> {
    let step = column.len().div_ceil(SAMPLE).max(1);
    let mut sample: Vec<f64> = column
        .iter()
        .step_by(step)
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    sample.sort_unstable_by(f64::total_cmp);
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for value in sample.iter().copied() {
        match distinct.last_mut() {
            Some((last, count)) if *last == value => *count += 1,
            _ => distinct.push((value, 1)),
        }
    }
    let mut upper = Vec::new();
    if distinct.len() <= MAX_VALUE_BINS {
        upper.extend(
            distinct
                .windows(2)
                .map(|pair| midpoint(pair[0].0, pair[1].0)),
        );
    } else {
        let share = sample.len() as f64 / MAX_VALUE_BINS as f64;
        let mut seen = 0usize;
        for (at, (value, count)) in distinct.iter().enumerate() {
            seen += count;
            let next = distinct.get(at + 1).map(|(v, _)| *v);
            if let Some(next) = next
                && seen as f64 >= share * (upper.len() + 1) as f64
                && upper.len() + 1 < MAX_VALUE_BINS
            {
                upper.push(midpoint(*value, next));
            }
        }
    }
    upper.push(f64::INFINITY);
    upper
}

fn midpoint(low: f64, high: f64) -> f64 {
    let middle = low + (high - low) / 2.0;
    // Between adjacent floats the midpoint rounds onto one of them; keep `low` on the left.
    if middle >= high { low } else { middle }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_a_bin_each_and_missing_gets_bin_zero() {
        let values = [3.0, 1.0, f64::NAN, 2.0, 1.0];
        let binned = BinnedColumns::new(&values, 5, 1);
        assert_eq!(binned.upper[0], vec![1.5, 2.5, f64::INFINITY]);
        assert_eq!(binned.bins[0], vec![3, 1, 0, 2, 1]);
        assert_eq!(binned.bin_count(0), 4);
        assert!(binned.bundles.is_empty());
    }

    #[test]
    fn columns_binned_in_groups_equal_columns_binned_alone() {
        let (rows, width) = (1000, 13);
        let values: Vec<f64> = (0..rows * width)
            .map(|at| match (at % width, at / width) {
                (3, row) if row % 7 == 0 => f64::NAN,
                (column, row) => ((row * (column + 3)) % 301) as f64 / (column + 1) as f64,
            })
            .collect();
        let binned = BinnedColumns::new(&values, rows, width);
        for column in 0..width {
            let alone: Vec<f64> = values.iter().skip(column).step_by(width).copied().collect();
            let single = BinnedColumns::new(&alone, rows, 1);
            assert_eq!(binned.bins[column], single.bins[0], "column {column}");
            assert_eq!(binned.upper[column], single.upper[0], "column {column}");
        }
        assert!(binned.bins[3].iter().step_by(7).all(|bin| *bin == 0));
    }

    #[test]
    fn one_hot_columns_are_bundled_and_overlapping_ones_are_not() {
        // Columns: a number, three one-hot columns of one category, then a flag that is
        // set together with the first one-hot column.
        let rows = [
            [0.5, 1.0, 0.0, 0.0, 1.0],
            [1.5, 0.0, 1.0, 0.0, 0.0],
            [2.5, 0.0, 0.0, 1.0, 0.0],
            [3.5, 1.0, 0.0, 0.0, 1.0],
        ];
        let values: Vec<f64> = rows.iter().flatten().copied().collect();
        let binned = BinnedColumns::new(&values, 4, 5);
        assert_eq!(binned.bundles.len(), 1);
        assert_eq!(binned.bundles[0].columns, vec![1, 2, 3]);
        assert_eq!(binned.bundles[0].slots, vec![1, 2, 3, 1]);
        assert_eq!(
            binned.bundle_of,
            vec![None, Some(0), Some(0), Some(0), None]
        );
    }

    #[test]
    fn many_distinct_values_are_cut_at_quantiles_into_at_most_255_bins() {
        let rows = 10_000;
        let values: Vec<f64> = (0..rows).map(|i| f64::from(i) * 0.5).collect();
        let binned = BinnedColumns::new(&values, rows as usize, 1);
        assert_eq!(binned.bin_count(0), MAX_VALUE_BINS + 1);
        let mut sizes = vec![0usize; binned.bin_count(0)];
        for bin in &binned.bins[0] {
            sizes[*bin as usize] += 1;
        }
        assert_eq!(sizes[0], 0);
        // Equal shares: every value bin holds about rows / 255 rows.
        assert!(
            sizes[1..].iter().all(|s| (35..=45).contains(s)),
            "{sizes:?}"
        );
        // Bins are ordered: a larger value never lands in a smaller bin.
        assert!(binned.bins[0].windows(2).all(|w| w[0] <= w[1]));
        // A bound separates its bin's values from the next bin's.
        for (row, bin) in binned.bins[0].iter().enumerate() {
            let value = values[row];
            let bin = *bin as usize;
            assert!(value <= binned.upper[0][bin - 1]);
            if bin >= 2 {
                assert!(value > binned.upper[0][bin - 2]);
            }
        }
    }
}

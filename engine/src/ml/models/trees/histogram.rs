//! A node's histograms: per column and bin, the sums of its rows' targets, their weight
//! and their count. The rows' targets are gathered once in row order; then one pass over
//! the rows per column, or per bundle of one-hot columns, gives that column's histogram
//! (or every wanted column of the bundle). Passes are independent, so callers run them
//! in parallel; each pass sums its rows in a fixed order, so the result does not depend
//! on the thread count.

use super::bins::{BinnedColumns, SET};
use super::grow::Targets;
use crate::ml::models::parallel::pieces_in_parallel;

/// Per column, the bins' sums (`outputs` target sums, weight, count per bin); empty for
/// columns not built.
#[derive(Debug, Clone)]
pub(super) struct Histogram {
    pub columns: Vec<Vec<f64>>,
}

/// One pass of a histogram build.
pub(super) enum Pass {
    /// One column's bins.
    Column(usize),
    /// A bundle's slots, giving the listed columns of it.
    Bundle(usize, Vec<usize>),
}

/// The passes that build the histograms of `columns`: one per column, except that the
/// wanted columns of a bundle share one.
pub(super) fn passes(binned: &BinnedColumns, columns: &[usize]) -> Vec<Pass> {
    let mut passes: Vec<Pass> = Vec::new();
    let mut bundles_wanted = vec![Vec::new(); binned.bundles.len()];
    for &column in columns {
        match binned.bundle_of[column] {
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
    passes
}

/// Rows per piece when gathering targets on several threads.
const GATHER_PIECE_ROWS: usize = 32_768;

/// Per row of `rows`, in order: its `outputs` target values and its weight.
pub(super) fn gather(targets: &Targets<'_>, rows: &[u32], threads: usize) -> Vec<f64> {
    let outputs = targets.outputs;
    let stride = outputs + 1;
    let mut gathered = vec![0.0; rows.len() * stride];
    pieces_in_parallel(
        &mut gathered,
        GATHER_PIECE_ROWS * stride,
        threads,
        |first, piece| {
            let first_row = first / stride;
            for (&row, values) in rows[first_row..].iter().zip(piece.chunks_exact_mut(stride)) {
                let row = row as usize;
                // Element by element: a copy call per row would cost more than the copy.
                for (value, target) in values[..outputs]
                    .iter_mut()
                    .zip(&targets.sums[row * outputs..])
                {
                    *value = *target;
                }
                values[outputs] = targets.weights.map_or(1.0, |w| w[row]);
            }
        },
    );
    gathered
}

/// One pass over `rows` (their targets `gathered`): the histogram of a column, or those
/// of a bundle's wanted columns, as (column, bins).
pub(super) fn pass_histograms(
    binned: &BinnedColumns,
    outputs: usize,
    pass: &Pass,
    rows: &[u32],
    gathered: &[f64],
) -> Vec<(usize, Vec<f64>)> {
    let stride = outputs + 2;
    match pass {
        Pass::Column(column) => {
            let codes = &binned.bins[*column];
            let bins = binned.bin_count(*column);
            vec![(
                *column,
                code_histogram(codes, bins, outputs, rows, gathered),
            )]
        }
        Pass::Bundle(bundle, wanted) => {
            let bundle_columns = &binned.bundles[*bundle];
            let slots = code_histogram(
                &bundle_columns.slots,
                bundle_columns.columns.len() + 1,
                outputs,
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

/// Codes below which consecutive rows are likely to share one.
const FEW_CODES: usize = 32;

/// Rows from which spreading a histogram over four copies pays for adding them up.
const MANY_ROWS: usize = 1024;

/// Per code (a column's bin, a bundle's slot): the summed targets, weight and count of
/// the rows with it.
fn code_histogram(
    codes: &[u8],
    count: usize,
    outputs: usize,
    rows: &[u32],
    gathered: &[f64],
) -> Vec<f64> {
    let stride = outputs + 2;
    let mut bins = vec![0.0; count * stride];
    if outputs == 1 {
        let (bins, _) = bins.as_chunks_mut::<3>();
        let (values, _) = gathered.as_chunks::<2>();
        if count < FEW_CODES && rows.len() >= MANY_ROWS {
            // Few codes: consecutive rows often share one. Four copies of the histogram,
            // one per row position modulo four, so those additions land in different
            // memory and do not wait on each other.
            let mut lanes = vec![[0.0; 3]; 4 * count];
            let (quads, rest) = rows.as_chunks::<4>();
            for (quad, quad_values) in quads.iter().zip(values.chunks_exact(4)) {
                for k in 0..4 {
                    let lane = &mut lanes[k * count + usize::from(codes[quad[k] as usize])];
                    lane[0] += quad_values[k][0];
                    lane[1] += quad_values[k][1];
                    lane[2] += 1.0;
                }
            }
            for (&row, value) in rest.iter().zip(&values[quads.len() * 4..]) {
                let lane = &mut lanes[usize::from(codes[row as usize])];
                lane[0] += value[0];
                lane[1] += value[1];
                lane[2] += 1.0;
            }
            for (code, bin) in bins.iter_mut().enumerate() {
                for (k, value) in bin.iter_mut().enumerate() {
                    *value = (0..4).map(|lane| lanes[lane * count + code][k]).sum();
                }
            }
        } else {
            for (&row, value) in rows.iter().zip(values) {
                let bin = &mut bins[usize::from(codes[row as usize])];
                bin[0] += value[0];
                bin[1] += value[1];
                bin[2] += 1.0;
            }
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

/// `parent − child`, bin by bin: the other child's histogram of one column.
pub(super) fn minus(parent: &[f64], child: &[f64]) -> Vec<f64> {
    parent.iter().zip(child).map(|(p, c)| p - c).collect()
}

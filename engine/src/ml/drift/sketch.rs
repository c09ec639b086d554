//! Streaming column profiles for drift: one pass over record batches, bounded memory.
//!
//! A numeric column keeps every value while it has at most [`EXACT_VALUES`], so the
//! statistics are exact on tables of that size. Beyond that the values are summarized
//! into [`CENTROIDS`] equal-weight centroids (each the mean of the values it replaced),
//! re-summarized as more values arrive: memory stays constant, and KS and Wasserstein
//! become approximations whose error is about the weight of one centroid (1/10,000 of the
//! rows). Counts, nulls, mean and standard deviation are always exact. A categorical
//! column counts at most [`MAX_CATEGORIES`] distinct values; rarer ones share `(other)`.

use std::collections::HashMap;

use crate::ml::models::features::OTHER;

/// Values kept exactly per numeric column.
pub const EXACT_VALUES: usize = 100_000;
/// Centroids a summarized numeric column keeps.
pub const CENTROIDS: usize = 10_000;
/// Distinct values counted per categorical column.
pub const MAX_CATEGORIES: usize = 10_000;

/// The streaming profile of a numeric column.
#[derive(Debug, Clone, Default)]
pub struct NumericSketch {
    rows: u64,
    nulls: u64,
    sum: f64,
    sum_of_squares: f64,
    atoms: Vec<(f64, f64)>,
    summarized: bool,
}

impl NumericSketch {
    /// Adds one value (None, NaN and infinities count as missing).
    pub fn add(&mut self, value: Option<f64>) {
        self.rows += 1;
        match value.filter(|v| v.is_finite()) {
            Some(v) => {
                self.sum += v;
                self.sum_of_squares += v * v;
                self.atoms.push((v, 1.0));
                if self.atoms.len() > EXACT_VALUES + CENTROIDS {
                    self.summarize();
                }
            }
            None => self.nulls += 1,
        }
    }

    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Replaces the atoms by CENTROIDS equal-weight centroids.
    fn summarize(&mut self) {
        self.atoms.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = self.atoms.iter().map(|(_, w)| w).sum();
        let per_centroid = total / CENTROIDS as f64;
        let mut centroids = Vec::with_capacity(CENTROIDS + 1);
        let (mut weight, mut weighted_sum) = (0.0, 0.0);
        for &(value, w) in &self.atoms {
            weight += w;
            weighted_sum += value * w;
            if weight >= per_centroid {
                centroids.push((weighted_sum / weight, weight));
                weight = 0.0;
                weighted_sum = 0.0;
            }
        }
        if weight > 0.0 {
            centroids.push((weighted_sum / weight, weight));
        }
        self.atoms = centroids;
        self.summarized = true;
    }

    /// The finished distribution.
    pub fn finish(mut self) -> NumericDistribution {
        self.atoms.sort_by(|a, b| a.0.total_cmp(&b.0));
        let present = (self.rows - self.nulls) as f64;
        let mean = if present > 0.0 {
            self.sum / present
        } else {
            0.0
        };
        let variance = if present > 0.0 {
            (self.sum_of_squares / present - mean * mean).max(0.0)
        } else {
            0.0
        };
        NumericDistribution {
            rows: self.rows,
            nulls: self.nulls,
            mean,
            std: variance.sqrt(),
            exact: !self.summarized,
            atoms: self.atoms,
        }
    }
}

/// A numeric column's distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericDistribution {
    /// Rows seen.
    pub rows: u64,
    /// Missing values among them.
    pub nulls: u64,
    /// Mean of the present values.
    pub mean: f64,
    /// Population standard deviation of the present values.
    pub std: f64,
    /// True when `atoms` are the values themselves, false when summarized.
    pub exact: bool,
    /// `(value, weight)` sorted by value.
    pub atoms: Vec<(f64, f64)>,
}

impl NumericDistribution {
    /// Present values.
    pub fn present(&self) -> f64 {
        (self.rows - self.nulls) as f64
    }

    /// The `q` quantile (0..=1) of the present values: the smallest value whose cumulative
    /// weight reaches `q` of the total.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: f64 = self.atoms.iter().map(|(_, w)| w).sum();
        let target = q * total;
        let mut cumulative = 0.0;
        for &(value, weight) in &self.atoms {
            cumulative += weight;
            if cumulative >= target - 1e-9 {
                return Some(value);
            }
        }
        self.atoms.last().map(|(v, _)| *v)
    }

    /// Weight per bin for inner edges `edges`: bin i holds values in
    /// (edges[i-1], edges[i]]; the first bin also everything below, the last everything above.
    pub fn bin_counts(&self, edges: &[f64]) -> Vec<f64> {
        let mut counts = vec![0.0; edges.len() + 1];
        for &(value, weight) in &self.atoms {
            let bin = edges.partition_point(|edge| *edge < value);
            counts[bin] += weight;
        }
        counts
    }
}

/// The streaming profile of a categorical (or boolean) column.
#[derive(Debug, Clone, Default)]
pub struct CategoricalSketch {
    rows: u64,
    nulls: u64,
    counts: HashMap<String, f64>,
}

impl CategoricalSketch {
    /// Adds one value.
    pub fn add(&mut self, value: Option<&str>) {
        self.rows += 1;
        let Some(value) = value else {
            self.nulls += 1;
            return;
        };
        if let Some(count) = self.counts.get_mut(value) {
            *count += 1.0;
        } else if self.counts.len() < MAX_CATEGORIES {
            self.counts.insert(value.to_string(), 1.0);
        } else {
            *self.counts.entry(OTHER.to_string()).or_default() += 1.0;
        }
    }

    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Missing values among them.
    pub fn nulls(&self) -> u64 {
        self.nulls
    }

    /// Count per value.
    pub fn counts(&self) -> &HashMap<String, f64> {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::drift::stats::{ks_statistic, wasserstein};

    #[test]
    fn small_columns_are_exact_and_large_ones_stay_bounded_and_close() {
        let mut small = NumericSketch::default();
        for v in [3.0, 1.0, 2.0] {
            small.add(Some(v));
        }
        small.add(None);
        small.add(Some(f64::NAN));
        let small = small.finish();
        assert!(small.exact);
        assert_eq!(small.atoms, [(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]);
        assert_eq!((small.rows, small.nulls, small.mean), (5, 2, 2.0));
        assert_eq!(small.quantile(0.5), Some(2.0));
        assert_eq!(small.bin_counts(&[1.0, 2.5]), [1.0, 1.0, 1.0]);

        // 1,000,000 values of a deterministic sawtooth against the same values exact.
        let value = |i: u64| ((i * 7919) % 100_003) as f64 / 100.0;
        let mut large = NumericSketch::default();
        for i in 0..1_000_000 {
            large.add(Some(value(i)));
        }
        let large = large.finish();
        assert!(!large.exact);
        assert!(large.atoms.len() <= EXACT_VALUES + CENTROIDS + 1);
        let total: f64 = large.atoms.iter().map(|(_, w)| w).sum();
        assert!((total - 1_000_000.0).abs() < 1e-6);
        let mut exact: Vec<(f64, f64)> = (0..1_000_000).map(|i| (value(i), 1.0)).collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(ks_statistic(&large.atoms, &exact) < 0.002);
        assert!(wasserstein(&large.atoms, &exact) < 0.01 * large.std);
    }

    #[test]
    fn categories_beyond_the_limit_share_other() {
        let mut sketch = CategoricalSketch::default();
        for i in 0..MAX_CATEGORIES + 5 {
            sketch.add(Some(&format!("v{i}")));
        }
        sketch.add(None);
        assert_eq!(sketch.counts().len(), MAX_CATEGORIES + 1);
        assert_eq!(sketch.counts()[OTHER], 5.0);
        assert_eq!(
            (sketch.rows(), sketch.nulls()),
            (MAX_CATEGORIES as u64 + 6, 1)
        );
    }
}

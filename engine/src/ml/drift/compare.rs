//! Comparing one column's baseline and current distributions: every metric with its
//! threshold and verdict, and the binned shares the report draws.

use crate::config::Thresholds;
use crate::ml::drift::sketch::{CategoricalSketch, NumericDistribution};
use crate::ml::drift::stats::{
    chi_square, js_distance, ks_p_value, ks_statistic, l_infinity, psi, shares, wasserstein,
};

/// One metric of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// The metric's name, e.g. `psi` or `ks_p_value`.
    pub metric: &'static str,
    /// Its value.
    pub value: f64,
    /// The threshold it is judged by (None for informational deltas).
    pub threshold: Option<f64>,
    /// True when it crossed its threshold.
    pub drifted: bool,
}

/// One bar pair of the report's histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    /// The bin (a value range or a category).
    pub label: String,
    /// Share of baseline rows in it.
    pub baseline: f64,
    /// Share of current rows in it.
    pub current: f64,
}

/// The drift of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDrift {
    /// The column (`prediction` for the model's output).
    pub column: String,
    /// `numeric`, `categorical`, `boolean` or `prediction`.
    pub data_type: &'static str,
    /// Baseline rows.
    pub baseline_rows: u64,
    /// Current rows.
    pub current_rows: u64,
    /// Every metric.
    pub metrics: Vec<MetricValue>,
    /// True when any metric drifted.
    pub drifted: bool,
    /// Binned shares, baseline against current.
    pub bins: Vec<Bin>,
}

/// One line of the command line's drift table: column, type, verdict and the judged
/// metrics, drifted ones marked `*`.
impl std::fmt::Display for ColumnDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let metrics: Vec<String> = self
            .metrics
            .iter()
            .filter(|m| m.threshold.is_some())
            .map(|m| {
                format!(
                    "{}={:.3}{}",
                    m.metric,
                    m.value,
                    if m.drifted { "*" } else { "" }
                )
            })
            .collect();
        write!(
            f,
            "{:<24} {:<12} {:<8}  {}",
            self.column,
            self.data_type,
            if self.drifted { "DRIFTED" } else { "stable" },
            metrics.join(" ")
        )
    }
}

fn judged(metric: &'static str, value: f64, threshold: f64, drifted: bool) -> MetricValue {
    MetricValue {
        metric,
        value,
        threshold: Some(threshold),
        drifted,
    }
}

fn info(metric: &'static str, value: f64) -> MetricValue {
    MetricValue {
        metric,
        value,
        threshold: None,
        drifted: false,
    }
}

fn null_rate(rows: u64, nulls: u64) -> f64 {
    if rows == 0 {
        0.0
    } else {
        nulls as f64 / rows as f64
    }
}

fn finish(
    column: &str,
    data_type: &'static str,
    rows: (u64, u64),
    metrics: Vec<MetricValue>,
    bins: Vec<Bin>,
) -> ColumnDrift {
    ColumnDrift {
        column: column.to_string(),
        data_type,
        baseline_rows: rows.0,
        current_rows: rows.1,
        drifted: metrics.iter().any(|m| m.drifted),
        metrics,
        bins,
    }
}

/// Inner edges of `bins` quantile bins of `baseline` (repeated edges dropped).
pub fn quantile_edges(baseline: &NumericDistribution, bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins)
        .filter_map(|i| baseline.quantile(i as f64 / bins as f64))
        .collect();
    edges.dedup();
    edges
}

/// Labels of the bins between `edges`.
fn range_labels(edges: &[f64]) -> Vec<String> {
    let number = |v: f64| {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    };
    let mut labels = Vec::with_capacity(edges.len() + 1);
    for (i, edge) in edges.iter().enumerate() {
        labels.push(match i {
            0 => format!("≤ {}", number(*edge)),
            _ => format!("{} – {}", number(edges[i - 1]), number(*edge)),
        });
    }
    labels.push(match edges.last() {
        Some(last) => format!("> {}", number(*last)),
        None => String::from("all"),
    });
    labels
}

fn binned(labels: Vec<String>, baseline: &[f64], current: &[f64]) -> Vec<Bin> {
    labels
        .into_iter()
        .zip(shares(baseline).into_iter().zip(shares(current)))
        .map(|(label, (baseline, current))| Bin {
            label,
            baseline,
            current,
        })
        .collect()
}

/// Compares a numeric feature.
pub fn compare_numeric(
    column: &str,
    baseline: &NumericDistribution,
    current: &NumericDistribution,
    bins: usize,
    t: &Thresholds,
) -> ColumnDrift {
    let edges = quantile_edges(baseline, bins);
    let (base_counts, current_counts) = (baseline.bin_counts(&edges), current.bin_counts(&edges));
    let psi_value = psi(&base_counts, &current_counts);
    let js = js_distance(&base_counts, &current_counts);
    let d = ks_statistic(&baseline.atoms, &current.atoms);
    let p = ks_p_value(d, baseline.present(), current.present());
    let ks_drifted = p < t.ks_p_value && d >= t.ks_min_statistic;
    let scale = if baseline.std > 0.0 {
        baseline.std
    } else {
        1.0
    };
    let w = wasserstein(&baseline.atoms, &current.atoms) / scale;
    let metrics = vec![
        judged("psi", psi_value, t.psi, psi_value >= t.psi),
        judged("ks_statistic", d, t.ks_min_statistic, ks_drifted),
        judged("ks_p_value", p, t.ks_p_value, ks_drifted),
        judged("wasserstein_std", w, t.wasserstein, w >= t.wasserstein),
        judged("js_distance", js, t.js, js >= t.js),
        info("count_delta", current.rows as f64 - baseline.rows as f64),
        info(
            "null_rate_delta",
            null_rate(current.rows, current.nulls) - null_rate(baseline.rows, baseline.nulls),
        ),
        info("mean_delta", current.mean - baseline.mean),
    ];
    let bins = binned(range_labels(&edges), &base_counts, &current_counts);
    finish(
        column,
        "numeric",
        (baseline.rows, current.rows),
        metrics,
        bins,
    )
}

/// Compares a categorical or boolean feature.
pub fn compare_categorical(
    column: &str,
    data_type: &'static str,
    baseline: &CategoricalSketch,
    current: &CategoricalSketch,
    t: &Thresholds,
) -> ColumnDrift {
    let mut categories: Vec<&String> = baseline.counts().keys().collect();
    categories.sort_by(|a, b| {
        baseline.counts()[*b]
            .total_cmp(&baseline.counts()[*a])
            .then_with(|| a.cmp(b))
    });
    let mut unseen: Vec<&String> = current
        .counts()
        .keys()
        .filter(|c| !baseline.counts().contains_key(*c))
        .collect();
    unseen.sort();
    categories.extend(unseen.iter().copied());
    let count =
        |sketch: &CategoricalSketch, c: &String| sketch.counts().get(c).copied().unwrap_or(0.0);
    let base_counts: Vec<f64> = categories.iter().map(|c| count(baseline, c)).collect();
    let current_counts: Vec<f64> = categories.iter().map(|c| count(current, c)).collect();
    let test = chi_square(&base_counts, &current_counts);
    let chi_drifted = test.p_value < t.chi2_p_value && test.cramers_v >= t.cramers_v;
    let js = js_distance(&base_counts, &current_counts);
    let linf = l_infinity(&base_counts, &current_counts);
    let current_present: f64 = current_counts.iter().sum();
    let unseen_rows = unseen
        .iter()
        .map(|c| count(current, c))
        .fold(0.0, |a, b| a + b);
    let unseen_share = if current_present > 0.0 {
        unseen_rows / current_present
    } else {
        0.0
    };
    let metrics = vec![
        info("chi2_statistic", test.statistic),
        judged("chi2_p_value", test.p_value, t.chi2_p_value, chi_drifted),
        judged("cramers_v", test.cramers_v, t.cramers_v, chi_drifted),
        judged("js_distance", js, t.js, js >= t.js),
        judged("l_infinity", linf, t.l_infinity, linf >= t.l_infinity),
        judged(
            "unseen_share",
            unseen_share,
            t.unseen_share,
            unseen_share >= t.unseen_share,
        ),
        info(
            "count_delta",
            current.rows() as f64 - baseline.rows() as f64,
        ),
        info(
            "null_rate_delta",
            null_rate(current.rows(), current.nulls())
                - null_rate(baseline.rows(), baseline.nulls()),
        ),
    ];
    let labels = categories.iter().map(|c| c.to_string()).collect();
    let bins = binned(labels, &base_counts, &current_counts);
    finish(
        column,
        data_type,
        (baseline.rows(), current.rows()),
        metrics,
        bins,
    )
}

/// Compares the model's output with the training-time profile of its holdout predictions
/// (decile edges and counts): PSI and JS over those bins, and the mean.
pub fn compare_prediction(
    edges: &[f64],
    baseline_counts: &[f64],
    baseline_mean: f64,
    current: &NumericDistribution,
    t: &Thresholds,
) -> ColumnDrift {
    let current_counts = current.bin_counts(edges);
    let psi_value = psi(baseline_counts, &current_counts);
    let js = js_distance(baseline_counts, &current_counts);
    let baseline_rows = baseline_counts.iter().sum::<f64>() as u64;
    let metrics = vec![
        judged("psi", psi_value, t.psi, psi_value >= t.psi),
        judged("js_distance", js, t.js, js >= t.js),
        info("mean_delta", current.mean - baseline_mean),
    ];
    let bins = binned(range_labels(edges), baseline_counts, &current_counts);
    finish(
        "prediction",
        "prediction",
        (baseline_rows, current.rows),
        metrics,
        bins,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::drift::sketch::NumericSketch;

    fn distribution(values: impl Iterator<Item = f64>) -> NumericDistribution {
        let mut sketch = NumericSketch::default();
        values.for_each(|v| sketch.add(Some(v)));
        sketch.finish()
    }

    #[test]
    fn a_shifted_numeric_column_drifts_and_a_resampled_one_does_not() {
        let t = Thresholds::default();
        let base = distribution((0..5000).map(|i| (i % 100) as f64));
        let same = distribution((0..3000).map(|i| ((i * 37) % 100) as f64));
        let shifted = distribution((0..3000).map(|i| ((i * 37) % 100) as f64 + 30.0));
        let stable = compare_numeric("logins", &base, &same, 10, &t);
        assert!(!stable.drifted, "{stable:?}");
        let moved = compare_numeric("logins", &base, &shifted, 10, &t);
        assert!(moved.drifted);
        let flagged: Vec<&str> = moved
            .metrics
            .iter()
            .filter(|m| m.drifted)
            .map(|m| m.metric)
            .collect();
        assert_eq!(
            flagged,
            [
                "psi",
                "ks_statistic",
                "ks_p_value",
                "wasserstein_std",
                "js_distance"
            ]
        );
        let mean = moved
            .metrics
            .iter()
            .find(|m| m.metric == "mean_delta")
            .unwrap();
        assert!((mean.value - 30.0).abs() < 1e-9);
        assert_eq!(moved.bins.len(), 10);
        assert_eq!(moved.bins[0].label, "≤ 9");
        assert!((moved.bins.iter().map(|b| b.current).sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_tiny_shift_on_many_rows_is_significant_but_not_drift() {
        // 200,000 rows each: a 0.07-std shift gives p ≈ 0 but a small KS statistic.
        let t = Thresholds::default();
        let base = distribution((0..200_000).map(|i| (i % 1000) as f64));
        let nudged = distribution((0..200_000).map(|i| (i % 1000) as f64 + 20.0));
        let drift = compare_numeric("x", &base, &nudged, 10, &t);
        let p = drift
            .metrics
            .iter()
            .find(|m| m.metric == "ks_p_value")
            .unwrap();
        assert!(p.value < 1e-6);
        assert!(!drift.drifted, "{drift:?}");
    }

    #[test]
    fn categorical_drift_counts_unseen_categories() {
        let t = Thresholds::default();
        let mut base = CategoricalSketch::default();
        let mut current = CategoricalSketch::default();
        for i in 0..1000 {
            base.add(Some(["monthly", "yearly"][i % 2]));
            current.add(Some(["monthly", "yearly", "weekly"][i % 3]));
        }
        let drift = compare_categorical("contract", "categorical", &base, &current, &t);
        assert!(drift.drifted);
        let unseen = drift
            .metrics
            .iter()
            .find(|m| m.metric == "unseen_share")
            .unwrap();
        assert!((unseen.value - 333.0 / 1000.0).abs() < 1e-9);
        let labels: Vec<&str> = drift.bins.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["monthly", "yearly", "weekly"]);
    }
}

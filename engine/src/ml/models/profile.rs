//! The training-time profile stored in each model version's manifest: what the features
//! and the model's own predictions looked like, the baseline drift is measured against.
//!
//! Numeric features (and predicted values or positive-class probabilities) keep their
//! null rate, mean, standard deviation, deciles and the counts per decile bin; booleans
//! and categories keep their null rate and value frequencies (the 50 most frequent and an
//! `(other)` share).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::features::{MISSING, OTHER, RawColumn, mean_and_std};

/// How many value frequencies a categorical profile keeps.
const MAX_FREQUENCIES: usize = 50;

/// The distribution of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ColumnProfile {
    /// A numeric distribution.
    Numeric {
        /// Rows profiled.
        count: u64,
        /// Share of missing values.
        null_rate: f64,
        /// Mean of present values.
        mean: f64,
        /// Standard deviation of present values.
        std: f64,
        /// The 0th, 10th, ..., 100th percentiles.
        quantiles: Vec<f64>,
        /// Rows per bin between consecutive quantiles.
        histogram: Vec<u64>,
    },
    /// A categorical distribution.
    Categorical {
        /// Rows profiled.
        count: u64,
        /// Share of missing values.
        null_rate: f64,
        /// Share of rows per value, most frequent first.
        frequencies: Vec<(String, f64)>,
    },
}

/// Profiles a numeric column (None for missing values).
pub fn numeric(values: &[Option<f64>]) -> ColumnProfile {
    let mut present: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    present.sort_by(f64::total_cmp);
    let count = values.len() as u64;
    let (mean, std) = mean_and_std(&present);
    let quantiles: Vec<f64> = if present.is_empty() {
        Vec::new()
    } else {
        (0..=10)
            .map(|q| present[((present.len() - 1) as f64 * q as f64 / 10.0).round() as usize])
            .collect()
    };
    let bins = quantiles.len().saturating_sub(1);
    let mut histogram = vec![0u64; bins];
    if bins > 0 {
        for value in &present {
            let bin = quantiles[1..]
                .iter()
                .position(|edge| value <= edge)
                .unwrap_or(bins - 1);
            histogram[bin] += 1;
        }
    }
    ColumnProfile::Numeric {
        count,
        null_rate: rate(count - present.len() as u64, count),
        mean,
        std,
        quantiles,
        histogram,
    }
}

/// Profiles a categorical column.
pub fn categorical(values: &[Option<String>]) -> ColumnProfile {
    let count = values.len() as u64;
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut missing = 0;
    for value in values {
        match value {
            Some(v) => *counts.entry(v.as_str()).or_default() += 1,
            None => missing += 1,
        }
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut frequencies: Vec<(String, f64)> = ranked
        .iter()
        .take(MAX_FREQUENCIES)
        .map(|(v, n)| (v.to_string(), rate(*n, count)))
        .collect();
    let others: u64 = ranked.iter().skip(MAX_FREQUENCIES).map(|(_, n)| n).sum();
    if others > 0 {
        frequencies.push((OTHER.to_string(), rate(others, count)));
    }
    if missing > 0 {
        frequencies.push((MISSING.to_string(), rate(missing, count)));
    }
    ColumnProfile::Categorical {
        count,
        null_rate: rate(missing, count),
        frequencies,
    }
}

/// Profiles a feature column as read.
pub fn column(values: &RawColumn, boolean: bool) -> ColumnProfile {
    match values {
        RawColumn::Numbers(numbers) if boolean => categorical(
            &numbers
                .iter()
                .map(|v| v.map(|v| (v != 0.0).to_string()))
                .collect::<Vec<_>>(),
        ),
        RawColumn::Numbers(numbers) => numeric(numbers),
        RawColumn::Texts(texts) => categorical(texts),
    }
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_profile_has_deciles_and_bins() {
        let values: Vec<Option<f64>> = (0..=100).map(|v| Some(v as f64)).chain([None]).collect();
        let ColumnProfile::Numeric {
            count,
            null_rate,
            quantiles,
            histogram,
            ..
        } = numeric(&values)
        else {
            panic!("numeric profile expected");
        };
        assert_eq!(count, 102);
        assert!((null_rate - 1.0 / 102.0).abs() < 1e-12);
        assert_eq!(
            quantiles,
            (0..=10).map(|q| q as f64 * 10.0).collect::<Vec<_>>()
        );
        assert_eq!(histogram.iter().sum::<u64>(), 101);
        assert_eq!(histogram[0], 11);
    }

    #[test]
    fn categorical_profile_counts_values_and_missing() {
        let values = vec![
            Some("a".to_string()),
            Some("a".to_string()),
            Some("b".to_string()),
            None,
        ];
        let ColumnProfile::Categorical {
            frequencies,
            null_rate,
            ..
        } = categorical(&values)
        else {
            panic!("categorical profile expected");
        };
        assert_eq!(null_rate, 0.25);
        assert_eq!(
            frequencies,
            vec![
                ("a".into(), 0.5),
                ("b".into(), 0.25),
                (MISSING.into(), 0.25)
            ]
        );
    }
}

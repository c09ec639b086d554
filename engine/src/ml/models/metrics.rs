//! Holdout metrics: how good a model version is, recorded in its manifest and in
//! `ops.model_versions`.
//!
//! Classification: ROC AUC (binary: of the positive class; multiclass: the mean of one
//! class against the rest), log loss (probabilities clipped to [1e-15, 1 - 1e-15]),
//! accuracy, precision, recall and F1 (binary: of the positive class; multiclass: macro
//! averages) and the confusion matrix (rows: actual class, columns: predicted).
//! Regression: RMSE, MAE and R².

use serde::{Deserialize, Serialize};

/// The metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Metrics {
    /// Of a classifier.
    Classification {
        /// Area under the ROC curve.
        roc_auc: f64,
        /// Mean negative log-likelihood of the actual class.
        log_loss: f64,
        /// Share of rows predicted right.
        accuracy: f64,
        /// Precision.
        precision: f64,
        /// Recall.
        recall: f64,
        /// F1 score.
        f1: f64,
        /// Counts per (actual, predicted) class.
        confusion_matrix: Vec<Vec<u64>>,
        /// Rows evaluated.
        rows: usize,
    },
    /// Of a regressor.
    Regression {
        /// Root mean squared error.
        rmse: f64,
        /// Mean absolute error.
        mae: f64,
        /// Coefficient of determination.
        r2: f64,
        /// Rows evaluated.
        rows: usize,
    },
}

impl Metrics {
    /// One line of the headline metrics.
    pub fn headline(&self) -> String {
        match self {
            Metrics::Classification {
                roc_auc,
                log_loss,
                accuracy,
                precision,
                recall,
                f1,
                ..
            } => format!(
                "roc_auc {roc_auc:.3}, log_loss {log_loss:.3}, accuracy {accuracy:.3}, precision {precision:.3}, recall {recall:.3}, f1 {f1:.3}"
            ),
            Metrics::Regression { rmse, mae, r2, .. } => {
                format!("rmse {rmse:.4}, mae {mae:.4}, r2 {r2:.3}")
            }
        }
    }

    /// The value of metric `name` (`roc_auc`, `rmse`, ...), if this evaluation has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        let value = serde_json::to_value(self).ok()?;
        value.get(name).and_then(serde_json::Value::as_f64)
    }
}

/// Metrics of class `probabilities` (one vector per row) against `actual` class indexes;
/// `positive` is the positive class of a binary task.
pub fn classification(
    probabilities: &[Vec<f64>],
    actual: &[usize],
    classes: usize,
    positive: usize,
) -> Metrics {
    let rows = actual.len();
    let predicted: Vec<usize> = probabilities
        .iter()
        .map(|p| super::compiled::argmax(p))
        .collect();
    let mut confusion = vec![vec![0u64; classes]; classes];
    for (a, p) in actual.iter().zip(&predicted) {
        if *a < classes && *p < classes {
            confusion[*a][*p] += 1;
        }
    }
    let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
    let log_loss = actual
        .iter()
        .zip(probabilities)
        .map(|(a, p)| {
            -p.get(*a)
                .copied()
                .unwrap_or(0.0)
                .clamp(1e-15, 1.0 - 1e-15)
                .ln()
        })
        .sum::<f64>()
        / rows.max(1) as f64;
    let per_class = |c: usize| {
        let tp = confusion[c][c] as f64;
        let predicted_c: f64 = (0..classes).map(|a| confusion[a][c] as f64).sum();
        let actual_c: f64 = confusion[c].iter().map(|n| *n as f64).sum();
        let precision = if predicted_c > 0.0 {
            tp / predicted_c
        } else {
            0.0
        };
        let recall = if actual_c > 0.0 { tp / actual_c } else { 0.0 };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        (precision, recall, f1)
    };
    let auc_of = |c: usize| {
        let scores: Vec<(f64, bool)> = probabilities
            .iter()
            .zip(actual)
            .map(|(p, a)| (p.get(c).copied().unwrap_or(0.0), *a == c))
            .collect();
        roc_auc(&scores)
    };
    let (precision, recall, f1, auc) = if classes == 2 {
        let (p, r, f) = per_class(positive);
        (p, r, f, auc_of(positive))
    } else {
        let all: Vec<(f64, f64, f64)> = (0..classes).map(per_class).collect();
        let mean = |pick: fn(&(f64, f64, f64)) -> f64| {
            all.iter().map(pick).sum::<f64>() / classes.max(1) as f64
        };
        let auc = (0..classes).map(auc_of).sum::<f64>() / classes.max(1) as f64;
        (mean(|x| x.0), mean(|x| x.1), mean(|x| x.2), auc)
    };
    Metrics::Classification {
        roc_auc: auc,
        log_loss,
        accuracy: correct as f64 / rows.max(1) as f64,
        precision,
        recall,
        f1,
        confusion_matrix: confusion,
        rows,
    }
}

/// ROC AUC of (score, is positive) pairs: the probability that a random positive scores
/// above a random negative, ties counting half. 0.5 when a class is absent.
pub fn roc_auc(scores: &[(f64, bool)]) -> f64 {
    let mut sorted: Vec<(f64, bool)> = scores.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|s| s.1).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    // Sum of the positives' ranks, ties sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start;
        while end + 1 < sorted.len() && sorted[end + 1].0 == sorted[start].0 {
            end += 1;
        }
        let mean_rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum += sorted[start..=end].iter().filter(|s| s.1).count() as f64 * mean_rank;
        start = end + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Metrics of predicted values against actual ones.
pub fn regression(predicted: &[f64], actual: &[f64]) -> Metrics {
    let rows = actual.len();
    let n = rows.max(1) as f64;
    let squared: f64 = predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).powi(2))
        .sum();
    let absolute: f64 = predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).abs())
        .sum();
    let mean = actual.iter().sum::<f64>() / n;
    let total: f64 = actual.iter().map(|a| (a - mean).powi(2)).sum();
    Metrics::Regression {
        rmse: (squared / n).sqrt(),
        mae: absolute / n,
        r2: if total > 0.0 {
            1.0 - squared / total
        } else {
            0.0
        },
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ordered_pairs_and_ties_half() {
        assert_eq!(
            roc_auc(&[(0.1, false), (0.4, false), (0.35, true), (0.8, true)]),
            0.75
        );
        assert_eq!(roc_auc(&[(0.5, false), (0.5, true)]), 0.5);
        assert_eq!(roc_auc(&[(0.2, false), (0.9, true)]), 1.0);
    }

    #[test]
    fn binary_classification_metrics() {
        let probabilities = vec![
            vec![0.9, 0.1],
            vec![0.2, 0.8],
            vec![0.6, 0.4],
            vec![0.3, 0.7],
        ];
        let actual = vec![0, 1, 1, 0];
        let Metrics::Classification {
            accuracy,
            precision,
            recall,
            f1,
            confusion_matrix,
            ..
        } = classification(&probabilities, &actual, 2, 1)
        else {
            panic!("classification metrics expected");
        };
        assert_eq!(confusion_matrix, vec![vec![1, 1], vec![1, 1]]);
        assert_eq!((accuracy, precision, recall, f1), (0.5, 0.5, 0.5, 0.5));
    }

    #[test]
    fn regression_metrics() {
        let Metrics::Regression { rmse, mae, r2, .. } =
            regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0])
        else {
            panic!("regression metrics expected");
        };
        assert_eq!(mae, 2.0 / 3.0);
        assert!((rmse - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((r2 - (1.0 - 36.0 / 78.0)).abs() < 1e-12, "{r2}");
    }
}

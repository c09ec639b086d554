//! `[model.drift]`: how drift is measured and when it counts, per model and per feature.

use indexmap::IndexMap;
use serde::Deserialize;

/// `[model.drift]` of a `[[model]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Quantile bins of the baseline that PSI and the numeric JS distance compare.
    pub bins: usize,
    /// Share of features that must drift for a retrain request (prediction drift alone
    /// also requests one).
    pub drift_share: f64,
    /// Thresholds for every feature.
    #[serde(flatten)]
    pub thresholds: Thresholds,
    /// `[model.drift.features.NAME]`: thresholds that differ for one feature.
    pub features: IndexMap<String, ThresholdOverrides>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            bins: 10,
            drift_share: 0.5,
            thresholds: Thresholds::default(),
            features: IndexMap::new(),
        }
    }
}

impl DriftConfig {
    /// The thresholds of feature `name`: its overrides over the model's.
    pub fn thresholds_for(&self, name: &str) -> Thresholds {
        let base = self.thresholds;
        let Some(o) = self.features.get(name) else {
            return base;
        };
        Thresholds {
            psi: o.psi.unwrap_or(base.psi),
            js: o.js.unwrap_or(base.js),
            ks_p_value: o.ks_p_value.unwrap_or(base.ks_p_value),
            ks_min_statistic: o.ks_min_statistic.unwrap_or(base.ks_min_statistic),
            wasserstein: o.wasserstein.unwrap_or(base.wasserstein),
            chi2_p_value: o.chi2_p_value.unwrap_or(base.chi2_p_value),
            cramers_v: o.cramers_v.unwrap_or(base.cramers_v),
            l_infinity: o.l_infinity.unwrap_or(base.l_infinity),
            unseen_share: o.unseen_share.unwrap_or(base.unseen_share),
        }
    }

    /// Settings that cannot work: no bins, a share outside 0..=1, unknown features.
    pub fn check(&self, features: &IndexMap<String, super::FeatureKind>) -> Result<(), String> {
        if self.bins < 2 {
            return Err(String::from("[model.drift] bins must be at least 2"));
        }
        if !(0.0..=1.0).contains(&self.drift_share) {
            return Err(String::from(
                "[model.drift] drift_share is a share of features, between 0 and 1",
            ));
        }
        if let Some(unknown) = self.features.keys().find(|f| !features.contains_key(*f)) {
            return Err(format!(
                "[model.drift.features] names '{unknown}', which is not one of the model's features"
            ));
        }
        Ok(())
    }
}

/// When a metric counts as drift.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Population stability index at or above which a numeric feature drifted.
    pub psi: f64,
    /// Jensen–Shannon distance (base 2) at or above which a feature drifted.
    pub js: f64,
    /// KS p-value below which a numeric feature may have drifted...
    pub ks_p_value: f64,
    /// ...when its KS statistic is also at least this large, so that on millions of rows
    /// a shift too small to matter (p ≈ 0 for any shift) is not flagged.
    pub ks_min_statistic: f64,
    /// Wasserstein distance in baseline standard deviations at or above which a numeric
    /// feature drifted.
    pub wasserstein: f64,
    /// Chi-square p-value below which a categorical feature may have drifted...
    pub chi2_p_value: f64,
    /// ...when Cramér's V (the effect size) is also at least this large.
    pub cramers_v: f64,
    /// Largest change of one category's share at or above which a categorical feature
    /// drifted.
    pub l_infinity: f64,
    /// Share of current rows with categories never seen in training at or above which a
    /// categorical feature drifted.
    pub unseen_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            psi: 0.2,
            js: 0.1,
            ks_p_value: 0.05,
            ks_min_statistic: 0.1,
            wasserstein: 0.1,
            chi2_p_value: 0.05,
            cramers_v: 0.1,
            l_infinity: 0.1,
            unseen_share: 0.05,
        }
    }
}

/// `[model.drift.features.NAME]`: the thresholds that differ for one feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ThresholdOverrides {
    pub psi: Option<f64>,
    pub js: Option<f64>,
    pub ks_p_value: Option<f64>,
    pub ks_min_statistic: Option<f64>,
    pub wasserstein: Option<f64>,
    pub chi2_p_value: Option<f64>,
    pub cramers_v: Option<f64>,
    pub l_infinity: Option<f64>,
    pub unseen_share: Option<f64>,
}

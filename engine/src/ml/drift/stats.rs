//! The drift statistics, as pure functions over distributions: PSI, Kolmogorov–Smirnov,
//! Wasserstein, Jensen–Shannon, chi-square and L-infinity.
//!
//! Numeric distributions are sorted `(value, weight)` atoms: one atom per value while a
//! column is small, weighted centroids once it is summarized (see `sketch`). On exact atoms
//! every statistic equals its SciPy reference (`tests/data/drift/reference.py` computes
//! the fixtures the tests compare against to 1e-6):
//! - KS statistic as `scipy.stats.ks_2samp`; its p-value from the asymptotic Kolmogorov
//!   distribution, `scipy.stats.kstwobign.sf(sqrt(n·m/(n+m))·D)`,
//! - Wasserstein as `scipy.stats.wasserstein_distance` (lakescore divides it by the
//!   baseline's standard deviation so one threshold fits every feature's scale),
//! - chi-square as `scipy.stats.chi2_contingency` on the 2×k table of counts (with Yates'
//!   correction when k = 2, as SciPy does),
//! - Jensen–Shannon distance as `scipy.spatial.distance.jensenshannon(p, q, base=2)`,
//! - PSI as Σ (aᵢ − eᵢ)·ln(aᵢ/eᵢ) over shares smoothed by adding 0.5 to every bin's count.

/// A numeric distribution: `(value, weight)` atoms sorted by value.
pub type Atoms = [(f64, f64)];

/// Kolmogorov–Smirnov statistic: the largest gap between the two cumulative distributions.
pub fn ks_statistic(a: &Atoms, b: &Atoms) -> f64 {
    let mut largest = 0.0f64;
    walk_cdfs(a, b, |_, fa, fb, _| largest = largest.max((fa - fb).abs()));
    largest
}

/// Two-sided p-value of KS statistic `d` between samples of `n` and `m` rows, from the
/// asymptotic Kolmogorov distribution.
pub fn ks_p_value(d: f64, n: f64, m: f64) -> f64 {
    if n <= 0.0 || m <= 0.0 {
        return 1.0;
    }
    kolmogorov_sf((n * m / (n + m)).sqrt() * d)
}

/// Survival function of the Kolmogorov distribution, P(K > x).
pub fn kolmogorov_sf(x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        // P(K <= x) = sqrt(2π)/x · Σ exp(−(2k−1)²π²/(8x²)), fast for small x.
        let mut cdf = 0.0;
        for k in 1..=50 {
            let odd = (2 * k - 1) as f64;
            let term = (-(odd * odd) * PI * PI / (8.0 * x * x)).exp();
            cdf += term;
            if term < 1e-18 * cdf {
                break;
            }
        }
        (1.0 - (2.0 * PI).sqrt() / x * cdf).clamp(0.0, 1.0)
    } else {
        // P(K > x) = 2 Σ (−1)^(k−1) exp(−2k²x²), fast for large x.
        let mut sf = 0.0;
        for k in 1..=100 {
            let k = k as f64;
            let term = (-2.0 * k * k * x * x).exp();
            sf += if k as u64 % 2 == 1 { term } else { -term };
            if term < 1e-18 * sf.abs() {
                break;
            }
        }
        (2.0 * sf).clamp(0.0, 1.0)
    }
}

/// First Wasserstein (earth mover's) distance between two distributions.
pub fn wasserstein(a: &Atoms, b: &Atoms) -> f64 {
    let mut distance = 0.0;
    walk_cdfs(a, b, |x, fa, fb, next| {
        if let Some(next) = next {
            distance += (fa - fb).abs() * (next - x);
        }
    });
    distance
}

/// Visits each distinct value `x` of `a ∪ b` in order with both cumulative shares at `x`
/// and the next distinct value.
fn walk_cdfs(a: &Atoms, b: &Atoms, mut visit: impl FnMut(f64, f64, f64, Option<f64>)) {
    let total_a: f64 = a.iter().map(|(_, w)| w).sum();
    let total_b: f64 = b.iter().map(|(_, w)| w).sum();
    if total_a <= 0.0 || total_b <= 0.0 {
        return;
    }
    let (mut i, mut j) = (0, 0);
    let (mut weight_a, mut weight_b) = (0.0, 0.0);
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&(va, _)), Some(&(vb, _))) => va.min(vb),
            (Some(&(va, _)), None) => va,
            (None, Some(&(vb, _))) => vb,
            (None, None) => break,
        };
        while let Some(&(_, w)) = a.get(i).filter(|(v, _)| *v <= x) {
            weight_a += w;
            i += 1;
        }
        while let Some(&(_, w)) = b.get(j).filter(|(v, _)| *v <= x) {
            weight_b += w;
            j += 1;
        }
        let next = match (a.get(i), b.get(j)) {
            (Some(&(va, _)), Some(&(vb, _))) => Some(va.min(vb)),
            (Some(&(va, _)), None) => Some(va),
            (None, Some(&(vb, _))) => Some(vb),
            (None, None) => None,
        };
        visit(x, weight_a / total_a, weight_b / total_b, next);
    }
}

/// Shares of `counts` with 0.5 added to every count, so no bin is empty.
pub fn smoothed_shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum::<f64>() + 0.5 * counts.len() as f64;
    counts.iter().map(|c| (c + 0.5) / total).collect()
}

/// Shares of `counts` as they are.
pub fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

/// Population stability index between baseline and current bin counts (smoothed).
pub fn psi(baseline_counts: &[f64], current_counts: &[f64]) -> f64 {
    let expected = smoothed_shares(baseline_counts);
    let actual = smoothed_shares(current_counts);
    expected
        .iter()
        .zip(&actual)
        .map(|(e, a)| (a - e) * (a / e).ln())
        .sum()
}

/// Jensen–Shannon distance (base 2, between 0 and 1) between two count vectors.
pub fn js_distance(p_counts: &[f64], q_counts: &[f64]) -> f64 {
    let (p, q) = (shares(p_counts), shares(q_counts));
    let term = |x: f64, m: f64| if x > 0.0 { x * (x / m).log2() } else { 0.0 };
    let divergence: f64 = p
        .iter()
        .zip(&q)
        .map(|(&pi, &qi)| {
            let m = (pi + qi) / 2.0;
            (term(pi, m) + term(qi, m)) / 2.0
        })
        .sum();
    divergence.max(0.0).sqrt()
}

/// The largest difference between the two distributions' shares of one value.
pub fn l_infinity(p_counts: &[f64], q_counts: &[f64]) -> f64 {
    shares(p_counts)
        .iter()
        .zip(&shares(q_counts))
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// A chi-square test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// The statistic.
    pub statistic: f64,
    /// Its p-value.
    pub p_value: f64,
    /// Degrees of freedom (categories − 1).
    pub dof: usize,
    /// Cramér's V, the effect size: sqrt(statistic / rows).
    pub cramers_v: f64,
}

/// Chi-square test on the 2×k table of baseline and current counts per category
/// (categories empty in both are dropped; Yates' correction when k = 2).
pub fn chi_square(baseline_counts: &[f64], current_counts: &[f64]) -> ChiSquare {
    let columns: Vec<(f64, f64)> = baseline_counts
        .iter()
        .zip(current_counts)
        .map(|(b, c)| (*b, *c))
        .filter(|(b, c)| b + c > 0.0)
        .collect();
    let row_b: f64 = columns.iter().map(|c| c.0).sum();
    let row_c: f64 = columns.iter().map(|c| c.1).sum();
    let total = row_b + row_c;
    if columns.len() < 2 || row_b <= 0.0 || row_c <= 0.0 {
        return ChiSquare {
            statistic: 0.0,
            p_value: 1.0,
            dof: columns.len().saturating_sub(1),
            cramers_v: 0.0,
        };
    }
    let dof = columns.len() - 1;
    let mut statistic = 0.0;
    for (b, c) in &columns {
        let column_total = b + c;
        for (observed, row) in [(*b, row_b), (*c, row_c)] {
            let expected = row * column_total / total;
            let difference = if dof == 1 {
                let gap = expected - observed;
                (gap.abs() - gap.abs().min(0.5)).abs()
            } else {
                (observed - expected).abs()
            };
            statistic += difference * difference / expected;
        }
    }
    ChiSquare {
        statistic,
        p_value: chi2_sf(statistic, dof as f64),
        dof,
        cramers_v: (statistic / total).sqrt(),
    }
}

/// P(X > x) for a chi-square variable with `dof` degrees of freedom.
pub fn chi2_sf(x: f64, dof: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    upper_regularized_gamma(dof / 2.0, x / 2.0)
}

/// Q(a, x) = Γ(a, x) / Γ(a): a series below a + 1, a continued fraction above.
fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        // Lentz's method for the continued fraction of Γ(a, x).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn fixtures() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/drift/fixtures.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn numbers(value: &Value) -> Vec<f64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    }

    fn atoms(value: &Value) -> Vec<(f64, f64)> {
        let mut values = numbers(value);
        values.sort_by(f64::total_cmp);
        values.into_iter().map(|v| (v, 1.0)).collect()
    }

    fn close(actual: f64, expected: f64, what: &str) {
        let scale = expected.abs().max(1e-300);
        assert!(
            (actual - expected).abs() / scale <= 1e-6 || (actual - expected).abs() < 1e-12,
            "{what}: lakescore {actual}, reference {expected}"
        );
    }

    #[test]
    fn numeric_statistics_match_scipy() {
        let cases = fixtures()["numeric"].as_array().unwrap().clone();
        assert!(cases.len() >= 4);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let (a, b) = (atoms(&case["baseline"]), atoms(&case["current"]));
            let d = ks_statistic(&a, &b);
            close(
                d,
                case["ks_statistic"].as_f64().unwrap(),
                &format!("{name} ks"),
            );
            close(
                ks_p_value(d, a.len() as f64, b.len() as f64),
                case["ks_p_value"].as_f64().unwrap(),
                &format!("{name} ks p"),
            );
            close(
                wasserstein(&a, &b),
                case["wasserstein"].as_f64().unwrap(),
                &format!("{name} wasserstein"),
            );
            let (bins_b, bins_c) = (
                numbers(&case["bins_baseline"]),
                numbers(&case["bins_current"]),
            );
            close(
                psi(&bins_b, &bins_c),
                case["psi"].as_f64().unwrap(),
                &format!("{name} psi"),
            );
            close(
                js_distance(&bins_b, &bins_c),
                case["js"].as_f64().unwrap(),
                &format!("{name} js"),
            );
        }
    }

    #[test]
    fn categorical_statistics_match_scipy() {
        let cases = fixtures()["categorical"].as_array().unwrap().clone();
        assert!(cases.len() >= 3);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let (b, c) = (numbers(&case["baseline"]), numbers(&case["current"]));
            let test = chi_square(&b, &c);
            close(
                test.statistic,
                case["chi2"].as_f64().unwrap(),
                &format!("{name} chi2"),
            );
            close(
                test.p_value,
                case["chi2_p_value"].as_f64().unwrap(),
                &format!("{name} chi2 p"),
            );
            assert_eq!(test.dof as u64, case["dof"].as_u64().unwrap(), "{name} dof");
            close(
                js_distance(&b, &c),
                case["js"].as_f64().unwrap(),
                &format!("{name} js"),
            );
            close(
                l_infinity(&b, &c),
                case["l_infinity"].as_f64().unwrap(),
                &format!("{name} linf"),
            );
        }
    }

    #[test]
    fn identical_distributions_do_not_drift() {
        let a: Vec<(f64, f64)> = (0..100).map(|v| (v as f64, 1.0)).collect();
        assert_eq!(ks_statistic(&a, &a), 0.0);
        assert_eq!(wasserstein(&a, &a), 0.0);
        assert_eq!(ks_p_value(0.0, 100.0, 100.0), 1.0);
        let counts = [10.0, 0.0, 30.0];
        assert!(psi(&counts, &counts).abs() < 1e-15);
        assert_eq!(js_distance(&counts, &counts), 0.0);
        assert_eq!(chi_square(&counts, &counts).statistic, 0.0);
    }
}

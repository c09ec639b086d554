"""Computes the drift fixtures lakescore's statistics are tested against.

Run with `python3 tests/data/drift/reference.py` (needs numpy and scipy); it rewrites
fixtures.json next to it. Each case holds its samples and what SciPy says about them:
- ks_statistic: scipy.stats.ks_2samp(...).statistic
- ks_p_value: scipy.stats.kstwobign.sf(sqrt(n*m/(n+m)) * D), the asymptotic Kolmogorov
  distribution lakescore uses
- wasserstein: scipy.stats.wasserstein_distance
- psi: sum((a - e) * ln(a / e)) over the baseline's decile bins, every bin count + 0.5
- js: scipy.spatial.distance.jensenshannon(p, q, base=2)
- chi2, chi2_p_value, dof: scipy.stats.chi2_contingency on the 2 x k table of counts
"""

import json
import pathlib

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon


def decile_bins(baseline, current):
    edges = np.quantile(baseline, np.linspace(0, 1, 11))
    inner = edges[1:-1]
    # Bin i holds values in (edge[i], edge[i+1]]; the first bin also takes everything
    # below, the last everything above.
    def counts(values):
        index = np.searchsorted(inner, values, side="left")
        return np.bincount(index, minlength=10).astype(float)
    return counts(baseline), counts(current)


def psi(expected_counts, actual_counts):
    e = (expected_counts + 0.5) / (expected_counts.sum() + 0.5 * len(expected_counts))
    a = (actual_counts + 0.5) / (actual_counts.sum() + 0.5 * len(actual_counts))
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_case(name, baseline, current):
    ks = stats.ks_2samp(baseline, current)
    n, m = len(baseline), len(current)
    bins_b, bins_c = decile_bins(baseline, current)
    return {
        "name": name,
        "baseline": [float(v) for v in baseline],
        "current": [float(v) for v in current],
        "ks_statistic": float(ks.statistic),
        "ks_p_value": float(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * ks.statistic)),
        "wasserstein": float(stats.wasserstein_distance(baseline, current)),
        "bins_baseline": bins_b.tolist(),
        "bins_current": bins_c.tolist(),
        "psi": psi(bins_b, bins_c),
        "js": float(jensenshannon(bins_b, bins_c, base=2)),
    }


def categorical_case(name, baseline, current):
    table = np.array([baseline, current], dtype=float)
    chi2, p, dof, _ = stats.chi2_contingency(table)
    p_shares = table[0] / table[0].sum()
    q_shares = table[1] / table[1].sum()
    return {
        "name": name,
        "baseline": baseline,
        "current": current,
        "chi2": float(chi2),
        "chi2_p_value": float(p),
        "dof": int(dof),
        "js": float(jensenshannon(table[0], table[1], base=2)),
        "l_infinity": float(np.max(np.abs(p_shares - q_shares))),
    }


def main():
    rng = np.random.default_rng(20261127)
    numeric = [
        numeric_case("same distribution", rng.normal(50, 10, 400), rng.normal(50, 10, 300)),
        numeric_case("mean shift", rng.normal(50, 10, 500), rng.normal(56, 10, 450)),
        numeric_case("wider spread", rng.normal(0, 1, 250), rng.normal(0, 2.5, 350)),
        numeric_case(
            "integers with ties",
            rng.integers(0, 12, 300).astype(float),
            rng.integers(2, 15, 280).astype(float),
        ),
        numeric_case("small and skewed", rng.exponential(3.0, 40), rng.exponential(4.5, 25)),
    ]
    categorical = [
        categorical_case("stable shares", [400, 300, 200, 100], [390, 310, 205, 95]),
        categorical_case("moved shares", [500, 300, 200], [300, 300, 400]),
        categorical_case("two categories, Yates", [120, 80], [90, 110]),
        categorical_case("a category unseen in training", [300, 200, 0], [250, 180, 70]),
    ]
    path = pathlib.Path(__file__).with_name("fixtures.json")
    path.write_text(json.dumps({"numeric": numeric, "categorical": categorical}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Writes tests/fixtures/stats_reference.json: scipy's results for the tests that the
experiment stage computes, on fixed vectors that include ties, zero differences and tiny
samples, with numpy's quantiles, Cohen's d and the power of the t-tests from scipy's
noncentral t distribution.

Usage: python3 scripts/reference/stats_reference.py tests/fixtures/stats_reference.json
"""

import json
import platform
import sys

import numpy as np
import scipy
from scipy import stats

CASES = {
    "small": ([1.2, 3.4, 2.2, 5.1], [2.0, 2.9, 4.4, 6.0]),
    "ties": ([1, 2, 2, 3, 3, 3, 4, 5], [2, 2, 3, 3, 4, 4, 5, 6]),
    "zeros": ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 2.5, 3.0, 3.5, 5.0, 7.0]),
    "uneven": ([10.1, 12.3, 9.8, 11.4, 10.9, 13.2, 12.2], [8.0, 15.5, 7.1, 16.2, 9.9]),
    "larger": (
        list(np.round(np.random.default_rng(7).normal(100.0, 15.0, 60), 3)),
        list(np.round(np.random.default_rng(8).normal(95.0, 20.0, 60), 3)),
    ),
    # Two values a side: the smallest samples every test accepts.
    "tiny": ([1.0, 2.5], [0.5, 4.0]),
    # Zero differences and tied magnitudes of opposite sign.
    "zeros_and_ties": ([3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                       [3.0, 4.0, 4.0, 7.0, 6.0, 10.0, 7.0, 10.0]),
    # Most values tied across the two samples.
    "heavy_ties": ([1.0, 1.0, 1.0, 2.0, 2.0], [1.0, 2.0, 2.0, 2.0, 3.0]),
    # Unequal sizes, three and five, with no pairing.
    "single": ([4.0, 6.5, 5.0], [5.5, 3.0, 7.5, 6.0, 8.0]),
    # Latencies in ms with the spread of the experiment's service means.
    "latencies": (
        list(np.round(np.random.default_rng(11).lognormal(4.3, 0.6, 150), 4)),
        list(np.round(np.random.default_rng(12).lognormal(4.0, 0.6, 150), 4)),
    ),
}

QUANTILE_VECTORS = {
    "odd": [5.0, 1.0, 9.0, 3.0, 7.0],
    "ties": [2.0, 2.0, 2.0, 8.0],
    "single": [4.5],
    "latencies": list(np.round(np.random.default_rng(13).lognormal(4.0, 0.5, 101), 4)),
}
QUANTILES = [0.0, 0.025, 0.5, 0.95, 0.975, 0.99, 1.0]

# (design, effect size, n per group or pairs, alpha)
POWER_CASES = [
    ("paired", 0.5, 34, 0.05),
    ("paired", 0.2, 199, 0.05),
    ("paired", 1.5, 3, 0.05),
    ("paired", 3.0, 2, 0.05),
    ("paired", 0.05, 3142, 0.05),
    ("two_sample", 0.5, 64, 0.05),
    ("two_sample", 0.8, 26, 0.05),
    ("two_sample", 2.0, 2, 0.05),
    ("two_sample", 0.1, 1571, 0.05),
    ("paired", 0.009, 100000, 0.05),
    ("two_sample", 0.002, 2000000, 0.05),
]
T_QUANTILE_DF = [1, 2, 5, 30, 999, 1000, 99999, 999999, 3999998]
SAMPLE_SIZE_EFFECTS = [0.05, 0.2, 0.5, 0.8, 1.5, 3.0]


def power(design, effect, n, alpha):
    if design == "paired":
        df, nc = n - 1, effect * np.sqrt(n)
    else:
        df, nc = 2 * n - 2, effect * np.sqrt(n / 2.0)
    critical = stats.t.ppf(1.0 - alpha / 2.0, df)
    return float(stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc))


def sample_size(design, effect, target=0.8, alpha=0.05):
    n = 2
    while power(design, effect, n, alpha) < target:
        n += 1
    return n


def tests(a, b):
    case = {"a": a, "b": b}
    welch = stats.ttest_ind(a, b, equal_var=False)
    case["welch"] = {"statistic": float(welch.statistic), "pvalue": float(welch.pvalue),
                     "df": float(welch.df)}
    mwu = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic",
                             use_continuity=True)
    case["mann_whitney_asymptotic"] = {"statistic": float(mwu.statistic),
                                       "pvalue": float(mwu.pvalue)}
    pooled = np.sqrt(((len(a) - 1) * np.var(a, ddof=1) + (len(b) - 1) * np.var(b, ddof=1))
                     / (len(a) + len(b) - 2))
    case["cohens_d"] = float((np.mean(a) - np.mean(b)) / pooled)
    if len(a) == len(b):
        paired = stats.ttest_rel(a, b)
        case["paired"] = {"statistic": float(paired.statistic),
                          "pvalue": float(paired.pvalue)}
        wilcoxon = stats.wilcoxon(a, b, zero_method="wilcox", correction=False,
                                  method="approx")
        case["wilcoxon_approx"] = {"statistic": float(wilcoxon.statistic),
                                   "pvalue": float(wilcoxon.pvalue)}
        differences = np.subtract(a, b)
        case["cohens_d_z"] = float(np.mean(differences) / np.std(differences, ddof=1))
    return case


def main():
    out = {"scipy": scipy.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "cases": {}}
    for name, (a, b) in CASES.items():
        out["cases"][name] = tests([float(v) for v in a], [float(v) for v in b])
    out["quantiles"] = {
        name: {"values": [float(v) for v in values], "q": QUANTILES,
               "expected": [float(np.quantile(values, q)) for q in QUANTILES]}
        for name, values in QUANTILE_VECTORS.items()
    }
    out["t_upper_quantiles"] = [
        {"tail": 0.025, "df": df, "quantile": float(stats.t.isf(0.025, df))}
        for df in T_QUANTILE_DF
    ]
    out["power"] = [
        {"design": design, "effect": effect, "n": n, "alpha": alpha,
         "power": power(design, effect, n, alpha)}
        for design, effect, n, alpha in POWER_CASES
    ]
    out["sample_size"] = [
        {"design": design, "effect": effect, "power": 0.8, "alpha": 0.05,
         "n": sample_size(design, effect)}
        for design in ("paired", "two_sample") for effect in SAMPLE_SIZE_EFFECTS
    ]
    with open(sys.argv[1], "w") as handle:
        json.dump(out, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()

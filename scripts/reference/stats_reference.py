"""Writes tests/fixtures/stats_reference.json: scipy's results for the tests that the
experiment stage computes, on fixed vectors that include ties, zero differences and tiny
samples.

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
}


def main():
    out = {"scipy": scipy.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "cases": {}}
    for name, (a, b) in CASES.items():
        a = [float(v) for v in a]
        b = [float(v) for v in b]
        case = {"a": a, "b": b}
        welch = stats.ttest_ind(a, b, equal_var=False)
        case["welch"] = {"statistic": float(welch.statistic), "pvalue": float(welch.pvalue),
                         "df": float(welch.df)}
        mwu = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic",
                                 use_continuity=True)
        case["mann_whitney_asymptotic"] = {"statistic": float(mwu.statistic),
                                           "pvalue": float(mwu.pvalue)}
        if len(a) == len(b):
            paired = stats.ttest_rel(a, b)
            case["paired"] = {"statistic": float(paired.statistic),
                              "pvalue": float(paired.pvalue)}
            wilcoxon = stats.wilcoxon(a, b, zero_method="wilcox", correction=False,
                                      method="approx")
            case["wilcoxon_approx"] = {"statistic": float(wilcoxon.statistic),
                                       "pvalue": float(wilcoxon.pvalue)}
        out["cases"][name] = case
    with open(sys.argv[1], "w") as handle:
        json.dump(out, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()

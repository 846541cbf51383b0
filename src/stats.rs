//! Two-sample and paired tests for the experiment stage, each matching scipy's definition
//! named in its doc (checked against scipy on fixture vectors in `tests/stats.rs`).
//!
//! The distributions come from `statrs`. The tests themselves are written here: each is a
//! few lines over the distributions, and keeping the four together lets one fixture test
//! hold them all to scipy. A test crate such as `hypors` could take over Welch's test and
//! the asymptotic Mann-Whitney U test.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// A test's statistic and two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
    /// Degrees of freedom, for the t-tests.
    pub df: Option<f64>,
}

/// Errors of the tests: samples too small for the statistic to exist.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    #[error("{test} needs at least {needed} values per sample, found {found}")]
    TooFew {
        test: &'static str,
        needed: usize,
        found: usize,
    },
    #[error("{test} needs samples of equal length, found {left} and {right}")]
    Unpaired {
        test: &'static str,
        left: usize,
        right: usize,
    },
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample variance, with `n - 1` in the denominator.
fn variance(values: &[f64]) -> f64 {
    let m = mean(values);
    values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() as f64 - 1.0)
}

fn t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    let distribution = StudentsT::new(0.0, 1.0, df).expect("positive degrees of freedom");
    (2.0 * distribution.sf(t.abs())).min(1.0)
}

fn normal_two_sided(z: f64) -> f64 {
    let normal = Normal::standard();
    (2.0 * normal.sf(z.abs())).min(1.0)
}

/// Runs Welch's t-test, as `scipy.stats.ttest_ind(a, b, equal_var=False)`.
pub fn welch(a: &[f64], b: &[f64]) -> Result<TestResult, StatsError> {
    let smallest = a.len().min(b.len());
    if smallest < 2 {
        return Err(StatsError::TooFew {
            test: "Welch's t-test",
            needed: 2,
            found: smallest,
        });
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (variance(a) / na, variance(b) / nb);
    let t = (mean(a) - mean(b)) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    Ok(TestResult {
        statistic: t,
        p_value: t_two_sided(t, df),
        df: Some(df),
    })
}

/// Runs the paired t-test, as `scipy.stats.ttest_rel(a, b)`.
pub fn paired_t(a: &[f64], b: &[f64]) -> Result<TestResult, StatsError> {
    let differences = differences("the paired t-test", a, b)?;
    if differences.len() < 2 {
        return Err(StatsError::TooFew {
            test: "the paired t-test",
            needed: 2,
            found: differences.len(),
        });
    }
    let n = differences.len() as f64;
    let t = mean(&differences) / (variance(&differences) / n).sqrt();
    Ok(TestResult {
        statistic: t,
        p_value: t_two_sided(t, n - 1.0),
        df: Some(n - 1.0),
    })
}

fn differences(test: &'static str, a: &[f64], b: &[f64]) -> Result<Vec<f64>, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::Unpaired {
            test,
            left: a.len(),
            right: b.len(),
        });
    }
    Ok(a.iter().zip(b).map(|(x, y)| x - y).collect())
}

/// Ranks `values` from 1, ties sharing their average rank, and returns the ranks and the
/// sum over tie groups of `t^3 - t`.
fn average_ranks(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &k in &order[start..end] {
            ranks[k] = rank;
        }
        let t = (end - start) as f64;
        ties += t * t * t - t;
        start = end;
    }
    (ranks, ties)
}

/// Runs the Mann-Whitney U test by the normal approximation with tie and continuity
/// corrections, as `scipy.stats.mannwhitneyu(a, b, method="asymptotic")`. The statistic
/// is `U` of `a`. scipy's default method is exact for small samples without ties; this one
/// is not, so compare with `method="asymptotic"`.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Result<TestResult, StatsError> {
    let smallest = a.len().min(b.len());
    if smallest < 1 {
        return Err(StatsError::TooFew {
            test: "the Mann-Whitney U test",
            needed: 1,
            found: smallest,
        });
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let (ranks, ties) = average_ranks(&pooled);
    let rank_sum: f64 = ranks[..a.len()].iter().sum();
    let u1 = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let n = n1 + n2;
    let mu = n1 * n2 / 2.0;
    let sigma = (n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
    let z = (u1.max(u2) - mu - 0.5) / sigma;
    Ok(TestResult {
        statistic: u1,
        p_value: normal_two_sided(z),
        df: None,
    })
}

/// Runs the Wilcoxon signed-rank test by the normal approximation, zero differences dropped and
/// no continuity correction, as `scipy.stats.wilcoxon(a, b, zero_method="wilcox",
/// correction=False, method="approx")`. The statistic is the smaller of the two rank sums.
pub fn wilcoxon(a: &[f64], b: &[f64]) -> Result<TestResult, StatsError> {
    let nonzero: Vec<f64> = differences("the Wilcoxon signed-rank test", a, b)?
        .into_iter()
        .filter(|d| *d != 0.0)
        .collect();
    if nonzero.is_empty() {
        return Err(StatsError::TooFew {
            test: "the Wilcoxon signed-rank test (nonzero differences)",
            needed: 1,
            found: 0,
        });
    }
    let magnitudes: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let (ranks, ties) = average_ranks(&magnitudes);
    let plus: f64 = ranks
        .iter()
        .zip(&nonzero)
        .filter(|(_, d)| **d > 0.0)
        .map(|(r, _)| r)
        .sum();
    let n = nonzero.len() as f64;
    let minus = n * (n + 1.0) / 2.0 - plus;
    let statistic = plus.min(minus);
    let mean = n * (n + 1.0) / 4.0;
    let spread = (n * (n + 1.0) * (2.0 * n + 1.0) / 24.0 - ties / 48.0).sqrt();
    Ok(TestResult {
        statistic,
        p_value: normal_two_sided((statistic - mean) / spread),
        df: None,
    })
}

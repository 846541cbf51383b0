//! Two-sample and paired tests for the experiment stage, each matching scipy's definition
//! named in its doc (checked against scipy on fixture vectors in `tests/stats.rs`).
//!
//! The distributions come from `statrs`. The tests themselves are written here: each is a
//! few lines over the distributions, and keeping the four together lets one fixture test
//! hold them all to scipy. A test crate such as `hypors` could take over Welch's test and
//! the asymptotic Mann-Whitney U test.

use statrs::distribution::{Continuous, ContinuousCDF, Normal, StudentsT};

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
    // As scipy, the continuity correction is subtracted from the larger U, and the upper
    // tail doubled and capped at 1: when both U are within 0.5 of their mean, z is
    // negative and the p-value is 1.
    let z = (u1.max(u2) - mu - 0.5) / sigma;
    Ok(TestResult {
        statistic: u1,
        p_value: (2.0 * Normal::standard().sf(z)).min(1.0),
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

/// Returns the `q` quantile of `sorted` (ascending) by linear interpolation between order
/// statistics, as `numpy.quantile(values, q)` with its default method. NaN when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let fraction = position - lower as f64;
    sorted[lower] + fraction * (sorted[upper] - sorted[lower])
}

/// Returns Cohen's d_z of paired samples: the mean of `a - b` over the sample standard
/// deviation of the differences. It is NaN when every difference is zero, and infinite
/// when they are all equal but not zero.
pub fn cohens_d_paired(a: &[f64], b: &[f64]) -> Result<f64, StatsError> {
    let differences = differences("Cohen's d_z", a, b)?;
    if differences.len() < 2 {
        return Err(StatsError::TooFew {
            test: "Cohen's d_z",
            needed: 2,
            found: differences.len(),
        });
    }
    Ok(mean(&differences) / variance(&differences).sqrt())
}

/// Returns Cohen's d of two independent samples: the difference of the means over the
/// pooled standard deviation, `sqrt(((na - 1) va + (nb - 1) vb) / (na + nb - 2))`.
pub fn cohens_d(a: &[f64], b: &[f64]) -> Result<f64, StatsError> {
    let smallest = a.len().min(b.len());
    if smallest < 2 {
        return Err(StatsError::TooFew {
            test: "Cohen's d",
            needed: 2,
            found: smallest,
        });
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let pooled = ((na - 1.0) * variance(a) + (nb - 1.0) * variance(b)) / (na + nb - 2.0);
    Ok((mean(a) - mean(b)) / pooled.sqrt())
}

/// Intervals of the composite Simpson rule over the chi variable in [`t_test_power`].
const POWER_INTERVALS: usize = 4000;

/// Half-width, in units of the chi variable, of the range [`t_test_power`] integrates
/// over around `sqrt(df)`. The chi distribution's standard deviation is below 1/sqrt(2)
/// for every `df`, so 12 units are 17 standard deviations, beyond which the density is
/// negligible.
const POWER_HALF_WIDTH: f64 = 12.0;

/// Returns `c` with `P(T > c) = tail` for Student's t with `df` degrees of freedom, as
/// `scipy.stats.t.isf(tail, df)`.
///
/// statrs's `inverse_cdf` loses accuracy as `df` grows (1.9455 in place of 1.95996 at
/// five million in statrs 0.19.1), and so does its survival function, more slowly. Below
/// 1,000 degrees of freedom Newton's method on the survival function refines statrs's
/// quantile; from 1,000 on, the Cornish-Fisher expansion of the quantile in powers of
/// `1 / df` around the normal quantile, to the fourth power, is accurate to about 1e-14.
pub fn t_upper_quantile(tail: f64, df: f64) -> f64 {
    let distribution = StudentsT::new(0.0, 1.0, df).expect("positive degrees of freedom");
    if df >= 1000.0 {
        let z = Normal::standard().inverse_cdf(1.0 - tail);
        let z2 = z * z;
        let g1 = z * (z2 + 1.0) / 4.0;
        let g2 = z * ((5.0 * z2 + 16.0) * z2 + 3.0) / 96.0;
        let g3 = z * (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / 384.0;
        let g4 = z * ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / 92160.0;
        return z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df;
    }
    let mut x = distribution.inverse_cdf(1.0 - tail);
    for _ in 0..50 {
        let step = (distribution.sf(x) - tail) / distribution.pdf(x);
        x += step;
        if step.abs() <= 1e-15 * x.abs() {
            break;
        }
    }
    x
}

/// Returns the power of a two-sided t-test at level `alpha` with `df` degrees of freedom
/// when the statistic follows the noncentral t distribution with noncentrality
/// `noncentrality`: `P(|T| > c)` with `c = t_{1 - alpha/2, df}`, as
/// `scipy.stats.nct.sf(c, df, nc) + scipy.stats.nct.cdf(-c, df, nc)`.
///
/// `T = (Z + nc) / (X / sqrt(df))` with `Z` standard normal and `X` chi with `df` degrees
/// of freedom. The power is therefore an integral over `X` of two normal tails, which the
/// composite Simpson rule evaluates where the chi density is not negligible.
pub fn t_test_power(noncentrality: f64, df: u64, alpha: f64) -> f64 {
    let critical = t_upper_quantile(alpha / 2.0, df as f64);
    let normal = Normal::standard();
    let root = (df as f64).sqrt();
    let low = (root - POWER_HALF_WIDTH).max(0.0);
    let high = root + POWER_HALF_WIDTH;
    let step = (high - low) / POWER_INTERVALS as f64;

    // The chi density relative to its value at the mode m = sqrt(df - 1), written in
    // u = x - m. The direct form (df - 1) ln x - x^2 / 2 loses about 1e-8 to rounding at
    // a few million degrees of freedom; this one keeps the terms near m u.
    let mode = (df as f64 - 1.0).sqrt();
    let relative_density = |x: f64| -> f64 {
        if df == 1 {
            return (-x * x / 2.0).exp();
        }
        if x <= 0.0 {
            return 0.0;
        }
        let u = x - mode;
        (mode * mode * (u / mode).ln_1p() - u * mode - u * u / 2.0).exp()
    };
    let tails = |x: f64| {
        let scaled = critical * x / root;
        normal.cdf(noncentrality - scaled) + normal.cdf(-noncentrality - scaled)
    };

    // Dividing by the integral of the density on the same grid leaves out its
    // normalizing constant.
    let (mut weighted, mut mass) = (0.0, 0.0);
    for k in 0..=POWER_INTERVALS {
        let simpson = match k {
            0 => 1.0,
            k if k == POWER_INTERVALS => 1.0,
            k if k % 2 == 1 => 4.0,
            _ => 2.0,
        };
        let x = low + k as f64 * step;
        let density = simpson * relative_density(x);
        weighted += density * tails(x);
        mass += density;
    }
    (weighted / mass).clamp(0.0, 1.0)
}

/// The t-test that [`sample_size`] and [`design_power`] compute for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerDesign {
    /// The paired t-test on `n` pairs: `df = n - 1`, noncentrality `d_z sqrt(n)`.
    Paired,
    /// The two-sample t-test with `n` per group: `df = 2n - 2`, noncentrality
    /// `d sqrt(n / 2)`.
    TwoSample,
}

/// Largest sample size [`sample_size`] looks at, per group.
pub const MAX_SAMPLE_SIZE: u64 = 10_000_000;

/// Returns the power of `design` with `n` pairs or `n` per group at effect size
/// `effect` (Cohen's d_z or d).
pub fn design_power(design: PowerDesign, effect: f64, n: u64, alpha: f64) -> f64 {
    match design {
        PowerDesign::Paired => t_test_power(effect * (n as f64).sqrt(), n - 1, alpha),
        PowerDesign::TwoSample => t_test_power(effect * (n as f64 / 2.0).sqrt(), 2 * n - 2, alpha),
    }
}

/// Returns the smallest `n` (pairs, or services per group) at which `design` reaches
/// `power` at level `alpha` for the effect size `effect`, or `None` when no `n` up to
/// [`MAX_SAMPLE_SIZE`] does (a zero or non-finite effect, say).
///
/// The normal approximation `((z_{1-alpha/2} + z_power) / d)^2` gives a start near the
/// answer, and bisection on the exact power finds it, since the power grows with `n`.
pub fn sample_size(design: PowerDesign, effect: f64, power: f64, alpha: f64) -> Option<u64> {
    let effect = effect.abs();
    if !effect.is_finite() || effect == 0.0 {
        return None;
    }
    let normal = Normal::standard();
    let z = normal.inverse_cdf(1.0 - alpha / 2.0) + normal.inverse_cdf(power);
    let per_unit = match design {
        PowerDesign::Paired => 1.0,
        PowerDesign::TwoSample => 2.0,
    };
    let approximate = per_unit * (z / effect).powi(2);
    if !approximate.is_finite() || approximate > MAX_SAMPLE_SIZE as f64 {
        return None;
    }
    // n = 1 has no degrees of freedom and counts as not reaching the power.
    let reaches = |n: u64| n >= 2 && design_power(design, effect, n, alpha) >= power;
    let start = (approximate.ceil() as u64).max(2);
    // Bracket the answer in (failing, reaching] by steps of about 6%, then bisect.
    let (mut failing, mut reaching) = if reaches(start) {
        let mut reaching = start;
        let mut candidate = start;
        while reaches(candidate) {
            reaching = candidate;
            candidate = candidate.saturating_sub(candidate / 16 + 1).max(1);
        }
        (candidate, reaching)
    } else {
        let mut failing = start;
        let mut candidate = start;
        while !reaches(candidate) {
            failing = candidate;
            candidate += candidate / 16 + 1;
            if candidate > MAX_SAMPLE_SIZE {
                return None;
            }
        }
        (failing, candidate)
    };
    while reaching - failing > 1 {
        let middle = failing + (reaching - failing) / 2;
        if reaches(middle) {
            reaching = middle;
        } else {
            failing = middle;
        }
    }
    Some(reaching)
}

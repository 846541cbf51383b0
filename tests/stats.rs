//! Every test statistic and p-value against scipy on the fixture vectors of
//! `tests/fixtures/stats_reference.json` (made by `scripts/reference/stats_reference.py`),
//! to 1e-9 relative, and the quantiles, effect sizes and power beside numpy and scipy.

use placewise::stats::{self, PowerDesign, StatsError, TestResult};

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/stats_reference.json")).unwrap()
}

fn close(found: f64, expected: f64, what: &str) {
    let scale = expected.abs().max(1e-300);
    assert!(
        (found - expected).abs() <= 1e-9 * scale,
        "{what}: {found} against scipy's {expected}"
    );
}

fn numbers(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn compare(case: &str, test: &str, found: TestResult, expected: &serde_json::Value) {
    close(
        found.statistic,
        expected["statistic"].as_f64().unwrap(),
        &format!("{case} {test} statistic"),
    );
    close(
        found.p_value,
        expected["pvalue"].as_f64().unwrap(),
        &format!("{case} {test} p-value"),
    );
    if let (Some(df), Some(expected_df)) = (found.df, expected["df"].as_f64()) {
        close(df, expected_df, &format!("{case} {test} df"));
    }
}

#[test]
fn every_test_matches_scipy() {
    let fixture = fixture();
    let cases = fixture["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 10);
    let mut compared = 0;
    for (name, case) in cases {
        let (a, b) = (numbers(&case["a"]), numbers(&case["b"]));
        compare(name, "Welch", stats::welch(&a, &b).unwrap(), &case["welch"]);
        compare(
            name,
            "Mann-Whitney",
            stats::mann_whitney(&a, &b).unwrap(),
            &case["mann_whitney_asymptotic"],
        );
        close(
            stats::cohens_d(&a, &b).unwrap(),
            case["cohens_d"].as_f64().unwrap(),
            &format!("{name} Cohen's d"),
        );
        compared += 2;
        if case.get("paired").is_some() {
            close(
                stats::cohens_d_paired(&a, &b).unwrap(),
                case["cohens_d_z"].as_f64().unwrap(),
                &format!("{name} Cohen's d_z"),
            );
            compare(
                name,
                "paired t",
                stats::paired_t(&a, &b).unwrap(),
                &case["paired"],
            );
            compare(
                name,
                "Wilcoxon",
                stats::wilcoxon(&a, &b).unwrap(),
                &case["wilcoxon_approx"],
            );
            compared += 2;
        }
    }
    assert_eq!(compared, 36);
}

#[test]
fn too_small_or_unpaired_samples_are_errors() {
    assert!(matches!(
        stats::welch(&[1.0], &[2.0, 3.0]),
        Err(StatsError::TooFew { found: 1, .. })
    ));
    assert!(matches!(
        stats::paired_t(&[1.0, 2.0], &[1.0]),
        Err(StatsError::Unpaired {
            left: 2,
            right: 1,
            ..
        })
    ));
    assert!(matches!(
        stats::wilcoxon(&[1.0, 2.0], &[1.0, 2.0]),
        Err(StatsError::TooFew { found: 0, .. })
    ));
}

#[test]
fn quantiles_match_numpy() {
    let fixture = fixture();
    for (name, case) in fixture["quantiles"].as_object().unwrap() {
        let mut values = numbers(&case["values"]);
        values.sort_by(f64::total_cmp);
        for (q, expected) in numbers(&case["q"]).iter().zip(numbers(&case["expected"])) {
            close(
                stats::quantile_sorted(&values, *q),
                expected,
                &format!("{name} quantile {q}"),
            );
        }
    }
    assert!(stats::quantile_sorted(&[], 0.5).is_nan());
}

fn design(name: &str) -> PowerDesign {
    match name {
        "paired" => PowerDesign::Paired,
        "two_sample" => PowerDesign::TwoSample,
        other => panic!("unknown design {other}"),
    }
}

#[test]
fn t_quantiles_match_scipy() {
    let fixture = fixture();
    let cases = fixture["t_upper_quantiles"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        close(
            stats::t_upper_quantile(case["tail"].as_f64().unwrap(), case["df"].as_f64().unwrap()),
            case["quantile"].as_f64().unwrap(),
            &format!("t quantile {case}"),
        );
    }
}

#[test]
fn power_matches_noncentral_t() {
    let fixture = fixture();
    let cases = fixture["power"].as_array().unwrap();
    assert_eq!(cases.len(), 11);
    for case in cases {
        let found = stats::design_power(
            design(case["design"].as_str().unwrap()),
            case["effect"].as_f64().unwrap(),
            case["n"].as_u64().unwrap(),
            case["alpha"].as_f64().unwrap(),
        );
        close(
            found,
            case["power"].as_f64().unwrap(),
            &format!("power {case}"),
        );
    }
}

#[test]
fn sample_size_matches_scipy_search() {
    let fixture = fixture();
    let cases = fixture["sample_size"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let found = stats::sample_size(
            design(case["design"].as_str().unwrap()),
            case["effect"].as_f64().unwrap(),
            case["power"].as_f64().unwrap(),
            case["alpha"].as_f64().unwrap(),
        );
        assert_eq!(found, case["n"].as_u64(), "{case}");
    }
    // No finite sample detects a zero effect.
    assert_eq!(
        stats::sample_size(PowerDesign::Paired, 0.0, 0.8, 0.05),
        None
    );
    assert_eq!(
        stats::sample_size(PowerDesign::TwoSample, f64::NAN, 0.8, 0.05),
        None
    );
}

//! Every test statistic and p-value against scipy on the fixture vectors of
//! `tests/fixtures/stats_reference.json` (made by `scripts/reference/stats_reference.py`),
//! to 1e-9 relative.

use placewise::stats::{self, StatsError, TestResult};

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
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/stats_reference.json")).unwrap();
    let cases = fixture["cases"].as_object().unwrap();
    assert!(cases.len() >= 5);
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
        compared += 2;
        if case.get("paired").is_some() {
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
    assert_eq!(compared, 18);
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

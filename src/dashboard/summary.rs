//! The plain-language statement of an A/B experiment that the A/B page opens with.

use serde_json::Value;

/// Significance level the original study tested at, used when the document states none.
const DEFAULT_ALPHA: f64 = 0.05;

/// Writes what the experiment compared and what its result means, from the stored
/// document. Clauses whose figures the document lacks are left out.
pub fn ab_test_sentence(design: &str, control: &str, treatment: &str, document: &Value) -> String {
    let control_metrics = &document["control_metrics"];
    let treatment_metrics = &document["treatment_metrics"];
    let improvements = &document["improvements"];
    let mut sentences = vec![format!(
        "The experiment ({design}) compared the treatment, {treatment}, with the control, {control}."
    )];

    // (what, metric key, key of its reduction in percent, decimals, unit)
    let figures = [
        (
            "the average latency",
            "avg_latency_ms",
            "latency_improvement_pct",
            2,
            "ms",
        ),
        // Per service, because in the split design the arms hold different services. The
        // cost improvement is of this mean in both designs.
        (
            "the monthly cost per service",
            "mean_cost_per_service_usd",
            "cost_improvement_pct",
            0,
            "USD",
        ),
        (
            "the latency of latency-critical services",
            "critical_services_latency_ms",
            "critical_latency_improvement_pct",
            2,
            "ms",
        ),
    ];
    let findings: Vec<String> = figures
        .iter()
        .filter_map(|&(name, key, reduction, decimals, unit)| {
            comparison_clause(
                name,
                control_metrics[key].as_f64(),
                treatment_metrics[key].as_f64(),
                improvements[reduction].as_f64(),
                |v| format!("{v:.decimals$} {unit}"),
            )
        })
        .collect();
    if !findings.is_empty() {
        sentences.push(format!("Under the treatment {}.", join_clauses(&findings)));
    }

    let significance = &document["statistical_significance"];
    let alpha = significance["alpha"].as_f64().unwrap_or(DEFAULT_ALPHA);
    let level = format!("{}%", 100.0 * alpha);
    match service_level_clause(document, &level) {
        Some(clause) => sentences.push(clause),
        None => sentences.push(
            "The document states no test with the service as the unit, so it supports no \
             conclusion about significance."
                .to_string(),
        ),
    }
    if let Some(interval) = interval_clause(&document["intervals"]) {
        sentences.push(interval);
    }
    if let Some(p) = significance["p_value"].as_f64() {
        let statistic = significance["t_statistic"]
            .as_f64()
            .map(|t| format!("t = {t:.2}, "))
            .unwrap_or_default();
        sentences.push(format!(
            "The original study's t-test on single requests ({statistic}p = {}) is shown for \
             comparison only: requests of one service are not independent, so it overstates \
             the evidence.",
            format_p(p)
        ));
    }
    sentences.join(" ")
}

/// States the service-level tests and what they mean together: significant when every
/// test rejects at `level`, not significant when none does, and mixed otherwise.
fn service_level_clause(document: &Value, level: &str) -> Option<String> {
    // A test's p-value is null where its statistic is undefined: every service's
    // difference zero, as with two identical arms.
    let tests: Vec<(&str, Option<f64>, bool)> = document["service_level_tests"]
        .as_array()?
        .iter()
        .filter_map(|test| {
            let method = test["method"].as_str()?;
            // The method's name without its details: "paired t-test", not its df rule.
            let name = method.split(" on ").next().unwrap_or(method);
            let significant = test["is_significant"].as_bool().unwrap_or(false);
            Some((name, test["p_value"].as_f64(), significant))
        })
        .collect();
    if tests.is_empty() {
        return None;
    }
    if tests.iter().all(|(_, p, _)| p.is_none()) {
        return Some(
            "With each service's mean latency as one observation, the tests are undefined: \
             every service's mean latency is the same under both arms, so there is no \
             difference to test."
                .to_string(),
        );
    }
    let results: Vec<String> = tests
        .iter()
        .map(|(name, p, _)| match p {
            Some(p) => format!("{name}: p = {}", format_p(*p)),
            None => format!("{name}: undefined"),
        })
        .collect();
    let rejecting = tests
        .iter()
        .filter(|(_, _, significant)| *significant)
        .count();
    let meaning = if rejecting == tests.len() {
        format!(
            "the latency difference is statistically significant at the {level} level, so \
             chance alone is an unlikely explanation"
        )
    } else if rejecting == 0 {
        format!(
            "the latency difference is not statistically significant at the {level} level, \
             so chance alone could explain it"
        )
    } else {
        format!(
            "the tests disagree at the {level} level, so the evidence for a latency \
             difference is weak"
        )
    };
    Some(format!(
        "With each service's mean latency as one observation ({}), {meaning}.",
        results.join("; ")
    ))
}

/// States the bootstrap interval of the change in mean latency, when the document has one.
fn interval_clause(intervals: &Value) -> Option<String> {
    let interval = &intervals["mean_latency"];
    let (change, low, high) = (
        interval["change_pct"].as_f64()?,
        interval["low_pct"].as_f64()?,
        interval["high_pct"].as_f64()?,
    );
    let confidence = intervals["confidence"].as_f64().unwrap_or(0.95);
    let verdict = if interval["excludes_zero"].as_bool()? {
        "which excludes no change"
    } else {
        "which includes no change"
    };
    Some(format!(
        "The {:.0}% interval of the change in mean latency, resampling services, is \
         {low:+.1}% to {high:+.1}% around {change:+.1}%, {verdict}.",
        100.0 * confidence
    ))
}

/// Returns "NAME was T against C (R% lower)", or `None` without both values.
fn comparison_clause(
    name: &str,
    control: Option<f64>,
    treatment: Option<f64>,
    reduction_pct: Option<f64>,
    format: impl Fn(f64) -> String,
) -> Option<String> {
    let (control, treatment) = (control?, treatment?);
    // No latency is zero: an arm that drew no request of the services measured reports
    // 0, which is no measurement.
    if name.contains("latency") && (control == 0.0 || treatment == 0.0) {
        return None;
    }
    let reduction =
        reduction_pct.or_else(|| (control != 0.0).then(|| 100.0 * (control - treatment) / control));
    let change = match reduction {
        Some(r) if r > 0.0 => format!(" ({r:.1}% lower)"),
        Some(r) if r < 0.0 => format!(" ({:.1}% higher)", -r),
        Some(_) => " (unchanged)".to_string(),
        None => String::new(),
    };
    Some(format!(
        "{name} was {} against {}{change}",
        format(treatment),
        format(control)
    ))
}

fn join_clauses(clauses: &[String]) -> String {
    match clauses {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

fn format_p(p: f64) -> String {
    if p != 0.0 && p < 0.001 {
        format!("{p:.2e}")
    } else {
        format!("{p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(significant: [bool; 2]) -> Value {
        serde_json::json!({
            "control_metrics": {"avg_latency_ms": 120.0, "mean_cost_per_service_usd": 2000.0,
                                "critical_services_latency_ms": 90.0},
            "treatment_metrics": {"avg_latency_ms": 90.0, "mean_cost_per_service_usd": 2100.0,
                                  "critical_services_latency_ms": 60.0},
            "improvements": {"latency_improvement_pct": 25.0, "cost_improvement_pct": -5.0,
                             "critical_latency_improvement_pct": 33.3},
            "statistical_significance": {"t_statistic": -41.1, "p_value": 0.0,
                                         "is_significant": true, "alpha": 0.05},
            "service_level_tests": [
                {"method": "paired t-test on service mean latency (df = services - 1)",
                 "p_value": 0.00001, "is_significant": significant[0]},
                {"method": "Wilcoxon signed-rank test on service mean latency",
                 "p_value": 0.2, "is_significant": significant[1]}
            ],
            "intervals": {"confidence": 0.95, "mean_latency": {
                "change_pct": -25.0, "low_pct": -31.5, "high_pct": 4.26,
                "excludes_zero": false}}
        })
    }

    #[test]
    fn sentence_states_figures_and_meaning() {
        let text = ab_test_sentence("paired", "random", "optimizer", &document([true, true]));
        assert!(text.contains("compared the treatment, optimizer, with the control, random"));
        assert!(text.contains("the average latency was 90.00 ms against 120.00 ms (25.0% lower)"));
        assert!(text
            .contains("the monthly cost per service was 2100 USD against 2000 USD (5.0% higher)"));
        assert!(text.contains(
            "(paired t-test: p = 1.00e-5; Wilcoxon signed-rank test: p = 0.200), the latency"
        ));
        assert!(text.contains("is statistically significant at the 5% level"));
        assert!(text.contains("is -31.5% to +4.3% around -25.0%, which includes no change"));
    }

    #[test]
    fn sentence_says_not_significant() {
        let text = ab_test_sentence("paired", "random", "optimizer", &document([false, false]));
        assert!(text.contains("is not statistically significant"));
        assert!(text.contains("chance alone could explain it"));
    }

    #[test]
    fn sentence_says_tests_disagree() {
        let text = ab_test_sentence("split", "random", "optimizer", &document([true, false]));
        assert!(text.contains("the tests disagree at the 5% level"));
        assert!(!text.contains("is statistically significant"));
    }

    #[test]
    fn identical_arms_have_no_difference_to_test() {
        let mut document = document([false, false]);
        for test in document["service_level_tests"].as_array_mut().unwrap() {
            test["p_value"] = Value::Null;
        }
        let text = ab_test_sentence("paired", "optimizer", "optimizer", &document);
        assert!(text.contains("the tests are undefined"), "{text}");
        assert!(text.contains("no difference to test"), "{text}");
        assert!(!text.contains("states no test"), "{text}");
    }

    #[test]
    fn latency_without_requests_is_left_out() {
        let mut document = document([false, false]);
        document["control_metrics"]["critical_services_latency_ms"] = 0.0.into();
        document["treatment_metrics"]["critical_services_latency_ms"] = 0.0.into();
        let text = ab_test_sentence("paired", "random", "optimizer", &document);
        assert!(!text.contains("latency-critical"), "{text}");
        assert!(text.contains("the average latency was"), "{text}");
    }

    #[test]
    fn request_level_test_never_decides() {
        // The request-level test rejects in every document above; it is named only as a
        // comparison and never carries the conclusion.
        let text = ab_test_sentence("split", "random", "optimizer", &document([false, false]));
        assert!(text.contains("t-test on single requests (t = -41.10, p = 0.000)"));
        assert!(text.contains("shown for comparison only"));
        assert!(!text.contains("is statistically significant"));
    }

    #[test]
    fn sentence_without_figures() {
        let text = ab_test_sentence("paired", "a", "b", &serde_json::json!({}));
        assert!(text.starts_with("The experiment (paired) compared"));
        assert!(text.ends_with("supports no conclusion about significance."));
        assert!(!text.contains("Under the treatment"));
    }
}

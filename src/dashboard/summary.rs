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
        (
            "the total cost",
            "total_cost",
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
    if let (Some(p), Some(significant)) = (
        significance["p_value"].as_f64(),
        significance["is_significant"].as_bool(),
    ) {
        let statistic = significance["t_statistic"]
            .as_f64()
            .map(|t| format!("t = {t:.2}, "))
            .unwrap_or_default();
        let meaning = if significant {
            format!(
                "the latency difference is statistically significant at the {level} level, so chance alone is an unlikely explanation"
            )
        } else {
            format!(
                "the latency difference is not statistically significant at the {level} level, so chance alone could explain it"
            )
        };
        sentences.push(format!(
            "A t-test of the latencies gives {statistic}p = {}: {meaning}.",
            format_p(p)
        ));
    } else {
        sentences.push("The document states no significance test.".to_string());
    }
    sentences.join(" ")
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

    fn document(significant: bool) -> Value {
        serde_json::json!({
            "control_metrics": {"avg_latency_ms": 120.0, "total_cost": 2000.0,
                                "critical_services_latency_ms": 90.0},
            "treatment_metrics": {"avg_latency_ms": 90.0, "total_cost": 2100.0,
                                  "critical_services_latency_ms": 60.0},
            "improvements": {"latency_improvement_pct": 25.0, "cost_improvement_pct": -5.0,
                             "critical_latency_improvement_pct": 33.3},
            "statistical_significance": {"t_statistic": 4.2, "p_value": 0.00001,
                                         "is_significant": significant}
        })
    }

    #[test]
    fn sentence_states_figures_and_meaning() {
        let text = ab_test_sentence("paired", "random", "optimizer", &document(true));
        assert!(text.contains("compared the treatment, optimizer, with the control, random"));
        assert!(text.contains("the average latency was 90.00 ms against 120.00 ms (25.0% lower)"));
        assert!(text.contains("the total cost was 2100 USD against 2000 USD (5.0% higher)"));
        assert!(text.contains("t = 4.20, p = 1.00e-5"));
        assert!(text.contains("is statistically significant at the 5% level"));
    }

    #[test]
    fn sentence_says_not_significant() {
        let text = ab_test_sentence("paired", "random", "optimizer", &document(false));
        assert!(text.contains("is not statistically significant"));
        assert!(text.contains("chance alone could explain it"));
    }

    #[test]
    fn sentence_without_figures() {
        let text = ab_test_sentence("paired", "a", "b", &serde_json::json!({}));
        assert!(text.starts_with("The experiment (paired) compared"));
        assert!(text.ends_with("The document states no significance test."));
        assert!(!text.contains("Under the treatment"));
    }
}

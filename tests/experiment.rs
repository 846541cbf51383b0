//! The experiment stage on an in-memory world: A/A rejection rates over many seeds, common
//! random numbers, a known direction of effect, and the bootstrap's quantile walk.

use placewise::catalog::Catalog;
use placewise::check::WorldFleet;
use placewise::experiment::{self, ArmData, Design, Experiment, ExperimentSettings, Noise};
use placewise::generate::{self, FleetConfig};
use placewise::simulate::{Host, Placement};
use placewise::stats;

/// The default fleet's 150 services and five regions, over two weeks, with the placement
/// of its last day (the original study's rules).
fn default_world() -> (WorldFleet, Placement) {
    let config = FleetConfig {
        services: 150,
        days: 7,
        regions: Catalog::embedded().select("default").unwrap(),
        seed: 42,
    };
    let fleet = generate::generate(&config, |_| true).unwrap();
    let placement = generate::history_placement(&fleet, config.days - 1);
    (WorldFleet::from_fleet(&fleet).unwrap(), placement)
}

fn settings(design: Design, noise: Noise, seed: u64) -> ExperimentSettings {
    ExperimentSettings {
        design,
        noise,
        requests: 10_000,
        resamples: 0,
        seed,
    }
}

const SEEDS: u64 = 200;

/// Counts, over [`SEEDS`] seeds, how often each service-level test and the request-level
/// Welch test reject at 0.05 when both arms are the same placement.
fn aa_rejections(design: Design, noise: Noise) -> ([usize; 2], usize) {
    let (world, placement) = default_world();
    let prepared = Experiment::new(&world, &placement, &placement, &|| true).unwrap();
    let mut service = [0; 2];
    let mut request = 0;
    for seed in 0..SEEDS {
        let outcome = prepared
            .run(&settings(design, noise, seed), &|| true)
            .unwrap();
        assert_eq!(outcome.service_tests.len(), 2);
        for (count, test) in service.iter_mut().zip(&outcome.service_tests) {
            *count += usize::from(test.is_significant);
        }
        request += usize::from(outcome.request_welch.is_significant);
    }
    (service, request)
}

/// 2% to 9% of 200 seeds.
const ACCEPTED_REJECTIONS: std::ops::RangeInclusive<usize> = 4..=18;

#[test]
fn split_aa_rejects_about_five_percent() {
    let ([welch, mann_whitney], request) = aa_rejections(Design::Split, Noise::Independent);
    assert!(
        ACCEPTED_REJECTIONS.contains(&welch),
        "Welch: {welch} of 200"
    );
    assert!(
        ACCEPTED_REJECTIONS.contains(&mann_whitney),
        "Mann-Whitney: {mann_whitney} of 200"
    );
    // Requests of one service share its placement, so a request-level test of two
    // different halves of the fleet rejects far more often than 5%.
    assert!(request > 100, "request-level Welch: {request} of 200");
}

#[test]
fn paired_aa_with_independent_noise() {
    let ([paired, wilcoxon], _) = aa_rejections(Design::Paired, Noise::Independent);
    assert!(
        ACCEPTED_REJECTIONS.contains(&paired),
        "paired t: {paired} of 200"
    );
    assert!(
        ACCEPTED_REJECTIONS.contains(&wilcoxon),
        "Wilcoxon: {wilcoxon} of 200"
    );
}

#[test]
fn paired_aa_with_common_noise_is_exact() {
    let (world, placement) = default_world();
    let mut settings = settings(Design::Paired, Noise::Common, 7);
    settings.resamples = 200;
    let outcome = experiment::run(&world, &placement, &placement, &settings, &|| true).unwrap();
    assert_eq!(outcome.control.requests, outcome.treatment.requests);
    assert_eq!(
        outcome.control.sorted_latency_ms,
        outcome.treatment.sorted_latency_ms
    );
    for test in &outcome.service_tests {
        assert!(test.p_value.is_nan(), "{}", test.method);
        assert!(!test.is_significant, "{}", test.method);
    }
    assert_eq!(outcome.request_welch.statistic, 0.0);
    assert_eq!(outcome.request_welch.p_value, 1.0);
    assert_eq!(outcome.effect_size.cohens_d, 0.0);
    assert_eq!(outcome.effect_size.services_needed, None);
    let intervals = outcome.intervals.unwrap();
    for interval in [
        &intervals.mean_latency,
        &intervals.p95_latency,
        &intervals.cost,
        &intervals.critical_latency,
    ] {
        assert_eq!(interval.change_pct, 0.0);
        assert_eq!(interval.low_pct, 0.0);
        assert_eq!(interval.high_pct, 0.0);
        assert!(!interval.excludes_zero);
    }
}

/// `placement` with twice the instances on every host: the same routing and transfer,
/// less queueing, twice the instance cost.
fn doubled(placement: &Placement) -> Placement {
    Placement {
        hosts: placement
            .hosts
            .iter()
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|h| Host {
                        region: h.region,
                        instances: 2 * h.instances,
                    })
                    .collect()
            })
            .collect(),
    }
}

#[test]
fn doubled_instances_cut_latency_and_raise_cost() {
    let (world, placement) = default_world();
    let treatment = doubled(&placement);
    let mut paired = settings(Design::Paired, Noise::Common, 3);
    paired.resamples = 500;
    let outcome = experiment::run(&world, &placement, &treatment, &paired, &|| true).unwrap();
    let intervals = outcome.intervals.unwrap();
    let latency = &intervals.mean_latency;
    assert!(latency.high_pct < 0.0, "{latency:?}");
    assert!(latency.excludes_zero);
    assert!(latency.low_pct <= latency.change_pct);
    assert!(latency.change_pct <= latency.high_pct);
    assert!(intervals.cost.low_pct > 0.0, "{:?}", intervals.cost);
    assert!(
        intervals.p95_latency.high_pct < 0.0,
        "{:?}",
        intervals.p95_latency
    );
    let (control, treated) = (&outcome.control_metrics, &outcome.treatment_metrics);
    assert!(treated.avg_latency_ms < control.avg_latency_ms);
    assert!(treated.total_cost > control.total_cost);
    // Only the instances double; the transfer stays.
    assert!(treated.total_cost <= 2.0 * control.total_cost);
    assert_eq!(treated.redundancy_score, control.redundancy_score);
    assert_eq!(treated.total_placement_pairs, control.total_placement_pairs);
    assert!(outcome.service_tests[0].statistic < 0.0);
    assert!(outcome.service_tests[0].is_significant);
    assert!(outcome.service_tests[1].is_significant);
    assert!(outcome.effect_size.cohens_d < 0.0);

    // The split design compares different services, so the same change leaves a far
    // wider interval.
    let mut split = settings(Design::Split, Noise::Independent, 3);
    split.resamples = 500;
    let outcome = experiment::run(&world, &placement, &treatment, &split, &|| true).unwrap();
    let split_latency = outcome.intervals.unwrap().mean_latency;
    assert!(
        split_latency.high_pct - split_latency.low_pct > 5.0 * (latency.high_pct - latency.low_pct),
        "split {split_latency:?} against paired {latency:?}"
    );
}

#[test]
fn paired_arms_share_their_requests() {
    let (world, placement) = default_world();
    let treatment = doubled(&placement);
    let settings = settings(Design::Paired, Noise::Common, 11);
    let outcome = experiment::run(&world, &placement, &treatment, &settings, &|| true).unwrap();
    assert_eq!(outcome.control.requests, outcome.treatment.requests);
    assert_eq!(outcome.control_metrics.total_requests, 10_000);
    assert_eq!(outcome.treatment_metrics.total_requests, 10_000);
    assert_eq!(outcome.control_metrics.services, 150);
}

#[test]
fn split_assigns_half_the_services() {
    let (world, placement) = default_world();
    let treatment = doubled(&placement);
    let settings = settings(Design::Split, Noise::Independent, 5);
    let first = experiment::run(&world, &placement, &treatment, &settings, &|| true).unwrap();
    assert_eq!(first.treatment_metrics.services, 75);
    assert_eq!(first.control_metrics.services, 75);
    for service in 0..150 {
        assert_ne!(
            first.control.members[service],
            first.treatment.members[service]
        );
    }
    // The same seed gives the same assignment and draws.
    let second = experiment::run(&world, &placement, &treatment, &settings, &|| true).unwrap();
    assert_eq!(first.treatment.members, second.treatment.members);
    assert_eq!(
        first.treatment.sorted_latency_ms,
        second.treatment.sorted_latency_ms
    );
    assert_eq!(first.control.failed, second.control.failed);
}

#[test]
fn weighted_quantile_matches_pooled_quantile() {
    let data = ArmData {
        members: vec![true; 3],
        regions: vec![1; 3],
        requests: vec![2, 3, 1],
        latency_sum_ms: vec![0.0; 3],
        p95_latency_ms: vec![f64::NAN; 3],
        monthly_cost_usd: vec![0.0; 3],
        sorted_latency_ms: vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        sorted_service: vec![0, 1, 1, 0, 2, 1],
        failed: 0,
    };
    for weights in [[1, 1, 1], [2, 0, 1], [0, 3, 0], [1, 2, 3], [0, 0, 1]] {
        let mut pooled = Vec::new();
        for (value, &service) in data.sorted_latency_ms.iter().zip(&data.sorted_service) {
            for _ in 0..weights[service as usize] {
                pooled.push(*value);
            }
        }
        for q in [0.0, 0.3, 0.5, 0.95, 0.99, 1.0] {
            let expected = stats::quantile_sorted(&pooled, q);
            let found = experiment::weighted_quantile(&data, &weights, q);
            assert!(
                (found - expected).abs() < 1e-12,
                "weights {weights:?}, q {q}: {found} against {expected}"
            );
        }
    }
    assert!(experiment::weighted_quantile(&data, &[0, 0, 0], 0.5).is_nan());
}

#[test]
fn settings_out_of_range_are_rejected() {
    let (world, placement) = default_world();
    let cases = [
        (
            ExperimentSettings {
                requests: 1,
                ..settings(Design::Paired, Noise::Common, 1)
            },
            "--requests 1 is invalid",
        ),
        (
            ExperimentSettings {
                resamples: 2_000_000,
                ..settings(Design::Paired, Noise::Common, 1)
            },
            "--resamples 2000000 is invalid",
        ),
        (
            settings(Design::Split, Noise::Common, 1),
            "--noise common is invalid",
        ),
    ];
    for (settings, expected) in cases {
        let error = experiment::run(&world, &placement, &placement, &settings, &|| true)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    let stopped = experiment::run(
        &world,
        &placement,
        &placement,
        &settings(Design::Paired, Noise::Common, 1),
        &|| false,
    );
    assert_eq!(
        stopped.unwrap_err(),
        experiment::ExperimentError::Interrupted
    );
}

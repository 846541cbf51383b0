//! The optimizer on stored fleets: its program finds the enumerated optimum, beats the
//! baselines, and every plan it emits passes the checker; impossible settings are named.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use placewise::check::{self, WorldFleet};
use placewise::features::{self, FleetSummary};
use placewise::latency_model::{self, LatencyModel, TrainSettings};
use placewise::optimize::{allowed_regions, Market, OptimizeError, OptimizeSettings, Optimizer};
use rusqlite::{Connection, OpenFlags};

/// A stored fleet with its trained model, kept as text because a loaded LightGBM model
/// cannot be shared between test threads.
struct Fleet {
    summary: FleetSummary,
    world: WorldFleet,
    model_text: String,
}

impl Fleet {
    fn load(path: &Path) -> Fleet {
        let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the fleet opens");
        let (matrix, summary) = features::build(&connection).expect("the matrix builds");
        let settings = TrainSettings {
            folds: 0,
            ..TrainSettings::default()
        };
        let (model, _) = latency_model::train(&matrix, &settings, |_| true).expect("trains");
        let world = WorldFleet::load(&connection).expect("the world model loads");
        Fleet {
            summary,
            world,
            model_text: model.to_text().expect("the model saves"),
        }
    }

    fn model(&self) -> LatencyModel {
        LatencyModel::from_text(&self.model_text).expect("the model loads")
    }

    fn market(&self, rules: &[(String, Vec<String>)]) -> Result<Market, OptimizeError> {
        Ok(Market {
            names: self.world.names.clone(),
            usd_per_hour: self.world.usd_per_hour.clone(),
            transfer_usd_per_gb: self.world.transfer_usd_per_gb.clone(),
            call_response_kb: self
                .world
                .specs
                .iter()
                .map(|s| s.call_response_kb)
                .collect(),
            allowed: allowed_regions(rules, &self.world.names, &self.world.regions)?,
        })
    }
}

/// The default fleet, generated and trained once for the tests of this file.
fn default_fleet() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        Fleet::load(&common::generate(&directory, "optimize-fleet.db", &[]))
    })
}

fn relative_gap(objective: f64, bound: f64) -> f64 {
    (objective - bound) / objective.abs()
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn program_finds_the_enumerated_optimum() {
    let fleet = default_fleet();
    let model = fleet.model();
    let market = fleet.market(&[]).unwrap();
    let optimizer =
        Optimizer::new(&fleet.summary, &market, &model, OptimizeSettings::default()).unwrap();
    let (plan, report) = optimizer.optimal_plan().unwrap();
    let enumerated = optimizer.enumerated_plan().unwrap();
    assert_eq!(report.status, "optimal");
    assert_eq!(report.programs, 150);
    assert!(
        relative(plan.score.objective, enumerated.score.objective) <= 1e-6,
        "program {} against enumeration {}",
        plan.score.objective,
        enumerated.score.objective
    );
    // HiGHS's own objective is the plan's, and its bound proves it.
    assert!(relative(report.objective, plan.score.objective) <= 1e-6);
    assert!(report.bound <= report.objective * (1.0 + 1e-9));
    assert!(report.gap <= 1e-6, "gap {}", report.gap);
}

#[test]
fn plan_beats_every_baseline() {
    let fleet = default_fleet();
    let model = fleet.model();
    let market = fleet.market(&[]).unwrap();
    let settings = OptimizeSettings::default();
    let optimizer = Optimizer::new(&fleet.summary, &market, &model, settings.clone()).unwrap();
    let (plan, _) = optimizer.optimal_plan().unwrap();
    let random = optimizer.random_plan(42).unwrap();
    for (name, baseline) in [
        ("random", &random),
        ("heuristic", &optimizer.heuristic_plan().unwrap()),
        ("greedy", &optimizer.greedy_plan().unwrap()),
    ] {
        assert!(
            plan.score.objective < baseline.score.objective,
            "{name}: {} against the plan's {}",
            baseline.score.objective,
            plan.score.objective
        );
    }
    // Against the random control at the same redundancy floor of two regions: lower cost
    // and lower latency, predicted and in the world model.
    assert!(random.hosts.iter().all(|hosts| hosts.len() >= 2));
    assert!(plan.score.monthly_cost_usd < random.score.monthly_cost_usd);
    assert!(plan.score.weighted_latency_ms < random.score.weighted_latency_ms);
    let unconstrained = vec![None; market.allowed.len()];
    let plan_world = check::check(&fleet.world, &plan, &settings, &unconstrained).unwrap();
    let random_world = check::check(&fleet.world, &random, &settings, &unconstrained).unwrap();
    assert!(plan_world.monthly_cost_usd < random_world.monthly_cost_usd);
    assert!(plan_world.weighted_latency_ms < random_world.weighted_latency_ms);
}

/// A database name, its seed flags, the settings and the residency rules.
type Case = (
    &'static str,
    &'static [&'static str],
    OptimizeSettings,
    Vec<(String, Vec<String>)>,
);

/// Small fleets under varied settings: every plan the optimizer emits passes the checker,
/// and the program never loses to enumeration.
#[test]
fn emitted_plans_pass_the_checker() {
    let directory = tempfile::tempdir().unwrap();
    let cases: [Case; 4] = [
        (
            "a.db",
            &["--seed", "3"],
            OptimizeSettings::default(),
            vec![],
        ),
        (
            "b.db",
            &["--seed", "4"],
            OptimizeSettings {
                min_replicas: 1,
                max_replicas: 2,
                lambda_usd_per_ms: 100.0,
                ..OptimizeSettings::default()
            },
            vec![],
        ),
        (
            "c.db",
            &["--seed", "5"],
            OptimizeSettings {
                slo_ms: Some(400.0),
                lambda_usd_per_ms: 20_000.0,
                ..OptimizeSettings::default()
            },
            vec![(
                "auth-service".to_string(),
                vec!["eu-west-1".to_string(), "us-east-1".to_string()],
            )],
        ),
        (
            "d.db",
            &["--seed", "6"],
            OptimizeSettings {
                min_replicas: 3,
                target_utilization: 0.9,
                ..OptimizeSettings::default()
            },
            vec![],
        ),
    ];
    for (name, seed, settings, rules) in cases {
        // The seed is a global flag, so it goes before the command.
        let path = directory.path().join(name);
        let mut args = vec!["--db", path.to_str().unwrap()];
        args.extend_from_slice(seed);
        args.extend_from_slice(&["generate", "--services", "40", "--days", "20"]);
        let output = common::placewise(&args);
        assert!(output.status.success(), "{}", common::stderr(&output));
        let fleet = Fleet::load(&path);
        let model = fleet.model();
        let market = fleet.market(&rules).unwrap();
        let optimizer = Optimizer::new(&fleet.summary, &market, &model, settings.clone()).unwrap();
        let (plan, _) = optimizer.optimal_plan().unwrap();
        let greedy = optimizer.greedy_plan().unwrap();
        for (kind, candidate) in [("optimizer", &plan), ("greedy", &greedy)] {
            if let Err(violations) =
                check::check(&fleet.world, candidate, &settings, &market.allowed)
            {
                panic!("{name} {kind}: {violations:?}");
            }
        }
        let enumerated = optimizer.enumerated_plan().unwrap();
        assert!(
            plan.score.objective <= enumerated.score.objective * (1.0 + 1e-6),
            "{name}: program {} against enumeration {}",
            plan.score.objective,
            enumerated.score.objective
        );
    }
}

#[test]
fn checker_finds_broken_plans() {
    let fleet = default_fleet();
    let model = fleet.model();
    let market = fleet.market(&[]).unwrap();
    let settings = OptimizeSettings::default();
    let optimizer = Optimizer::new(&fleet.summary, &market, &model, settings.clone()).unwrap();
    let (plan, _) = optimizer.optimal_plan().unwrap();
    let unconstrained = vec![None; market.allowed.len()];

    let mut single = plan.clone();
    single.hosts[7].truncate(1);
    let violations = check::check(&fleet.world, &single, &settings, &unconstrained).unwrap_err();
    assert_eq!(violations[0].service, fleet.world.names[7]);
    assert!(
        violations[0].constraint.contains("2 to 5 replicas"),
        "{violations:?}"
    );

    let mut empty = plan.clone();
    empty.hosts[3][0].instances = 0;
    let violations = check::check(&fleet.world, &empty, &settings, &unconstrained).unwrap_err();
    assert!(
        violations[0].constraint.contains("one instance"),
        "{violations:?}"
    );

    let region = plan.hosts[0][0].region;
    let mut elsewhere = vec![None; market.allowed.len()];
    let mut mask = vec![true; fleet.world.regions.len()];
    mask[region] = false;
    elsewhere[0] = Some(mask);
    let violations = check::check(&fleet.world, &plan, &settings, &elsewhere).unwrap_err();
    assert!(
        violations[0].constraint.contains("allowed regions"),
        "{violations:?}"
    );

    let crowded = OptimizeSettings {
        capacity_vcpus: Some(1.0),
        ..settings.clone()
    };
    let violations = check::check(&fleet.world, &plan, &crowded, &unconstrained).unwrap_err();
    assert!(
        violations[0].constraint.contains("--capacity-vcpus 1"),
        "{violations:?}"
    );
}

#[test]
fn impossible_settings_name_the_service_and_constraint() {
    let fleet = default_fleet();
    let model = fleet.model();

    let market = fleet
        .market(&[("auth-service-1".to_string(), vec!["eu-west-1".to_string()])])
        .unwrap();
    let optimizer =
        Optimizer::new(&fleet.summary, &market, &model, OptimizeSettings::default()).unwrap();
    let error = optimizer.optimal_plan().unwrap_err().to_string();
    assert!(error.contains("auth-service-1"), "{error}");
    assert!(error.contains("--min-replicas 2"), "{error}");
    assert!(error.contains("eu-west-1"), "{error}");

    let market = fleet.market(&[]).unwrap();
    let tight = OptimizeSettings {
        slo_ms: Some(5.0),
        ..OptimizeSettings::default()
    };
    let optimizer = Optimizer::new(&fleet.summary, &market, &model, tight).unwrap();
    let error = optimizer.optimal_plan().unwrap_err();
    assert!(
        matches!(error, OptimizeError::Infeasible { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("--slo-ms 5"), "{error}");

    let crowded = OptimizeSettings {
        capacity_vcpus: Some(10.0),
        ..OptimizeSettings::default()
    };
    let optimizer = Optimizer::new(&fleet.summary, &market, &model, crowded).unwrap();
    let error = optimizer.optimal_plan().unwrap_err();
    assert!(
        matches!(error, OptimizeError::FleetInfeasible { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("--capacity-vcpus 10"), "{error}");

    let error = fleet
        .market(&[("no-such-service".to_string(), vec!["eu-west-1".to_string()])])
        .unwrap_err();
    assert!(error.to_string().contains("no-such-service"), "{error}");
    let error = fleet
        .market(&[("auth-service".to_string(), vec!["mars-1".to_string()])])
        .unwrap_err();
    assert!(error.to_string().contains("mars-1"), "{error}");
}

#[test]
fn set_search_finds_the_enumerated_optimum_over_many_regions() {
    let directory = tempfile::tempdir().unwrap();
    let regions = "us-east-1,us-west-2,eu-west-1,eu-central-1,ap-south-1,ap-northeast-1,\
                   ap-southeast-2,eu-west-2,ca-central-1,me-south-1,af-south-1,eu-north-1";
    let path = common::generate(
        directory.path(),
        "twelve.db",
        &["--services", "24", "--days", "14", "--regions", regions],
    );
    let fleet = Fleet::load(&path);
    let model = fleet.model();
    let residency = [(
        "auth-service".to_string(),
        vec![
            "eu-west-1".to_string(),
            "eu-central-1".to_string(),
            "eu-north-1".to_string(),
        ],
    )];
    let market = fleet.market(&residency).unwrap();
    let variants = [
        OptimizeSettings::default(),
        OptimizeSettings {
            min_replicas: 1,
            max_replicas: 3,
            ..OptimizeSettings::default()
        },
        OptimizeSettings {
            min_replicas: 3,
            max_replicas: 6,
            lambda_usd_per_ms: 50_000.0,
            ..OptimizeSettings::default()
        },
    ];
    for settings in variants {
        let optimizer = Optimizer::new(&fleet.summary, &market, &model, settings.clone()).unwrap();
        let searched = optimizer.searched_plan().unwrap();
        let enumerated = optimizer.enumerated_plan().unwrap();
        assert!(
            relative(searched.score.objective, enumerated.score.objective) <= 1e-9,
            "{settings:?}: search {} against enumeration {}",
            searched.score.objective,
            enumerated.score.objective
        );
        let unconstrained = market.allowed.clone();
        check::check(&fleet.world, &searched, &settings, &unconstrained).unwrap();
    }
}

#[test]
fn capacity_couples_the_fleet_into_one_program() {
    let directory = tempfile::tempdir().unwrap();
    let path = common::generate(
        directory.path(),
        "small.db",
        &["--services", "30", "--days", "20"],
    );
    let fleet = Fleet::load(&path);
    let model = fleet.model();
    let market = fleet.market(&[]).unwrap();
    let free =
        Optimizer::new(&fleet.summary, &market, &model, OptimizeSettings::default()).unwrap();
    let (unlimited, _) = free.optimal_plan().unwrap();
    // The busiest region of the free plan, squeezed to 80%, 65% and 50% of what it used.
    let regions = fleet.world.regions.len();
    let mut used = vec![0.0; regions];
    for (service, hosts) in unlimited.hosts.iter().enumerate() {
        for host in hosts {
            used[host.region] += f64::from(host.instances) * fleet.world.specs[service].cores;
        }
    }
    let busiest = used.iter().copied().fold(0.0, f64::max);
    let mut solved = 0;
    for squeeze in [0.8, 0.65, 0.5] {
        let settings = OptimizeSettings {
            capacity_vcpus: Some((squeeze * busiest).floor()),
            mip_gap: 0.01,
            time_limit_seconds: 30.0,
            ..OptimizeSettings::default()
        };
        let optimizer = Optimizer::new(&fleet.summary, &market, &model, settings.clone()).unwrap();
        let (plan, report) = match optimizer.first_capacity_round() {
            Ok(solved) => solved,
            Err(error @ OptimizeError::FleetInfeasible { .. }) => {
                // An infeasible verdict must hold over every region set too.
                assert!(
                    matches!(
                        optimizer.enumerated_fleet_plan(),
                        Err(OptimizeError::FleetInfeasible { .. })
                    ),
                    "squeeze {squeeze}: {error} but every set together has a plan"
                );
                continue;
            }
            Err(error) => panic!("squeeze {squeeze}: {error}"),
        };
        solved += 1;
        assert_eq!(report.decomposition, "fleet");
        assert_eq!(report.method, "column generation");
        assert_eq!(report.status, "optimal", "{report:?}");
        assert!(report.gap <= 0.01 + 1e-9, "gap {}", report.gap);
        let unconstrained = vec![None; market.allowed.len()];
        check::check(&fleet.world, &plan, &settings, &unconstrained).unwrap();
        // HiGHS over every region set of every service gives the true optimum: the bound
        // must not pass it, and the plan must come within the gap of it.
        let reference = optimizer.enumerated_fleet_plan().unwrap();
        check::check(&fleet.world, &reference, &settings, &unconstrained).unwrap();
        let optimum = reference.score.objective;
        assert!(
            report.bound <= optimum * (1.0 + 1e-9),
            "squeeze {squeeze}: bound {} above the optimum {optimum}",
            report.bound
        );
        assert!(plan.score.objective >= optimum * (1.0 - 1e-9));
        assert!(
            plan.score.objective <= optimum * 1.01,
            "squeeze {squeeze}: plan {} against the optimum {optimum}",
            plan.score.objective
        );
        // Less room cannot make the plan cheaper than the plan without a limit.
        assert!(optimum >= unlimited.score.objective * (1.0 - 1e-9));

        // The rounds price every call at the callee's host in the plan itself, and keep
        // the cheapest plan so priced, which the first round's plan is a candidate for.
        let (rounds_plan, rounds_report) = optimizer.optimal_plan().unwrap();
        let search = rounds_report.capacity_search.clone().unwrap();
        assert!((1..=placewise::optimize::DEPENDENCY_ROUNDS).contains(&search.rounds));
        assert_eq!(rounds_report.objective, rounds_plan.score.objective);
        // The plan kept is the cheaper of the two ways, each priced with its own hosts.
        let cheapest = [search.callees_first_objective, search.rounds_objective]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
        assert_eq!(rounds_plan.score.objective, cheapest, "{search:?}");
        assert!(
            relative_gap(search.program_objective, rounds_report.bound) <= 0.05,
            "{rounds_report:?}"
        );
        let repriced = optimizer.priced_plan(&rounds_plan.region_sets()).unwrap();
        assert_eq!(repriced.score.objective, rounds_plan.score.objective);
        let first_repriced = optimizer.priced_plan(&plan.region_sets()).unwrap();
        assert!(
            rounds_plan.score.objective <= first_repriced.score.objective,
            "squeeze {squeeze}: rounds {} against the first round's plan {}",
            rounds_plan.score.objective,
            first_repriced.score.objective
        );
        // Priced with its own callee hosts, the plan's cost is what the world model charges
        // for it, to within the difference between the history and its last week.
        let world = check::check(&fleet.world, &rounds_plan, &settings, &unconstrained).unwrap();
        let predicted = rounds_plan.score.monthly_cost_usd;
        assert!(
            relative(predicted, world.monthly_cost_usd) <= 0.05,
            "squeeze {squeeze}: predicted {predicted} USD against {} in the world model",
            world.monthly_cost_usd
        );
    }
    assert!(solved >= 2, "only {solved} of the capacities had a plan");
}

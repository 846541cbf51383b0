//! `placewise optimize`: solves the placement plan with the stored latency model, builds
//! the three baselines, checks every plan in the world model, and stores and prints them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;
use tracing::info;

use crate::check::{self, WorldFleet, WorldScore};
use crate::cli::{Cli, OptimizeArgs, PlanArgs};
use crate::commands::write_stdout;
use crate::features::{self, FleetSummary, FEATURE_NAMES};
use crate::interrupt;
use crate::latency_model::LatencyModel;
use crate::optimize::{
    allowed_regions, Market, OptimizeError, OptimizeSettings, Optimizer, Plan, SolverReport,
};
use crate::output;
use crate::store::{self, RunRecord};
use crate::strategy::{self, ServiceAttributes, StrategyModel, StrategyReport};

/// Folds of the strategy classifier's cross-validation.
pub const STRATEGY_FOLDS: usize = 5;

/// File name of the plan within the output directory.
pub const PLAN_FILE: &str = "plan.csv";

#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub objective: f64,
    pub monthly_cost_usd: f64,
    pub weighted_latency_ms: f64,
    /// Service-region pairs hosted.
    pub placements: usize,
    pub instances: u64,
    /// The plan measured in the world model over the last week of telemetry.
    pub world: WorldScore,
}

#[derive(Debug, Clone, Serialize)]
pub struct OptimizeOutcome {
    pub run_id: i64,
    pub model_id: i64,
    pub settings: OptimizeSettings,
    pub plans: serde_json::Map<String, serde_json::Value>,
    pub solver: SolverReport,
    /// The one-or-several classifier, trained on plans solved with a replica floor of one.
    pub strategy_classifier: StrategyReport,
    pub plan_path: PathBuf,
    /// Wall times in seconds; the only part that differs between identical runs.
    pub timings: Timings,
    #[serde(skip)]
    pub summaries: Vec<(String, PlanSummary)>,
    #[serde(skip)]
    pub optimizer_plan: Option<Plan>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub features_seconds: f64,
    pub solve_seconds: f64,
    pub baselines_seconds: f64,
    pub check_seconds: f64,
    pub classifier_seconds: f64,
}

pub fn run(cli: &Cli, args: &OptimizeArgs) -> Result<()> {
    let outcome = optimize_and_store(cli, &args.plan, &args.out, "optimize", None, None)?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&outcome)?;
        text.push('\n');
        write_stdout(&text)?;
    } else {
        write_stdout(&summary_table(&outcome))?;
    }
    Ok(())
}

/// Converts the command line's settings, rejecting out-of-range values with the value.
pub fn settings(args: &PlanArgs) -> Result<OptimizeSettings, OptimizeError> {
    let count = |setting: &'static str, value: i64| {
        usize::try_from(value)
            .ok()
            .filter(|&v| v >= 1)
            .ok_or(OptimizeError::InvalidSetting {
                setting,
                value: value.to_string(),
                rule: "use a whole number, 1 or more",
            })
    };
    Ok(OptimizeSettings {
        lambda_usd_per_ms: args.lambda,
        target_utilization: args.target_utilization,
        min_replicas: count("min-replicas", args.min_replicas)?,
        max_replicas: count("max-replicas", args.max_replicas)?,
        slo_ms: args.slo_ms,
        capacity_vcpus: args.capacity_vcpus,
        time_limit_seconds: args.time_limit,
        mip_gap: args.mip_gap,
        solver: args.solver,
    })
}

/// Parses `--allow NAME=REGION+REGION` rules.
pub fn allow_rules(rules: &[String]) -> Result<Vec<(String, Vec<String>)>, OptimizeError> {
    rules
        .iter()
        .map(|rule| {
            let (name, regions) = rule.split_once('=').ok_or(OptimizeError::InvalidSetting {
                setting: "allow",
                value: rule.clone(),
                rule:
                    "write NAME=REGION+REGION, for example payment-service=eu-west-1+eu-central-1",
            })?;
            let regions: Vec<String> = regions
                .split('+')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
            if name.is_empty() || regions.is_empty() {
                return Err(OptimizeError::InvalidSetting {
                    setting: "allow",
                    value: rule.clone(),
                    rule: "name a service or template and at least one region",
                });
            }
            Ok((name.to_string(), regions))
        })
        .collect()
}

/// Loads the latest latency model of the database.
fn latest_model(connection: &Connection) -> Result<(i64, LatencyModel)> {
    let row: Option<(i64, String)> = connection
        .query_row(
            "SELECT model_id, model_text FROM models WHERE kind = 'latency'
             ORDER BY model_id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            rusqlite::Error::SqliteFailure(_, Some(ref message))
                if message.contains("no such table") =>
            {
                Ok(None)
            }
            other => Err(other),
        })?;
    let Some((model_id, text)) = row else {
        return Err(OptimizeError::MissingModel {
            what: "latency model",
            command: "train",
        }
        .into());
    };
    let model = LatencyModel::from_text(&text)?;
    if model.feature_names() != FEATURE_NAMES {
        return Err(OptimizeError::StaleModel {
            what: "latency model",
            command: "train",
        }
        .into());
    }
    Ok((model_id, model))
}

/// Solves and stores the plan. `read_summary` is the telemetry summary when the caller has
/// just read it from the same database; without it the summary is read here.
pub fn optimize_and_store(
    cli: &Cli,
    args: &PlanArgs,
    out: &Path,
    command: &str,
    read_summary: Option<FleetSummary>,
    read_world: Option<WorldFleet>,
) -> Result<OptimizeOutcome> {
    let settings = settings(args)?;
    let rules = allow_rules(&args.allow)?;
    let mut timings = Timings::default();
    drop(store::open_existing(
        &cli.db,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?);
    output::ensure_directory(out)?;
    output::check_file(&out.join(PLAN_FILE))?;
    let target = store::Target::acquire(&cli.db)?;

    let started = Instant::now();
    let connection = store::open_existing(
        &cli.db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let (model_id, model) = latest_model(&connection)?;
    let summary = match read_summary {
        Some(summary) => summary,
        None => {
            features::build(&connection)
                .with_context(|| format!("cannot read the telemetry of `{}`", cli.db.display()))?
                .1
        }
    };
    let fleet = match read_world {
        Some(world) => world,
        None => WorldFleet::load(&connection)
            .with_context(|| format!("cannot read the world model of `{}`", cli.db.display()))?,
    };
    drop(connection);
    if fleet.service_ids
        != summary
            .services
            .iter()
            .map(|s| s.service_id)
            .collect::<Vec<_>>()
    {
        bail!("the services of the telemetry and of the world model differ");
    }
    let market = Market {
        names: fleet.names.clone(),
        usd_per_hour: fleet.usd_per_hour.clone(),
        transfer_usd_per_gb: fleet.transfer_usd_per_gb.clone(),
        call_response_kb: fleet.specs.iter().map(|s| s.call_response_kb).collect(),
        allowed: allowed_regions(&rules, &fleet.names, &fleet.regions)?,
    };
    timings.features_seconds = started.elapsed().as_secs_f64();

    let optimizer = Optimizer::new(&summary, &market, &model, settings.clone())?;
    let started = Instant::now();
    info!(
        services = summary.services.len(),
        regions = summary.regions.len(),
        decomposition = if settings.capacity_vcpus.is_some() {
            "fleet"
        } else {
            "per service"
        },
        "solving the placement program"
    );
    let (optimal, solver) = optimizer.optimal_plan()?;
    timings.solve_seconds = started.elapsed().as_secs_f64();
    info!(
        status = solver.status,
        objective = format!("{:.2}", solver.objective),
        gap = format!("{:.2e}", solver.gap),
        programs = solver.programs,
        "solved"
    );

    let started = Instant::now();
    let plans = vec![
        ("optimizer".to_string(), optimal),
        ("random".to_string(), optimizer.random_plan(cli.seed)?),
        ("heuristic".to_string(), optimizer.heuristic_plan()?),
        ("greedy".to_string(), optimizer.greedy_plan()?),
    ];
    timings.baselines_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut summaries = Vec::new();
    for (kind, plan) in &plans {
        // The random and heuristic baselines follow the original study's rules, not the
        // settings, and the greedy plan ignores capacity. Each is held to what it keeps.
        let held = match kind.as_str() {
            "optimizer" => settings.clone(),
            "greedy" => OptimizeSettings {
                capacity_vcpus: None,
                ..settings.clone()
            },
            _ => OptimizeSettings {
                min_replicas: 1,
                max_replicas: fleet.regions.len(),
                slo_ms: None,
                capacity_vcpus: None,
                ..settings.clone()
            },
        };
        let allowed = if kind == "optimizer" || kind == "greedy" {
            market.allowed.clone()
        } else {
            vec![None; market.allowed.len()]
        };
        let world = check::check(&fleet, plan, &held, &allowed).map_err(|violations| {
            let first = &violations[0];
            anyhow::anyhow!(
                "the {kind} plan fails the checker: service `{}` breaks {} ({}), and {} more",
                first.service,
                first.constraint,
                first.detail,
                violations.len() - 1
            )
        })?;
        summaries.push((kind.clone(), summarize(plan, world)));
    }
    timings.check_seconds = started.elapsed().as_secs_f64();

    // Labels for the strategy classifier: the plan with a replica floor of one, so that
    // single-region plans can occur.
    let started = Instant::now();
    let floor_one = Optimizer::new(
        &summary,
        &market,
        &model,
        OptimizeSettings {
            min_replicas: 1,
            capacity_vcpus: None,
            ..settings.clone()
        },
    )?;
    // The set search finds the same optimum as the per-service program, in far less time
    // when there are many regions.
    let labels_plan = floor_one.searched_plan()?;
    let attributes: Vec<ServiceAttributes> = summary
        .services
        .iter()
        .map(|s| ServiceAttributes {
            memory_mb: s.memory_mb,
            cores: s.cores,
            requests_per_second: s.mean_demand.iter().sum(),
            latency_critical: s.latency_critical,
        })
        .collect();
    let replicas: Vec<usize> = labels_plan.hosts.iter().map(Vec::len).collect();
    let strategy_report =
        strategy::cross_validate(&attributes, &replicas, STRATEGY_FOLDS, cli.seed)?;
    let strategy_model = StrategyModel::fit(&attributes, &replicas, cli.seed)?;
    timings.classifier_seconds = started.elapsed().as_secs_f64();

    let plan_path = out.join(PLAN_FILE);
    let optimal = &plans[0].1;
    let staged = output::stage(&plan_path, |file| write_plan_csv(file, optimal, &fleet))?;
    if interrupt::requested() {
        bail!(OptimizeError::Interrupted);
    }
    let mut connection = store::open_for_results(&target)?;
    let run = RunRecord {
        command: command.to_string(),
        seed: cli.seed,
        parameters: serde_json::json!({
            "latency_model_id": model_id,
            "settings": settings,
            "allow": args.allow,
            "plan_path": plan_path,
        }),
        timings: vec![
            ("features".to_string(), timings.features_seconds),
            ("solve".to_string(), timings.solve_seconds),
            ("baselines".to_string(), timings.baselines_seconds),
            ("check".to_string(), timings.check_seconds),
            ("classifier".to_string(), timings.classifier_seconds),
        ],
        record_timings: cli.record_timings,
    };
    let strategy_text = strategy_model.to_text()?;
    let run_id = store_plans(
        &mut connection,
        &run,
        &plans,
        &summaries,
        &solver,
        &fleet,
        (&strategy_text, &strategy_report),
    )
    .with_context(|| format!("cannot store the plans in `{}`", cli.db.display()))?;
    staged.publish()?;

    let mut json_plans = serde_json::Map::new();
    for (kind, summary) in &summaries {
        json_plans.insert(kind.clone(), serde_json::to_value(summary)?);
    }
    Ok(OptimizeOutcome {
        run_id,
        model_id,
        settings,
        plans: json_plans,
        solver,
        strategy_classifier: strategy_report,
        plan_path,
        timings,
        summaries,
        optimizer_plan: Some(plans.into_iter().next().expect("four plans").1),
    })
}

fn summarize(plan: &Plan, world: WorldScore) -> PlanSummary {
    PlanSummary {
        objective: plan.score.objective,
        monthly_cost_usd: plan.score.monthly_cost_usd,
        weighted_latency_ms: plan.score.weighted_latency_ms,
        placements: plan.hosts.iter().map(Vec::len).sum(),
        instances: plan
            .hosts
            .iter()
            .flatten()
            .map(|h| u64::from(h.instances))
            .sum(),
        world,
    }
}

fn write_plan_csv(
    out: &mut impl std::io::Write,
    plan: &Plan,
    fleet: &WorldFleet,
) -> std::io::Result<()> {
    writeln!(
        out,
        "service_id,service_name,region,instances,routed_share,predicted_latency_ms,monthly_cost_usd"
    )?;
    for (service, hosts) in plan.hosts.iter().enumerate() {
        for host in hosts {
            writeln!(
                out,
                "{},{},{},{},{:.6},{:.3},{:.2}",
                fleet.service_ids[service],
                fleet.names[service],
                fleet.regions[host.region],
                host.instances,
                host.routed_share,
                host.predicted_latency_ms,
                host.monthly_cost_usd
            )?;
        }
    }
    Ok(())
}

fn store_plans(
    connection: &mut Connection,
    run: &RunRecord,
    plans: &[(String, Plan)],
    summaries: &[(String, PlanSummary)],
    solver: &SolverReport,
    fleet: &WorldFleet,
    (strategy_text, strategy_report): (&(String, String), &StrategyReport),
) -> rusqlite::Result<i64> {
    let transaction = connection.transaction()?;
    let run_id = store::record_run(&transaction, run)?;
    transaction.execute(
        "INSERT INTO models (run_id, kind, feature_names, hyperparameters, metrics, model_text)
         VALUES (?1, 'strategy', ?2, ?3, ?4, ?5)",
        params![
            run_id,
            serde_json::to_string(&strategy::STRATEGY_FEATURES).expect("names serialize"),
            serde_json::json!({"boosting": "rf", "folds": STRATEGY_FOLDS}).to_string(),
            serde_json::to_string(strategy_report).expect("reports serialize"),
            serde_json::json!({"multi_region": strategy_text.0, "replicas": strategy_text.1})
                .to_string(),
        ],
    )?;
    for ((kind, plan), (_, summary)) in plans.iter().zip(summaries) {
        transaction.execute(
            "INSERT INTO plans (run_id, kind, objective, monthly_cost_usd, weighted_latency_ms,
                                world, solver)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                run_id,
                kind,
                summary.objective,
                summary.monthly_cost_usd,
                summary.weighted_latency_ms,
                serde_json::to_string(&summary.world).expect("scores serialize"),
                (kind == "optimizer")
                    .then(|| serde_json::to_string(solver).expect("reports serialize")),
            ],
        )?;
        let plan_id = transaction.last_insert_rowid();
        let mut statement =
            transaction.prepare("INSERT INTO plan_hosts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
        for (service, hosts) in plan.hosts.iter().enumerate() {
            for host in hosts {
                statement.execute(params![
                    plan_id,
                    fleet.service_ids[service],
                    fleet.regions[host.region],
                    host.instances,
                    host.routed_share,
                    host.predicted_latency_ms,
                    host.monthly_cost_usd,
                ])?;
            }
        }
    }
    transaction.commit()?;
    Ok(run_id)
}

/// Formats the plan beside the baselines, predicted and in the world model.
pub fn summary_table(outcome: &OptimizeOutcome) -> String {
    let solver = &outcome.solver;
    let mut out = match &solver.capacity_search {
        None => format!(
            "placement plan: {} {} ({}, {} program(s)), objective {:.2}, bound {:.2}, gap {:.2e}\n",
            solver.method,
            solver.status,
            solver.decomposition,
            solver.programs,
            solver.objective,
            solver.bound,
            solver.gap
        ),
        Some(search) => {
            let either = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.2}"));
            let rounds = format!(
                "{} rounds, {}",
                search.rounds,
                if search.rounds_settled {
                    "settled"
                } else {
                    "not settled"
                }
            );
            format!(
                "placement plan: {} under capacity, {} kept (callees first {}, in rounds {} over {rounds}):\n  \
                 {}: objective {:.2}, bound {:.2}, gap {:.2e} ({} program(s) in all)\n  \
                 the bound is of the program that priced the plan at {:.2}\n",
                solver.method,
                search.chosen,
                either(search.callees_first_objective),
                either(search.rounds_objective),
                solver.status,
                solver.objective,
                solver.bound,
                solver.gap,
                solver.programs,
                search.program_objective,
            )
        }
    };
    out.push_str(&format!(
        "  {:<10} {:>12} {:>12} {:>10} {:>7} {:>12} {:>10} {:>8}\n",
        "plan",
        "objective",
        "cost USD/mo",
        "latency ms",
        "hosts",
        "world USD/mo",
        "world ms",
        "errors"
    ));
    for (kind, summary) in &outcome.summaries {
        out.push_str(&format!(
            "  {:<10} {:>12.0} {:>12.0} {:>10.2} {:>7} {:>12.0} {:>10.2} {:>7.3}%\n",
            kind,
            summary.objective,
            summary.monthly_cost_usd,
            summary.weighted_latency_ms,
            summary.placements,
            summary.world.monthly_cost_usd,
            summary.world.weighted_latency_ms,
            100.0 * summary.world.error_rate
        ));
    }
    if let Some((_, optimizer)) = outcome
        .summaries
        .iter()
        .find(|(kind, _)| kind == "optimizer")
    {
        if let Some(misses) = optimizer.world.slo_misses {
            out.push_str(&format!(
                "  SLO {} ms, held on predicted latency: in the world model {} of {} critical service origins miss it{}\n",
                misses.slo_ms,
                misses.missed,
                misses.origins,
                misses
                    .worst_ms
                    .map_or(String::new(), |worst| format!(", the worst at {worst:.1} ms"))
            ));
        }
    }
    let report = &outcome.strategy_classifier;
    out.push_str(&format!(
        "strategy classifier (random forest, {}-fold): one region or several, from memory, cores, requests and criticality\n",
        report.folds
    ));
    out.push_str(&format!(
        "  labels: {} single-region, {} multi-region (plans with a replica floor of 1)\n",
        report.single_region, report.multi_region
    ));
    out.push_str(&format!(
        "  accuracy {:.3} (majority class {:.3}), precision {:.3}, recall {:.3}; replica count accuracy {:.3} (majority {:.3})\n",
        report.accuracy,
        report.majority_accuracy,
        report.precision,
        report.recall,
        report.replica_accuracy,
        report.replica_majority_accuracy
    ));
    out.push_str(&format!(
        "  confusion [actual single: {} single, {} multi] [actual multi: {} single, {} multi]\n",
        report.confusion[0][0],
        report.confusion[0][1],
        report.confusion[1][0],
        report.confusion[1][1]
    ));
    out.push_str(&format!(
        "  lambda {} USD/month per ms; plan written to {}\n",
        outcome.settings.lambda_usd_per_ms,
        outcome.plan_path.display()
    ));
    out
}

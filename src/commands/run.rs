//! `placewise run`: every stage of the pipeline in order (generate, train, optimize,
//! experiment), each recording its inputs in `runs`, then a closing summary.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::ValueEnum;

use crate::catalog::Catalog;
use crate::check::WorldFleet;
use crate::cli::{Cli, RunArgs};
use crate::commands::experiment::ExperimentReport;
use crate::commands::optimize::OptimizeOutcome;
use crate::commands::train::TrainOutcome;
use crate::commands::{experiment, generate, optimize, train, write_stdout};
use crate::generate::{Fleet, FleetConfig};
use crate::latency_model;
use crate::optimize::allowed_regions;
use crate::optimize::OptimizeError;
use crate::output;
use crate::plan_file;
use crate::store;
use crate::strategy;

pub fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    let settings = &args.generate;
    check_before_work(cli, args)
        .with_context(|| format!("run did not start; `{}` is as it was", cli.db.display()))?;
    let rules = optimize::allow_rules(&args.plan.allow)?;
    // Held to the end, so that no other writer replaces the fleet between the stages: the
    // later stages work on the fleet in memory and store beside it.
    let _writer = store::Target::acquire(&cli.db)?;
    let run_started = Instant::now();
    let mut seconds = Vec::new();

    eprintln!(
        "[1/4] generate: {} services, {} days, regions {}",
        settings.services, settings.days, settings.regions
    );
    let started = Instant::now();
    // The residency rules name services, which the fleet in memory is checked against
    // before its store begins.
    let mut generated = generate::generate_in_background(cli, settings, "run", |fleet| {
        check_fleet(args, &rules, fleet)
    })
    .with_context(|| {
        format!(
            "run stopped before the fleet was stored; `{}` is as it was",
            cli.db.display()
        )
    })?;
    seconds.push(("generate", started.elapsed().as_secs_f64()));

    // The fleet is stored on another thread while the model trains on it in memory. The
    // model waits for that store only before it is stored itself.
    eprintln!("[2/4] train: latency model, while the fleet is stored");
    let started = Instant::now();
    let fleet = generated.fleet.clone();
    let trained = train::train_on_fleet(cli, &args.model, &fleet, "run", || {
        generated.wait_for_store().map(|_| ())
    });
    let trained = match trained {
        Ok(trained) => trained,
        // Whatever stopped the training, the store finishes or fails before the run
        // reports, so no partial file is left behind and the message states what is stored.
        Err(error) => {
            let stored = match generated.wait_for_store() {
                Ok(_) => true,
                Err(store_error) => {
                    // Only the training's error is returned, so the store's is logged.
                    tracing::warn!(
                        error = format!("{store_error:#}"),
                        "the fleet was not stored"
                    );
                    false
                }
            };
            return Err(if stored {
                error.context(stopped_after(cli, &["generate"]))
            } else {
                error.context(format!(
                    "run stopped before the fleet was stored; `{}` is as it was",
                    cli.db.display()
                ))
            });
        }
    };
    let stored = generated.wait_for_store()?;
    seconds.push(("train and store", started.elapsed().as_secs_f64()));
    let mut out = generate::summary_table(cli, stored);
    out.push_str(&train::metrics_table(&trained.latency_model));

    eprintln!("[3/4] optimize: placement plan and baselines");
    let started = Instant::now();
    // The later stages take the telemetry summary and the world model from memory: the
    // same figures, bit for bit, that they would read from the database just written.
    let world = WorldFleet::from_fleet(&fleet)
        .with_context(|| stopped_after(cli, &["generate", "train"]))?;
    drop(fleet);
    let optimized = optimize::optimize_and_store(
        cli,
        &args.plan,
        &args.model.out,
        "run",
        Some(trained.fleet_summary.clone()),
        Some(world.clone()),
    )
    .with_context(|| stopped_after(cli, &["generate", "train"]))?;
    seconds.push(("optimize", started.elapsed().as_secs_f64()));
    out.push_str(&optimize::summary_table(&optimized));

    // The design as the command line spells it.
    let design = args.experiment.design.to_possible_value();
    eprintln!(
        "[4/4] experiment: {} against {}, {} design",
        args.experiment.treatment,
        args.experiment.control,
        design.as_ref().map_or("", |value| value.get_name())
    );
    let started = Instant::now();
    let report = experiment::experiment_and_store(
        cli,
        &args.experiment,
        &args.model.out,
        "run",
        Some(world),
    )
    .with_context(|| stopped_after(cli, &["generate", "train", "optimize"]))?;
    seconds.push(("experiment", started.elapsed().as_secs_f64()));
    out.push_str(&experiment::summary_table(&report));

    let total = run_started.elapsed().as_secs_f64();
    out.push_str(&closing_summary(
        &trained, &optimized, &report, &seconds, total,
    ));
    write_stdout(&out)?;
    Ok(())
}

/// Rejects, before any work, what would stop a later stage. That is the fleet's size, every
/// stage's settings, a region without a price, replica bounds the regions cannot meet, and
/// a fleet too small to split, cross-validate or classify. So are residency rules with
/// fewer regions than the replica floor, and output files that cannot be written.
fn check_before_work(cli: &Cli, args: &RunArgs) -> Result<()> {
    let regions = Catalog::embedded().select(&args.generate.regions)?;
    FleetConfig {
        services: args.generate.services,
        days: args.generate.days,
        regions: regions.clone(),
        seed: cli.seed,
    }
    .validate()?;
    let train_settings = train::settings(&args.model, cli.seed)?;
    let plan_settings = optimize::settings(&args.plan)?;
    experiment::settings(&args.experiment, cli.seed)?;
    // The optimizer prices every region.
    regions.instance_prices()?;
    plan_settings.validate(regions.len())?;
    for (name, codes) in optimize::allow_rules(&args.plan.allow)? {
        if codes.len() < plan_settings.min_replicas {
            return Err(OptimizeError::Infeasible {
                service: name,
                constraint: format!("--min-replicas {}", plan_settings.min_replicas),
                reason: format!(
                    "--allow gives it only {} region(s): {}",
                    codes.len(),
                    codes.join(", ")
                ),
            }
            .into());
        }
    }

    // Every generated service has a placement history, so the split and the folds are
    // those of the services themselves.
    let ids: Vec<i64> = (0..args.generate.services as i64).collect();
    let split = latency_model::split_rows(&ids, train_settings.test_fraction, cli.seed)?;
    if train_settings.folds > 0 {
        latency_model::fold_groups(&split.train, &ids, train_settings.folds, cli.seed)?;
    }
    strategy::check_services(ids.len(), optimize::STRATEGY_FOLDS)?;

    let out = &args.model.out;
    train::check_outputs(&args.model, None)?;
    output::check_file(&out.join(optimize::PLAN_FILE))?;
    for name in [
        experiment::RESULTS_FILE,
        experiment::CONTROL_FILE,
        experiment::TREATMENT_FILE,
    ] {
        output::check_file(&out.join(name))?;
    }
    Ok(())
}

/// Rejects, once the fleet is generated and before it is stored, what the fleet makes
/// impossible: residency rules naming no service, a capacity below one instance per
/// replica, and a plan file for an arm that does not fit the fleet.
fn check_fleet(args: &RunArgs, rules: &[(String, Vec<String>)], fleet: &Fleet) -> Result<()> {
    let names: Vec<String> = fleet.services.iter().map(|s| s.name.clone()).collect();
    let codes: Vec<String> = fleet
        .config
        .regions
        .codes()
        .iter()
        .map(|c| c.to_string())
        .collect();
    allowed_regions(rules, &names, &codes)?;
    let plan_settings = optimize::settings(&args.plan)?;
    if let Some(capacity) = plan_settings.capacity_vcpus {
        let needed: f64 = fleet
            .services
            .iter()
            .map(|s| plan_settings.min_replicas as f64 * s.spec.cores)
            .sum();
        let regions = codes.len() as f64;
        if needed > capacity * regions {
            return Err(OptimizeError::FleetInfeasible {
                constraint: format!("--capacity-vcpus {capacity}"),
                reason: format!(
                    "one instance per replica needs {needed:.1} vCPUs and the regions hold {:.1}\nhint: raise --capacity-vcpus well above {:.1} vCPUs per region, since the instances that carry the demand need more than one each",
                    capacity * regions,
                    (needed / regions * 10.0).floor() / 10.0
                ),
            }
            .into());
        }
    }
    let world = WorldFleet::from_fleet(fleet)?;
    for arm in [&args.experiment.control, &args.experiment.treatment] {
        if !experiment::PLAN_KINDS.contains(&arm.as_str()) {
            plan_file::read(std::path::Path::new(arm), &world)?;
        }
    }
    Ok(())
}

/// Says which stages a stopped run had already stored, since the database was replaced
/// by the first.
fn stopped_after(cli: &Cli, stored: &[&str]) -> String {
    format!(
        "run stopped after {}, whose results are stored in `{}`",
        stored.join(", "),
        cli.db.display()
    )
}

/// Formats the figures a reader of the whole run looks for first.
fn closing_summary(
    trained: &TrainOutcome,
    optimized: &OptimizeOutcome,
    report: &ExperimentReport,
    seconds: &[(&str, f64)],
    total: f64,
) -> String {
    let document = &report.document;
    let mut out = format!(
        "summary: {} against {}\n",
        document.treatment.name, document.control.name
    );
    let interval = |i: Option<&crate::experiment::Interval>| match i {
        Some(i) => format!(
            "{:+.1}% [{:+.1}%, {:+.1}%]",
            i.change_pct, i.low_pct, i.high_pct
        ),
        None => "no interval (--resamples 0)".to_string(),
    };
    let intervals = document.intervals.as_ref();
    out.push_str(&format!(
        "  {:<34} {}\n",
        "mean latency change, 95% interval",
        interval(intervals.map(|i| &i.mean_latency))
    ));
    out.push_str(&format!(
        "  {:<34} {}\n",
        "cost change, 95% interval",
        interval(intervals.map(|i| &i.cost))
    ));
    for test in &document.service_level_tests {
        let name = test.method.split(" on ").next().unwrap_or(test.method);
        out.push_str(&format!(
            "  {:<34} {:.3e}\n",
            format!("p-value, {name}"),
            test.p_value
        ));
    }
    let model = &trained.latency_model;
    out.push_str(&format!(
        "  {:<34} RMSE {:.2} ms, R² {}, {} the oracle's RMSE\n",
        "latency model (test rows)",
        model.test_rmse,
        model
            .test_r2
            .map_or("-".to_string(), |r2| format!("{r2:.3}")),
        model
            .rmse_over_oracle
            .map_or("-".to_string(), |ratio| format!("{ratio:.3}x")),
    ));
    out.push_str(&format!(
        "  {:<34} {} ({} programs), gap {:.2e}\n",
        "solver", optimized.solver.status, optimized.solver.programs, optimized.solver.gap
    ));
    let stages: Vec<String> = seconds
        .iter()
        .map(|(stage, value)| format!("{stage} {value:.2} s"))
        .collect();
    out.push_str(&format!(
        "  {:<34} {}; {total:.2} s in all\n",
        "time per stage",
        stages.join(", ")
    ));
    out
}

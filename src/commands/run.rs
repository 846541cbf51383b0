//! `placewise run`: every stage of the pipeline in order (generate, train, optimize,
//! experiment), each recording its inputs in `runs`, then a closing summary.

use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::{Cli, RunArgs};
use crate::commands::experiment::ExperimentReport;
use crate::commands::optimize::OptimizeOutcome;
use crate::commands::train::TrainOutcome;
use crate::commands::{experiment, generate, optimize, train, write_stdout};

pub fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    let settings = &args.generate;
    // Check every stage's settings before spending time on the fleet.
    train::settings(&args.model, cli.seed)?;
    optimize::settings(&args.plan)?;
    experiment::settings(&args.experiment, cli.seed)?;
    let mut seconds = Vec::new();

    eprintln!(
        "[1/4] generate: {} services, {} days, regions {}",
        settings.services, settings.days, settings.regions
    );
    let started = Instant::now();
    let summary = generate::generate_and_store(cli, settings, "run")?;
    seconds.push(("generate", started.elapsed().as_secs_f64()));
    let mut out = generate::summary_table(cli, &summary);

    eprintln!("[2/4] train: latency model");
    let started = Instant::now();
    let trained = train::train_and_store(cli, &args.model, None, "run")
        .with_context(|| stopped_after(cli, &["generate"]))?;
    seconds.push(("train", started.elapsed().as_secs_f64()));
    out.push_str(&train::metrics_table(&trained.latency_model));

    eprintln!("[3/4] optimize: placement plan and baselines");
    let started = Instant::now();
    // The telemetry has not changed since train read it.
    let optimized = optimize::optimize_and_store(
        cli,
        &args.plan,
        &args.model.out,
        "run",
        Some(trained.fleet_summary.clone()),
    )
    .with_context(|| stopped_after(cli, &["generate", "train"]))?;
    seconds.push(("optimize", started.elapsed().as_secs_f64()));
    out.push_str(&optimize::summary_table(&optimized));

    eprintln!(
        "[4/4] experiment: {} against {}, {:?} design",
        args.experiment.treatment, args.experiment.control, args.experiment.design
    );
    let started = Instant::now();
    let report = experiment::experiment_and_store(cli, &args.experiment, &args.model.out, "run")
        .with_context(|| stopped_after(cli, &["generate", "train", "optimize"]))?;
    seconds.push(("experiment", started.elapsed().as_secs_f64()));
    out.push_str(&experiment::summary_table(&report));

    out.push_str(&closing_summary(&trained, &optimized, &report, &seconds));
    write_stdout(&out)?;
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
    let total: f64 = seconds.iter().map(|(_, value)| value).sum();
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

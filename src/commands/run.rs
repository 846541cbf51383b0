//! `placewise run`: every stage of the pipeline in order. The stages built so far are
//! generate (with the catalog, the store and the world model it rests on), train and
//! optimize.

use std::time::Instant;

use anyhow::Result;

use crate::cli::{Cli, RunArgs};
use crate::commands::{generate, optimize, train, write_stdout};

pub fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    let settings = &args.generate;
    // Check every stage's settings before spending time on the fleet.
    train::settings(&args.model, cli.seed)?;
    optimize::settings(&args.plan)?;
    let mut seconds = Vec::new();

    eprintln!(
        "[1/3] generate: {} services, {} days, regions {}",
        settings.services, settings.days, settings.regions
    );
    let started = Instant::now();
    let summary = generate::generate_and_store(cli, settings, "run")?;
    seconds.push(("generate", started.elapsed().as_secs_f64()));
    let mut out = generate::summary_table(cli, &summary);

    eprintln!("[2/3] train: latency model");
    let started = Instant::now();
    let trained = train::train_and_store(cli, &args.model, None, "run")?;
    seconds.push(("train", started.elapsed().as_secs_f64()));
    out.push_str(&train::metrics_table(&trained.latency_model));

    eprintln!("[3/3] optimize: placement plan and baselines");
    let started = Instant::now();
    let optimized = optimize::optimize_and_store(cli, &args.plan, &args.model.out, "run")?;
    seconds.push(("optimize", started.elapsed().as_secs_f64()));
    out.push_str(&optimize::summary_table(&optimized));

    out.push_str("time per stage:");
    for (stage, value) in &seconds {
        out.push_str(&format!(" {stage} {value:.2} s,"));
    }
    out.pop();
    out.push('\n');
    write_stdout(&out)?;
    Ok(())
}

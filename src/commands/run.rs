//! `placewise run`: every stage of the pipeline in order. The stages built so far are
//! generate (with the catalog, the store and the world model it rests on) and train.

use anyhow::Result;

use crate::cli::{Cli, RunArgs};
use crate::commands::{generate, train, write_stdout};

pub fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    let settings = &args.generate;
    // Check the model's settings before spending time on the fleet.
    train::settings(&args.model, cli.seed)?;
    eprintln!(
        "[1/2] generate: {} services, {} days, regions {}",
        settings.services, settings.days, settings.regions
    );
    let summary = generate::generate_and_store(cli, settings, "run")?;
    let mut out = generate::summary_table(cli, &summary);
    eprintln!("[2/2] train: latency model");
    let outcome = train::train_and_store(cli, &args.model, None, "run")?;
    out.push_str(&train::metrics_table(&outcome.latency_model));
    write_stdout(&out)?;
    Ok(())
}

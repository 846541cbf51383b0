//! `placewise run`: every stage of the pipeline in order. The stages built so far are
//! catalog and generate (with the store and the world model they rest on).

use anyhow::Result;

use crate::cli::{Cli, GenerateArgs};
use crate::commands::{generate, write_stdout};

pub fn run(cli: &Cli, args: &GenerateArgs) -> Result<()> {
    eprintln!(
        "[1/1] generate: {} services, {} days, regions {}",
        args.services, args.days, args.regions
    );
    let summary = generate::generate_and_store(cli, args, "run")?;
    write_stdout(&generate::summary_table(cli, &summary))?;
    Ok(())
}

//! The `placewise` binary: parses the command line, sets up logging and Ctrl-C handling,
//! runs one command, and prints any error once, as a chain, with its exit code.

use clap::Parser;
use placewise::cli::{Cli, Command};
use placewise::commands;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                commands::EXIT_USAGE
            } else {
                0
            };
            let _ = error.print();
            std::process::exit(code);
        }
    };
    init_logging();
    placewise::interrupt::install();

    let result = match &cli.command {
        Command::Regions(args) => commands::regions::run(args),
        Command::Generate(args) => commands::generate::run(&cli, args).map(|_| ()),
        Command::Train(args) => commands::train::run(&cli, args),
        Command::Optimize(args) => commands::optimize::run(&cli, args),
        Command::Recommend(args) => commands::recommend::run(&cli, args),
        Command::Experiment(args) => commands::experiment::run(&cli, args),
        Command::Run(args) => commands::run::run(&cli, args),
        Command::Serve(args) => commands::serve::run(&cli, args),
    };
    if let Err(error) = result {
        if commands::is_broken_pipe(&error) {
            return;
        }
        report(&error);
        std::process::exit(commands::exit_code(&error));
    }
}

/// Prints an error chain to stderr, one cause a line, with every `hint:` line gathered at
/// the end so that the fix is the last thing read.
fn report(error: &anyhow::Error) {
    let mut hints = Vec::new();
    for (depth, cause) in error.chain().enumerate() {
        let text = cause.to_string();
        let mut lines = text.lines().filter(|line| {
            let is_hint = line.starts_with("hint:");
            if is_hint {
                hints.push(line.to_string());
            }
            !is_hint
        });
        let first = lines.next().unwrap_or_default();
        if depth == 0 {
            eprintln!("error: {first}");
        } else {
            eprintln!("  caused by: {first}");
        }
        for line in lines {
            eprintln!("  {line}");
        }
    }
    for hint in hints {
        eprintln!("{hint}");
    }
}

/// Sets up logging to stderr at `info`, or at the level that `RUST_LOG` sets.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

//! The binary's commands, one module per verb, and the exit codes they map to.

pub mod experiment;
pub mod generate;
pub mod optimize;
pub mod recommend;
pub mod regions;
pub mod run;
pub mod serve;
pub mod train;

use crate::catalog::CatalogError;
use crate::check::WorldError;
use crate::dashboard::DashboardError;
use crate::experiment::ExperimentError;
use crate::features::FeatureError;
use crate::generate::GenerateError;
use crate::latency_model::ModelError;
use crate::optimize::OptimizeError;
use crate::plan_file::PlanFileError;
use crate::store::StoreError;

/// Exit code of a failure that is not the input's fault (I/O, SQLite).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of an invalid command line (clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// Exit code of invalid input: unknown region, bad size or setting, foreign or newer
/// database, a database without the data a stage needs.
pub const EXIT_INVALID_INPUT: i32 = 3;
/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Picks the exit code for an error by the first error of a known kind in its chain.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    for cause in error.chain() {
        if cause.downcast_ref::<CatalogError>().is_some() {
            return EXIT_INVALID_INPUT;
        }
        if let Some(error) = cause.downcast_ref::<DashboardError>() {
            return match error {
                DashboardError::NoResults { .. } => EXIT_INVALID_INPUT,
                _ => EXIT_FAILURE,
            };
        }
        if let Some(error) = cause.downcast_ref::<crate::output::OutputError>() {
            return match error {
                crate::output::OutputError::Io { .. } => EXIT_FAILURE,
                crate::output::OutputError::Interrupted { .. } => EXIT_INTERRUPTED,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if let Some(error) = cause.downcast_ref::<ModelError>() {
            return match error {
                ModelError::LightGbm(_) => EXIT_FAILURE,
                ModelError::Interrupted => EXIT_INTERRUPTED,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if let Some(error) = cause.downcast_ref::<OptimizeError>() {
            return match error {
                OptimizeError::Solver { .. } | OptimizeError::Model(_) => EXIT_FAILURE,
                OptimizeError::Interrupted => EXIT_INTERRUPTED,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if let Some(error) = cause.downcast_ref::<ExperimentError>() {
            return match error {
                ExperimentError::Interrupted => EXIT_INTERRUPTED,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if cause.downcast_ref::<PlanFileError>().is_some() {
            return EXIT_INVALID_INPUT;
        }
        if let Some(error) = cause.downcast_ref::<WorldError>() {
            return match error {
                WorldError::Sqlite(_) => EXIT_FAILURE,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if let Some(error) = cause.downcast_ref::<FeatureError>() {
            return match error {
                FeatureError::Sqlite(_) => EXIT_FAILURE,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if let Some(error) = cause.downcast_ref::<GenerateError>() {
            return match error {
                GenerateError::Interrupted => EXIT_INTERRUPTED,
                _ => EXIT_INVALID_INPUT,
            };
        }
        if let Some(error) = cause.downcast_ref::<StoreError>() {
            return match error {
                StoreError::Interrupted { .. } => EXIT_INTERRUPTED,
                StoreError::NewerSchema { .. }
                | StoreError::NotPlacewise { .. }
                | StoreError::Missing { .. }
                | StoreError::ReadOnly { .. }
                | StoreError::IsDirectory { .. }
                | StoreError::NotRegularFile { .. }
                | StoreError::MissingDirectory { .. } => EXIT_INVALID_INPUT,
                StoreError::Unwritable { .. }
                | StoreError::Sqlite { .. }
                | StoreError::InUse { .. } => EXIT_FAILURE,
            };
        }
    }
    EXIT_FAILURE
}

/// Writes command output to stdout. A closed pipe (`placewise regions | head`) surfaces as
/// an `io::Error` of kind `BrokenPipe`, which `main` treats as a normal end.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Returns whether the error is a closed stdout pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Creates a progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress_bar(length: u64, message: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>12} [{bar:30}] {human_pos}/{human_len} ({eta} left)",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    indicatif::ProgressBar::new(length)
        .with_style(style)
        .with_message(message)
}

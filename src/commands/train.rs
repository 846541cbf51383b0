//! `placewise train`: builds the latency matrix from the database, trains and scores the
//! latency model, writes it to the output directory and stores it with its metrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;
use tracing::info;

use crate::cli::{Cli, ModelArgs, TrainArgs};
use crate::commands::write_stdout;
use crate::features::{self, FleetSummary, LatencyMatrix};
use crate::generate::Fleet;
use crate::interrupt;
use crate::latency_model::{self, Hyperparameters, ModelError, TrainReport, TrainSettings};
use crate::output;
use crate::store::{self, RunRecord};

/// File name of the model within the output directory.
pub const MODEL_FILE: &str = "latency_model.txt";

/// The output of `train --json`, which `run` reuses.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub latency_model: LatencySummary,
    /// Wall times in seconds; the only part that differs between identical runs.
    pub timings: Timings,
    /// The telemetry summary read with the matrix, which `run` hands to the optimizer so
    /// that it does not read the same telemetry again.
    #[serde(skip)]
    pub fleet_summary: FleetSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub model_id: i64,
    pub run_id: i64,
    pub model_path: PathBuf,
    pub rows: usize,
    pub train_rows: usize,
    pub test_rows: usize,
    /// Errors in ms on the test rows.
    pub test_rmse: f64,
    pub test_mae: f64,
    pub test_r2: Option<f64>,
    pub mean_baseline_rmse: f64,
    pub mean_baseline_mae: f64,
    pub oracle_rmse: Option<f64>,
    pub oracle_mae: Option<f64>,
    /// Test RMSE over the oracle's RMSE; 1 would be as good as any model can be.
    pub rmse_over_oracle: Option<f64>,
    pub cross_validation_rmse: Vec<f64>,
    pub hyperparameters: Hyperparameters,
    pub test_fraction: f64,
    pub folds: usize,
    pub seed: u64,
    pub feature_importance: Vec<FeatureGain>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureGain {
    pub feature: String,
    pub gain: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub features_seconds: f64,
    pub training_seconds: f64,
    pub store_seconds: f64,
}

pub fn run(cli: &Cli, args: &TrainArgs) -> Result<()> {
    let outcome = train_and_store(cli, &args.model, args.export_matrix.as_deref(), "train")?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&outcome)?;
        text.push('\n');
        write_stdout(&text)?;
    } else {
        write_stdout(&metrics_table(&outcome.latency_model))?;
    }
    Ok(())
}

/// Converts the command line's settings, rejecting out-of-range values with the value.
pub fn settings(args: &ModelArgs, seed: u64) -> Result<TrainSettings, ModelError> {
    let whole = |setting: &'static str, value: i64, low: i64, high: i64, rule| {
        if (low..=high).contains(&value) {
            Ok(value)
        } else {
            Err(ModelError::InvalidSetting {
                setting,
                value: value.to_string(),
                rule,
            })
        }
    };
    let settings = TrainSettings {
        hyperparameters: Hyperparameters {
            trees: whole("trees", args.trees, 1, 100_000, "use 1 to 100000")? as u32,
            max_depth: whole("max-depth", args.max_depth, 1, 30, "use 1 to 30")? as u32,
            learning_rate: args.learning_rate,
            num_leaves: whole(
                "num-leaves",
                args.num_leaves
                    .unwrap_or_else(|| 31.min(1i64 << args.max_depth.clamp(1, 30))),
                2,
                131_072,
                "use 2 to 2^max_depth (and at most 131072)",
            )? as u32,
            min_data_in_leaf: whole(
                "min-data-in-leaf",
                args.min_data_in_leaf,
                1,
                1 << 30,
                "use 1 or more",
            )? as u32,
            threads: whole("threads", args.threads, 1, 1024, "use 1 to 1024")? as usize,
        },
        test_fraction: args.test_fraction,
        folds: whole(
            "folds",
            args.folds,
            0,
            100,
            "use 0 (no cross-validation) or 2 to 100",
        )? as usize,
        seed,
    };
    settings.validate()?;
    Ok(settings)
}

/// Trains on the database of `cli` and stores the model.
///
/// The output paths are checked and the writer's lock taken before any work, the matrix is
/// exported before training (so that a matrix that fails training can still be read), and
/// the model file is renamed into place only after the database holds the model.
pub fn train_and_store(
    cli: &Cli,
    args: &ModelArgs,
    export_matrix: Option<&Path>,
    command: &str,
) -> Result<TrainOutcome> {
    let settings = settings(args, cli.seed)?;
    // Fail on a missing, foreign or locked database before touching any output.
    drop(store::open_existing(
        &cli.db,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?);
    let model_path = check_outputs(args, export_matrix)?;
    let target = store::Target::acquire(&cli.db)?;

    let started = Instant::now();
    // One thread reads this connection, so SQLite's per-call mutex is not needed; it cost
    // an eighth of the matrix build.
    let connection = store::open_existing(
        &cli.db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let (matrix, fleet_summary) = features::build(&connection).with_context(|| {
        format!(
            "cannot build the training matrix from `{}`",
            cli.db.display()
        )
    })?;
    drop(connection);
    let features_seconds = started.elapsed().as_secs_f64();
    info!(
        rows = matrix.rows(),
        features = matrix.columns(),
        seconds = format!("{features_seconds:.2}"),
        "training matrix built"
    );
    if let Some(path) = export_matrix {
        let split =
            latency_model::split_rows(&matrix.service_ids, settings.test_fraction, settings.seed)?;
        output::write_atomically(path, |out| {
            features::write_csv(&matrix, Some(&split.test), out)
        })?;
        info!(path = %path.display(), "training matrix written");
    }
    let inputs = TrainInputs {
        settings,
        model_path,
        matrix,
        fleet_summary,
        features_seconds,
    };
    fit_and_store(cli, inputs, command, || Ok(target))
}

/// Trains on a fleet generated in memory by `run`, whose store into the database may still
/// be running. The matrix is built from `fleet`, the same matrix, bit for bit, as from its
/// database. `stored` is called after the fits and must return once the fleet is in the
/// database, because the model is stored beside it.
pub fn train_on_fleet(
    cli: &Cli,
    args: &ModelArgs,
    fleet: &Fleet,
    command: &str,
    stored: impl FnOnce() -> Result<()>,
) -> Result<TrainOutcome> {
    let settings = settings(args, cli.seed)?;
    let model_path = check_outputs(args, None)?;
    let started = Instant::now();
    let (matrix, fleet_summary) = features::build_from_fleet(fleet)
        .context("cannot build the training matrix from the generated fleet")?;
    let features_seconds = started.elapsed().as_secs_f64();
    info!(
        rows = matrix.rows(),
        features = matrix.columns(),
        seconds = format!("{features_seconds:.2}"),
        "training matrix built from the fleet in memory"
    );
    let inputs = TrainInputs {
        settings,
        model_path,
        matrix,
        fleet_summary,
        features_seconds,
    };
    fit_and_store(cli, inputs, command, || {
        stored()?;
        Ok(store::Target::acquire(&cli.db)?)
    })
}

/// Creates the output directory and checks that the model file, and the matrix export if
/// any, can be written. Returns the model file's path.
pub fn check_outputs(args: &ModelArgs, export_matrix: Option<&Path>) -> Result<PathBuf> {
    output::ensure_directory(&args.out)?;
    let model_path = args.out.join(MODEL_FILE);
    output::check_file(&model_path)?;
    if let Some(path) = export_matrix {
        output::check_file(path)?;
    }
    Ok(model_path)
}

/// Inputs of [`fit_and_store`]: the settings, the matrix and where the model goes.
struct TrainInputs {
    settings: TrainSettings,
    model_path: PathBuf,
    matrix: LatencyMatrix,
    fleet_summary: FleetSummary,
    features_seconds: f64,
}

/// Trains and scores the model, then writes it to its file and stores it with its metrics
/// in the database of the target that `target` returns once the fits are done.
fn fit_and_store(
    cli: &Cli,
    inputs: TrainInputs,
    command: &str,
    target: impl FnOnce() -> Result<store::Target>,
) -> Result<TrainOutcome> {
    let TrainInputs {
        settings,
        model_path,
        matrix,
        fleet_summary,
        features_seconds,
    } = inputs;
    let mut timings = Timings {
        features_seconds,
        ..Timings::default()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if settings.hyperparameters.threads > cores {
        tracing::warn!(
            threads = settings.hyperparameters.threads,
            cores,
            "--threads is above the machine's cores, so the fits will compete for them"
        );
    }
    let started = Instant::now();
    let (model, report) = latency_model::train(&matrix, &settings, |step| {
        info!(step, "fitting");
        !interrupt::requested()
    })?;
    timings.training_seconds = started.elapsed().as_secs_f64();

    let target = target()?;
    let started = Instant::now();
    use std::io::Write;
    let text = model.to_text()?;
    let staged = output::stage(&model_path, |out| out.write_all(text.as_bytes()))?;
    let mut connection = store::open_for_results(&target)?;
    let run = RunRecord {
        command: command.to_string(),
        seed: cli.seed,
        parameters: serde_json::json!({
            "fleet_run_id": fleet_run_id(&connection)?,
            "hyperparameters": settings.hyperparameters,
            "test_fraction": settings.test_fraction,
            "folds": settings.folds,
            "model_path": model_path,
        }),
        timings: vec![
            ("features".to_string(), timings.features_seconds),
            ("training".to_string(), timings.training_seconds),
        ],
        record_timings: cli.record_timings,
    };
    let summary = summarize(&matrix, &report, &settings, &model_path);
    if interrupt::requested() {
        return Err(ModelError::Interrupted.into());
    }
    let (run_id, model_id) = store_model(&mut connection, &run, &matrix, &report, &summary, &text)
        .with_context(|| format!("cannot store the model in `{}`", cli.db.display()))?;
    staged.publish()?;
    timings.store_seconds = started.elapsed().as_secs_f64();
    Ok(TrainOutcome {
        latency_model: LatencySummary {
            model_id,
            run_id,
            ..summary
        },
        timings,
        fleet_summary,
    })
}

/// Returns the run that wrote the fleet: the first in `runs`, since `generate` starts a new
/// file.
fn fleet_run_id(connection: &Connection) -> Result<Option<i64>> {
    Ok(connection.query_row("SELECT MIN(run_id) FROM runs", [], |row| row.get(0))?)
}

fn summarize(
    matrix: &LatencyMatrix,
    report: &TrainReport,
    settings: &TrainSettings,
    model_path: &Path,
) -> LatencySummary {
    let mut feature_importance: Vec<FeatureGain> = matrix
        .feature_names
        .iter()
        .zip(&report.importance_gain)
        .map(|(feature, &gain)| FeatureGain {
            feature: feature.clone(),
            gain,
        })
        .collect();
    feature_importance.sort_by(|a, b| b.gain.total_cmp(&a.gain));
    LatencySummary {
        model_id: 0,
        run_id: 0,
        model_path: model_path.to_path_buf(),
        rows: report.rows,
        train_rows: report.train_rows,
        test_rows: report.test_rows,
        test_rmse: report.test.rmse,
        test_mae: report.test.mae,
        test_r2: report.test.r2,
        mean_baseline_rmse: report.mean_baseline.rmse,
        mean_baseline_mae: report.mean_baseline.mae,
        oracle_rmse: report.oracle.map(|m| m.rmse),
        oracle_mae: report.oracle.map(|m| m.mae),
        rmse_over_oracle: report
            .oracle
            .filter(|m| m.rmse > 0.0)
            .map(|m| report.test.rmse / m.rmse),
        cross_validation_rmse: report.cross_validation.iter().map(|m| m.rmse).collect(),
        hyperparameters: settings.hyperparameters,
        test_fraction: settings.test_fraction,
        folds: settings.folds,
        seed: settings.seed,
        feature_importance,
    }
}

fn store_model(
    connection: &mut Connection,
    run: &RunRecord,
    matrix: &LatencyMatrix,
    report: &TrainReport,
    summary: &LatencySummary,
    text: &str,
) -> rusqlite::Result<(i64, i64)> {
    let transaction = connection.transaction()?;
    let run_id = store::record_run(&transaction, run)?;
    let metrics = serde_json::json!({
        "test": report.test,
        "mean_baseline": report.mean_baseline,
        "oracle": report.oracle,
        "cross_validation": report.cross_validation,
        "rows": report.rows,
        "train_rows": report.train_rows,
        "test_rows": report.test_rows,
    });
    transaction.execute(
        "INSERT INTO models (run_id, kind, feature_names, hyperparameters, metrics, model_text)
         VALUES (?1, 'latency', ?2, ?3, ?4, ?5)",
        params![
            run_id,
            serde_json::to_string(&matrix.feature_names).expect("names serialize"),
            serde_json::json!({
                "hyperparameters": summary.hyperparameters,
                "test_fraction": summary.test_fraction,
                "folds": summary.folds,
                "seed": summary.seed,
            })
            .to_string(),
            metrics.to_string(),
            text,
        ],
    )?;
    let model_id = transaction.last_insert_rowid();
    {
        let mut statement =
            transaction.prepare("INSERT INTO model_feature_importance VALUES (?1, ?2, ?3)")?;
        for gain in &summary.feature_importance {
            statement.execute(params![model_id, gain.feature, gain.gain])?;
        }
        let mut statement = transaction
            .prepare("INSERT INTO model_predictions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
        for (&row, predicted) in report.split.test.iter().zip(&report.test_predictions) {
            let oracle = matrix.oracle_ms[row];
            statement.execute(params![
                model_id,
                matrix.service_ids[row],
                matrix.dates[row],
                matrix.regions[row],
                matrix.target_ms[row],
                predicted,
                oracle.is_finite().then_some(oracle),
            ])?;
        }
    }
    transaction.commit()?;
    Ok((run_id, model_id))
}

/// Formats the metrics beside the baselines, and the features of highest gain.
pub fn metrics_table(summary: &LatencySummary) -> String {
    let h = &summary.hyperparameters;
    let mut out = format!(
        "latency model: LightGBM, {} trees, depth {}, learning rate {}; {} rows ({} train, {} test)\n",
        h.trees, h.max_depth, h.learning_rate, summary.rows, summary.train_rows, summary.test_rows
    );
    let r2 = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.3}"));
    out.push_str(&format!(
        "  {:<26} {:>9} {:>9} {:>7}\n",
        "on the test rows", "RMSE ms", "MAE ms", "R²"
    ));
    out.push_str(&format!(
        "  {:<26} {:>9.2} {:>9.2} {:>7}\n",
        "model",
        summary.test_rmse,
        summary.test_mae,
        r2(summary.test_r2)
    ));
    out.push_str(&format!(
        "  {:<26} {:>9.2} {:>9.2} {:>7}\n",
        "mean baseline", summary.mean_baseline_rmse, summary.mean_baseline_mae, "0.000"
    ));
    if let (Some(rmse), Some(mae)) = (summary.oracle_rmse, summary.oracle_mae) {
        out.push_str(&format!(
            "  {:<26} {:>9.2} {:>9.2} {:>7}\n",
            "oracle (noise only)", rmse, mae, "-"
        ));
    }
    if let Some(ratio) = summary.rmse_over_oracle {
        out.push_str(&format!("  model RMSE / oracle RMSE: {ratio:.3}\n"));
    }
    if !summary.cross_validation_rmse.is_empty() {
        let folds = &summary.cross_validation_rmse;
        let mean = folds.iter().sum::<f64>() / folds.len() as f64;
        let spread = (folds.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>()
            / folds.len() as f64)
            .sqrt();
        out.push_str(&format!(
            "  {}-fold cross-validation RMSE: {mean:.2} ms (sd {spread:.2})\n",
            summary.folds
        ));
    }
    out.push_str("  features by gain:");
    let total: f64 = summary.feature_importance.iter().map(|g| g.gain).sum();
    for gain in summary.feature_importance.iter().take(5) {
        let share = if total > 0.0 { gain.gain / total } else { 0.0 };
        out.push_str(&format!(" {} {:.0}%,", gain.feature, 100.0 * share));
    }
    out.pop();
    out.push('\n');
    out.push_str(&format!(
        "  model written to {}\n",
        summary.model_path.display()
    ));
    out
}

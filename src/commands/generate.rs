//! `placewise generate`: draws the synthetic fleet and stores it, replacing the database.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use tracing::{debug, info};

use crate::catalog::Catalog;
use crate::cli::{Cli, GenerateArgs};
use crate::commands::{progress_bar, write_stdout};
use crate::generate::{self, Fleet, FleetConfig};
use crate::interrupt;
use crate::store::{self, RunRecord, TableCounts};

/// Figures of one `generate`, printed as its summary.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub counts: TableCounts,
    pub generate_seconds: f64,
    pub store_seconds: f64,
}

impl GenerateSummary {
    pub fn rows_per_second(&self) -> f64 {
        self.counts.total() as f64 / (self.generate_seconds + self.store_seconds)
    }
}

/// Generates and stores the fleet, printing the summary table on stdout.
pub fn run(cli: &Cli, args: &GenerateArgs) -> Result<GenerateSummary> {
    let summary = generate_and_store(cli, args, "generate")?;
    write_stdout(&summary_table(cli, &summary))?;
    Ok(summary)
}

/// Generates and stores the fleet without printing. `command` is the name recorded in
/// `runs`.
pub fn generate_and_store(
    cli: &Cli,
    args: &GenerateArgs,
    command: &str,
) -> Result<GenerateSummary> {
    let (config, target) = prepare(cli, args)?;
    let bar = progress_bar(config.traffic_rows() as u64, "storing rows");
    let summary = write_generated(&config, &target, command, cli.record_timings, |rows| {
        bar.set_position(rows as u64);
        !interrupt::requested()
    });
    bar.finish_and_clear();

    let summary =
        summary.with_context(|| format!("cannot store the fleet in `{}`", cli.db.display()))?;
    if interrupt::requested() {
        info!("interrupted after the new database was complete; it is in place");
    }
    info!(
        path = %cli.db.display(),
        placement_rows = summary.counts.service_placement,
        seconds = format!("{:.2}", summary.generate_seconds + summary.store_seconds),
        "database written"
    );
    Ok(summary)
}

/// Checks the settings, and the database it will replace, before any time is spent on the
/// fleet. The returned target keeps other writers out until the new database is in place.
fn prepare(cli: &Cli, args: &GenerateArgs) -> Result<(FleetConfig, store::Target)> {
    let regions = Catalog::embedded().select(&args.regions)?;
    let config = FleetConfig {
        services: args.services,
        days: args.days,
        regions,
        seed: cli.seed,
    };
    config.validate()?;
    // Reject a foreign or newer database, or a missing directory, here.
    let target = store::Target::acquire(&cli.db)?;
    info!(
        services = config.services,
        days = config.days,
        regions = config.regions.len(),
        seed = config.seed,
        "generating fleet"
    );
    Ok((config, target))
}

/// A fleet generated in memory, history included, whose store into the database runs on a
/// thread of its own.
pub struct Generated {
    pub fleet: Arc<Fleet>,
    store: Option<JoinHandle<Result<GenerateSummary>>>,
    summary: Option<GenerateSummary>,
}

impl Generated {
    /// Waits for the store to finish and returns its summary. Once the store has
    /// finished, later calls return the same summary.
    pub fn wait_for_store(&mut self) -> Result<&GenerateSummary> {
        if let Some(store) = self.store.take() {
            let summary = match store.join() {
                Ok(result) => result?,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            self.summary = Some(summary);
        }
        self.summary
            .as_ref()
            .context("storing the fleet failed earlier in this run")
    }
}

/// Generates the fleet with its history in memory, then starts storing it on another
/// thread and returns, so that `run` can train on the fleet meanwhile. The store replaces
/// the database as `generate` does, and Ctrl-C stops it the same way.
///
/// `check` is called with the fleet before the store starts, so a fleet it rejects leaves
/// the database as it was.
pub fn generate_in_background(
    cli: &Cli,
    args: &GenerateArgs,
    command: &str,
    check: impl FnOnce(&Fleet) -> Result<()>,
) -> Result<Generated> {
    let (config, target) = prepare(cli, args)?;
    let started = Instant::now();
    let mut fleet = generate::generate_telemetry(&config, || !interrupt::requested())?;
    fleet.history = generate::generate_history(&fleet, &mut |_| !interrupt::requested())?;
    let generate_seconds = started.elapsed().as_secs_f64();
    debug!(seconds = generate_seconds, "fleet and history generated");
    check(&fleet)?;

    let fleet = Arc::new(fleet);
    let stored = fleet.clone();
    let run = run_record(&config, command, generate_seconds, cli.record_timings);
    let path = cli.db.clone();
    let store = std::thread::Builder::new()
        .name("store".to_string())
        .spawn(move || {
            let started = Instant::now();
            let history = || Some(stored.history.clone());
            let counts =
                store::write_fleet(&target, &stored, history, &run, |_| !interrupt::requested())
                    .with_context(|| format!("cannot store the fleet in `{}`", path.display()))?;
            Ok(GenerateSummary {
                counts,
                generate_seconds,
                store_seconds: started.elapsed().as_secs_f64(),
            })
        })
        .context("cannot start the thread that stores the fleet")?;
    Ok(Generated {
        fleet,
        store: Some(store),
        summary: None,
    })
}

/// Builds the `runs` row of a `generate`.
fn run_record(
    config: &FleetConfig,
    command: &str,
    generate_seconds: f64,
    record_timings: bool,
) -> RunRecord {
    RunRecord {
        command: command.to_string(),
        seed: config.seed,
        parameters: serde_json::json!({
            "services": config.services,
            "days": config.days,
            "regions": config.regions.codes(),
        }),
        timings: vec![("telemetry".to_string(), generate_seconds)],
        record_timings,
    }
}

/// Generates the fleet of `config` and writes it to `path`. The placement history is
/// observed through the world model on a second thread while this one stores the traffic,
/// and the store waits for it only after the traffic. `on_rows` is as in
/// [`store::write_fleet`].
pub fn write_generated(
    config: &FleetConfig,
    target: &store::Target,
    command: &str,
    record_timings: bool,
    on_rows: impl FnMut(usize) -> bool,
) -> Result<GenerateSummary> {
    let started = Instant::now();
    let fleet = generate::generate_telemetry(config, || !interrupt::requested())?;
    let generate_seconds = started.elapsed().as_secs_f64();
    debug!(seconds = generate_seconds, "telemetry generated");

    let run = run_record(config, command, generate_seconds, record_timings);
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let history = scope.spawn(|| {
            let started = Instant::now();
            let history = generate::generate_history(&fleet, &mut |_| !interrupt::requested());
            debug!(
                seconds = started.elapsed().as_secs_f64(),
                "history observed"
            );
            history.ok()
        });
        let join_history = || history.join().expect("the history thread does not panic");
        store::write_fleet(target, &fleet, join_history, &run, on_rows)
    })?;
    Ok(GenerateSummary {
        counts,
        generate_seconds,
        store_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Formats the row counts and speed of a `generate`.
pub fn summary_table(cli: &Cli, summary: &GenerateSummary) -> String {
    let counts = &summary.counts;
    let rows = [
        ("services", counts.services),
        ("service_dependencies", counts.service_dependencies),
        ("regions", counts.regions),
        ("regional_latency", counts.regional_latency),
        ("traffic_patterns", counts.traffic_patterns),
        ("service_placement", counts.service_placement),
    ];
    let mut out = format!("database {}\n", cli.db.display());
    for (table, count) in rows {
        out.push_str(&format!("  {table:<22} {count:>12} rows\n"));
    }
    out.push_str(&format!(
        "  generated in {:.2} s, stored in {:.2} s: {:.0} rows/s\n",
        summary.generate_seconds,
        summary.store_seconds,
        summary.rows_per_second()
    ));
    out
}

//! `placewise experiment`: compares two placements (stored plans of the latest `optimize`,
//! or plan files) in the world model, and writes the results document, the two
//! placements and the tables `experiments`, `experiment_services` and
//! `experiment_latency_histogram`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;
use tracing::info;

use crate::check::WorldFleet;
use crate::cli::{Cli, ExperimentArgs, ExperimentSettingsArgs};
use crate::commands::write_stdout;
use crate::experiment::{
    self, ArmMetrics, Design, EffectSize, Experiment, ExperimentError, ExperimentSettings,
    Intervals, NamedTest, Noise, Outcome,
};
use crate::interrupt;
use crate::optimize::OptimizeError;
use crate::output;
use crate::plan_file;
use crate::simulate::{Host, Placement};
use crate::store::{self, RunRecord};

/// File names within the output directory.
pub const RESULTS_FILE: &str = "ab_test_results.json";
pub const CONTROL_FILE: &str = "control_placement.csv";
pub const TREATMENT_FILE: &str = "treatment_placement.csv";

/// Plan kinds that `optimize` stores, which an arm may name.
pub const PLAN_KINDS: [&str; 4] = ["random", "heuristic", "greedy", "optimizer"];

/// Versions of the code that the numbers depend on, written into the document. A test
/// checks them against Cargo.lock.
pub const STATRS_VERSION: &str = "0.19.1";
pub const RAND_CHACHA_VERSION: &str = "0.9.0";
pub const RAND_DISTR_VERSION: &str = "0.5.1";
/// scipy version the tests are checked against (`tests/fixtures/stats_reference.json`).
pub const SCIPY_REFERENCE_VERSION: &str = "1.17.1";

/// The source of an arm's placement.
#[derive(Debug, Clone, Serialize)]
pub struct ArmSource {
    /// The value of --control or --treatment.
    pub name: String,
    /// `stored plan` or `plan file`.
    pub kind: &'static str,
    /// The `optimize` run whose plan it is, for a stored plan.
    pub plan_run_id: Option<i64>,
}

/// The original study's three improvements, in percent of the control: positive is better.
#[derive(Debug, Clone, Serialize)]
pub struct Improvements {
    pub latency_improvement_pct: f64,
    /// Of the mean cost per service, which in the paired design is the total cost.
    pub cost_improvement_pct: f64,
    pub critical_latency_improvement_pct: f64,
    pub p95_latency_improvement_pct: f64,
}

/// The original study's significance block: Welch's t-test on request latency.
#[derive(Debug, Clone, Serialize)]
pub struct Significance {
    pub t_statistic: f64,
    pub p_value: f64,
    pub is_significant: bool,
    pub df: f64,
    pub alpha: f64,
    pub method: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct SettingsRecord {
    pub requests_per_arm: usize,
    pub resamples: usize,
    pub noise: Noise,
    pub alpha: f64,
    pub confidence: f64,
    pub target_power: f64,
    pub histogram_bins: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Seeds {
    pub seed: u64,
    pub generator: &'static str,
    pub control_requests_stream: u64,
    pub treatment_requests_stream: u64,
    pub assignment_stream: u64,
    pub bootstrap_stream: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub placewise: &'static str,
    pub statrs: &'static str,
    pub rand_chacha: &'static str,
    pub rand_distr: &'static str,
    pub scipy_reference: &'static str,
}

/// The results document: the original study's keys first, then what it lacked.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub control_metrics: ArmMetrics,
    pub treatment_metrics: ArmMetrics,
    pub improvements: Improvements,
    pub statistical_significance: Significance,
    pub design: Design,
    pub control: ArmSource,
    pub treatment: ArmSource,
    /// Treatment minus control, on each service's mean latency.
    pub service_level_tests: Vec<NamedTest>,
    /// Null with --resamples 0.
    pub intervals: Option<Intervals>,
    pub effect_size: EffectSize,
    pub settings: SettingsRecord,
    pub seeds: Seeds,
    pub versions: Versions,
}

/// Wall times in seconds; the only part of the results file that differs between
/// identical runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub load_seconds: f64,
    pub evaluate_seconds: f64,
    pub analysis_seconds: f64,
}

/// The results file: the document with its timings.
#[derive(Serialize)]
struct ResultsFile<'a> {
    #[serde(flatten)]
    document: &'a Document,
    timings: &'a Timings,
}

/// The outcome of `experiment`, which `run` reuses.
#[derive(Debug, Clone)]
pub struct ExperimentReport {
    pub run_id: i64,
    pub experiment_id: i64,
    pub document: Document,
    pub timings: Timings,
    pub results_path: PathBuf,
    /// The results file's text, as written.
    pub results_text: String,
}

pub fn run(cli: &Cli, args: &ExperimentArgs) -> Result<()> {
    let report = experiment_and_store(cli, &args.settings, &args.out, "experiment", None)?;
    if args.json {
        write_stdout(&report.results_text)?;
    } else {
        write_stdout(&summary_table(&report))?;
    }
    Ok(())
}

/// Converts the command line's settings, rejecting out-of-range values with the value.
pub fn settings(args: &ExperimentSettingsArgs, seed: u64) -> Result<ExperimentSettings> {
    let count = |setting: &'static str, value: i64, rule: &'static str| {
        usize::try_from(value).map_err(|_| ExperimentError::InvalidSetting {
            setting,
            value: value.to_string(),
            rule,
        })
    };
    let settings = ExperimentSettings {
        design: args.design,
        noise: args.noise.unwrap_or(match args.design {
            Design::Paired => Noise::Common,
            Design::Split => Noise::Independent,
        }),
        requests: count(
            "requests",
            args.requests,
            "use 2 to 100000000 requests per arm",
        )?,
        resamples: count(
            "resamples",
            args.resamples,
            "use 0 (no intervals) or 100 to 1000000",
        )?,
        seed,
    };
    settings.validate()?;
    for (flag, value) in [("control", &args.control), ("treatment", &args.treatment)] {
        if !PLAN_KINDS.contains(&value.as_str()) && !Path::new(value).is_file() {
            return Err(ExperimentError::InvalidSetting {
                setting: flag,
                value: value.clone(),
                rule: "name a stored plan (random, heuristic, greedy, optimizer) or an existing plan CSV",
            }
            .into());
        }
    }
    Ok(settings)
}

/// Runs the experiment on the database of `cli` and writes its outputs; `run` shares it.
///
/// The output paths are checked and the writer's lock taken before any work. The three
/// files are staged beside their targets and renamed into place only after the database
/// contains the experiment, so a failure leaves the previous outputs and tables as they were.
pub fn experiment_and_store(
    cli: &Cli,
    args: &ExperimentSettingsArgs,
    out: &Path,
    command: &str,
    read_world: Option<WorldFleet>,
) -> Result<ExperimentReport> {
    let settings = settings(args, cli.seed)?;
    let mut timings = Timings::default();
    drop(store::open_existing(
        &cli.db,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?);
    output::ensure_directory(out)?;
    let paths = [RESULTS_FILE, CONTROL_FILE, TREATMENT_FILE].map(|name| out.join(name));
    for path in &paths {
        output::check_file(path)?;
    }
    let target = store::Target::acquire(&cli.db)?;

    let started = Instant::now();
    let connection = store::open_existing(
        &cli.db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let fleet = match read_world {
        Some(world) => world,
        None => WorldFleet::load(&connection)
            .with_context(|| format!("cannot read the world model of `{}`", cli.db.display()))?,
    };
    let (control, control_source) = load_arm(&connection, &fleet, &args.control)?;
    let (treatment, treatment_source) = load_arm(&connection, &fleet, &args.treatment)?;
    drop(connection);
    timings.load_seconds = started.elapsed().as_secs_f64();
    info!(
        design = ?settings.design,
        control = args.control,
        treatment = args.treatment,
        requests = settings.requests,
        "running the experiment"
    );

    let proceed = || !interrupt::requested();
    let started = Instant::now();
    let prepared = Experiment::new(&fleet, &control, &treatment, &proceed)?;
    timings.evaluate_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let outcome = prepared.run(&settings, &proceed)?;
    timings.analysis_seconds = started.elapsed().as_secs_f64();

    let document = build_document(&settings, &outcome, control_source, treatment_source);
    let mut results_text = serde_json::to_string_pretty(&ResultsFile {
        document: &document,
        timings: &timings,
    })?;
    results_text.push('\n');
    // NOTE: the interrupt handler tracks one partial file, the last staged, so a second
    // Ctrl-C before the rename can leave the first two `.placewise-*.partial` files.
    let staged = [
        output::stage(&paths[0], |file| {
            use std::io::Write;
            file.write_all(results_text.as_bytes())
        })?,
        output::stage(&paths[1], |file| {
            write_placement_csv(file, &fleet, &control, &outcome.control.members)
        })?,
        output::stage(&paths[2], |file| {
            write_placement_csv(file, &fleet, &treatment, &outcome.treatment.members)
        })?,
    ];
    if interrupt::requested() {
        bail!(ExperimentError::Interrupted);
    }
    let mut connection = store::open_for_results(&target)?;
    let run = RunRecord {
        command: command.to_string(),
        seed: cli.seed,
        parameters: serde_json::json!({
            "design": settings.design,
            "noise": settings.noise,
            "control": document.control,
            "treatment": document.treatment,
            "requests": settings.requests,
            "resamples": settings.resamples,
            "out": out,
        }),
        timings: vec![
            ("load".to_string(), timings.load_seconds),
            ("evaluate".to_string(), timings.evaluate_seconds),
            ("analysis".to_string(), timings.analysis_seconds),
        ],
        record_timings: cli.record_timings,
    };
    let mut document_text = serde_json::to_string_pretty(&document)?;
    document_text.push('\n');
    let (run_id, experiment_id) = store_experiment(
        &mut connection,
        &run,
        &document,
        &document_text,
        &fleet,
        &outcome,
    )
    .with_context(|| format!("cannot store the experiment in `{}`", cli.db.display()))?;
    for file in staged {
        file.publish()?;
    }
    Ok(ExperimentReport {
        run_id,
        experiment_id,
        document,
        timings,
        results_path: paths[0].clone(),
        results_text,
    })
}

/// Loads an arm: a stored plan of the latest `optimize`, or a plan file.
fn load_arm(
    connection: &Connection,
    fleet: &WorldFleet,
    name: &str,
) -> Result<(Placement, ArmSource)> {
    if !PLAN_KINDS.contains(&name) {
        let placement = plan_file::read(Path::new(name), fleet)?;
        return Ok((
            placement,
            ArmSource {
                name: name.to_string(),
                kind: "plan file",
                plan_run_id: None,
            },
        ));
    }
    let missing = || OptimizeError::MissingModel {
        what: "placement plans",
        command: "optimize",
    };
    let run_id: Option<i64> =
        match connection.query_row("SELECT MAX(run_id) FROM plans", [], |row| row.get(0)) {
            Ok(run_id) => run_id,
            Err(rusqlite::Error::SqliteFailure(_, Some(message)))
                if message.contains("no such table") =>
            {
                None
            }
            Err(other) => return Err(other.into()),
        };
    let Some(run_id) = run_id else {
        return Err(missing().into());
    };
    let plan_id: i64 = connection
        .query_row(
            "SELECT plan_id FROM plans WHERE run_id = ?1 AND kind = ?2",
            params![run_id, name],
            |row| row.get(0),
        )
        .with_context(|| format!("the plans of run {run_id} have no `{name}` plan"))?;
    let mut hosts: Vec<Vec<Host>> = vec![Vec::new(); fleet.specs.len()];
    let mut statement = connection.prepare(
        "SELECT service_id, region, instances FROM plan_hosts WHERE plan_id = ?1
         ORDER BY service_id, region",
    )?;
    let mut rows = statement.query([plan_id])?;
    while let Some(row) = rows.next()? {
        let service_id: i64 = row.get(0)?;
        let region: String = row.get(1)?;
        let (Ok(service), Some(region)) = (
            fleet.service_ids.binary_search(&service_id),
            fleet.regions.iter().position(|r| *r == region),
        ) else {
            bail!("the `{name}` plan of run {run_id} places service {service_id} in `{region}`, which the fleet does not have\nhint: run `placewise optimize` again");
        };
        hosts[service].push(Host {
            region,
            instances: row.get(2)?,
        });
    }
    for list in &mut hosts {
        list.sort_by_key(|host| host.region);
    }
    Ok((
        Placement { hosts },
        ArmSource {
            name: name.to_string(),
            kind: "stored plan",
            plan_run_id: Some(run_id),
        },
    ))
}

fn improvement(control: f64, treatment: f64) -> f64 {
    if control == 0.0 {
        0.0
    } else {
        100.0 * (control - treatment) / control
    }
}

fn build_document(
    settings: &ExperimentSettings,
    outcome: &Outcome,
    control: ArmSource,
    treatment: ArmSource,
) -> Document {
    let (c, t) = (&outcome.control_metrics, &outcome.treatment_metrics);
    let welch = &outcome.request_welch;
    Document {
        control_metrics: c.clone(),
        treatment_metrics: t.clone(),
        improvements: Improvements {
            latency_improvement_pct: improvement(c.avg_latency_ms, t.avg_latency_ms),
            cost_improvement_pct: improvement(
                c.mean_cost_per_service_usd,
                t.mean_cost_per_service_usd,
            ),
            critical_latency_improvement_pct: improvement(
                c.critical_services_latency_ms,
                t.critical_services_latency_ms,
            ),
            p95_latency_improvement_pct: improvement(c.p95_latency_ms, t.p95_latency_ms),
        },
        statistical_significance: Significance {
            t_statistic: welch.statistic,
            p_value: welch.p_value,
            is_significant: welch.is_significant,
            df: welch.df.unwrap_or(f64::NAN),
            alpha: experiment::ALPHA,
            method: welch.method,
        },
        design: settings.design,
        control,
        treatment,
        service_level_tests: outcome.service_tests.clone(),
        intervals: outcome.intervals.clone(),
        effect_size: outcome.effect_size.clone(),
        settings: SettingsRecord {
            requests_per_arm: settings.requests,
            resamples: settings.resamples,
            noise: settings.noise,
            alpha: experiment::ALPHA,
            confidence: experiment::CONFIDENCE,
            target_power: experiment::POWER,
            histogram_bins: outcome.control_histogram.len(),
        },
        seeds: Seeds {
            seed: settings.seed,
            generator: "ChaCha8, one stream per purpose",
            control_requests_stream: experiment::CONTROL_STREAM,
            treatment_requests_stream: match settings.noise {
                Noise::Common => experiment::CONTROL_STREAM,
                Noise::Independent => experiment::TREATMENT_STREAM,
            },
            assignment_stream: experiment::ASSIGNMENT_STREAM,
            bootstrap_stream: experiment::BOOTSTRAP_STREAM,
        },
        versions: Versions {
            placewise: env!("CARGO_PKG_VERSION"),
            statrs: STATRS_VERSION,
            rand_chacha: RAND_CHACHA_VERSION,
            rand_distr: RAND_DISTR_VERSION,
            scipy_reference: SCIPY_REFERENCE_VERSION,
        },
    }
}

/// Writes one row per service-region placement of an arm. `in_arm` is 0 for services that
/// the split design ran under the other arm.
fn write_placement_csv(
    out: &mut impl std::io::Write,
    fleet: &WorldFleet,
    placement: &Placement,
    members: &[bool],
) -> std::io::Result<()> {
    writeln!(
        out,
        "service_id,service_name,region,instances,latency_critical,in_arm"
    )?;
    for (service, hosts) in placement.hosts.iter().enumerate() {
        for host in hosts {
            writeln!(
                out,
                "{},{},{},{},{},{}",
                fleet.service_ids[service],
                fleet.names[service],
                fleet.regions[host.region],
                host.instances,
                u8::from(fleet.specs[service].latency_critical),
                u8::from(members[service])
            )?;
        }
    }
    Ok(())
}

fn store_experiment(
    connection: &mut Connection,
    run: &RunRecord,
    document: &Document,
    document_text: &str,
    fleet: &WorldFleet,
    outcome: &Outcome,
) -> rusqlite::Result<(i64, i64)> {
    let transaction = connection.transaction()?;
    let run_id = store::record_run(&transaction, run)?;
    transaction.execute(
        "INSERT INTO experiments (run_id, design, control, treatment, document)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            run_id,
            serde_json::to_value(document.design)
                .expect("designs serialize")
                .as_str(),
            document.control.name,
            document.treatment.name,
            document_text,
        ],
    )?;
    let experiment_id = transaction.last_insert_rowid();
    {
        let mut services = transaction
            .prepare("INSERT INTO experiment_services VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
        let mut bins = transaction
            .prepare("INSERT INTO experiment_latency_histogram VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let edges = &outcome.histogram_edges_ms;
        for (arm, data, counts) in [
            ("control", &outcome.control, &outcome.control_histogram),
            (
                "treatment",
                &outcome.treatment,
                &outcome.treatment_histogram,
            ),
        ] {
            let means = data.mean_latency_ms();
            for service in (0..fleet.specs.len()).filter(|&s| data.members[s]) {
                let measured = data.requests[service] > 0;
                services.execute(params![
                    experiment_id,
                    fleet.service_ids[service],
                    arm,
                    data.requests[service] as i64,
                    measured.then_some(means[service]),
                    measured.then_some(data.p95_latency_ms[service]),
                    data.monthly_cost_usd[service],
                    fleet.specs[service].latency_critical,
                ])?;
            }
            for (bin, &count) in counts.iter().enumerate() {
                bins.execute(params![
                    experiment_id,
                    arm,
                    edges[bin],
                    edges[bin + 1],
                    count as i64
                ])?;
            }
        }
    }
    transaction.commit()?;
    Ok((run_id, experiment_id))
}

fn interval_text(interval: Option<&experiment::Interval>) -> String {
    match interval {
        Some(i) => format!("[{:+.1}%, {:+.1}%]", i.low_pct, i.high_pct),
        None => "-".to_string(),
    }
}

fn change_text(control: f64, treatment: f64) -> String {
    if control == 0.0 {
        "-".to_string()
    } else {
        format!("{:+.1}%", 100.0 * (treatment / control - 1.0))
    }
}

fn p_text(p: f64) -> String {
    if p.is_nan() {
        "undefined".to_string()
    } else {
        format!("{p:.3e}")
    }
}

/// Formats the arms side by side with the changes, intervals and tests.
pub fn summary_table(report: &ExperimentReport) -> String {
    let d = &report.document;
    let (c, t) = (&d.control_metrics, &d.treatment_metrics);
    let intervals = d.intervals.as_ref();
    let mut out = format!(
        "experiment: {} design, control {} ({}), treatment {} ({}); {} requests per arm, noise {}\n",
        serde_json::to_value(d.design).expect("designs serialize").as_str().unwrap_or_default(),
        d.control.name,
        d.control.kind,
        d.treatment.name,
        d.treatment.kind,
        d.settings.requests_per_arm,
        serde_json::to_value(d.settings.noise).expect("noise serializes").as_str().unwrap_or_default(),
    );
    out.push_str(&format!(
        "  {:<28} {:>12} {:>12} {:>9}  {}\n",
        "metric", "control", "treatment", "change", "95% interval (services resampled)"
    ));
    let rows = [
        (
            "mean latency ms",
            c.avg_latency_ms,
            t.avg_latency_ms,
            intervals.map(|i| &i.mean_latency),
        ),
        (
            "p95 latency ms",
            c.p95_latency_ms,
            t.p95_latency_ms,
            intervals.map(|i| &i.p95_latency),
        ),
        ("p99 latency ms", c.p99_latency_ms, t.p99_latency_ms, None),
        (
            "critical services latency ms",
            c.critical_services_latency_ms,
            t.critical_services_latency_ms,
            intervals.map(|i| &i.critical_latency),
        ),
        (
            "cost USD/month",
            c.total_cost,
            t.total_cost,
            intervals.map(|i| &i.cost),
        ),
        (
            "regions per service",
            c.redundancy_score,
            t.redundancy_score,
            None,
        ),
        (
            "error rate %",
            100.0 * c.error_rate,
            100.0 * t.error_rate,
            None,
        ),
    ];
    for (name, control, treatment, interval) in rows {
        out.push_str(&format!(
            "  {name:<28} {control:>12.2} {treatment:>12.2} {:>9}  {}\n",
            change_text(control, treatment),
            interval_text(interval)
        ));
    }
    out.push_str("  tests, treatment minus control:\n");
    for test in &d.service_level_tests {
        out.push_str(&format!(
            "    {}: statistic {:.3}, p {} ({} services){}\n",
            test.method,
            test.statistic,
            p_text(test.p_value),
            test.observations,
            if test.is_significant {
                ", significant at 0.05"
            } else {
                ""
            }
        ));
    }
    let s = &d.statistical_significance;
    out.push_str(&format!(
        "    request-level Welch's t-test, as the original study: t {:.3}, p {} ({} requests; not a valid test, for comparison)\n",
        s.t_statistic,
        p_text(s.p_value),
        c.total_requests + t.total_requests
    ));
    let e = &d.effect_size;
    let needed = match e.services_needed {
        Some(n) => format!("{n} services give"),
        None => "no number of services up to 10 million per arm gives".to_string(),
    };
    out.push_str(&format!(
        "  effect size: Cohen's d {:.3}; {needed} 80% power at alpha 0.05 (power now {:.3})\n",
        e.cohens_d, e.power_at_measured_services
    ));
    out.push_str(&format!(
        "  written to {} and the placements beside it; experiment {} in the database\n",
        report.results_path.display(),
        report.experiment_id
    ));
    out
}

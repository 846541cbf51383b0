//! Command-line interface: the commands, their flags, units and defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::experiment::{Design, Noise};

/// Recommends where each service should run across cloud regions, and with how many
/// replicas, so that users see less latency and the fleet costs less.
///
/// Every stage reads and writes one SQLite database (`--db`). Exit codes: 0 success,
/// 1 failure (I/O, SQLite), 2 invalid command line, 3 invalid input (unknown region, bad
/// size or setting, constraints that cannot hold, a missing model, an unreadable, damaged
/// or newer database), 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "placewise", version, propagate_version = true)]
pub struct Cli {
    /// Path of the SQLite database that every stage reads and writes.
    #[arg(
        long,
        global = true,
        default_value = "placewise.db",
        value_name = "PATH"
    )]
    pub db: PathBuf,

    /// Seed of every random draw, 0 to 2^63 - 1; the same seed and flags give identical
    /// outputs.
    #[arg(
        long,
        global = true,
        default_value_t = 42,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64)
    )]
    pub seed: u64,

    /// Store each step's wall time in the table `run_timings`. Off by default, so that the
    /// same seed and flags give a byte-identical database.
    #[arg(long, global = true)]
    pub record_timings: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the region catalog: city, coordinates, m5.large price, transfer price and RTT.
    Regions(RegionsArgs),
    /// Generate a synthetic fleet and its telemetry into the database, replacing it.
    Generate(GenerateArgs),
    /// Train the latency model on the database's placement history and store it.
    Train(TrainArgs),
    /// Solve the placement plan with the latency model, beside three baselines.
    Optimize(OptimizeArgs),
    /// Recommend one region or several, and how many, for a new service.
    Recommend(RecommendArgs),
    /// Compare two placements in an A/B experiment in the world model.
    Experiment(ExperimentArgs),
    /// Run generate, train, optimize and experiment in order on the given settings.
    Run(RunArgs),
    /// Serve the dashboard: pages and a JSON API over the database's results, read-only.
    Serve(ServeArgs),
}

/// Settings of the placement program, shared by `optimize` and `run`.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Weight of latency in the objective: USD per month that one ms of the fleet's
    /// traffic-weighted mean latency is worth, 0 to 1e9.
    #[arg(
        long,
        default_value_t = 1000.0,
        value_name = "USD",
        allow_negative_numbers = true
    )]
    pub lambda: f64,

    /// Peak-hour CPU utilization that hosts are sized for, in [0.01, 1].
    #[arg(
        long,
        default_value_t = 0.6,
        value_name = "FRACTION",
        allow_negative_numbers = true
    )]
    pub target_utilization: f64,

    /// Minimum regions per service (the redundancy floor).
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub min_replicas: i64,

    /// Maximum regions per service.
    #[arg(
        long,
        default_value_t = 5,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub max_replicas: i64,

    /// Latency SLO of latency-critical services, in ms: every origin's predicted routed
    /// latency must stay under it. The summary also counts the origins that miss it in the
    /// world model, where the prediction's error shows. No SLO by default.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub slo_ms: Option<f64>,

    /// vCPUs available to the fleet in each region. Without it services do not compete
    /// for capacity and each is solved alone; with it the fleet is one program.
    #[arg(long, value_name = "VCPUS", allow_negative_numbers = true)]
    pub capacity_vcpus: Option<f64>,

    /// Data residency: `NAME=REGION+REGION`, where NAME is a service (`auth-service-1`) or
    /// a template (`auth-service`). Repeat for more rules; later rules win.
    #[arg(long = "allow", value_name = "NAME=REGIONS")]
    pub allow: Vec<String>,

    /// How each service's program is solved when no capacity couples them: `highs` (the
    /// mixed-integer program), `search` (the exact search over region sets, the same
    /// optimum far faster with many regions), or `auto` (HiGHS up to 8 regions, the
    /// search above). With `--capacity-vcpus` the fleet program uses HiGHS either way.
    #[arg(long, value_enum, default_value_t = crate::optimize::ServiceSolver::Auto)]
    pub solver: crate::optimize::ServiceSolver,

    /// Seconds the solver may spend on one service's program, or on the whole search under
    /// `--capacity-vcpus`, both ways of placing the fleet. There each program stops adding
    /// columns at the limit, and still gets a tenth of it for its integer program.
    /// A limit that binds keeps the best plan found and makes it depend on the machine's
    /// speed. The set search always runs to the end.
    #[arg(
        long,
        default_value_t = 60.0,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub time_limit: f64,

    /// Relative optimality gap at which the solver stops, in [0, 1). Under
    /// `--capacity-vcpus` the gap is measured against the fleet program's proven bound.
    #[arg(
        long,
        default_value_t = 1e-6,
        value_name = "GAP",
        allow_negative_numbers = true
    )]
    pub mip_gap: f64,
}

#[derive(Debug, Args, Clone)]
pub struct RecommendArgs {
    /// Memory per instance, in MiB.
    #[arg(long, value_name = "MIB", allow_negative_numbers = true)]
    pub memory_mb: f64,

    /// vCPUs per instance.
    #[arg(long, value_name = "VCPUS", allow_negative_numbers = true)]
    pub cores: f64,

    /// Mean requests per second over all regions.
    #[arg(long, value_name = "RPS", allow_negative_numbers = true)]
    pub rps: f64,

    /// The service is latency-critical.
    #[arg(long)]
    pub critical: bool,

    /// Print one JSON object on stdout instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct OptimizeArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Directory of this run's outputs; the plan is written there as `plan.csv`.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,

    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub generate: GenerateArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub experiment: ExperimentSettingsArgs,
}

/// Settings of the A/B experiment, shared by `experiment` and `run`.
#[derive(Debug, Args, Clone)]
pub struct ExperimentSettingsArgs {
    /// Control arm: `random`, `heuristic`, `greedy` or `optimizer` (that plan of the latest
    /// `optimize`), or the path of a plan CSV in the format of `results/plan.csv` (write
    /// `./random` for a file named like a plan).
    #[arg(long, default_value = "random", value_name = "ARM")]
    pub control: String,

    /// Treatment arm, as for --control.
    #[arg(long, default_value = "optimizer", value_name = "ARM")]
    pub treatment: String,

    /// `paired`: every service runs under both arms. `split`: each service runs under one
    /// arm, and half of them (rounded down), chosen with the seed, under the treatment.
    #[arg(long, value_enum, default_value_t = Design::Paired)]
    pub design: Design,

    /// Requests drawn per arm from the world model, in proportion to the demand over
    /// services, origin regions and the hours of the last week; 2 to 100000000.
    #[arg(
        long,
        default_value_t = 100_000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub requests: i64,

    /// Bootstrap resamples of the services for the 95% intervals: 0 (no intervals), or 100
    /// to 1000000.
    #[arg(
        long,
        default_value_t = 2000,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub resamples: i64,

    /// `common`: both arms of the paired design draw the same requests and latency noise;
    /// `independent`: each arm draws its own [default: common for paired, independent for
    /// split].
    #[arg(long, value_enum)]
    pub noise: Option<Noise>,
}

#[derive(Debug, Args, Clone)]
pub struct ExperimentArgs {
    #[command(flatten)]
    pub settings: ExperimentSettingsArgs,

    /// Directory of this run's outputs: `ab_test_results.json`, `control_placement.csv`
    /// and `treatment_placement.csv`.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,

    /// Print the results document as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Settings of the latency model, shared by `train` and `run`.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Boosting rounds (trees), 1 to 100000.
    #[arg(
        long,
        default_value_t = 100,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub trees: i64,

    /// Deepest level of a tree, 1 to 30.
    #[arg(
        long,
        default_value_t = 5,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub max_depth: i64,

    /// Shrinkage of each tree's output, in (0, 1].
    #[arg(
        long,
        default_value_t = 0.1,
        value_name = "RATE",
        allow_negative_numbers = true
    )]
    pub learning_rate: f64,

    /// Maximum leaves per tree, 2 to 2^max-depth [default: 31, or 2^max-depth when smaller].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub num_leaves: Option<i64>,

    /// Minimum training rows in a leaf, 1 or more.
    #[arg(
        long,
        default_value_t = 20,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub min_data_in_leaf: i64,

    /// Share of the services whose rows are held out for the test metrics, strictly
    /// between 0 and 1 (at least one service on each side).
    #[arg(
        long,
        default_value_t = 0.2,
        value_name = "FRACTION",
        allow_negative_numbers = true
    )]
    pub test_fraction: f64,

    /// Folds of the cross-validation over the training rows: 0 (none) or 2 to 100.
    #[arg(
        long,
        default_value_t = 5,
        value_name = "K",
        allow_negative_numbers = true
    )]
    pub folds: i64,

    /// Threads of the training. The cross-validation fits and the final fit run up to N
    /// at a time, each with N / fits LightGBM threads (at least one). The trees are the
    /// same for every N; the model file records the threads each fit used.
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub threads: i64,

    /// Directory of this run's outputs: the model as `latency_model.txt` (LightGBM's text
    /// format) and, in `run`, the plan as `plan.csv` and the experiment's files.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Also write the training matrix as CSV to FILE: the features, the observed latency,
    /// the oracle latency and each row's split (`train` or `test`).
    #[arg(long, value_name = "FILE")]
    pub export_matrix: Option<PathBuf>,

    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RegionsArgs {
    /// Regions to list: a comma list of codes, `default` (the five of the original
    /// study), `all-priced` (the 22 with an instance price) or `all` (all 32).
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub regions: String,

    /// Print JSON (regions with their RTT row) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    /// Number of services, 1 to 100000; names cycle through 25 templates
    /// (`auth-service-1`, ...).
    #[arg(
        long,
        default_value_t = 150,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub services: usize,

    /// Days of telemetry, 1 to 3660, from Monday 2025-01-06 (UTC); 24 hourly traffic rows
    /// per day per service and region.
    #[arg(
        long,
        default_value_t = 90,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub days: usize,

    /// Regions of the fleet: a comma list of codes, `default` (us-east-1, us-west-2,
    /// eu-west-1, ap-southeast-1, ap-northeast-1), `all-priced` or `all`.
    #[arg(long, default_value = "default", value_name = "LIST")]
    pub regions: String,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// IP address and port to listen on (a name such as `localhost` is not accepted). The
    /// default accepts connections from this machine only, and 0.0.0.0 from every network
    /// interface. Port 0 picks a free port, which the first line on stderr names. The server
    /// reads `--db` read-only, shows its latest results and reads it again when it
    /// changes; Ctrl-C stops it after the requests in progress, with exit code 0.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub addr: std::net::SocketAddr,
}

//! Helpers shared by the integration tests: running the real binary and reading its
//! databases.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_placewise"));
    command.env("RUST_LOG", "warn");
    // Tests run side by side on few cores; spinning OpenMP workers would starve each other.
    command.env("OMP_WAIT_POLICY", "PASSIVE");
    command
}

/// Runs the binary with `args` and returns its output.
pub fn placewise(args: &[&str]) -> Output {
    binary().args(args).output().expect("the binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `sqlite3 PATH .dump`: the command-line client is the reference reader.
pub fn sqlite_dump(path: &Path) -> String {
    let output = Command::new("sqlite3")
        .arg(path)
        .arg(".dump")
        .output()
        .expect("the sqlite3 client is installed (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "sqlite3 failed: {}",
        stderr(&output)
    );
    String::from_utf8(output.stdout).expect("the dump is UTF-8")
}

/// Generates a fleet into `directory/name` and returns its path, panicking on failure.
pub fn generate(directory: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let path = directory.join(name);
    let mut args = vec!["--db", path.to_str().unwrap(), "generate"];
    args.extend_from_slice(extra);
    let output = placewise(&args);
    assert!(
        output.status.success(),
        "generate failed: {}",
        stderr(&output)
    );
    path
}

pub mod http;
pub mod webdriver;

/// Runs the whole pipeline on a small fleet (40 services, 7 days) in `directory`, and
/// returns the database's path. The results directory is `directory/results`.
pub fn run_small_pipeline(directory: &Path) -> PathBuf {
    let path = directory.join("placewise.db");
    let output = binary()
        .current_dir(directory)
        .args([
            "--db",
            "placewise.db",
            "run",
            "--services",
            "40",
            "--days",
            "7",
        ])
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "run failed: {}", stderr(&output));
    path
}

/// Returns the experiment document of the A/B page's tests, shaped as
/// `results/ab_test_results.json`: the original study's keys and a list of service-level
/// tests with intervals.
pub fn experiment_document() -> serde_json::Value {
    serde_json::json!({
        "control_metrics": {
            "total_placement_pairs": 122, "total_requests": 1_000_000,
            "avg_latency_ms": 117.7, "total_cost": 379_328.9,
            "redundancy_score": 3.05, "critical_services_latency_ms": 116.2
        },
        "treatment_metrics": {
            "total_placement_pairs": 136, "total_requests": 1_000_000,
            "avg_latency_ms": 64.3, "total_cost": 40_480.1,
            "redundancy_score": 3.4, "critical_services_latency_ms": 50.5
        },
        "improvements": {
            "latency_improvement_pct": 45.37, "cost_improvement_pct": 89.33,
            "critical_latency_improvement_pct": 56.54
        },
        "statistical_significance": {
            "t_statistic": 52.1, "p_value": 1e-30, "is_significant": true
        },
        "service_tests": [
            {"service": "auth-service-1", "mean_difference_ms": -12.0,
             "ci_low_ms": -15.0, "ci_high_ms": -9.0, "p_value": 0.001},
            {"service": "user-service-1", "mean_difference_ms": -3.0,
             "ci_low_ms": -6.5, "ci_high_ms": 0.4, "p_value": 0.08}
        ]
    })
}

/// Stores `document` as experiment 1 of `database`, with one row per service and arm in
/// `experiment_services` and a 20-bin histogram per arm, as `placewise experiment` stores
/// them. Creates the tables when the database predates them.
pub fn store_experiment(database: &Path, document: &serde_json::Value) {
    let connection = rusqlite::Connection::open(database).expect("the database opens");
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS experiments(experiment_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(run_id), design TEXT NOT NULL, control TEXT NOT NULL, treatment TEXT NOT NULL, document TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS experiment_services(experiment_id, service_id, arm TEXT, requests INTEGER, mean_latency_ms REAL, p95_latency_ms REAL, monthly_cost_usd REAL, critical INTEGER, PRIMARY KEY(experiment_id, service_id, arm));
             CREATE TABLE IF NOT EXISTS experiment_latency_histogram(experiment_id, arm, bin_low_ms REAL, bin_high_ms REAL, requests INTEGER, PRIMARY KEY(experiment_id, arm, bin_low_ms));",
        )
        .expect("the experiment tables are created");
    let run_id: i64 = connection
        .query_row("SELECT MAX(run_id) FROM runs", [], |row| row.get(0))
        .expect("the database has runs");
    connection
        .execute(
            "INSERT INTO experiments VALUES (1, ?1, 'service-level paired', 'random', 'optimizer', ?2)",
            rusqlite::params![run_id, document.to_string()],
        )
        .expect("the experiment is stored");
    let services: Vec<(i64, i64)> = connection
        .prepare("SELECT service_id, latency_critical FROM services ORDER BY service_id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (service_id, critical) in services {
        for (arm, factor) in [("control", 1.5), ("treatment", 1.0)] {
            let mean = 40.0 + (service_id % 17) as f64 * 7.0 * factor;
            connection
                .execute(
                    "INSERT INTO experiment_services VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    rusqlite::params![
                        service_id,
                        arm,
                        1000 + service_id * 37,
                        mean,
                        1.8 * mean,
                        250.0 * factor + service_id as f64,
                        critical
                    ],
                )
                .expect("a service row is stored");
        }
    }
    for (arm, shift) in [("control", 3i64), ("treatment", 0)] {
        for bin in 0..20i64 {
            let distance = (bin - 4 - shift) as f64;
            let requests = (5000.0 * (-distance * distance / 8.0).exp()) as i64;
            connection
                .execute(
                    "INSERT INTO experiment_latency_histogram VALUES (1, ?1, ?2, ?3, ?4)",
                    rusqlite::params![arm, bin as f64 * 20.0, (bin + 1) as f64 * 20.0, requests],
                )
                .expect("a histogram bin is stored");
        }
    }
}

/// Returns `results/ab_test_results.json` once `run` writes it and stores its rows. Until
/// then it writes the test's document there and stores it with [`store_experiment`], so
/// the A/B page has an experiment either way.
pub fn ensure_experiment(database: &Path, results: &Path) -> serde_json::Value {
    let connection = rusqlite::Connection::open(database).expect("the database opens");
    let stored: i64 = connection
        .query_row("SELECT COUNT(*) FROM experiments", [], |row| row.get(0))
        .unwrap_or(0);
    drop(connection);
    let path = results.join("ab_test_results.json");
    if stored == 0 || !path.exists() {
        let document = experiment_document();
        std::fs::write(&path, document.to_string()).expect("the document is written");
        store_experiment(database, &document);
    }
    let text = std::fs::read_to_string(&path).expect("the document is readable");
    serde_json::from_str(&text).expect("the document is JSON")
}

/// A `placewise serve` process, killed when dropped so that a failed test leaves no
/// server behind.
pub struct Server {
    pub child: std::process::Child,
    pub address: std::net::SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `placewise serve` on a free loopback port and reads the address it prints. A
/// thread keeps reading its stderr so that it never blocks.
pub fn start_server(database: &Path) -> Server {
    use std::io::BufRead;
    let mut child = binary()
        .args([
            "--db",
            database.to_str().unwrap(),
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines
        .next()
        .expect("serve prints its address")
        .expect("stderr is text");
    let address = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{first}`"));
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, address }
}

/// Reads lines from `log` until one contains `text`, and returns everything read. Panics
/// when the log ends first, with what it held.
pub fn read_until(log: &mut impl std::io::BufRead, text: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(text) {
        let mut line = String::new();
        let read = log.read_line(&mut line).expect("the log is readable");
        assert!(read > 0, "the log ended before `{text}`: {seen}");
        seen.push_str(&line);
    }
    seen
}

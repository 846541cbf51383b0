//! Benchmark of `generate` on the default fleet: generation plus the SQLite load, through
//! the same function as the command, as wall time and rows per second. Beside it, a
//! reference measured in the same process inserts the same traffic rows one statement per
//! row, the plain way to load SQLite.
//!
//! Run with `cargo bench --bench generate` (or `make bench`); `BENCH_REPEATS` sets the
//! number of repetitions (default 5), of which the median is reported.

use std::time::Instant;

use placewise::catalog::Catalog;
use placewise::commands::generate::write_generated;
use placewise::generate::{self, FleetConfig, START_DAY};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Loads the fleet's traffic rows one `INSERT` per row into a fresh file: the reference.
fn reference_load(path: &std::path::Path, fleet: &generate::Fleet) -> f64 {
    let started = Instant::now();
    let mut connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE traffic_patterns (service_id INTEGER, origin_region TEXT,
                                            timestamp INTEGER, requests_per_second INTEGER);",
        )
        .unwrap();
    let codes = fleet.config.regions.codes();
    let hours = fleet.hours();
    let transaction = connection.transaction().unwrap();
    {
        let mut statement = transaction
            .prepare("INSERT INTO traffic_patterns VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for (index, rps) in fleet.traffic.iter().enumerate() {
            let series = index / hours;
            let timestamp = START_DAY * 86_400 + (index % hours) as i64 * 3600;
            statement
                .execute(rusqlite::params![
                    (series / codes.len()) as i64,
                    codes[series % codes.len()],
                    timestamp,
                    rps
                ])
                .unwrap();
        }
    }
    transaction.commit().unwrap();
    started.elapsed().as_secs_f64()
}

fn main() {
    let repeats: usize = std::env::var("BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let directory = tempfile::tempdir().unwrap();
    let config = FleetConfig {
        services: 150,
        days: 90,
        regions: Catalog::embedded().select("default").unwrap(),
        seed: 42,
    };
    let mut generate_seconds = Vec::new();
    let mut store_seconds = Vec::new();
    let mut total_seconds = Vec::new();
    let mut reference_seconds = Vec::new();
    let mut rows = 0;
    let mut traffic_rows = 0;
    for repeat in 0..repeats {
        let path = directory.path().join(format!("bench-{repeat}.db"));
        let target = placewise::store::Target::acquire(&path).unwrap();
        let summary = write_generated(&config, &target, "bench", false, |_| true).unwrap();
        drop(target);
        generate_seconds.push(summary.generate_seconds);
        store_seconds.push(summary.store_seconds);
        total_seconds.push(summary.generate_seconds + summary.store_seconds);
        rows = summary.counts.total();
        traffic_rows = summary.counts.traffic_patterns;
        // The reference loads the same traffic, drawn again from the same seed.
        let fleet = generate::generate_telemetry(&config, || true).unwrap();

        let reference_path = directory.path().join(format!("reference-{repeat}.db"));
        reference_seconds.push(reference_load(&reference_path, &fleet));
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&reference_path).unwrap();
    }

    let total = median(total_seconds);
    let store = median(store_seconds);
    let reference = median(reference_seconds);
    println!("generate + store of the default fleet (150 services, 5 regions, 90 days), median of {repeats}");
    println!("  rows written             {rows}");
    println!(
        "  telemetry                {:.3} s",
        median(generate_seconds)
    );
    println!("  history + store          {store:.3} s  (history on a second thread)");
    println!(
        "  generate + store         {total:.3} s  ({:.0} rows/s)",
        rows as f64 / total
    );
    println!(
        "  reference traffic load   {reference:.3} s  ({:.0} rows/s, one INSERT per row)",
        traffic_rows as f64 / reference
    );
    println!("  store / reference        {:.2}", store / reference);
}

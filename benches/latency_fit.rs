//! Benchmark of the latency model's fit: the median wall time of `LatencyModel::fit` on
//! the training rows of an exported matrix, printed as JSON.
//!
//! `scripts/bench_latency_fit.sh` runs it beside Python LightGBM and XGBoost (hist) on
//! the same matrices, so that the ratios come from one script run. By hand:
//! `BENCH_MATRIX=matrix.csv cargo bench --bench latency_fit`; `BENCH_REPEATS` sets the
//! repetitions (default 3) and `BENCH_THREADS` the threads (default 2).

use std::time::Instant;

use placewise::features::LatencyMatrix;
use placewise::latency_model::{Hyperparameters, LatencyModel};

const NON_FEATURES: [&str; 6] = [
    "service_id",
    "date",
    "region",
    "latency_ms",
    "oracle_latency_ms",
    "split",
];

/// Reads a matrix written by `placewise train --export-matrix`, with its training rows.
fn read_matrix(path: &str) -> (LatencyMatrix, Vec<usize>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split(',').collect();
    let position = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let feature_columns: Vec<usize> = (0..header.len())
        .filter(|&k| !NON_FEATURES.contains(&header[k]))
        .collect();
    let mut matrix = LatencyMatrix {
        feature_names: feature_columns
            .iter()
            .map(|&k| header[k].to_string())
            .collect(),
        features: Vec::new(),
        target_ms: Vec::new(),
        oracle_ms: Vec::new(),
        service_ids: Vec::new(),
        dates: Vec::new(),
        regions: Vec::new(),
    };
    let mut train = Vec::new();
    for (row, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        for &k in &feature_columns {
            matrix.features.push(fields[k].parse().unwrap());
        }
        matrix
            .target_ms
            .push(fields[position("latency_ms")].parse().unwrap());
        matrix
            .oracle_ms
            .push(fields[position("oracle_latency_ms")].parse().unwrap());
        matrix
            .service_ids
            .push(fields[position("service_id")].parse().unwrap());
        matrix.dates.push(fields[position("date")].to_string());
        matrix.regions.push(fields[position("region")].to_string());
        if fields[position("split")] == "train" {
            train.push(row);
        }
    }
    (matrix, train)
}

fn main() {
    let path = std::env::var("BENCH_MATRIX").expect("set BENCH_MATRIX to an exported matrix");
    let repeats: usize = std::env::var("BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let (matrix, train) = read_matrix(&path);
    let hyperparameters = Hyperparameters {
        threads,
        ..Hyperparameters::default()
    };
    let mut seconds = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let model = LatencyModel::fit(&matrix, &train, &hyperparameters, 42).unwrap();
        seconds.push(started.elapsed().as_secs_f64());
        drop(model);
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "matrix_rows": matrix.rows(),
            "train_rows": train.len(),
            "fit_seconds": sorted[sorted.len() / 2],
            "fit_seconds_each": seconds,
        })
    );
}

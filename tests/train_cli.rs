//! `placewise train` run as a user would: the metrics table and JSON, the stored model, the
//! exported matrix, and clear errors for bad settings and missing data.

mod common;

use std::path::Path;

use common::{generate, placewise, stderr, stdout};
use rusqlite::Connection;

fn train(db: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--db",
        db.to_str().unwrap(),
        "train",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    placewise(&args)
}

const SMALL: [&str; 4] = ["--services", "30", "--days", "10"];

#[test]
fn json_holds_the_metrics_scripts_read() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    let out = directory.path().join("out");
    let output = train(&db, &out, &["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("stdout is JSON");
    let model = &json["latency_model"];
    for key in [
        "test_rmse",
        "test_mae",
        "test_r2",
        "mean_baseline_rmse",
        "oracle_rmse",
    ] {
        assert!(
            model[key].as_f64().is_some_and(f64::is_finite),
            "{key}: {}",
            model[key]
        );
    }
    assert!(model["test_rmse"].as_f64() < model["mean_baseline_rmse"].as_f64());
    assert!(json["timings"]["training_seconds"].as_f64().is_some());

    // The model file and the database row hold the same model.
    let text = std::fs::read_to_string(out.join("latency_model.txt")).unwrap();
    let connection = Connection::open(&db).unwrap();
    let (stored, metrics): (String, String) = connection
        .query_row(
            "SELECT model_text, metrics FROM models WHERE model_id = ?1",
            [model["model_id"].as_i64().unwrap()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored, text);
    let metrics: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    assert_eq!(metrics["test"]["rmse"], model["test_rmse"]);
    let predictions: i64 = connection
        .query_row("SELECT COUNT(*) FROM model_predictions", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(predictions, model["test_rows"].as_i64().unwrap());
    let importance: i64 = connection
        .query_row("SELECT COUNT(*) FROM model_feature_importance", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(importance, 22);
}

#[test]
fn table_shows_the_model_beside_the_baselines() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    let output = train(&db, &directory.path().join("out"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    for line in [
        "model ",
        "mean baseline",
        "oracle (noise only)",
        "5-fold cross-validation",
    ] {
        assert!(table.contains(line), "no `{line}` in\n{table}");
    }
}

#[test]
fn training_twice_gives_the_same_model_file() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    let (first, second) = (directory.path().join("a"), directory.path().join("b"));
    assert!(train(&db, &first, &[]).status.success());
    assert!(train(&db, &second, &[]).status.success());
    let read = |dir: &Path| std::fs::read(dir.join("latency_model.txt")).unwrap();
    assert!(read(&first) == read(&second), "the model files differ");
}

#[test]
fn exported_matrix_has_every_row_and_its_split() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    let csv = directory.path().join("matrix.csv");
    let output = train(
        &db,
        &directory.path().join("out"),
        &["--json", "--export-matrix", csv.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 3 + 22 + 3);
    assert_eq!(header.last(), Some(&"split"));
    let rows: Vec<&str> = lines.collect();
    let placements: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM service_placement", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(rows.len() as i64, placements);
    let test_rows = rows.iter().filter(|line| line.ends_with(",test")).count();
    assert_eq!(
        test_rows as i64,
        json["latency_model"]["test_rows"].as_i64().unwrap()
    );
}

#[test]
fn bad_settings_are_rejected_before_reading_the_database() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    let out = directory.path().join("out");
    for (flags, expected) in [
        (vec!["--trees", "0"], "--trees 0 is invalid"),
        (
            vec!["--learning-rate", "-0.5"],
            "--learning-rate -0.5 is invalid",
        ),
        (vec!["--folds", "1"], "--folds 1 is invalid"),
        (vec!["--test-fraction", "1"], "--test-fraction 1 is invalid"),
        (
            vec!["--max-depth", "3", "--num-leaves", "31"],
            "--num-leaves 31 is invalid",
        ),
    ] {
        let output = train(&db, &out, &flags);
        assert_eq!(output.status.code(), Some(3), "{flags:?}");
        assert!(
            stderr(&output).contains(expected),
            "{flags:?}: {}",
            stderr(&output)
        );
        assert!(!out.exists(), "{flags:?} wrote output");
    }
}

#[test]
fn missing_database_names_the_command_that_creates_it() {
    let directory = tempfile::tempdir().unwrap();
    let output = train(
        &directory.path().join("absent.db"),
        &directory.path().join("out"),
        &[],
    );
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        message.contains("hint: run `placewise generate"),
        "{message}"
    );
}

#[test]
fn database_without_history_is_explained() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM service_placement", [])
        .unwrap();
    let output = train(&db, &directory.path().join("out"), &[]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("no placement history"),
        "{}",
        stderr(&output)
    );
}

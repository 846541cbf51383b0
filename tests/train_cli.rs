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
    assert!(message.contains("hint: run `placewise --db"), "{message}");
    assert!(
        message.contains(" generate` for the fleet alone"),
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

#[test]
fn damaged_databases_are_named_not_panicked_on() {
    let directory = tempfile::tempdir().unwrap();
    let clean = generate(directory.path(), "clean.db", &SMALL);
    for (damage, expected) in [
        (
            "DELETE FROM services WHERE service_id = 3",
            "service 3, which is not in `services`",
        ),
        (
            "UPDATE service_placement SET latency_ms = 'fast' WHERE service_id = 2",
            "column `latency_ms` holds a text value",
        ),
        (
            "UPDATE service_placement SET latency_ms = -500 WHERE service_id = 2",
            "service_placement.latency_ms = -500",
        ),
        (
            "UPDATE service_placement SET cpu_utilization = 50 WHERE service_id = 2",
            "service_placement.cpu_utilization = 50",
        ),
        (
            "UPDATE regional_latency SET rtt_ms = -50 WHERE date = '2025-01-07'",
            "regional_latency.rtt_ms = -50",
        ),
        (
            "UPDATE service_placement SET region = 'mars-1' WHERE service_id = 2 AND date = '2025-01-06' AND region = (SELECT MIN(region) FROM service_placement WHERE service_id = 2 AND date = '2025-01-06')",
            "region `mars-1`",
        ),
    ] {
        let db = directory.path().join("damaged.db");
        std::fs::copy(&clean, &db).unwrap();
        let connection = Connection::open(&db).unwrap();
        connection
            .execute_batch(&format!("PRAGMA foreign_keys = OFF; {damage}"))
            .unwrap_or_else(|e| panic!("{damage}: {e}"));
        drop(connection);
        let output = train(&db, &directory.path().join("out"), &[]);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{damage}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{damage}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn outputs_that_are_not_files_are_left_alone() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    let occupied = directory.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    let output = train(
        &db,
        &directory.path().join("out"),
        &["--export-matrix", occupied.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("is not a regular file"),
        "{}",
        stderr(&output)
    );
    assert!(occupied.is_dir());
    assert!(!directory
        .path()
        .join("out")
        .join("latency_model.txt")
        .exists());

    // A symbolic link is written through, and stays a link.
    let link = directory.path().join("link.csv");
    std::os::unix::fs::symlink("target.csv", &link).unwrap();
    let output = train(
        &db,
        &directory.path().join("out"),
        &["--folds", "0", "--export-matrix", link.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(link.is_symlink());
    let text = std::fs::read_to_string(directory.path().join("target.csv")).unwrap();
    assert!(text.starts_with("service_id,date,region"));
}

#[test]
fn too_few_rows_for_the_folds_suggests_fewer() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(
        directory.path(),
        "fleet.db",
        &["--services", "2", "--days", "3"],
    );
    let output = train(&db, &directory.path().join("out"), &["--folds", "100"]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("100-fold cross-validation"), "{message}");
    assert!(message.contains("hint: pass `--folds 0`"), "{message}");
    let output = train(&db, &directory.path().join("out"), &["--folds", "0"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn interrupted_training_stores_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(
        directory.path(),
        "fleet.db",
        &["--services", "300", "--days", "30"],
    );
    let out = directory.path().join("out");
    let mut child = common::binary()
        .args([
            "--db",
            db.to_str().unwrap(),
            "train",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first fit has begun, then send one Ctrl-C: the fits that have not
    // begun must not start.
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = common::read_until(&mut log, "fitting");
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    std::io::Read::read_to_string(&mut log, &mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(!out.join("latency_model.txt").exists());
    let models: i64 = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'models'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    if models > 0 {
        let stored: i64 = Connection::open(&db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM models", [], |row| row.get(0))
            .unwrap();
        assert_eq!(stored, 0);
    }
}

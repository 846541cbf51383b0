//! `placewise experiment` and `placewise run` as a user runs them: the results document
//! with the original study's keys, the tables the dashboard reads, determinism, and clear
//! errors for bad arms and plan files.

mod common;

use std::path::Path;

use common::{generate, placewise, sqlite_dump, stderr, stdout};
use rusqlite::Connection;

const SMALL: [&str; 4] = ["--services", "30", "--days", "10"];

fn command(db: &Path, verb: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--db", db.to_str().unwrap(), verb];
    args.extend_from_slice(extra);
    placewise(&args)
}

/// Returns the results text without its last key, `timings`.
fn without_timings(text: &str) -> &str {
    let end = text
        .find(",\n  \"timings\": {")
        .expect("the timings key is last");
    &text[..end]
}

fn original_keys_are_numbers(json: &serde_json::Value) {
    for arm in ["control_metrics", "treatment_metrics"] {
        for key in [
            "total_placement_pairs",
            "total_requests",
            "avg_latency_ms",
            "total_cost",
            "redundancy_score",
            "critical_services_latency_ms",
        ] {
            assert!(
                json[arm][key].as_f64().is_some_and(f64::is_finite),
                "{arm}.{key}: {}",
                json[arm][key]
            );
        }
    }
    for key in [
        "latency_improvement_pct",
        "cost_improvement_pct",
        "critical_latency_improvement_pct",
    ] {
        assert!(
            json["improvements"][key]
                .as_f64()
                .is_some_and(f64::is_finite),
            "improvements.{key}"
        );
    }
    let significance = &json["statistical_significance"];
    assert!(significance["t_statistic"]
        .as_f64()
        .is_some_and(f64::is_finite));
    assert!(significance["p_value"].as_f64().is_some_and(f64::is_finite));
    assert!(significance["is_significant"].is_boolean());
}

#[test]
fn run_on_default_fleet_finds_the_plan_better() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("fleet.db");
    let out = directory.path().join("results");
    let output = command(&db, "run", &["--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    for stage in [
        "[1/4] generate",
        "[2/4] train",
        "[3/4] optimize",
        "[4/4] experiment",
    ] {
        assert!(
            stderr(&output).contains(stage),
            "{stage}: {}",
            stderr(&output)
        );
    }
    let table = stdout(&output);
    for line in [
        "summary: optimizer against random",
        "mean latency change, 95% interval",
        "cost change, 95% interval",
        "p-value, paired t-test",
        "latency model (test rows)",
        "solver",
        "time per stage",
    ] {
        assert!(table.contains(line), "{line}: {table}");
    }

    let text = std::fs::read_to_string(out.join("ab_test_results.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    original_keys_are_numbers(&json);
    assert_eq!(json["design"], "paired");
    assert_eq!(json["control_metrics"]["total_requests"], 100_000);
    for key in ["mean_latency", "cost"] {
        let interval = &json["intervals"][key];
        assert!(
            interval["high_pct"].as_f64().unwrap() < 0.0,
            "{key}: {interval}"
        );
        assert_eq!(interval["excludes_zero"], true, "{key}");
    }
    assert_eq!(json["service_level_tests"][0]["is_significant"], true);
    assert_eq!(json["service_level_tests"][1]["is_significant"], true);
    for key in ["load_seconds", "evaluate_seconds", "analysis_seconds"] {
        assert!(json["timings"][key].as_f64().is_some(), "timings.{key}");
    }

    // The database holds the same document, without the timings, and the dashboard's
    // tables.
    let connection = Connection::open(&db).unwrap();
    let (design, control, treatment, document): (String, String, String, String) = connection
        .query_row(
            "SELECT design, control, treatment, document FROM experiments",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!((design.as_str(), control.as_str()), ("paired", "random"));
    assert_eq!(treatment, "optimizer");
    assert_eq!(
        document.trim_end().trim_end_matches('}').trim_end(),
        without_timings(&text)
    );
    let rows: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM experiment_services WHERE arm = 'control'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(rows, 150);
    let different_bins: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM experiment_latency_histogram c
             LEFT JOIN experiment_latency_histogram t
               ON t.experiment_id = c.experiment_id AND t.arm = 'treatment'
              AND t.bin_low_ms = c.bin_low_ms AND t.bin_high_ms = c.bin_high_ms
             WHERE c.arm = 'control' AND t.arm IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(different_bins, 0);
    let binned: i64 = connection
        .query_row(
            "SELECT SUM(requests) FROM experiment_latency_histogram WHERE arm = 'treatment'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(binned, 100_000);
    drop(connection);

    // Two identical arms show no difference: with common random numbers every service's
    // difference is zero, and the split design compares two random halves.
    for design in ["paired", "split"] {
        let output = command(
            &db,
            "experiment",
            &[
                "--control",
                "optimizer",
                "--treatment",
                "optimizer",
                "--design",
                design,
                "--resamples",
                "200",
                "--json",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(output.status.success(), "{design}: {}", stderr(&output));
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        original_keys_are_numbers(&json);
        for test in json["service_level_tests"].as_array().unwrap() {
            assert_eq!(test["is_significant"], false, "{design}: {test}");
        }
        assert_eq!(
            json["intervals"]["mean_latency"]["excludes_zero"], false,
            "{design}"
        );
    }
}

#[test]
fn run_twice_gives_identical_outputs() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("fleet.db");
    let out = directory.path().join("results");
    let mut args = vec!["--out", out.to_str().unwrap(), "--requests", "5000"];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(&["--folds", "0", "--resamples", "300"]);
    let mut texts = Vec::new();
    let mut dumps = Vec::new();
    let mut placements = Vec::new();
    for _ in 0..2 {
        let output = command(&db, "run", &args);
        assert!(output.status.success(), "{}", stderr(&output));
        texts.push(std::fs::read_to_string(out.join("ab_test_results.json")).unwrap());
        dumps.push(sqlite_dump(&db));
        placements.push(std::fs::read(out.join("treatment_placement.csv")).unwrap());
    }
    assert_eq!(without_timings(&texts[0]), without_timings(&texts[1]));
    assert!(dumps[0] == dumps[1], "the database dumps differ");
    assert_eq!(placements[0], placements[1]);
}

#[test]
fn run_matches_its_stages_run_apart() {
    let directory = tempfile::tempdir().unwrap();
    let together = directory.path().join("together");
    let apart = directory.path().join("apart");
    std::fs::create_dir_all(&together).unwrap();
    std::fs::create_dir_all(&apart).unwrap();
    let settings = ["--folds", "2", "--requests", "5000", "--resamples", "300"];
    let mut args = vec!["--out", together.to_str().unwrap()];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(&settings);
    let output = command(&together.join("fleet.db"), "run", &args);
    assert!(output.status.success(), "{}", stderr(&output));

    // The same stages, each reading what the one before stored.
    let db = apart.join("fleet.db");
    let out = apart.join("results");
    let out = out.to_str().unwrap();
    let stages: [(&str, Vec<&str>); 4] = [
        ("generate", SMALL.to_vec()),
        ("train", vec!["--out", out, "--folds", "2"]),
        ("optimize", vec!["--out", out]),
        (
            "experiment",
            vec!["--out", out, "--requests", "5000", "--resamples", "300"],
        ),
    ];
    for (verb, extra) in stages {
        let output = command(&db, verb, &extra);
        assert!(output.status.success(), "{verb}: {}", stderr(&output));
    }

    for file in ["plan.csv", "latency_model.txt", "treatment_placement.csv"] {
        let one = std::fs::read(together.join(file)).unwrap();
        let other = std::fs::read(apart.join("results").join(file)).unwrap();
        assert!(
            one == other,
            "{file} differs between run and the four stages"
        );
    }
    let one = std::fs::read_to_string(together.join("ab_test_results.json")).unwrap();
    let other = std::fs::read_to_string(apart.join("results/ab_test_results.json")).unwrap();
    assert_eq!(without_timings(&one), without_timings(&other));
}

#[test]
fn run_keeps_other_writers_out_to_the_end() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("fleet.db");
    let out = directory.path().join("results");
    // The default fleet, whose training and later stages take over a second.
    let mut child = common::binary()
        .args(["--db", db.to_str().unwrap(), "run"])
        .args(["--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = common::read_until(&mut log, "[2/4]");
    // Once the fleet is stored, the run still has to store its results beside it.
    let started = std::time::Instant::now();
    while !db.exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the fleet was not stored in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let other = command(&db, "generate", &["--services", "20", "--days", "3"]);
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(stderr(&other).contains("is in use"), "{}", stderr(&other));

    std::io::Read::read_to_string(&mut log, &mut seen).unwrap();
    assert!(child.wait().unwrap().success(), "{seen}");
    let commands: Vec<String> = Connection::open(&db)
        .unwrap()
        .prepare("SELECT command FROM runs ORDER BY run_id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(commands, ["run", "run", "run", "run"]);
}

#[test]
fn run_rejects_doomed_settings_before_work() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(
        directory.path(),
        "fleet.db",
        &["--services", "20", "--days", "3"],
    );
    let before = std::fs::read(&db).unwrap();
    let not_a_directory = directory.path().join("file");
    std::fs::write(&not_a_directory, "").unwrap();
    let cases: [(&[&str], &str); 11] = [
        (&["--lambda", "-1"], "--lambda -1 is invalid"),
        (&["--mip-gap", "2"], "--mip-gap 2 is invalid"),
        (&["--min-replicas", "6"], "--min-replicas 6 is invalid"),
        (&["--regions", "us-east-1"], "--min-replicas 2 is invalid"),
        (&["--services", "1"], "needs at least 2 services"),
        (&["--services", "4"], "needs at least 5 training services"),
        (
            &["--out", not_a_directory.to_str().unwrap()],
            "not a directory",
        ),
        (
            &["--allow", "nobody=us-east-1+eu-west-1"],
            "--allow nobody is invalid",
        ),
        (&["--allow", "auth-service=us-east-1"], "only 1 region(s)"),
        (&["--capacity-vcpus", "1"], "one instance per replica needs"),
        (&["--services", "0"], "`--services` must be at least 1"),
    ];
    for (flags, expected) in cases {
        let output = command(&db, "run", flags);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{flags:?}: {message}");
        assert!(message.contains(expected), "{flags:?}: {message}");
        assert!(message.contains("is as it was"), "{flags:?}: {message}");
        assert!(
            std::fs::read(&db).unwrap() == before,
            "{flags:?} changed the database"
        );
    }
}

#[test]
fn run_rejects_unpriced_regions_before_work() {
    let directory = tempfile::tempdir().unwrap();
    let db = directory.path().join("fleet.db");
    let output = command(&db, "run", &["--regions", "all"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("have no instance price"),
        "{}",
        stderr(&output)
    );
    assert!(
        !db.exists(),
        "run wrote a database before rejecting the regions"
    );
}

#[test]
fn arms_from_files_and_their_errors() {
    let directory = tempfile::tempdir().unwrap();
    let db = generate(directory.path(), "fleet.db", &SMALL);
    let out = directory.path().join("out");
    let out_flag = ["--out", out.to_str().unwrap()];

    // Before `optimize` there are no stored plans.
    let output = command(&db, "experiment", &out_flag);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("hint: run `placewise optimize` first"),
        "{}",
        stderr(&output)
    );
    let output = command(&db, "train", &[&out_flag[..], &["--folds", "0"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    let output = command(&db, "optimize", &out_flag);
    assert!(output.status.success(), "{}", stderr(&output));

    // The plan file optimize wrote is the stored optimizer plan, so with common random
    // numbers the two arms measure the same.
    let plan = out.join("plan.csv");
    let output = command(
        &db,
        "experiment",
        &[
            "--control",
            "optimizer",
            "--treatment",
            plan.to_str().unwrap(),
            "--requests",
            "5000",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["treatment"]["kind"], "plan file");
    assert_eq!(json["improvements"]["latency_improvement_pct"], 0.0);
    assert_eq!(json["improvements"]["cost_improvement_pct"], 0.0);

    let previous = std::fs::read_to_string(out.join("ab_test_results.json")).unwrap();
    let text = std::fs::read_to_string(&plan).unwrap();
    let broken = directory.path().join("broken.csv");
    let cases = [
        (
            text.replacen("us-east-1", "mars-1", 1),
            "field `region` has `mars-1`",
        ),
        (
            text.replacen(",auth-service-1,", ",nobody,", 1),
            "field `service_name` has `nobody`",
        ),
        (
            text.replacen("instances", "count", 1),
            "no column `instances`",
        ),
    ];
    for (content, expected) in cases {
        std::fs::write(&broken, content).unwrap();
        let output = command(
            &db,
            "experiment",
            &[
                "--treatment",
                broken.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(3),
            "{expected}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{expected}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("broken.csv"),
            "{}",
            stderr(&output)
        );
    }
    // A failed experiment leaves the earlier results in place.
    assert_eq!(
        std::fs::read_to_string(out.join("ab_test_results.json")).unwrap(),
        previous
    );

    for (flags, expected) in [
        (vec!["--control", "best"], "--control best is invalid"),
        (vec!["--requests", "1"], "--requests 1 is invalid"),
        (vec!["--resamples", "-5"], "--resamples -5 is invalid"),
        (
            vec!["--design", "split", "--noise", "common"],
            "--noise common is invalid",
        ),
    ] {
        let args = [&flags[..], &out_flag].concat();
        let output = command(&db, "experiment", &args);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{flags:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{flags:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn recorded_versions_match_the_lock_file() {
    use placewise::commands::experiment::{
        RAND_CHACHA_VERSION, RAND_DISTR_VERSION, STATRS_VERSION,
    };
    let lock = include_str!("../Cargo.lock");
    for (name, version) in [
        ("statrs", STATRS_VERSION),
        ("rand_chacha", RAND_CHACHA_VERSION),
        ("rand_distr", RAND_DISTR_VERSION),
    ] {
        let entry = format!("name = \"{name}\"\nversion = \"{version}\"");
        assert!(
            lock.contains(&entry),
            "{name} {version} is not in Cargo.lock"
        );
    }
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/stats_reference.json")).unwrap();
    assert_eq!(
        fixture["scipy"],
        placewise::commands::experiment::SCIPY_REFERENCE_VERSION
    );
}

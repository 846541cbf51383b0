//! The `generate` and `regions` commands run as a user would: row counts, determinism,
//! and clear errors with no partial database on bad input or interruption.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{generate, placewise, sqlite_dump, stderr, stdout};
use rusqlite::Connection;

fn count(path: &Path, table: &str) -> i64 {
    let connection = Connection::open(path).unwrap();
    connection
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
}

#[test]
fn default_fleet_has_study_row_counts() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(directory.path(), "fleet.db", &[]);
    assert_eq!(count(&path, "services"), 150);
    assert_eq!(count(&path, "regions"), 5);
    assert_eq!(count(&path, "regional_latency"), 2_250);
    assert_eq!(count(&path, "traffic_patterns"), 1_620_000);
    let placements = count(&path, "service_placement");
    assert!((20_000..=60_000).contains(&placements), "{placements}");
    // The sqlite3 client reads the file and finds it consistent.
    let check = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("PRAGMA integrity_check; PRAGMA foreign_key_check;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
}

#[test]
fn same_seed_gives_identical_dump() {
    let directory = tempfile::tempdir().unwrap();
    let flags = ["--services", "40", "--days", "10"];
    let first = generate(directory.path(), "a.db", &flags);
    let second = generate(directory.path(), "b.db", &flags);
    let first_dump = sqlite_dump(&first);
    assert!(first_dump.contains("INSERT INTO traffic_patterns"));
    assert!(first_dump == sqlite_dump(&second), "the dumps differ");
}

#[test]
fn different_seed_gives_different_dump() {
    let directory = tempfile::tempdir().unwrap();
    let flags = ["--services", "40", "--days", "10"];
    let first = generate(directory.path(), "a.db", &flags);
    let mut other = vec!["--seed", "7"];
    other.extend_from_slice(&flags);
    let second = generate(directory.path(), "b.db", &other);
    assert!(
        sqlite_dump(&first) != sqlite_dump(&second),
        "the dumps are equal"
    );
}

#[test]
fn flags_scale_the_tables() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "small.db",
        &[
            "--services",
            "30",
            "--days",
            "7",
            "--regions",
            "us-east-1,eu-west-1,sa-east-1",
        ],
    );
    assert_eq!(count(&path, "services"), 30);
    assert_eq!(count(&path, "regions"), 3);
    assert_eq!(count(&path, "regional_latency"), 7 * 9);
    assert_eq!(count(&path, "traffic_patterns"), 30 * 3 * 7 * 24);
}

#[test]
fn runs_table_records_parameters_and_version() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "3"],
    );
    let connection = Connection::open(&path).unwrap();
    let (command, version, seed, parameters): (String, String, i64, String) = connection
        .query_row(
            "SELECT command, version, seed, parameters FROM runs",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!(command, "generate");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(seed, 42);
    let parameters: serde_json::Value = serde_json::from_str(&parameters).unwrap();
    assert_eq!(parameters["services"], 25);
    assert_eq!(parameters["days"], 3);
    let steps: i64 = connection
        .query_row("SELECT COUNT(*) FROM run_timings", [], |row| row.get(0))
        .unwrap();
    assert_eq!(steps, 0, "timings are stored only on request");
}

#[test]
fn record_timings_stores_each_step() {
    let directory = tempfile::tempdir().unwrap();
    let flags = ["--services", "25", "--days", "3", "--record-timings"];
    let path = generate(directory.path(), "fleet.db", &flags);
    let connection = Connection::open(&path).unwrap();
    let steps: Vec<(String, f64)> = connection
        .prepare("SELECT step, seconds FROM run_timings ORDER BY step")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<&str> = steps.iter().map(|(step, _)| step.as_str()).collect();
    assert_eq!(names, ["store", "telemetry"]);
    assert!(steps
        .iter()
        .all(|(_, seconds)| *seconds >= 0.0 && *seconds < 60.0));
}

#[test]
fn unknown_region_is_rejected_with_valid_list() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("fleet.db");
    let output = placewise(&[
        "--db",
        path.to_str().unwrap(),
        "generate",
        "--regions",
        "us-east-1,moon-1",
    ]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("unknown region `moon-1`"), "{message}");
    assert!(message.contains("ap-southeast-1"), "{message}");
    assert!(!path.exists());
}

#[test]
fn zero_and_negative_sizes_are_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("fleet.db");
    let db = path.to_str().unwrap();
    let zero = placewise(&["--db", db, "generate", "--services", "0"]);
    assert_eq!(zero.status.code(), Some(3));
    assert!(stderr(&zero).contains("`--services` must be at least 1, got 0"));
    let zero_days = placewise(&["--db", db, "generate", "--days", "0"]);
    assert_eq!(zero_days.status.code(), Some(3));
    // A negative number is not a count: clap rejects it as a usage error.
    let negative = placewise(&["--db", db, "generate", "--days", "-3"]);
    assert_eq!(negative.status.code(), Some(2));
    assert!(stderr(&negative).contains("--days"));
    assert!(!path.exists());
}

#[test]
fn missing_directory_is_rejected_before_work() {
    let output = placewise(&[
        "--db",
        "/nonexistent/directory/fleet.db",
        "generate",
        "--days",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("hint:"), "{message}");
}

#[test]
fn directory_as_database_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let output = placewise(&["--db", directory.path().to_str().unwrap(), "generate"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("is a directory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unwritable_directory_fails_cleanly() {
    // /proc exists, but no file can be created in it, even by root.
    let output = placewise(&["--db", "/proc/placewise-test.db", "generate", "--days", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("cannot write a database next to"),
        "{message}"
    );
    assert!(
        message
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("hint:"),
        "{message}"
    );
}

#[test]
fn symlink_target_is_replaced_and_link_kept() {
    let directory = tempfile::tempdir().unwrap();
    let real = generate(
        directory.path(),
        "real.db",
        &["--services", "25", "--days", "1"],
    );
    let link = directory.path().join("link.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    generate(
        directory.path(),
        "link.db",
        &["--services", "30", "--days", "1"],
    );
    assert!(link.is_symlink());
    assert_eq!(count(&real, "services"), 30);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&real).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

/// Runs `statements` in a Python SQLite writer on `path` that then kills itself, and returns
/// the path of the sidecar file `suffix` it must leave behind.
fn crash_writer(path: &Path, statements: &str, suffix: &str) -> std::path::PathBuf {
    let script = format!(
        "import sqlite3, os\nc = sqlite3.connect({path:?}, isolation_level=None)\n{statements}\nos._exit(9)\n",
        path = path.to_str().unwrap()
    );
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(!status.success(), "the writer did not crash");
    let mut sidecar = path.to_path_buf().into_os_string();
    sidecar.push(suffix);
    let sidecar = std::path::PathBuf::from(sidecar);
    assert!(sidecar.exists(), "no {suffix} file was left");
    sidecar
}

#[test]
fn leftover_write_ahead_log_is_folded_in_first() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "1"],
    );
    // A writer that dies with its write-ahead log not yet checkpointed.
    let wal = crash_writer(
        &path,
        "c.execute('pragma journal_mode=wal'); c.execute('pragma wal_autocheckpoint=0')\n\
         c.execute('update services set template = template')",
        "-wal",
    );

    generate(
        directory.path(),
        "fleet.db",
        &["--services", "30", "--days", "1"],
    );
    let check = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("PRAGMA integrity_check;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
    assert_eq!(count(&path, "services"), 30);
    assert!(!wal.exists());
}

#[test]
fn database_open_elsewhere_is_not_replaced() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "1"],
    );
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; UPDATE services SET template = template;")
        .unwrap();
    let output = placewise(&["--db", path.to_str().unwrap(), "generate", "--days", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("in use by another process"),
        "{}",
        stderr(&output)
    );
    assert_eq!(count(&path, "services"), 25);
    drop(holder);
}

#[test]
fn concurrent_generate_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("fleet.db");
    let mut first = common::binary()
        .args([
            "--db",
            path.to_str().unwrap(),
            "generate",
            "--services",
            "600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The partial file appears only once the first run holds the lock.
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial_files(directory.path()) == 0 {
        assert!(Instant::now() < deadline, "no partial file appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = placewise(&["--db", path.to_str().unwrap(), "generate", "--days", "1"]);
    assert!(first.wait().unwrap().success());
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("in use by another process"),
        "{}",
        stderr(&second)
    );
    assert_eq!(count(&path, "services"), 600);
}

#[test]
fn newer_schema_is_rejected_and_kept() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("future.db");
    let connection = Connection::open(&path).unwrap();
    connection
        .execute_batch(&format!(
            "CREATE TABLE t(x); PRAGMA application_id = {}; PRAGMA user_version = 99;",
            placewise::store::APPLICATION_ID
        ))
        .unwrap();
    drop(connection);
    let before = std::fs::read(&path).unwrap();
    let output = placewise(&["--db", path.to_str().unwrap(), "generate", "--days", "1"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("schema version 99"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn foreign_file_is_not_overwritten() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("notes.txt");
    std::fs::write(&path, "my notes, not a database\n".repeat(100)).unwrap();
    let output = placewise(&["--db", path.to_str().unwrap(), "generate", "--days", "1"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("is not a placewise database"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "my notes, not a database\n".repeat(100)
    );
}

/// Starts a large `generate` over an existing database, sends `signal` once the partial
/// file exists, and returns the exit status.
fn interrupt_generate(path: &Path, signal: &str) -> std::process::ExitStatus {
    let mut child = common::binary()
        .args([
            "--db",
            path.to_str().unwrap(),
            "generate",
            "--services",
            "2000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let directory = path.parent().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let partial = std::fs::read_dir(directory).unwrap().any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        });
        if partial {
            break;
        }
        assert!(Instant::now() < deadline, "no partial file appeared");
        assert!(child.try_wait().unwrap().is_none(), "generate ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the load get under way before interrupting it.
    std::thread::sleep(Duration::from_millis(300));
    let killed = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap()
}

fn partial_files(directory: &Path) -> usize {
    std::fs::read_dir(directory)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        })
        .count()
}

#[test]
fn interrupted_generate_keeps_previous_database() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "2"],
    );
    let before = sqlite_dump(&path);

    let status = interrupt_generate(&path, "-INT");
    assert_eq!(status.code(), Some(130));
    assert_eq!(sqlite_dump(&path), before);
    assert_eq!(
        partial_files(directory.path()),
        0,
        "Ctrl-C removes the partial file"
    );
}

#[test]
fn killed_generate_keeps_previous_database() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "2"],
    );
    let before = sqlite_dump(&path);

    let status = interrupt_generate(&path, "-KILL");
    assert_eq!(status.code(), None);
    assert_eq!(sqlite_dump(&path), before);
}

#[test]
fn regions_json_lists_prices_and_rtt() {
    let output = placewise(&["regions", "--regions", "default", "--json"]);
    assert!(output.status.success());
    let regions: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let regions = regions.as_array().unwrap();
    assert_eq!(regions.len(), 5);
    assert_eq!(regions[0]["code"], "us-east-1");
    assert_eq!(regions[0]["usd_per_hour"], 0.096);
    let rtt = regions[0]["rtt_ms"]["eu-west-1"].as_f64().unwrap();
    assert!((60.0..90.0).contains(&rtt), "{rtt}");
}

#[test]
fn regions_table_marks_unpriced_regions() {
    let output = placewise(&["regions", "--regions", "sa-east-1,us-east-1"]);
    assert!(output.status.success());
    let table = stdout(&output);
    let line = table.lines().find(|l| l.starts_with("sa-east-1")).unwrap();
    assert!(line.contains(" - "), "{line}");
    assert!(table.contains("median RTT in ms"));
}

#[test]
fn terminated_generate_keeps_previous_database() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "2"],
    );
    let before = sqlite_dump(&path);

    let status = interrupt_generate(&path, "-TERM");
    assert_eq!(status.code(), Some(130));
    assert_eq!(sqlite_dump(&path), before);
    assert_eq!(partial_files(directory.path()), 0);
}

#[test]
fn hot_journal_is_rolled_back_first() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "1"],
    );
    // A writer that dies in the middle of a large rollback-journal transaction.
    let journal = crash_writer(
        &path,
        "c.execute('pragma cache_size=1'); c.execute('begin')\n\
         c.execute('update traffic_patterns set requests_per_second = requests_per_second + 1')",
        "-journal",
    );

    generate(
        directory.path(),
        "fleet.db",
        &["--services", "30", "--days", "1"],
    );
    assert_eq!(count(&path, "services"), 30);
    assert!(!journal.exists());
}

#[test]
fn database_read_elsewhere_is_not_replaced() {
    let directory = tempfile::tempdir().unwrap();
    let path = generate(
        directory.path(),
        "fleet.db",
        &["--services", "25", "--days", "1"],
    );
    let mut reader = Connection::open(&path).unwrap();
    let transaction = reader.transaction().unwrap();
    let services: i64 = transaction
        .query_row("SELECT COUNT(*) FROM services", [], |row| row.get(0))
        .unwrap();
    assert_eq!(services, 25);
    let output = placewise(&["--db", path.to_str().unwrap(), "generate", "--days", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("in use by another process"),
        "{}",
        stderr(&output)
    );
    drop(transaction);
    drop(reader);
    assert_eq!(count(&path, "services"), 25);
}

#[test]
fn dangling_symlink_gets_its_target_created() {
    let directory = tempfile::tempdir().unwrap();
    let link = directory.path().join("link.db");
    std::os::unix::fs::symlink("real.db", &link).unwrap();
    generate(
        directory.path(),
        "link.db",
        &["--services", "25", "--days", "1"],
    );
    assert!(link.is_symlink());
    assert_eq!(count(&directory.path().join("real.db"), "services"), 25);
}

#[test]
fn chain_of_dangling_symlinks_creates_the_last_name() {
    let directory = tempfile::tempdir().unwrap();
    let first = directory.path().join("first.db");
    let second = directory.path().join("second.db");
    std::os::unix::fs::symlink("second.db", &first).unwrap();
    std::os::unix::fs::symlink("real.db", &second).unwrap();
    generate(
        directory.path(),
        "first.db",
        &["--services", "25", "--days", "1"],
    );
    assert!(first.is_symlink());
    assert!(second.is_symlink(), "the middle link was replaced");
    assert_eq!(count(&directory.path().join("real.db"), "services"), 25);
    assert!(directory.path().join(".real.db.lock").exists());
}

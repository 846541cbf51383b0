//! `placewise serve` as a process: its messages for a missing database, a database without
//! results and a port in use, its default address, foreign host names rejected, a clean
//! stop on Ctrl-C, and a database left unchanged.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use clap::Parser;
use placewise::cli::{Cli, Command};

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn serve_missing_database_names_path() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("absent.db");
    let output = common::placewise(&["--db", path.to_str().unwrap(), "serve"]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = common::stderr(&output);
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    let run = format!("hint: run `placewise --db {} run`", path.display());
    assert!(stderr.contains(&run), "{stderr}");
    assert!(!path.exists(), "serve must not create the database");
}

#[test]
fn serve_without_results_names_command() {
    let directory = tempfile::tempdir().unwrap();
    let path = common::generate(
        directory.path(),
        "fleet.db",
        &["--services", "5", "--days", "2"],
    );
    let output = common::placewise(&["--db", path.to_str().unwrap(), "serve"]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = common::stderr(&output);
    assert!(stderr.contains("has no results yet"), "{stderr}");
    // The first command offered keeps the fleet the database holds.
    let train = format!("hint: run `placewise --db {} train`", path.display());
    assert!(stderr.contains(&train), "{stderr}");
    assert!(
        stderr.contains(&format!("placewise --db {} run", path.display())),
        "{stderr}"
    );
}

#[test]
fn serve_port_in_use_says_so() {
    let directory = tempfile::tempdir().unwrap();
    let database = common::run_small_pipeline(directory.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = common::placewise(&[
        "--db",
        database.to_str().unwrap(),
        "serve",
        "--addr",
        &address,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains(&format!(
            "cannot listen on {address}: the address is already in use"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--addr"), "{stderr}");
}

#[test]
fn serve_listens_on_loopback_by_default() {
    let cli = Cli::try_parse_from(["placewise", "serve"]).unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("not the serve command");
    };
    assert!(args.addr.ip().is_loopback());
    assert_eq!(args.addr.to_string(), "127.0.0.1:8080");
    let help = common::stdout(&common::placewise(&["serve", "--help"]));
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
}

#[test]
fn serve_rejects_invalid_address() {
    let output = common::placewise(&["serve", "--addr", "localhost"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(common::stderr(&output).contains("invalid value 'localhost'"));
}

#[test]
fn serve_stops_cleanly_and_writes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let database = common::run_small_pipeline(directory.path());
    let before = std::fs::read(&database).unwrap();
    let modified = std::fs::metadata(&database).unwrap().modified().unwrap();
    let mut server = common::start_server(&database);
    let address = server.address;

    let mut connection = common::http::Connection::open(address).unwrap();
    for target in [
        "/",
        "/api/overview",
        "/api/plan?q=auth",
        "/api/plan/3",
        "/api/models",
        "/api/ab-test",
    ] {
        let response = connection.get(target).unwrap();
        assert_eq!(response.status, 200, "{target}: {}", response.text());
    }
    let missing = connection.get("/api/plan/999999").unwrap();
    assert_eq!(missing.status, 404);
    // A page of another site whose name resolves to 127.0.0.1 sends its own name.
    connection.set_host("attacker.example:8080");
    let foreign = connection.get("/api/overview").unwrap();
    assert_eq!(foreign.status, 403, "{}", foreign.text());

    let pid = server.child.id().to_string();
    let signal = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(signal.success());
    let status = wait_with_timeout(&mut server.child, Duration::from_secs(10));
    let status = status.expect("the server stops within 10 s of Ctrl-C");
    assert_eq!(status.code(), Some(0));

    assert_eq!(std::fs::read(&database).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&database).unwrap().modified().unwrap(),
        modified
    );
    let sidecars =
        ["-journal", "-wal", "-shm"].map(|suffix| format!("{}{suffix}", database.display()));
    for sidecar in sidecars {
        assert!(!Path::new(&sidecar).exists(), "{sidecar} was created");
    }
}

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

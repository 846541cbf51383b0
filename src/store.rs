//! The SQLite store: schema, bulk loads and the `runs` record.
//!
//! A database is identified by `PRAGMA application_id` and versioned by
//! `PRAGMA user_version`; a file of a newer version is rejected rather than misread.
//! `generate` builds a new database in a temporary file beside the target and renames it
//! over the target only once everything is written, so a failed or interrupted run leaves
//! the previous database as it was.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;

use crate::generate::{date_string, Fleet, PlacementRecord, START_DAY};

/// Schema version written to `PRAGMA user_version`. Version 1 lacked the results tables;
/// [`open_for_results`] adds them.
pub const SCHEMA_VERSION: i32 = 2;

/// `PRAGMA application_id` of a placewise database: the ASCII bytes `plcw`.
pub const APPLICATION_ID: i32 = 0x706c_6377;

/// Traffic rows inserted by one statement.
const TRAFFIC_BATCH_ROWS: usize = 128;

/// Traffic rows inserted between two progress reports and interruption checks.
const PROGRESS_ROWS: usize = 100_000;

const SCHEMA: &str = "
CREATE TABLE runs (
    run_id      INTEGER PRIMARY KEY,
    command     TEXT NOT NULL,
    version     TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    parameters  TEXT NOT NULL            -- JSON object of the command's settings
);
-- Wall-clock figures of each run, written only on request (`--record-timings`) because
-- they differ between otherwise identical runs.
CREATE TABLE run_timings (
    run_id      INTEGER NOT NULL REFERENCES runs(run_id),
    step        TEXT NOT NULL,
    seconds     REAL NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE regions (
    region              TEXT PRIMARY KEY,
    city                TEXT NOT NULL,
    country             TEXT NOT NULL,
    latitude            REAL NOT NULL,   -- degrees
    longitude           REAL NOT NULL,   -- degrees
    utc_offset_hours    REAL NOT NULL,   -- standard time
    usd_per_hour        REAL,            -- one m5.large on demand; NULL where unpriced
    internet_usd_per_gb REAL
);
CREATE TABLE region_pairs (
    source_region       TEXT NOT NULL REFERENCES regions(region),
    target_region       TEXT NOT NULL REFERENCES regions(region),
    median_rtt_ms       REAL NOT NULL,
    transfer_usd_per_gb REAL NOT NULL,
    PRIMARY KEY (source_region, target_region)
) WITHOUT ROWID;
CREATE TABLE services (
    service_id               INTEGER PRIMARY KEY,
    service_name             TEXT NOT NULL UNIQUE,
    template                 TEXT NOT NULL,
    memory_mb                INTEGER NOT NULL,
    cores                    REAL NOT NULL,
    latency_critical         INTEGER NOT NULL,   -- 0 or 1
    mean_requests_per_second INTEGER NOT NULL,
    dependency_count         INTEGER NOT NULL
);
CREATE TABLE service_dependencies (
    service_id    INTEGER NOT NULL REFERENCES services(service_id),
    depends_on_id INTEGER NOT NULL REFERENCES services(service_id),
    PRIMARY KEY (service_id, depends_on_id)
) WITHOUT ROWID;
CREATE TABLE regional_latency (
    source_region TEXT NOT NULL REFERENCES regions(region),
    target_region TEXT NOT NULL REFERENCES regions(region),
    date          TEXT NOT NULL,          -- YYYY-MM-DD
    rtt_ms        REAL NOT NULL,
    PRIMARY KEY (source_region, target_region, date)
) WITHOUT ROWID;
-- Hourly demand: mean requests per second over the hour starting at `timestamp`, in Unix
-- seconds (UTC); `datetime(timestamp, 'unixepoch')` shows it as text.
CREATE TABLE traffic_patterns (
    service_id          INTEGER NOT NULL REFERENCES services(service_id),
    origin_region       TEXT NOT NULL REFERENCES regions(region),
    timestamp           INTEGER NOT NULL, -- Unix seconds, UTC
    requests_per_second INTEGER NOT NULL
);
-- Daily placement history with what was observed on each host.
CREATE TABLE service_placement (
    date                TEXT NOT NULL,
    service_id          INTEGER NOT NULL REFERENCES services(service_id),
    region              TEXT NOT NULL REFERENCES regions(region),
    instances           INTEGER NOT NULL,
    requests_per_second REAL NOT NULL,    -- mean routed to this host over the day
    cpu_utilization     REAL NOT NULL,    -- mean over the day's hours, 0 to 1
    peak_cpu_utilization REAL NOT NULL,   -- highest hour of the day, 0 to 1
    latency_ms          REAL NOT NULL,    -- traffic-weighted over the day's requests
    error_rate          REAL NOT NULL,    -- fraction of failed requests
    PRIMARY KEY (service_id, date, region)
) WITHOUT ROWID;
-- Ground truth of the world model: what the simulator uses and telemetry does not show.
-- Models must not read these tables; the evaluation stages do.
CREATE TABLE world_services (
    service_id           INTEGER PRIMARY KEY REFERENCES services(service_id),
    base_processing_ms   REAL NOT NULL,
    cpu_ms_per_request   REAL NOT NULL,   -- core-milliseconds
    call_response_kb     REAL NOT NULL
);
CREATE TABLE world_origin_shares (
    service_id    INTEGER NOT NULL REFERENCES services(service_id),
    origin_region TEXT NOT NULL REFERENCES regions(region),
    share         REAL NOT NULL,
    PRIMARY KEY (service_id, origin_region)
) WITHOUT ROWID;
CREATE TABLE world_placement_expected (
    service_id          INTEGER NOT NULL,
    date                TEXT NOT NULL,
    region              TEXT NOT NULL,
    expected_latency_ms REAL NOT NULL,
    expected_error_rate REAL NOT NULL,
    PRIMARY KEY (service_id, date, region)
) WITHOUT ROWID;
";

/// Tables of what the later stages compute. `IF NOT EXISTS` lets [`open_for_results`] add
/// them to a database of schema version 1.
const RESULTS_SCHEMA: &str = "
-- Trained models in LightGBM's text format, with what they were trained and scored on.
CREATE TABLE IF NOT EXISTS models (
    model_id        INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs(run_id),
    kind            TEXT NOT NULL,       -- 'latency'
    feature_names   TEXT NOT NULL,       -- JSON array, in column order
    hyperparameters TEXT NOT NULL,       -- JSON object
    metrics         TEXT NOT NULL,       -- JSON object; errors in ms
    model_text      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_feature_importance (
    model_id INTEGER NOT NULL REFERENCES models(model_id),
    feature  TEXT NOT NULL,
    gain     REAL NOT NULL,              -- total gain of the splits on the feature
    PRIMARY KEY (model_id, feature)
) WITHOUT ROWID;
-- The model's predictions for its held-out test rows.
CREATE TABLE IF NOT EXISTS model_predictions (
    model_id     INTEGER NOT NULL REFERENCES models(model_id),
    service_id   INTEGER NOT NULL,
    date         TEXT NOT NULL,
    region       TEXT NOT NULL,
    observed_ms  REAL NOT NULL,
    predicted_ms REAL NOT NULL,
    oracle_ms    REAL,                   -- the world model's noise-free latency
    PRIMARY KEY (model_id, service_id, date, region)
) WITHOUT ROWID;
-- Placement plans: the optimizer's and the baselines', scored the same way.
CREATE TABLE IF NOT EXISTS plans (
    plan_id             INTEGER PRIMARY KEY,
    run_id              INTEGER NOT NULL REFERENCES runs(run_id),
    kind                TEXT NOT NULL,   -- optimizer, random, heuristic, greedy
    objective           REAL NOT NULL,   -- USD per month, latency weighted by lambda
    monthly_cost_usd    REAL NOT NULL,   -- predicted instances and transfer
    weighted_latency_ms REAL NOT NULL,   -- predicted, weighted by demand
    world               TEXT NOT NULL,   -- JSON: the plan measured in the world model
    solver              TEXT             -- JSON: HiGHS status, objective, bound, gap
);
CREATE TABLE IF NOT EXISTS plan_hosts (
    plan_id              INTEGER NOT NULL REFERENCES plans(plan_id),
    service_id           INTEGER NOT NULL,
    region               TEXT NOT NULL,
    instances            INTEGER NOT NULL,
    routed_share         REAL NOT NULL,  -- share of the service's demand routed here
    predicted_latency_ms REAL NOT NULL,
    monthly_cost_usd     REAL NOT NULL,
    PRIMARY KEY (plan_id, service_id, region)
) WITHOUT ROWID;
-- A/B experiments: `document` is results/ab_test_results.json without its `timings`.
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs(run_id),
    design        TEXT NOT NULL,         -- paired or split
    control       TEXT NOT NULL,         -- a plan kind, or the path of a plan file
    treatment     TEXT NOT NULL,
    document      TEXT NOT NULL          -- JSON object
);
-- Each service as measured under each arm it ran under: both in the paired design, its
-- assigned one in the split design.
CREATE TABLE IF NOT EXISTS experiment_services (
    experiment_id    INTEGER NOT NULL REFERENCES experiments(experiment_id),
    service_id       INTEGER NOT NULL,
    arm              TEXT NOT NULL CHECK (arm IN ('control', 'treatment')),
    requests         INTEGER NOT NULL,   -- requests drawn
    mean_latency_ms  REAL,               -- NULL when no request was drawn
    p95_latency_ms   REAL,               -- NULL when no request was drawn
    monthly_cost_usd REAL NOT NULL,      -- instances and transfer, world model
    critical         INTEGER NOT NULL,   -- 0 or 1
    PRIMARY KEY (experiment_id, service_id, arm)
) WITHOUT ROWID;
-- Request latency of each arm in log-spaced bins, the same bins for both arms; the last
-- bin includes its upper edge.
CREATE TABLE IF NOT EXISTS experiment_latency_histogram (
    experiment_id INTEGER NOT NULL REFERENCES experiments(experiment_id),
    arm           TEXT NOT NULL CHECK (arm IN ('control', 'treatment')),
    bin_low_ms    REAL NOT NULL,
    bin_high_ms   REAL NOT NULL,
    requests      INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, arm, bin_low_ms)
) WITHOUT ROWID;
";

/// Indexes built after the bulk load, for the queries of the later stages.
const INDEXES: &str = "
CREATE INDEX service_placement_by_date ON service_placement(date, region);
";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{path}` was written by a newer placewise (schema version {found}; this one reads up to {supported})\nhint: upgrade placewise, or pass another `--db`")]
    NewerSchema {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
    #[error("`{path}` is not a placewise database, so it is left untouched\nhint: pass another `--db`, or remove the file yourself")]
    NotPlacewise { path: PathBuf },
    #[error("`{path}` does not exist\nhint: run `placewise --db {path} run` to create it with a fleet and its results, or `placewise --db {path} generate` for the fleet alone", path = path.display())]
    Missing { path: PathBuf },
    #[error("`{path}` is read-only, so nothing can be stored in it\nhint: make it writable (`chmod u+w {path}`), or pass another `--db`", path = path.display())]
    ReadOnly { path: PathBuf },
    #[error("cannot write a database next to `{path}`\nhint: check that the directory exists and is writable")]
    Unwritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SQLite failed on `{path}`")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("writing was interrupted; `{path}` is unchanged")]
    Interrupted { path: PathBuf },
    #[error("`{path}` is a directory\nhint: pass a file path such as `{path}/placewise.db`", path = path.display())]
    IsDirectory { path: PathBuf },
    #[error("`{path}` exists but is not a regular file, so it is left untouched\nhint: pass the path of a database file")]
    NotRegularFile { path: PathBuf },
    #[error(
        "the directory of `{path}` does not exist\nhint: create it first, or pass another `--db`"
    )]
    MissingDirectory { path: PathBuf },
    #[error("`{path}` is in use by another process (another placewise command that writes it, or a program with the database open)\nhint: wait for it to finish, or pass another `--db`")]
    InUse { path: PathBuf },
}

/// Record of one command in `runs` and `run_timings`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub command: String,
    pub seed: u64,
    pub parameters: serde_json::Value,
    /// Wall time of each step, in seconds.
    pub timings: Vec<(String, f64)>,
    /// Whether to store `timings` in `run_timings`; without it the database is the same,
    /// byte for byte, for the same seed and settings.
    pub record_timings: bool,
}

/// Row counts of a written database.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TableCounts {
    pub services: usize,
    pub service_dependencies: usize,
    pub regions: usize,
    pub regional_latency: usize,
    pub traffic_patterns: usize,
    pub service_placement: usize,
}

impl TableCounts {
    pub fn total(&self) -> usize {
        self.services
            + self.service_dependencies
            + self.regions
            + self.regional_latency
            + self.traffic_patterns
            + self.service_placement
    }
}

/// Checks that `path` may be replaced: it is absent, or a placewise database no newer than
/// this build.
pub fn check_replaceable(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Ok(());
    }
    let connection = open_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    drop(connection);
    Ok(())
}

/// The database file that a write replaces: resolved through a symbolic link, checked, and
/// locked against other placewise writers for as long as this value lives.
#[derive(Debug)]
pub struct Target {
    /// The path the user gave, for messages.
    pub path: PathBuf,
    /// The file actually replaced: `path`, or the file a symbolic link points to.
    resolved: PathBuf,
    directory: PathBuf,
    /// Permissions of the file replaced, given to the new one.
    permissions: Option<std::fs::Permissions>,
    /// Held open with an exclusive lock; the lock ends when the last holder in this
    /// process drops it.
    _lock: Arc<std::fs::File>,
}

impl Target {
    /// Resolves and checks `path` and takes the writer's lock. The lock is a file
    /// `.<name>.lock` beside the database, left in place after the write.
    pub fn acquire(path: &Path) -> Result<Target, StoreError> {
        let resolved = if path.is_symlink() {
            resolve_link(path)
        } else {
            path.to_path_buf()
        };
        if resolved.is_dir() {
            return Err(StoreError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        let existing = std::fs::metadata(&resolved).ok();
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            return Err(StoreError::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
        // A rename would replace a read-only file all the same, and the new file would
        // keep its mode, so every later stage would fail to store its results in it.
        if existing.is_some() {
            let writable = std::fs::OpenOptions::new().write(true).open(&resolved);
            if writable.is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
                return Err(StoreError::ReadOnly {
                    path: path.to_path_buf(),
                });
            }
        }
        let directory = match resolved.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !directory.is_dir() {
            return Err(StoreError::MissingDirectory {
                path: path.to_path_buf(),
            });
        }
        let lock = take_writer_lock(path, &resolved, &directory)?;

        fold_sidecars(path, &resolved)?;
        check_replaceable(&resolved)?;
        Ok(Target {
            path: path.to_path_buf(),
            resolved,
            directory,
            permissions: existing.map(|m| m.permissions()),
            _lock: lock,
        })
    }

    /// Checks again, just before the rename, that the file may be replaced, and takes an
    /// exclusive SQLite lock on it. The returned connection holds the lock until dropped,
    /// so no program starts reading the old file between the check and the rename.
    fn settle(&self) -> Result<Option<Connection>, StoreError> {
        fold_sidecars(&self.path, &self.resolved)?;
        check_replaceable(&self.resolved)?;
        if !self.resolved.exists() {
            return Ok(None);
        }
        let busy = |_| StoreError::InUse {
            path: self.path.clone(),
        };
        let connection = Connection::open(&self.resolved).map_err(busy)?;
        connection
            .busy_timeout(std::time::Duration::ZERO)
            .map_err(busy)?;
        // Fails while another connection reads or writes the old database.
        connection.execute_batch("BEGIN EXCLUSIVE").map_err(busy)?;
        Ok(Some(connection))
    }
}

/// Writer locks this process holds, by lock file, so that the stages of one `run` share
/// the lock that `run` holds from start to end instead of failing on it.
static HELD_LOCKS: Mutex<Vec<(PathBuf, Weak<std::fs::File>)>> = Mutex::new(Vec::new());

/// Opens `.<name>.lock` beside the database and locks it exclusively, so that a second
/// writer fails at once instead of racing the first. A lock this process already holds
/// is shared.
fn take_writer_lock(
    path: &Path,
    resolved: &Path,
    directory: &Path,
) -> Result<Arc<std::fs::File>, StoreError> {
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unwritable = |source| StoreError::Unwritable {
        path: path.to_path_buf(),
        source,
    };
    let lock_path = std::fs::canonicalize(directory)
        .map_err(unwritable)?
        .join(format!(".{name}.lock"));
    let mut held = HELD_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    held.retain(|(_, lock)| lock.strong_count() > 0);
    if let Some(lock) = held
        .iter()
        .find(|(locked, _)| *locked == lock_path)
        .and_then(|(_, lock)| lock.upgrade())
    {
        return Ok(lock);
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(unwritable)?;
    match lock.try_lock() {
        Ok(()) => {
            let lock = Arc::new(lock);
            held.push((lock_path, Arc::downgrade(&lock)));
            Ok(lock)
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(unwritable(source)),
    }
}

/// Resolves a symbolic link to the file it names, even when that file does not exist yet.
fn resolve_link(path: &Path) -> PathBuf {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved;
    }
    // A dangling link, possibly through a chain of links: follow each to the name at its
    // end, at most as many as Linux follows (40).
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&current) {
            Ok(target) if target.is_absolute() => current = target,
            Ok(target) => current = current.parent().unwrap_or(Path::new(".")).join(target),
            Err(_) => break,
        }
    }
    current
}

/// Folds a write-ahead log or hot journal of the old database back into it. A leftover
/// `-wal` beside the new file would otherwise be replayed into it and corrupt it, and a
/// hot journal keeps even read-only connections out.
fn fold_sidecars(path: &Path, resolved: &Path) -> Result<(), StoreError> {
    let sidecars = ["-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = resolved.to_path_buf().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    });
    if !sidecars.iter().any(|p| p.exists()) {
        return Ok(());
    }
    let busy = |_| StoreError::InUse {
        path: path.to_path_buf(),
    };
    if resolved.exists() {
        // Opening read-write rolls back a hot journal; leaving WAL mode checkpoints the
        // log and deletes it, and fails while another connection has the file open.
        let connection = Connection::open(resolved).map_err(busy)?;
        connection
            .query_row("PRAGMA journal_mode = DELETE", [], |row| {
                row.get::<_, String>(0)
            })
            .map_err(busy)?;
        // A writer killed as it finished can leave a journal whose header is zeroed: not
        // hot, so SQLite ignores it but does not delete it. Holding the exclusive lock,
        // with any hot journal already rolled back by that lock, such a file is stale.
        connection.execute_batch("BEGIN EXCLUSIVE").map_err(busy)?;
        let journal = &sidecars[2];
        if journal.exists() {
            std::fs::remove_file(journal).map_err(|source| StoreError::Unwritable {
                path: path.to_path_buf(),
                source,
            })?;
        }
        connection.execute_batch("COMMIT").map_err(busy)?;
        connection.close().map_err(|(_, e)| busy(e))?;
    }
    if sidecars.iter().any(|p| p.exists()) {
        return Err(StoreError::InUse {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Opens an existing placewise database and checks its identity and version.
pub fn open_existing(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Err(StoreError::Missing {
            path: path.to_path_buf(),
        });
    };
    if metadata.is_dir() {
        return Err(StoreError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !metadata.is_file() {
        return Err(StoreError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    let sqlite = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let connection = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    // A file that is not SQLite fails on the first read of the header.
    let identity = connection.query_row("PRAGMA application_id", [], |row| row.get::<_, i32>(0));
    let application_id = match identity {
        Ok(id) => id,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Err(StoreError::NotPlacewise {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(sqlite(e)),
    };
    if application_id != APPLICATION_ID {
        return Err(StoreError::NotPlacewise {
            path: path.to_path_buf(),
        });
    }
    let version: i32 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(connection)
}

/// Opens the database of `target` for a stage that stores results next to the data, and
/// brings a version 1 file up to the current schema. Each stage writes its results in one
/// transaction, so a failure leaves the file as it was.
pub fn open_for_results(target: &Target) -> Result<Connection, StoreError> {
    let connection = open_existing(&target.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let sqlite = |source| StoreError::Sqlite {
        path: target.path.clone(),
        source,
    };
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite)?;
    let version: i32 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite)?;
    // `IF NOT EXISTS` makes this a no-op on a current file.
    let upgrade = if version < SCHEMA_VERSION {
        format!("PRAGMA user_version = {SCHEMA_VERSION};")
    } else {
        String::new()
    };
    connection
        .execute_batch(&format!("BEGIN; {RESULTS_SCHEMA} {upgrade} COMMIT;"))
        .map_err(sqlite)?;
    Ok(connection)
}

/// Returns the id of the latest run of `command`, if any.
pub fn latest_run(connection: &Connection, command: &str) -> Result<Option<i64>, rusqlite::Error> {
    connection.query_row(
        "SELECT MAX(run_id) FROM runs WHERE command = ?1",
        [command],
        |row| row.get(0),
    )
}

/// Writes `fleet` as a new database at `path`, replacing any earlier one only on success.
/// The placement history comes from `history`, which is called once the traffic is stored
/// and returns `None` when interrupted. That lets another thread compute it meanwhile.
/// `on_rows` receives the count of traffic rows written so far and returns `false` to stop.
pub fn write_fleet(
    target: &Target,
    fleet: &Fleet,
    history: impl FnOnce() -> Option<Vec<PlacementRecord>>,
    run: &RunRecord,
    mut on_rows: impl FnMut(usize) -> bool,
) -> Result<TableCounts, StoreError> {
    let started = std::time::Instant::now();
    let path = &target.path;
    let unwritable = |source| StoreError::Unwritable {
        path: path.to_path_buf(),
        source,
    };
    let interrupted = || StoreError::Interrupted {
        path: path.to_path_buf(),
    };
    let temporary = tempfile::Builder::new()
        .prefix(".placewise-")
        .suffix(".db.partial")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(&target.directory)
        .map_err(unwritable)?;
    crate::interrupt::set_partial(Some(temporary.path().to_path_buf()));
    let sqlite = |source| StoreError::Sqlite {
        path: temporary.path().to_path_buf(),
        source,
    };

    let mut connection = Connection::open(temporary.path()).map_err(sqlite)?;
    // The file is private until the rename, so durability during the load buys nothing.
    // Foreign keys hold by construction (a test runs `PRAGMA foreign_key_check`), so
    // checking them row by row would only slow the load.
    connection
        .execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF;
             PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -131072;",
        )
        .map_err(sqlite)?;
    let transaction = connection.transaction().map_err(sqlite)?;
    transaction.execute_batch(SCHEMA).map_err(sqlite)?;
    transaction.execute_batch(RESULTS_SCHEMA).map_err(sqlite)?;
    let counts = insert_fleet(&transaction, fleet, history, &mut on_rows).map_err(|e| match e {
        InsertError::Sqlite(source) => sqlite(source),
        InsertError::Interrupted => interrupted(),
    })?;
    transaction.execute_batch(INDEXES).map_err(sqlite)?;
    let mut run = run.clone();
    run.timings
        .push(("store".to_string(), started.elapsed().as_secs_f64()));
    record_run(&transaction, &run).map_err(sqlite)?;
    transaction
        .execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))
        .map_err(sqlite)?;
    transaction.commit().map_err(sqlite)?;
    connection.close().map_err(|(_, e)| sqlite(e))?;
    if !on_rows(counts.traffic_patterns) {
        return Err(interrupted());
    }

    temporary.as_file().sync_all().map_err(unwritable)?;
    if let Some(permissions) = &target.permissions {
        std::fs::set_permissions(temporary.path(), permissions.clone()).map_err(unwritable)?;
    }
    let old_file_lock = target.settle()?;
    if !crate::interrupt::begin_commit() {
        return Err(interrupted());
    }
    let persisted = temporary.persist(&target.resolved);
    crate::interrupt::end_commit(persisted.is_ok());
    drop(old_file_lock);
    persisted.map_err(|e| unwritable(e.error))?;
    Ok(counts)
}

enum InsertError {
    Sqlite(rusqlite::Error),
    Interrupted,
}

impl From<rusqlite::Error> for InsertError {
    fn from(e: rusqlite::Error) -> Self {
        InsertError::Sqlite(e)
    }
}

fn insert_fleet(
    connection: &Connection,
    fleet: &Fleet,
    history: impl FnOnce() -> Option<Vec<PlacementRecord>>,
    on_rows: &mut impl FnMut(usize) -> bool,
) -> Result<TableCounts, InsertError> {
    let set = &fleet.config.regions;
    let codes = set.codes();

    let mut statement =
        connection.prepare("INSERT INTO regions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
    for region in &set.regions {
        statement.execute(params![
            region.code,
            region.city,
            region.country,
            region.latitude,
            region.longitude,
            region.utc_offset_hours,
            region.usd_per_hour,
            region.internet_usd_per_gb,
        ])?;
    }
    let mut statement = connection.prepare("INSERT INTO region_pairs VALUES (?1, ?2, ?3, ?4)")?;
    for (i, source) in codes.iter().enumerate() {
        for (j, target) in codes.iter().enumerate() {
            statement.execute(params![source, target, set.rtt(i, j), set.transfer(i, j)])?;
        }
    }

    let dependencies = insert_services(connection, fleet)?;

    let mut statement =
        connection.prepare("INSERT INTO regional_latency VALUES (?1, ?2, ?3, ?4)")?;
    for day in 0..fleet.config.days {
        let date = date_string(day);
        let rtt = fleet.rtt_on(day);
        for (i, source) in codes.iter().enumerate() {
            for (j, target) in codes.iter().enumerate() {
                statement.execute(params![source, target, date, rtt[i * codes.len() + j]])?;
            }
        }
    }

    let traffic_rows = insert_traffic(connection, fleet, on_rows)?;
    let history = history().ok_or(InsertError::Interrupted)?;
    let placement_rows = insert_history(connection, fleet, &history)?;
    Ok(TableCounts {
        services: fleet.services.len(),
        service_dependencies: dependencies,
        regions: codes.len(),
        regional_latency: fleet.config.days * codes.len() * codes.len(),
        traffic_patterns: traffic_rows,
        service_placement: placement_rows,
    })
}

fn insert_services(connection: &Connection, fleet: &Fleet) -> Result<usize, rusqlite::Error> {
    let mut services =
        connection.prepare("INSERT INTO services VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
    let mut edges = connection.prepare("INSERT INTO service_dependencies VALUES (?1, ?2)")?;
    let mut world = connection.prepare("INSERT INTO world_services VALUES (?1, ?2, ?3, ?4)")?;
    let mut shares = connection.prepare("INSERT INTO world_origin_shares VALUES (?1, ?2, ?3)")?;
    let codes = fleet.config.regions.codes();
    let mut edge_count = 0;
    for (id, service) in fleet.services.iter().enumerate() {
        let spec = &service.spec;
        services.execute(params![
            id as i64,
            service.name,
            service.template,
            spec.memory_mb,
            spec.cores,
            spec.latency_critical,
            service.mean_rps,
            spec.dependencies.len() as i64,
        ])?;
        for &dependency in &spec.dependencies {
            edges.execute(params![id as i64, dependency as i64])?;
            edge_count += 1;
        }
        world.execute(params![
            id as i64,
            spec.base_processing_ms,
            spec.cpu_ms_per_request,
            spec.call_response_kb,
        ])?;
        for (origin, code) in codes.iter().enumerate() {
            let share = fleet.origin_share[id * codes.len() + origin];
            shares.execute(params![id as i64, code, share])?;
        }
    }
    Ok(edge_count)
}

fn insert_traffic(
    connection: &Connection,
    fleet: &Fleet,
    on_rows: &mut impl FnMut(usize) -> bool,
) -> Result<usize, InsertError> {
    let codes = fleet.config.regions.codes();
    let hours = fleet.hours();
    let start_seconds = START_DAY * 86_400;
    // One statement inserts a whole batch of rows: executing a statement costs more than
    // binding, so batching is several times faster than one row per statement.
    let batch_sql = |rows: usize| {
        let mut sql = String::from("INSERT INTO traffic_patterns VALUES ");
        for row in 0..rows {
            sql.push_str(if row == 0 { "(?,?,?,?)" } else { ",(?,?,?,?)" });
        }
        sql
    };
    let mut batch = connection.prepare(&batch_sql(TRAFFIC_BATCH_ROWS))?;
    let mut single = connection.prepare(&batch_sql(1))?;

    let total = fleet.traffic.len();
    let row_at = |index: usize| {
        let hour = index % hours;
        let series = index / hours;
        (
            series / codes.len(),
            codes[series % codes.len()],
            start_seconds + hour as i64 * 3600,
            fleet.traffic[index],
        )
    };
    let mut written = 0;
    while written < total {
        let rows = TRAFFIC_BATCH_ROWS.min(total - written);
        let statement = if rows == TRAFFIC_BATCH_ROWS {
            &mut batch
        } else {
            &mut single
        };
        let rows = if rows == TRAFFIC_BATCH_ROWS { rows } else { 1 };
        for offset in 0..rows {
            let (service, code, timestamp, rps) = row_at(written + offset);
            let first = offset * 4 + 1;
            statement.raw_bind_parameter(first, service as i64)?;
            statement.raw_bind_parameter(first + 1, code)?;
            statement.raw_bind_parameter(first + 2, timestamp)?;
            statement.raw_bind_parameter(first + 3, rps)?;
        }
        statement.raw_execute()?;
        let before = written;
        written += rows;
        if written / PROGRESS_ROWS != before / PROGRESS_ROWS && !on_rows(written) {
            return Err(InsertError::Interrupted);
        }
    }
    on_rows(written);
    Ok(written)
}

fn insert_history(
    connection: &Connection,
    fleet: &Fleet,
    history: &[PlacementRecord],
) -> Result<usize, rusqlite::Error> {
    let codes = fleet.config.regions.codes();
    let mut observed = connection
        .prepare("INSERT INTO service_placement VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?;
    let mut expected =
        connection.prepare("INSERT INTO world_placement_expected VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let dates: Vec<String> = (0..fleet.config.days).map(date_string).collect();
    for row in history {
        let date = &dates[row.day];
        let region = codes[row.region];
        observed.execute(params![
            date,
            row.service as i64,
            region,
            row.instances,
            row.routed_rps,
            row.cpu_utilization,
            row.peak_cpu_utilization,
            row.latency_ms,
            row.error_rate,
        ])?;
        expected.execute(params![
            row.service as i64,
            date,
            region,
            row.expected_latency_ms,
            row.expected_error_rate,
        ])?;
    }
    Ok(history.len())
}

/// Inserts a run and its timings, returning its id.
pub fn record_run(connection: &Connection, run: &RunRecord) -> Result<i64, rusqlite::Error> {
    connection.execute(
        "INSERT INTO runs (command, version, seed, parameters) VALUES (?1, ?2, ?3, ?4)",
        params![
            run.command,
            env!("CARGO_PKG_VERSION"),
            run.seed as i64,
            run.parameters.to_string(),
        ],
    )?;
    let run_id = connection.last_insert_rowid();
    if !run.record_timings {
        return Ok(run_id);
    }
    let mut statement = connection.prepare("INSERT INTO run_timings VALUES (?1, ?2, ?3)")?;
    for (step, seconds) in &run.timings {
        statement.execute(params![run_id, step, seconds])?;
    }
    Ok(run_id)
}

/// Generates a small fleet and stores it in a temporary database, for the tests of the
/// stages that read one.
#[cfg(test)]
pub(crate) fn stored_test_fleet(
    services: usize,
    days: usize,
    seed: u64,
) -> (tempfile::TempDir, Fleet, PathBuf) {
    let config = crate::generate::FleetConfig {
        services,
        days,
        regions: crate::catalog::Catalog::embedded()
            .select("default")
            .unwrap(),
        seed,
    };
    let fleet = crate::generate::generate(&config, |_| true).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("fleet.db");
    let run = RunRecord {
        command: "test".to_string(),
        seed,
        parameters: serde_json::json!({}),
        timings: Vec::new(),
        record_timings: false,
    };
    let history = fleet.history.clone();
    let target = Target::acquire(&path).unwrap();
    write_fleet(&target, &fleet, || Some(history), &run, |_| true).unwrap();
    (directory, fleet, path)
}

//! The dashboard of `placewise serve`: HTML pages and a JSON API over what the last run
//! stored, read from the database without writing to it.
//!
//! [`Dashboard`] holds one [`Snapshot`] of the database and reads it again when the file
//! changes (a new `placewise run` renames a new file over it, `train` and `optimize` write
//! into it), so a page always shows the last results stored. [`router`] builds every
//! route, so tests can drive it without a socket.

pub mod assets;
mod pages;
mod routes;
pub mod snapshot;
mod summary;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use rusqlite::OpenFlags;

use crate::store;
pub use routes::router;
pub use snapshot::Snapshot;

/// How long a read waits for a writer (a `train` or `optimize` storing its results) to
/// finish before the load fails and the previous snapshot stays.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the dashboard that are not the store's own.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("`{path}` has no results yet: no latency model, classifier or plan is stored\nhint: run `placewise --db {path} train` and then `placewise --db {path} optimize` on the fleet it holds, or `placewise --db {path} run` to replace it with a new fleet and its results", path = path.display())]
    NoResults { path: PathBuf },
    #[error("cannot read the results in `{path}`", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot listen on {address}: the address is already in use\nhint: stop the program that listens there, or pass another `--addr`, such as 127.0.0.1:8081")]
    AddressInUse { address: std::net::SocketAddr },
    #[error("cannot listen on {address}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Identity of the database file at one moment: a rename over it changes the inode, a
/// write in place changes the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    device: u64,
    inode: u64,
    size: u64,
    modified: Option<SystemTime>,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Fingerprint> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Fingerprint {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// A snapshot with the JSON bodies that do not depend on the request, serialized once.
#[derive(Debug)]
pub struct Prepared {
    pub snapshot: Snapshot,
    overview_json: Bytes,
    regions_json: Bytes,
    models_json: Bytes,
    ab_test_json: Option<Bytes>,
    services_json: HashMap<i64, Bytes>,
}

impl Prepared {
    fn new(snapshot: Snapshot) -> Prepared {
        Prepared {
            overview_json: to_json(&snapshot.overview),
            regions_json: to_json(&snapshot.regions),
            models_json: to_json(&snapshot.models),
            ab_test_json: snapshot.ab_test.as_ref().map(to_json),
            services_json: snapshot
                .services
                .iter()
                .map(|(id, view)| (*id, to_json(view)))
                .collect(),
            snapshot,
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("figures serialize: their maps have string keys"))
}

#[derive(Debug)]
struct Loaded {
    fingerprint: Option<Fingerprint>,
    /// The fingerprint whose load last failed, so it is not retried on every request.
    failed: Option<Option<Fingerprint>>,
    data: Arc<Prepared>,
}

/// The database being served and its latest snapshot.
#[derive(Debug)]
pub struct Dashboard {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    /// Held while a reload runs, so that concurrent requests load the file once.
    reloading: Mutex<()>,
    /// Whether a request may name any host. Off by default: a server on loopback answers
    /// only to loopback names, so that a web page whose own name resolves to 127.0.0.1
    /// (DNS rebinding) cannot read it.
    any_host: bool,
}

impl Dashboard {
    /// Opens the database at `path` read-only and loads its snapshot. Fails when the file
    /// is missing or not a placewise database (with the store's error), or holds no
    /// results yet.
    pub fn open(path: &Path) -> anyhow::Result<Dashboard> {
        let fingerprint = Fingerprint::of(path);
        let data = load(path)?;
        Ok(Dashboard {
            path: path.to_path_buf(),
            loaded: RwLock::new(Loaded {
                fingerprint,
                failed: None,
                data: Arc::new(data),
            }),
            reloading: Mutex::new(()),
            any_host: false,
        })
    }

    /// Accepts requests for any host name, for a server that listens beyond loopback and
    /// is reached by the machine's own names.
    pub fn accept_any_host(&mut self) {
        self.any_host = true;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the snapshot if the file is unchanged since it was read, or `None` when it
    /// must be read again with [`Dashboard::reload`].
    fn current_if_fresh(&self) -> Option<Arc<Prepared>> {
        let fingerprint = Fingerprint::of(&self.path);
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let fresh = loaded.fingerprint == fingerprint || loaded.failed == Some(fingerprint);
        fresh.then(|| loaded.data.clone())
    }

    /// Reads the database again if it changed, and returns the newest snapshot. A failed
    /// read (a file being replaced, a writer holding its lock) keeps the previous snapshot
    /// and is logged once per state of the file.
    fn reload(&self) -> Arc<Prepared> {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(data) = self.current_if_fresh() {
            return data;
        }
        let fingerprint = Fingerprint::of(&self.path);
        let started = Instant::now();
        let result = load(&self.path);
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(data) => {
                tracing::info!(
                    path = %self.path.display(),
                    seconds = format!("{:.3}", started.elapsed().as_secs_f64()),
                    "database changed; results read again"
                );
                loaded.fingerprint = fingerprint;
                loaded.failed = None;
                loaded.data = Arc::new(data);
            }
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = format!("{error:#}"),
                    "database changed but cannot be read; still showing the results read before"
                );
                loaded.failed = Some(fingerprint);
            }
        }
        loaded.data.clone()
    }

    /// Returns the newest snapshot, reading the database again on a blocking thread when
    /// the file changed.
    pub async fn current(self: &Arc<Self>) -> Arc<Prepared> {
        if let Some(data) = self.current_if_fresh() {
            return data;
        }
        let dashboard = self.clone();
        match tokio::task::spawn_blocking(move || dashboard.reload()).await {
            Ok(data) => data,
            Err(error) => {
                tracing::error!(%error, "reading the database again failed");
                let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
                loaded.data.clone()
            }
        }
    }
}

/// Reads and prepares the snapshot of the database at `path`.
fn load(path: &Path) -> anyhow::Result<Prepared> {
    let connection = store::open_existing(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let read = |source| DashboardError::Read {
        path: path.to_path_buf(),
        source,
    };
    connection.busy_timeout(BUSY_TIMEOUT).map_err(read)?;
    connection
        .execute_batch("PRAGMA query_only = ON")
        .map_err(read)?;
    let snapshot = Snapshot::load(&connection).map_err(read)?;
    if !snapshot.has_results() {
        return Err(DashboardError::NoResults {
            path: path.to_path_buf(),
        }
        .into());
    }
    Ok(Prepared::new(snapshot))
}

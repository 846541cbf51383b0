//! Signal handling: the first Ctrl-C (or SIGTERM, SIGHUP) sets a flag that long loops poll,
//! so that they stop cleanly and leave no half-written output. A second one exits at once,
//! removing the partial file of a write in progress, unless the write is already being
//! renamed into place, in which case the rename finishes first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static COMMITTING: AtomicBool = AtomicBool::new(false);
static PUBLISHED: AtomicBool = AtomicBool::new(false);
static PARTIAL: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Message printed on the first interrupt. A command that runs steps stops after the current
/// one.
static STOP_MESSAGE: Mutex<&str> =
    Mutex::new("interrupted: stopping after the current step (press Ctrl-C again to exit now)");

/// Installs the handler. Call once, from `main`.
pub fn install() {
    let result = ctrlc::set_handler(|| {
        if !INTERRUPTED.swap(true, Ordering::SeqCst) {
            if let Ok(message) = STOP_MESSAGE.lock() {
                eprintln!("{message}");
            }
            return;
        }
        if COMMITTING.load(Ordering::SeqCst) {
            eprintln!(
                "interrupted: the database is being renamed into place; finishing that first"
            );
            return;
        }
        if let Some(partial) = PARTIAL.lock().ok().and_then(|guard| guard.clone()) {
            let _ = std::fs::remove_file(partial);
        }
        std::process::exit(crate::commands::EXIT_INTERRUPTED);
    });
    if let Err(error) = result {
        tracing::warn!(%error, "cannot install the Ctrl-C handler; Ctrl-C will exit at once");
    }
}

/// Sets what the first interrupt prints, for a command whose stop is not "after the current
/// step", such as a server.
pub fn set_stop_message(message: &'static str) {
    if let Ok(mut guard) = STOP_MESSAGE.lock() {
        *guard = message;
    }
}

/// Returns whether an interrupt has arrived.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Records the partial file that a second Ctrl-C should remove, or clears it.
pub fn set_partial(path: Option<PathBuf>) {
    if let Ok(mut guard) = PARTIAL.lock() {
        *guard = path;
    }
}

/// Marks the start of the rename that publishes a write. Returns `false`, and marks
/// nothing, when an interrupt has already arrived, so the caller abandons the write.
pub fn begin_commit() -> bool {
    COMMITTING.store(true, Ordering::SeqCst);
    if INTERRUPTED.load(Ordering::SeqCst) {
        COMMITTING.store(false, Ordering::SeqCst);
        return false;
    }
    true
}

/// Marks the end of the rename begun by [`begin_commit`]. Once `published` is true, the
/// new file is in place and no interrupt exits with a failure code.
pub fn end_commit(published: bool) {
    if published {
        PUBLISHED.store(true, Ordering::SeqCst);
    }
    COMMITTING.store(false, Ordering::SeqCst);
    set_partial(None);
}

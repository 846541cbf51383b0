//! Ctrl-C handling: the first interrupt sets a flag that long loops poll, so that they stop
//! cleanly and leave no half-written output; a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler. Call once, from `main`.
pub fn install() {
    let result = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(crate::commands::EXIT_INTERRUPTED);
        }
        eprintln!("interrupted: stopping after the current step (press Ctrl-C again to exit now)");
    });
    if let Err(error) = result {
        tracing::warn!(%error, "cannot install the Ctrl-C handler; Ctrl-C will exit at once");
    }
}

/// Returns whether an interrupt has arrived.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

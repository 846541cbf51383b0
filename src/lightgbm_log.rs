//! Sends LightGBM's log lines to `tracing` instead of stdout.
//!
//! LightGBM prints its info and warning lines with `printf`, so a warning raised while a
//! dataset is built would land in the middle of `--json` output. Its C API takes a log
//! callback, which `lightgbm3` does not wrap; this module registers one. It is the one
//! place with `unsafe` code: the registration call and the reading of the C string that
//! LightGBM hands the callback. LightGBM keeps the callback per thread, so
//! [`route_to_tracing`] is called on every thread before it trains or loads a model.

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr};

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// LightGBM writes one line in pieces (prefix, text, newline); they gather here.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Registers the callback on the current thread, once.
pub fn route_to_tracing() {
    REGISTERED.with(|registered| {
        if !registered.get() {
            // SAFETY: `forward` matches the callback type LightGBM declares, lives for the
            // whole program and unwinds nowhere.
            unsafe {
                lightgbm3_sys::LGBM_RegisterLogCallback(Some(forward));
            }
            registered.set(true);
        }
    });
}

unsafe extern "C" fn forward(piece: *const c_char) {
    if piece.is_null() {
        return;
    }
    // SAFETY: LightGBM passes a NUL-terminated buffer that stays valid during the call.
    let piece = unsafe { CStr::from_ptr(piece) }.to_string_lossy();
    let finished = LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.push_str(&piece);
        if line.ends_with('\n') {
            let text = line.trim_end().to_string();
            line.clear();
            Some(text)
        } else {
            None
        }
    });
    if let Some(text) = finished {
        let text = text.strip_prefix("[LightGBM] ").unwrap_or(&text);
        if text.starts_with("[Warning]") {
            tracing::warn!(target: "lightgbm", "LightGBM {text}");
        } else {
            tracing::debug!(target: "lightgbm", "LightGBM {text}");
        }
    }
}

//! Writes the queued local lines when the process exits through `exit(3)`.
//!
//! `std::process::exit` skips destructors, so the guard never runs; but it ends in the C
//! library's `exit`, which runs the `atexit` handlers while every thread is still alive. The
//! handler waits for the writer thread to drain, at most `HIVELOG_SHUTDOWN_TIMEOUT`. The same
//! handler runs after `main` returns (the guard has usually drained everything by then, so it
//! returns at once). Only the local output is waited for: sinks are flushed by the guard or by
//! [`crate::flush`], since a stalled network destination would otherwise delay every exit.

use std::sync::OnceLock;

static ON_EXIT: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

extern "C" {
    /// C's `atexit(3)`, in every C library Rust links on Unix and Windows.
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn run() {
    if let Some(f) = ON_EXIT.get() {
        // Never unwind into the C library.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    }
}

/// Registers `f` to run at `exit(3)`; only the first registration of the process counts.
pub(crate) fn register(f: impl Fn() + Send + Sync + 'static) {
    if ON_EXIT.set(Box::new(f)).is_ok() {
        // SAFETY: `run` is a plain `extern "C" fn()` that never unwinds (it catches panics),
        // and `atexit` only stores the pointer.
        if unsafe { atexit(run) } != 0 {
            hivelog_core::diag::warn(
                "stdout",
                "atexit",
                "cannot register the exit handler; call hivelog::flush before std::process::exit",
            );
        }
    }
}

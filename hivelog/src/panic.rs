//! The panic hook: a panic anywhere becomes one ERROR event (message, location, thread, and a
//! backtrace when `RUST_BACKTRACE` asks for one), sinks are flushed, then the previous hook runs.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::time::Duration;

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hook; `flush` sends queued events (bounded by the shutdown timeout).
pub(crate) fn install(flush: impl Fn(Duration) + Send + Sync + 'static, timeout: Duration) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A panic while handling a panic (or inside hivelog's own threads, which must not wait
        // for themselves) only runs the previous hook.
        let worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("hivelog-"));
        if !worker && !IN_HOOK.with(|f| f.replace(true)) {
            log_panic(info);
            flush(timeout);
            IN_HOOK.with(|f| f.set(false));
        }
        previous(info);
    }));
}

fn log_panic(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("<unnamed>");
    let backtrace = Backtrace::capture();
    if backtrace.status() == BacktraceStatus::Captured {
        tracing::error!(target: "panic", location, thread, backtrace = %backtrace, "panicked: {message}");
    } else {
        tracing::error!(target: "panic", location, thread, "panicked: {message}");
    }
}

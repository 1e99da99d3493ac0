//! What a pipeline's own threads know about themselves: that they are one (so `flush` and
//! `shutdown` called there do not wait for the worker that runs them), and the shutdown
//! deadline of the pipeline they work for (so a sink can bound its waits by the time left).
//!
//! Its own module, below the queue, the worker and the [`Sink`](crate::Sink) trait, because
//! all three read it: the queue to refuse to wait on its own worker, the worker to mark its
//! threads, and [`crate::sink::shutdown_deadline`] to answer a sink. It names none of them:
//! the pipeline is seen only as something with a deadline.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

use tracing::Dispatch;

/// Something with a shutdown deadline once shutdown began: the pipeline's shared state.
pub(crate) trait ShutdownClock: Send + Sync {
    /// The deadline, once shutdown began.
    fn deadline(&self) -> Option<Instant>;
}

thread_local! {
    static ON_PIPELINE_THREAD: Cell<bool> = const { Cell::new(false) };
    /// The pipeline this worker thread runs, for [`crate::sink::shutdown_deadline`].
    static CURRENT: RefCell<Option<Arc<dyn ShutdownClock>>> = const { RefCell::new(None) };
}

/// The shutdown deadline of the pipeline this thread works for, once shutdown began.
pub(crate) fn current_deadline() -> Option<Instant> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(|s| s.deadline()))
}

/// Whether this thread is a pipeline's worker or one of its runtime's threads: `flush` and
/// `shutdown` called there (from a panic hook) must not wait for a worker that may be waiting
/// for this very thread.
pub(crate) fn on_pipeline_thread() -> bool {
    ON_PIPELINE_THREAD.with(Cell::get)
}

/// Makes `Dispatch::none()` this thread's default dispatcher for the thread's whole life, and
/// marks it as a pipeline thread.
pub(crate) fn enter_pipeline_thread() {
    // The guard restores the previous default when dropped; the thread never wants it back.
    std::mem::forget(tracing::dispatcher::set_default(&Dispatch::none()));
    ON_PIPELINE_THREAD.with(|t| t.set(true));
}

/// Makes `pipeline` the one this (worker) thread runs.
pub(crate) fn set_current(pipeline: Arc<dyn ShutdownClock>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(pipeline));
}

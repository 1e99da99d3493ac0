//! The delivery pipeline: bounded queue (in bytes) → batcher (count, bytes, age) → sink,
//! on a dedicated thread with its own tokio current-thread runtime.
//!
//! ```text
//!  log call ──push──► queue (byte budget) ──► worker thread "hivelog-<sink>"
//!  (any thread)        overflow policy         cut batch → Sink::send → outcomes
//!                        │        ▲            retry/defer → front of the next batch
//!                        ▼        │ replay
//!                      spill folder (HIVELOG_SPILL_DIR, optional)
//! ```
//!
//! - `queue` — what happens when the budget is full, and why a log call never waits on I/O;
//! - `worker` — why a dedicated thread and runtime, how batches are cut, what a panicking
//!   sink does;
//! - `retry` — exponential backoff with full jitter, `Retry-After`, `max_elapsed`;
//! - [`crate::spill`] — the disk buffer: segments, checksums, the folder lock, replay;
//! - [`Stats`] — counters that always balance.
//!
//! ```
//! use hivelog_core::{Outcomes, Pipeline, PipelineConfig, Record, Sink, BatchLimits};
//! use hivelog_core::record::Str;
//! use std::time::{Duration, Instant};
//!
//! struct Discard;
//! impl Sink for Discard {
//!     fn name(&self) -> &'static str { "discard" }
//!     fn limits(&self) -> BatchLimits { BatchLimits { max_events: 1000, max_bytes: 1 << 20 } }
//!     async fn send(&mut self, batch: &[Record]) -> Outcomes { Outcomes::delivered(batch.len()) }
//! }
//!
//! let pipeline = Pipeline::spawn(Discard, PipelineConfig::default())?;
//! pipeline.push(Record::new(tracing::Level::INFO, Str::Static("app"), 1024, 0));
//! let report = pipeline.shutdown(Instant::now() + Duration::from_secs(5));
//! assert_eq!((report.enqueued, report.delivered, report.pending), (1, 1, 0));
//! # Ok::<(), std::io::Error>(())
//! ```

mod config;
mod queue;
mod retry;
mod stats;
pub(crate) mod thread;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{
    Overflow, PipelineConfig, RetryPolicy, SpillConfig, SpillMode, DEFAULT_BUFFER_BYTES,
    DEFAULT_FLUSH_INTERVAL, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP, DEFAULT_RETRY_MAX_ELAPSED,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SPILL_BYTES, DEFAULT_SPILL_FSYNC, PIPELINE_VARS,
};
pub use stats::{level_rank, LevelCounts, Stats};

use crate::record::Record;
use crate::sink::Sink;
use queue::Shared;

/// A cloneable handle to one running pipeline.
///
/// Dropping the last handle begins a shutdown with the configured
/// [`shutdown_timeout`](PipelineConfig::shutdown_timeout) but does not wait for it; call
/// [`shutdown`](Pipeline::shutdown) to wait and get the report. `flush` and `shutdown` may be
/// called from any thread, including from inside a tokio runtime of any flavor and from `Drop`:
/// they wait on a condition variable, never on the caller's runtime.
///
/// The worker thread does not keep the process alive: events still pending when the process
/// ends without a shutdown (`std::process::exit`, returning from `main` with a handle in a
/// `static`) are lost.
#[derive(Clone)]
pub struct Pipeline {
    handle: Arc<Handle>,
}

/// Owned by the `Pipeline` clones only (the worker holds `Shared` directly), so that its drop
/// means "no handle is left".
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let timeout = self.shared.config.shutdown_timeout;
        self.shared.begin_shutdown(Instant::now() + timeout);
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("sink", &self.name())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pipeline {
    /// Starts the pipeline's thread (`hivelog-<sink>`) and runtime.
    ///
    /// Fails only if the operating system refuses a thread or the runtime's timer/IO driver.
    pub fn spawn<S: Sink>(sink: S, config: PipelineConfig) -> std::io::Result<Pipeline> {
        let shared = Arc::new(Shared::new(sink.name(), config, sink.limits()));
        if let Some(e) = sink.endpoints() {
            let _ = shared.endpoints.set(e);
        }
        worker::spawn(sink, shared.clone())?;
        Ok(Pipeline {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &'static str {
        self.handle.shared.name
    }

    /// Enqueues a record: never waits on I/O (only `Overflow::Block` waits, for room).
    ///
    /// Sets the record's [`seq`](Record::seq) (increasing per pipeline) and, the first time,
    /// its [`id`](Record::id). An event that does not fit the budget goes to the spill folder
    /// when there is one (see [`crate::spill`]); otherwise, or when the disk budget is full,
    /// it is dropped and counted, as is an event that comes after shutdown began.
    pub fn push(&self, record: Record) {
        self.handle.shared.push(record);
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.handle.shared.stats()
    }

    /// Sends everything queued now, waiting until done or `deadline`.
    ///
    /// Returns the counters at that moment; records it could not send stay pending (a
    /// destination in backoff is not hurried).
    pub fn flush(&self, deadline: Instant) -> Stats {
        self.handle.shared.flush(deadline)
    }

    /// Stops intake, sends what is pending (retrying while the deadline allows), returns the report.
    ///
    /// Later pushes count as `dropped_shutdown`. Backoff waits are cut at the deadline, and a
    /// send still running then is abandoned: what was not sent is reported as `pending`,
    /// never silently discarded. With a spill folder, what is pending then is written to it
    /// (this call waits up to one more second for that) and sent first at the next start.
    /// The sink's `close` runs after the last batch. Calling it
    /// again returns the current report (waiting for the first shutdown up to the new
    /// deadline at most).
    pub fn shutdown(&self, deadline: Instant) -> Stats {
        self.handle.shared.shutdown(deadline)
    }

    /// The configured shutdown timeout.
    pub fn shutdown_timeout(&self) -> Duration {
        self.handle.shared.config.shutdown_timeout
    }
}

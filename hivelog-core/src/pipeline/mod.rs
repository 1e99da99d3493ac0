//! The delivery pipeline: bounded queue (in bytes) → batcher (count, bytes, age) → sink,
//! on a dedicated thread with its own tokio current-thread runtime.
//!
//! (API fixed; implementation in progress.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::env::{ConfigError, Env};
use crate::record::Record;
use crate::sink::Sink;

/// Default per-sink memory budget (`HIVELOG_BUFFER_BYTES`): 64 MB.
pub const DEFAULT_BUFFER_BYTES: usize = 64_000_000;
/// Default longest wait before a partial batch is sent (`HIVELOG_FLUSH_INTERVAL`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default deadline for the final flush when the guard drops (`HIVELOG_SHUTDOWN_TIMEOUT`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the caller does when a pipeline's budget is full (`HIVELOG_OVERFLOW`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the new event (default): the log call never waits.
    #[default]
    DropNewest,
    /// Drop the oldest queued events to make room.
    DropOldest,
    /// Wait up to this long for room, then drop the new event.
    Block(Duration),
}

/// Backoff for retryable failures: exponential with full jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff ceiling (`HIVELOG_RETRY_BASE`, default 100ms).
    pub base: Duration,
    /// Largest backoff ceiling (`HIVELOG_RETRY_CAP`, default 30s).
    pub cap: Duration,
    /// How long an event may keep being retried before it counts as failed
    /// (`HIVELOG_RETRY_MAX_ELAPSED`, default 5m).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

/// A pipeline's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Memory budget in bytes ([`Record::size`] of everything queued or in flight).
    pub buffer_bytes: usize,
    /// Overflow policy.
    pub overflow: Overflow,
    /// Longest age of a partial batch.
    pub flush_interval: Duration,
    /// Deadline for the final flush on drop.
    pub shutdown_timeout: Duration,
    /// Backoff.
    pub retry: RetryPolicy,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            overflow: Overflow::default(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

impl PipelineConfig {
    /// Reads `HIVELOG_BUFFER_BYTES`, `HIVELOG_OVERFLOW`, `HIVELOG_FLUSH_INTERVAL`,
    /// `HIVELOG_SHUTDOWN_TIMEOUT`, `HIVELOG_RETRY_BASE`, `_CAP`, `_MAX_ELAPSED` over `self`.
    pub fn apply_env(self, _env: &Env) -> Result<Self, ConfigError> {
        todo!()
    }
}

/// A pipeline's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The sink's name.
    pub sink: &'static str,
    /// Events offered to the pipeline (accepted or dropped).
    pub enqueued: u64,
    /// Events the destination has.
    pub delivered: u64,
    /// Retry attempts (an event retried twice counts twice).
    pub retried: u64,
    /// Events the destination refused for good.
    pub rejected: u64,
    /// Events dropped because the budget was full.
    pub dropped_overflow: u64,
    /// Events logged after shutdown began.
    pub dropped_shutdown: u64,
    /// Events whose retries ran out or that hit a permanent request failure.
    pub failed: u64,
    /// Bytes the sink reported sending.
    pub bytes_sent: u64,
    /// Events queued or in flight.
    pub pending: u64,
    /// Bytes queued or in flight.
    pub pending_bytes: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

impl Stats {
    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.dropped_overflow + self.dropped_shutdown
    }
}

/// A cloneable handle to one running pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    _inner: Arc<()>,
}

impl Pipeline {
    /// Starts the pipeline's thread and runtime.
    pub fn spawn<S: Sink>(_sink: S, _config: PipelineConfig) -> std::io::Result<Pipeline> {
        todo!()
    }
    /// The sink's name.
    pub fn name(&self) -> &'static str {
        todo!()
    }
    /// Enqueues a record: never waits on I/O (only `Overflow::Block` waits, for room).
    pub fn push(&self, _record: Record) {
        todo!()
    }
    /// Current counters.
    pub fn stats(&self) -> Stats {
        todo!()
    }
    /// Sends everything queued now, waiting until done or `deadline`.
    pub fn flush(&self, _deadline: Instant) -> Stats {
        todo!()
    }
    /// Stops intake, sends what is pending (retrying while the deadline allows), returns the report.
    pub fn shutdown(&self, _deadline: Instant) -> Stats {
        todo!()
    }
    /// The configured shutdown timeout.
    pub fn shutdown_timeout(&self) -> Duration {
        todo!()
    }
}

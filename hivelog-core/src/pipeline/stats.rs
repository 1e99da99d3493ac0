//! A pipeline's counters.
//!
//! The counters live inside the queue's mutex, next to the records they count, rather than in
//! separate atomics: every change of state (an event accepted, dropped, delivered, put back
//! for a retry) and its counter update happen under one lock, so any [`Stats`] snapshot obeys
//! `enqueued = delivered + rejected + dropped_overflow + dropped_shutdown + failed + pending`
//! exactly. The lock is already taken once per event by `push` and once per batch by the
//! worker, so the counters cost nothing extra.

/// A pipeline's counters at one moment.
///
/// Always `enqueued == delivered + rejected + dropped() + failed + pending`.
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
    /// The last error, if any: a retried or failed send's error (`gave up after …: <error>`
    /// once retries ran out), or `rejected: <the destination's reason>`.
    pub last_error: Option<String>,
    /// The kind of [`Stats::last_error`] when it came from a failed or retried send.
    pub last_failure: Option<crate::sink::FailureKind>,
    /// Per-endpoint state and totals, for a sink that publishes them
    /// ([`Sink::endpoints`](crate::Sink::endpoints)); empty otherwise.
    pub endpoints: Vec<crate::endpoints::EndpointStats>,
}

impl Stats {
    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.dropped_overflow + self.dropped_shutdown
    }

    /// Whether `enqueued == delivered + rejected + dropped() + failed + pending`; always true
    /// of a snapshot taken from a pipeline.
    pub fn is_balanced(&self) -> bool {
        self.enqueued
            == self.delivered + self.rejected + self.dropped() + self.failed + self.pending
    }
}

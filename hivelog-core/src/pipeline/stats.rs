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
    /// Every drop (overflow and shutdown) by the event's level; sums to [`Stats::dropped`].
    pub dropped_by_level: LevelCounts,
    /// Events whose retries ran out or that hit a permanent request failure.
    pub failed: u64,
    /// Bytes the sink reported sending.
    pub bytes_sent: u64,
    /// Events queued or in flight.
    pub pending: u64,
    /// Bytes queued or in flight.
    pub pending_bytes: u64,
    /// Events written to the spill folder (`HIVELOG_SPILL_DIR`) by this process; they stay
    /// `pending` until delivered.
    pub spilled: u64,
    /// Events read back from the spill folder (written by this process or an earlier one;
    /// those of an earlier one also count as `enqueued`).
    pub replayed: u64,
    /// Spilled records skipped because their length or checksum was wrong (a torn write, a
    /// flipped bit); those written by this process also count as `failed`.
    pub corrupt_skipped: u64,
    /// Spill segments that could not be read back whole (a record that passed its checksum
    /// but does not decode, an unreadable file): their readable records were replayed and
    /// the file renamed `.bad` for inspection.
    pub spill_set_aside: u64,
    /// Bytes the destination's spill folder holds now.
    pub spill_bytes: u64,
    /// `sync_data` calls on spill segments that failed (or never finished): the frames they
    /// covered may not survive a power loss, whatever `HIVELOG_SPILL_FSYNC` says.
    pub spill_sync_failed: u64,
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

/// A count per level, such as the events a pipeline dropped.
///
/// ```
/// use hivelog_core::pipeline::LevelCounts;
/// let mut c = LevelCounts::default();
/// c.add(tracing::Level::INFO, 3);
/// c.add(tracing::Level::ERROR, 1);
/// assert_eq!((c.get(tracing::Level::INFO), c.error, c.total()), (3, 1, 4));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelCounts {
    /// `ERROR` events.
    pub error: u64,
    /// `WARN` events.
    pub warn: u64,
    /// `INFO` events.
    pub info: u64,
    /// `DEBUG` events.
    pub debug: u64,
    /// `TRACE` events.
    pub trace: u64,
}

impl LevelCounts {
    /// The count for `level`.
    pub fn get(&self, level: tracing_core::Level) -> u64 {
        match level {
            tracing_core::Level::ERROR => self.error,
            tracing_core::Level::WARN => self.warn,
            tracing_core::Level::INFO => self.info,
            tracing_core::Level::DEBUG => self.debug,
            _ => self.trace,
        }
    }

    /// Adds `n` to the count for `level`.
    pub fn add(&mut self, level: tracing_core::Level, n: u64) {
        let slot = match level {
            tracing_core::Level::ERROR => &mut self.error,
            tracing_core::Level::WARN => &mut self.warn,
            tracing_core::Level::INFO => &mut self.info,
            tracing_core::Level::DEBUG => &mut self.debug,
            _ => &mut self.trace,
        };
        *slot += n;
    }

    /// The sum over all levels.
    pub fn total(&self) -> u64 {
        self.error + self.warn + self.info + self.debug + self.trace
    }
}

/// A level's place from least (`TRACE`, 0) to most important (`ERROR`, 4): the order in which
/// `drop_lowest` gives way, in the sinks' queues and the local output's.
///
/// ```
/// use hivelog_core::pipeline::level_rank;
/// assert!(level_rank(tracing::Level::ERROR) > level_rank(tracing::Level::DEBUG));
/// ```
pub fn level_rank(level: tracing_core::Level) -> usize {
    match level {
        tracing_core::Level::TRACE => 0,
        tracing_core::Level::DEBUG => 1,
        tracing_core::Level::INFO => 2,
        tracing_core::Level::WARN => 3,
        _ => 4,
    }
}

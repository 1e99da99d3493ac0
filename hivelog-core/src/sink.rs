//! The contract between the delivery pipeline and a destination.
//!
//! A sink crate is only its protocol: it declares its batch limits, and turns a batch of
//! records into requests, sends them, and says what happened to each record. Queueing,
//! batching by age, retries with backoff, counters and shutdown are the pipeline's.
//!
//! `send` runs on the pipeline's own thread, inside a tokio current-thread runtime, with
//! `tracing`'s dispatcher set to `Dispatch::none()`: whatever the sink's libraries log is
//! dropped, never fed back into a pipeline.

use std::future::Future;
use std::time::Duration;

use crate::record::Record;

/// How much one batch handed to [`Sink::send`] may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most records per batch.
    pub max_events: usize,
    /// Most bytes per batch, counted with [`Sink::encoded_len`].
    pub max_bytes: usize,
}

/// A destination.
pub trait Sink: Send + 'static {
    /// A short name for counters and diagnostics (`fluent`, `elasticsearch`, `cloudwatch`).
    fn name(&self) -> &'static str;

    /// The limits the pipeline respects when it cuts batches.
    fn limits(&self) -> BatchLimits;

    /// A record's size toward [`BatchLimits::max_bytes`]. The default is the in-memory size;
    /// a sink whose limit is on encoded bytes returns an upper bound of those instead.
    fn encoded_len(&self, record: &Record) -> usize {
        record.size()
    }

    /// Called once on the sink's thread before the first batch (connect, create streams).
    /// It must not take longer than a batch's send would; what fails here is retried by `send`.
    fn start(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Sends a batch (records in the order they were logged, retried ones first) and reports
    /// one [`Outcome`] per record, in the same order.
    fn send(&mut self, batch: &[Record]) -> impl Future<Output = Outcomes> + Send;

    /// Called once at shutdown, after the last batch (close connections gracefully).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The handle this sink publishes per-endpoint figures on (the servers of a tier), if any;
    /// the pipeline copies them into every [`Stats`](crate::Stats) snapshot.
    fn endpoints(&self) -> Option<crate::endpoints::Endpoints> {
        None
    }
}

/// The shutdown deadline of the pipeline whose thread calls this, once shutdown began; `None`
/// before, and outside a pipeline's thread.
///
/// A sink reads it inside [`Sink::send`] to bound its own waits (an ack, a retry on another
/// server) by the time left, rather than be cut off at the deadline with its batch unsent.
pub fn shutdown_deadline() -> Option<std::time::Instant> {
    crate::pipeline::thread::current_deadline()
}

/// Longest error or rejection reason kept: a destination's answer can be anything, and hivelog
/// must not keep or print whatever a broken or hostile server sends.
pub const MAX_REASON_BYTES: usize = 2048;

fn cap_text(mut s: String) -> String {
    if s.len() > MAX_REASON_BYTES {
        s.truncate(crate::record::floor_char_boundary(&s, MAX_REASON_BYTES));
        s.push_str("…[truncated]");
    }
    s
}

/// Why a send failed, as the sink saw it: the report, the stderr diagnostics and
/// `hivelog check` read this kind, never the text of the error.
///
/// ```
/// use hivelog_core::{FailureKind, Outcomes};
/// let o = Outcomes::retry_all(3, FailureKind::Throttled, "429 Too Many Requests");
/// assert_eq!(o.failure(), Some(FailureKind::Throttled));
/// assert_eq!(FailureKind::Throttled.as_str(), "throttled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// Nothing answered: connection refused, reset, DNS failure, no route.
    Unreachable,
    /// No answer within the sink's own timeout (connect, write, ack, request).
    TimedOut,
    /// No credentials could be found to authenticate the request: nothing was sent.
    NoCredentials,
    /// The destination answered and refused our credentials (401/403, a refused handshake,
    /// a bad signature).
    Credentials,
    /// The destination asked us to slow down (429, `ThrottlingException`).
    Throttled,
    /// The destination answered with a temporary failure of its own (5xx, unavailable).
    Unavailable,
    /// The destination answered something the sink cannot use (not its protocol, a malformed
    /// answer, a request it found invalid).
    Protocol,
    /// The sink itself failed (a panic, a task that did not finish).
    Internal,
}

impl FailureKind {
    /// The kind's stable name, as in the report and `hivelog check --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::TimedOut => "timed_out",
            FailureKind::NoCredentials => "no_credentials",
            FailureKind::Credentials => "credentials_refused",
            FailureKind::Throttled => "throttled",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Protocol => "protocol",
            FailureKind::Internal => "internal",
        }
    }

    /// Whether the destination answered at all (`false`: unreachable, timed out, or nothing
    /// was attempted); `None` when the kind cannot tell.
    pub fn reached(self) -> Option<bool> {
        match self {
            FailureKind::Unreachable | FailureKind::TimedOut => Some(false),
            FailureKind::NoCredentials | FailureKind::Internal => None,
            _ => Some(true),
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one record of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The destination has it.
    Delivered,
    /// Not sent this time for lack of room (a limit the sink found while encoding):
    /// resent in the next batch, without backoff and without counting as a retry.
    Deferred,
    /// A temporary failure (network, 429, 5xx, throttling): resent after a backoff.
    Retry,
    /// The destination refused this record for good; `reasons[i]` says why.
    Rejected(u16),
    /// A permanent failure of the whole request (bad credentials): counted as failed, not resent.
    Failed,
}

/// The per-record result of one [`Sink::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcomes {
    outcomes: Vec<Outcome>,
    reasons: Vec<String>,
    error: Option<(FailureKind, String)>,
    retry_after: Option<Duration>,
    bytes_sent: u64,
}

impl Outcomes {
    /// `n` records, all delivered.
    pub fn delivered(n: usize) -> Self {
        Outcomes {
            outcomes: vec![Outcome::Delivered; n],
            reasons: Vec::new(),
            error: None,
            retry_after: None,
            bytes_sent: 0,
        }
    }

    /// `n` records to resend after a backoff, because of `error` of `kind`.
    pub fn retry_all(n: usize, kind: FailureKind, error: impl Into<String>) -> Self {
        Outcomes {
            outcomes: vec![Outcome::Retry; n],
            error: Some((kind, cap_text(error.into()))),
            ..Outcomes::delivered(0)
        }
    }

    /// `n` records that failed for good, because of `error` of `kind`.
    pub fn fail_all(n: usize, kind: FailureKind, error: impl Into<String>) -> Self {
        Outcomes {
            outcomes: vec![Outcome::Failed; n],
            error: Some((kind, cap_text(error.into()))),
            ..Outcomes::delivered(0)
        }
    }

    /// Marks record `i` for a retry.
    pub fn retry(&mut self, i: usize) {
        self.outcomes[i] = Outcome::Retry;
    }

    /// Marks record `i` as not sent for lack of room.
    pub fn defer(&mut self, i: usize) {
        self.outcomes[i] = Outcome::Deferred;
    }

    /// Marks record `i` as rejected by the destination, with its reason.
    pub fn reject(&mut self, i: usize, reason: impl Into<String>) {
        let reason = cap_text(reason.into());
        let idx = match self.reasons.iter().position(|r| *r == reason) {
            Some(p) => p,
            None => {
                self.reasons.push(reason);
                self.reasons.len() - 1
            }
        };
        self.outcomes[i] = Outcome::Rejected(idx.min(u16::MAX as usize) as u16);
    }

    /// Marks record `i` as failed for good.
    pub fn fail(&mut self, i: usize) {
        self.outcomes[i] = Outcome::Failed;
    }

    /// Sets the error behind retries or failures (shown in diagnostics and `last_error`) and
    /// its kind (what the report and `hivelog check` go by).
    pub fn set_error(&mut self, kind: FailureKind, error: impl Into<String>) {
        self.error = Some((kind, cap_text(error.into())));
    }

    /// Asks the pipeline to wait at least this long before the retry (a server's `Retry-After`).
    pub fn set_retry_after(&mut self, d: Duration) {
        self.retry_after = Some(d);
    }

    /// Adds `n` to the bytes this send put on the wire (reported as `Stats::bytes_sent`);
    /// call it once per request actually sent, including requests whose records are retried.
    pub fn add_bytes_sent(&mut self, n: u64) {
        self.bytes_sent = self.bytes_sent.saturating_add(n);
    }

    /// The bytes this send put on the wire.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// The outcome of each record.
    pub fn as_slice(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// The reason behind an [`Outcome::Rejected`].
    pub fn reason(&self, idx: u16) -> &str {
        self.reasons
            .get(idx as usize)
            .map(String::as_str)
            .unwrap_or("rejected")
    }

    /// The error behind retries or failures, in the sink's words.
    pub fn error(&self) -> Option<&str> {
        self.error.as_ref().map(|(_, e)| e.as_str())
    }

    /// The kind of the error behind retries or failures.
    pub fn failure(&self) -> Option<FailureKind> {
        self.error.as_ref().map(|(k, _)| *k)
    }

    /// The server's requested delay.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_reasons_from_a_destination_are_capped() {
        let huge = "é".repeat(10_000);
        let mut o = Outcomes::retry_all(2, FailureKind::Unavailable, huge.clone());
        assert!(o.error().unwrap().len() < MAX_REASON_BYTES + 20);
        assert!(o.error().unwrap().ends_with("…[truncated]"));
        o.reject(1, huge);
        let Outcome::Rejected(r) = o.as_slice()[1] else {
            panic!()
        };
        assert!(o.reason(r).len() < MAX_REASON_BYTES + 20);
    }
}

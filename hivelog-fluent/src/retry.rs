//! What is retried, where, and what is not: every failure the sink can meet, in one table.
//!
//! A message that was not acked is never lost quietly: it is written again, whole and with the
//! same `chunk` id, on another connection within the same send when one is usable, and
//! otherwise handed back to the pipeline (`Outcome::Retry`, resent after its backoff). A
//! duplicate downstream is therefore always a whole message whose ack was lost, under the chunk
//! id of its first copy.
//!
//! | what happened | the server becomes | its unacked messages | when nothing else is usable |
//! |---|---|---|---|
//! | connect refused, reset, name not resolved | `down`, retried with backoff | another server, same send | `Retry` (unreachable) |
//! | connect timed out (`HIVELOG_FLUENT_CONNECT_TIMEOUT`) | `down` | another server | `Retry` (timed out) |
//! | write failed or blocked (`HIVELOG_FLUENT_WRITE_TIMEOUT`) | `down` | another server | `Retry` |
//! | connection closed or reset while acks were awaited | `down` | another server | `Retry` (unreachable) |
//! | **silent**: an ack later than the silence rule ([`crate::service`]) | `down`, but one new connection to it is tried at once | another connection: another server, or a new one to the same | `Retry` (timed out) |
//! | no ack within `HIVELOG_FLUENT_ACK_TIMEOUT` on a server that never acked yet | `down` | another server | `Retry` (timed out) |
//! | shutdown: half of the time left passed without the ack | `down`, one new connection tried | another connection, before the deadline | pending in the report |
//! | receiver sent bytes that are not msgpack, TLS failed | `down` | another server | `Retry` (protocol) |
//! | closed during the handshake | `down` | another server | `Retry` (credentials refused) |
//! | handshake refused, wrong server digest, no HELO; HELO where an ack was expected | `credentials_refused` for [`AUTH_RETRY_INTERVAL`] | another server | `Failed` (credentials refused): no loop |
//! | one event larger than `HIVELOG_FLUENT_MAX_MESSAGE_BYTES` | unchanged | — | `Rejected`, with the reason |
//!
//! Why resend at once on another connection rather than leave it to the pipeline's backoff:
//! with several servers the others are healthy now, and at shutdown the deadline leaves no
//! time for a backoff; a wrong key, on the other hand, would be wrong on every retry, so
//! credentials failures are not retried until [`AUTH_RETRY_INTERVAL`] has passed.

use std::time::Duration;

use hivelog_core::FailureKind;

use crate::ack::AckError;
use crate::handshake::HandshakeError;
use crate::transport::TransportError;

/// How long a server that refused our credentials is left alone: 30 s.
pub const AUTH_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// First wait before a server that went down is tried again: 250 ms, doubled per failure.
pub const SERVER_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest wait before a server that went down is tried again: 30 s.
pub const SERVER_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// What a failure means for the server it happened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Unusable for now: retried after [`server_backoff`].
    Down,
    /// The connection went silent: the server may be fine, so one new connection is tried at
    /// once (the silence may be a middlebox that dropped the flow).
    Silent,
    /// It refused our credentials: left alone for [`AUTH_RETRY_INTERVAL`].
    CredentialsRefused,
}

/// A failure on one server, classified.
#[derive(Clone, Debug)]
pub struct Failure {
    /// For the report and `hivelog check`.
    pub kind: FailureKind,
    /// The error, in the user's words (names the address and the variable to check).
    pub message: String,
    /// What it means for the server.
    pub verdict: Verdict,
}

impl Failure {
    /// A failure with an explicit verdict.
    pub fn new(kind: FailureKind, message: String, verdict: Verdict) -> Failure {
        Failure {
            kind,
            message,
            verdict,
        }
    }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Failure {
        Failure::new(e.kind(), e.to_string(), Verdict::Down)
    }
}

impl From<HandshakeError> for Failure {
    fn from(e: HandshakeError) -> Failure {
        let verdict = if e.is_auth() {
            Verdict::CredentialsRefused
        } else {
            Verdict::Down
        };
        Failure::new(e.kind(), e.to_string(), verdict)
    }
}

impl From<AckError> for Failure {
    fn from(e: AckError) -> Failure {
        let verdict = match &e {
            AckError::HandshakeRequired { .. } => Verdict::CredentialsRefused,
            AckError::Silent { .. } => Verdict::Silent,
            AckError::Timeout { .. } | AckError::Transport(_) => Verdict::Down,
        };
        Failure::new(e.kind(), e.to_string(), verdict)
    }
}

/// The wait before a server that failed `failures` times in a row is tried again:
/// [`SERVER_BACKOFF_BASE`] doubled per failure, at most [`SERVER_BACKOFF_CAP`].
pub fn server_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (SERVER_BACKOFF_BASE * 2u32.pow(doublings)).min(SERVER_BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_backoff_doubles_from_250ms_up_to_30s() {
        assert_eq!(server_backoff(1), Duration::from_millis(250));
        assert_eq!(server_backoff(2), Duration::from_millis(500));
        assert_eq!(server_backoff(8), Duration::from_secs(30));
        assert_eq!(server_backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn credentials_failures_are_not_retried_and_silence_allows_a_new_connection() {
        let e = AckError::HandshakeRequired { addr: "a".into() };
        assert_eq!(Failure::from(e).verdict, Verdict::CredentialsRefused);
        let e = AckError::Silent {
            addr: "a".into(),
            missing: 1,
            total: 2,
            after: Duration::from_secs(1),
            p99: Duration::from_millis(3),
        };
        let f = Failure::from(e);
        assert_eq!(
            (f.verdict, f.kind),
            (Verdict::Silent, FailureKind::TimedOut)
        );
        assert!(f.message.contains("did not ack"), "{}", f.message);
    }
}

//! At-least-once delivery: reading `{"ack": chunk}` and keeping each server's ack latency.
//!
//! Every message of a send carries its own `chunk`, and all of them are written before any ack
//! is awaited, so several messages are in flight on one connection and one round trip covers
//! the whole batch. Acks are matched by chunk, not by order: Fluentd answers each message when
//! it is in its buffer. A message not acked in time, or when the connection drops, is resent
//! whole with the same chunk ([`crate::retry`]); the recent latencies ([`Latency`]) are what
//! tells a silent connection from a slow receiver ([`crate::service`]). Acks that arrive late,
//! for a chunk already given up on, are ignored: the resend may then duplicate those events,
//! which is what at-least-once allows, and nothing is lost.

use rmpv::Value;

use crate::transport::TransportError;

/// Why waiting for acks stopped early.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// Not every chunk was acked by the deadline.
    #[error("{addr} did not ack {missing} of {total} messages within {timeout:?} (HIVELOG_FLUENT_ACK_TIMEOUT)")]
    Timeout {
        /// The receiver's address.
        addr: String,
        /// Messages still unacked.
        missing: usize,
        /// Messages waited for.
        total: usize,
        /// The ack timeout.
        timeout: std::time::Duration,
    },
    /// Acks stopped coming on a connection whose acks came quickly so far.
    #[error("{addr} did not ack {missing} of {total} messages within {after:?} while its recent acks took at most {p99:?} (p99): the connection is silent; resending on another connection")]
    Silent {
        /// The receiver's address.
        addr: String,
        /// Messages still unacked.
        missing: usize,
        /// Messages waited for.
        total: usize,
        /// How long the oldest unacked message waited.
        after: std::time::Duration,
        /// The connection's recent p99 ack latency.
        p99: std::time::Duration,
    },
    /// The receiver wants a handshake we did not do.
    #[error(
        "{addr} sent HELO: it requires the shared-key handshake; set HIVELOG_FLUENT_SHARED_KEY"
    )]
    HandshakeRequired {
        /// The receiver's address.
        addr: String,
    },
    /// The connection failed while waiting.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl AckError {
    /// The kind of failure, for the report and `hivelog check`.
    pub fn kind(&self) -> hivelog_core::FailureKind {
        match self {
            AckError::Timeout { .. } | AckError::Silent { .. } => {
                hivelog_core::FailureKind::TimedOut
            }
            AckError::HandshakeRequired { .. } => hivelog_core::FailureKind::Credentials,
            AckError::Transport(t) => t.kind(),
        }
    }
}

/// The chunk an answer acknowledges, if it is an ack.
pub fn ack_of(v: &Value) -> Option<&[u8]> {
    let (_, chunk) = v
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("ack"))?;
    match chunk {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

fn is_helo(v: &Value) -> bool {
    v.as_array().and_then(|a| a.first()).and_then(Value::as_str) == Some("HELO")
}

/// What one answer from the receiver means.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// `{"ack": chunk}`.
    Ack(&'a [u8]),
    /// `["HELO", …]`: the receiver wants the handshake.
    Helo,
    /// Anything else: ignored.
    Other,
}

/// Reads one answer.
pub fn answer(v: &Value) -> Answer<'_> {
    if let Some(c) = ack_of(v) {
        Answer::Ack(c)
    } else if is_helo(v) {
        Answer::Helo
    } else {
        Answer::Other
    }
}

/// Recent ack latencies of one server: the last [`LATENCY_SAMPLES`], for its p99.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    samples: std::collections::VecDeque<std::time::Duration>,
}

/// Ack latencies kept per server.
pub const LATENCY_SAMPLES: usize = 128;

impl Latency {
    /// Records one ack's latency.
    pub fn record(&mut self, d: std::time::Duration) {
        if self.samples.len() == LATENCY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(d);
    }

    /// The 99th percentile of the recent latencies; `None` before the first ack.
    pub fn p99(&self) -> Option<std::time::Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v: Vec<_> = self.samples.iter().copied().collect();
        v.sort_unstable();
        let i = ((v.len() * 99).div_ceil(100)).clamp(1, v.len()) - 1;
        Some(v[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn p99_is_the_slowest_but_one_percent() {
        let mut l = Latency::default();
        assert_eq!(l.p99(), None);
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.p99(), Some(Duration::from_millis(99)));
        for _ in 0..LATENCY_SAMPLES {
            l.record(Duration::from_millis(2));
        }
        assert_eq!(l.p99(), Some(Duration::from_millis(2)));
    }

    #[test]
    fn answers_are_acks_helos_or_ignored() {
        let ack = Value::Map(vec![("ack".into(), "abc".into())]);
        assert_eq!(answer(&ack), Answer::Ack(b"abc"));
        let helo = Value::Array(vec!["HELO".into(), Value::Map(vec![])]);
        assert_eq!(answer(&helo), Answer::Helo);
        assert_eq!(answer(&Value::from(3)), Answer::Other);
    }
}

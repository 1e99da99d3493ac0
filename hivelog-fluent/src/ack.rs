//! At-least-once delivery: waiting for `{"ack": chunk}`.
//!
//! Every message of a send carries its own `chunk`, and all of them are written before any ack
//! is awaited, so several messages are in flight on one connection and one round trip covers
//! the whole batch. Acks are matched by chunk, not by order: Fluentd answers each message when
//! it is in its buffer. A message not acked by the deadline, or when the connection drops, is
//! resent whole (its records get `Outcome::Retry`, and the same records give the same chunk).
//! Acks that arrive late, for a chunk already given up on, are ignored: the resend may then
//! duplicate those events, which is what at-least-once allows, and nothing is lost.

use std::time::Instant;

use rmpv::Value;

use crate::transport::{Connection, TransportError};

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
            AckError::Timeout { .. } => hivelog_core::FailureKind::TimedOut,
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

/// Marks `acked[i]` for each ack of `chunks[i]` read from `conn` until all are acked or
/// `deadline` passes.
pub async fn wait(
    conn: &mut Connection,
    chunks: &[&str],
    acked: &mut [bool],
    deadline: Instant,
    timeout: std::time::Duration,
) -> Result<(), AckError> {
    let mut missing = acked.iter().filter(|a| !**a).count();
    while missing > 0 {
        match conn.read_value(deadline).await? {
            None => {
                return Err(AckError::Timeout {
                    addr: conn.addr().to_owned(),
                    missing,
                    total: chunks.len(),
                    timeout,
                })
            }
            Some(v) => {
                if let Some(c) = ack_of(&v) {
                    if let Some(i) = chunks.iter().position(|k| k.as_bytes() == c) {
                        if !acked[i] {
                            acked[i] = true;
                            missing -= 1;
                        }
                    }
                } else if is_helo(&v) {
                    return Err(AckError::HandshakeRequired {
                        addr: conn.addr().to_owned(),
                    });
                }
            }
        }
    }
    Ok(())
}

//! When an endpoint stopped answering: the silence rule and the shutdown's share of the time.
//!
//! **The silence rule.** A connection is silent when its oldest unacked message has waited
//! longer than `max(1 s, 10 × p99)` of its server's last 128 ack latencies, and never longer
//! than `HIVELOG_FLUENT_ACK_TIMEOUT` (a server that never acked yet gets the whole ack
//! timeout: there is nothing to compare with). Its unacked messages are written again, whole
//! and under the same chunk ids, on another connection: another endpoint when one is up, else
//! a new connection to the same one (a middlebox that dropped the flow, a hung worker behind a
//! load balancer). Why ten times the p99: Fluentd's ack latency is steady for a given load and
//! message size, so a tenfold outlier is not a slow ack but a lost one, and waiting the full ack
//! timeout (30 s) would outlive most shutdown deadlines.
//!
//! **Shutdown.** Once the pipeline's shutdown began, every wait is bounded by the time left:
//! an ack is awaited at most half the time that remained when the wait began, then the message
//! is resent on another connection, so the resend happens before the deadline rather than the
//! process waiting out the ack timeout with its events unsent.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use hivelog_core::sink::shutdown_deadline;
use hivelog_core::FailureKind;

use crate::ack::{self, AckError, Answer};
use crate::retry::{Failure, Verdict};

use super::endpoints::{Endpoint, InFlight};

/// Shortest silence limit: 1 s, whatever the recent latencies.
pub const SILENCE_FLOOR: Duration = Duration::from_secs(1);
/// The silence limit in multiples of the recent p99 ack latency.
pub const SILENCE_FACTOR: u32 = 10;
/// How often a wait for acks looks whether shutdown began.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// A wait for one endpoint's acks, borrowing it.
type Wait<'a> = Pin<Box<dyn Future<Output = Option<Failure>> + Send + 'a>>;

/// Waits on every endpoint with messages in flight until all are acked or one fails;
/// returns the failures, by endpoint index.
pub(super) async fn wait_acks(
    endpoints: &mut [Endpoint],
    ack_timeout: Duration,
) -> Vec<(usize, Failure)> {
    let mut waits: Vec<(usize, Wait<'_>)> = endpoints
        .iter_mut()
        .enumerate()
        .filter(|(_, e)| !e.inflight.is_empty())
        .map(|(i, e)| (i, Box::pin(wait_endpoint(e, ack_timeout)) as Wait<'_>))
        .collect();
    std::future::poll_fn(move |cx| {
        let mut failed = Vec::new();
        waits.retain_mut(|(i, w)| match w.as_mut().poll(cx) {
            Poll::Ready(Some(f)) => {
                failed.push((*i, f));
                false
            }
            Poll::Ready(None) => false,
            Poll::Pending => true,
        });
        if !failed.is_empty() || waits.is_empty() {
            Poll::Ready(failed)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Waits for the acks of endpoint `e`'s messages in flight: `None` once all are acked, or
/// the failure that ended the wait (silence, timeout, shutdown, a closed connection, HELO).
async fn wait_endpoint(e: &mut Endpoint, ack_timeout: Duration) -> Option<Failure> {
    let p99 = e.latency.p99();
    let limit = p99.map_or(ack_timeout, |p| {
        (p * SILENCE_FACTOR).max(SILENCE_FLOOR).min(ack_timeout)
    });
    let mut shutdown_seen: Option<Instant> = None;
    let Some(conn) = e.conn.as_mut() else {
        let addr = e.name.clone();
        return Some(AckError::Transport(crate::transport::TransportError::Closed { addr }).into());
    };
    loop {
        let oldest = e
            .inflight
            .iter()
            .filter(|f| !f.acked)
            .map(|f| f.written)
            .min()?;
        let now = Instant::now();
        let mut until = oldest + limit;
        let mut cut_by_shutdown = false;
        if let Some(d) = shutdown_deadline() {
            let t0 = (*shutdown_seen.get_or_insert(now)).max(oldest);
            let half = t0 + d.saturating_duration_since(t0) / 2;
            if half < until {
                (until, cut_by_shutdown) = (half, true);
            }
        }
        if now >= until {
            let waited = now - oldest;
            return Some(ack_failure(
                &e.inflight,
                conn.addr(),
                p99,
                limit,
                cut_by_shutdown,
                waited,
            ));
        }
        let wake = if shutdown_seen.is_none() {
            until.min(now + SHUTDOWN_POLL)
        } else {
            until
        };
        match conn.read_value(wake).await {
            Ok(None) => {}
            Ok(Some(v)) => match ack::answer(&v) {
                Answer::Ack(c) => {
                    let now = Instant::now();
                    if let Some(f) = e
                        .inflight
                        .iter_mut()
                        .find(|f| !f.acked && f.chunk.as_bytes() == c)
                    {
                        f.acked = true;
                        e.latency.record(now - f.written);
                        e.failures = 0;
                    }
                }
                Answer::Helo => {
                    let addr = conn.addr().to_owned();
                    return Some(AckError::HandshakeRequired { addr }.into());
                }
                Answer::Other => {}
            },
            Err(err) => return Some(AckError::from(err).into()),
        }
    }
}

/// The failure of a wait that ran out: silence, the ack timeout, or the shutdown's share.
fn ack_failure(
    inflight: &[InFlight],
    addr: &str,
    p99: Option<Duration>,
    limit: Duration,
    by_shutdown: bool,
    waited: Duration,
) -> Failure {
    let missing = inflight.iter().filter(|f| !f.acked).count();
    let total = inflight.len();
    let addr = addr.to_owned();
    if by_shutdown {
        let message = format!(
            "{addr} did not ack {missing} of {total} messages within {waited:?}, half the time left before the shutdown deadline: resending on another connection"
        );
        return Failure::new(FailureKind::TimedOut, message, Verdict::Silent);
    }
    match p99 {
        Some(p99) => AckError::Silent {
            addr,
            missing,
            total,
            after: waited.max(limit),
            p99,
        }
        .into(),
        None => AckError::Timeout {
            addr,
            missing,
            total,
            timeout: limit,
        }
        .into(),
    }
}

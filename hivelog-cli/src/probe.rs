//! Sending one test event to each destination, and reading what happened from the sink's
//! [`Outcomes`].
//!
//! Each sink is built as the service would build it (`XSink::new(config, format)`), then
//! `start` (connect, handshake, create the stream) and `send` run once, directly, with no
//! pipeline around them: the pipeline would retry and back off, and this tool wants the first
//! answer. All destinations are probed at once on one current-thread runtime, each under its
//! own deadline, so the whole check takes at most about one `--timeout`.
//!
//! "Authenticated" and "reachable" are read from the kind of the failure the sink reports
//! ([`FailureKind`]), never from its text: refused credentials mean the destination answered
//! but refused us; unreachable and timed out mean nothing answered. A rejected event means
//! both worked and the destination refused the event itself, with its reason.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivelog::cloudwatch::{CloudWatchConfig, CloudWatchSink};
use hivelog::elk::{EsConfig, EsSink};
use hivelog::fluent::{FluentConfig, FluentSink};
use hivelog_core::record::{Str, Value};
use hivelog_core::{FailureKind, Format, Outcome, Outcomes, Record, Sink};

/// Time given to `Sink::close` after the test (closing a Forward connection cleanly).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What one destination did with the test event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// `fluent`, `elasticsearch`, `cloudwatch`.
    pub sink: &'static str,
    /// Where it sends (address, node URLs, log group and endpoint).
    pub target: String,
    /// Whether the destination answered; `None` when this cannot be told.
    pub reachable: Option<bool>,
    /// Whether it accepted our credentials; `None` when it never got to check them.
    pub authenticated: Option<bool>,
    /// Whether it accepted the test event.
    pub accepted: bool,
    /// How long `send` took (the event's round trip), when it finished in time.
    pub round_trip: Option<Duration>,
    /// How long `start` took (connection, handshake, setup calls).
    pub start: Option<Duration>,
    /// Why it failed, in the sink's words.
    pub detail: Option<String>,
    /// The kind of failure, when the sink reported one.
    pub failure: Option<FailureKind>,
    /// A caveat about a success (an event written but not acknowledged).
    pub note: Option<String>,
}

/// The destinations to test.
#[derive(Debug, Default)]
pub struct Destinations {
    /// Fluentd / Fluent Bit.
    pub fluent: Option<FluentConfig>,
    /// `HIVELOG_FLUENT_ACK=false`: Fluentd's "accepted" only means "written to the socket".
    pub fluent_unacked: bool,
    /// Elasticsearch / OpenSearch.
    pub es: Option<EsConfig>,
    /// CloudWatch Logs.
    pub cloudwatch: Option<CloudWatchConfig>,
}

/// Tests every destination at once, each within `timeout`; results in the order fluent,
/// elasticsearch, cloudwatch.
pub fn probe_all(
    dest: Destinations,
    format: &Arc<Format>,
    check_id: &str,
    timeout: Duration,
) -> std::io::Result<Vec<Probe>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let record = || test_record(format, check_id);
    // The sinks are built inside the runtime: a client may register with it when created.
    let results = rt.block_on(async {
        let unacked = dest.fluent_unacked;
        let fluent = dest.fluent.map(|c| {
            let target = c.address().to_string();
            let p = probe(FluentSink::new(c, format.clone()), target, record(), timeout);
            async move {
                let mut p = p.await;
                if unacked && p.accepted {
                    p.note = Some(
                        "written, not confirmed: HIVELOG_FLUENT_ACK=false asks the receiver for no ack"
                            .to_owned(),
                    );
                }
                p
            }
        });
        let es = dest.es.map(|c| {
            let target = c.nodes().join(",");
            probe(EsSink::new(c, format.clone()), target, record(), timeout)
        });
        let cloudwatch = dest.cloudwatch.map(|c| {
            let target = cloudwatch_target(&c);
            probe(
                CloudWatchSink::new(c, format.clone()),
                target,
                record(),
                timeout,
            )
        });
        let (a, b, c) = tokio::join!(optional(fluent), optional(es), optional(cloudwatch));
        [a, b, c]
    });
    Ok(results.into_iter().flatten().collect())
}

async fn optional<F: Future<Output = Probe>>(f: Option<F>) -> Option<Probe> {
    match f {
        Some(f) => Some(f.await),
        None => None,
    }
}

fn cloudwatch_target(c: &CloudWatchConfig) -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok()
        .filter(|v| !v.trim().is_empty());
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok()
        .filter(|v| !v.trim().is_empty());
    match (endpoint, region) {
        (Some(e), _) => format!("log group {} at {e}", c.group_name()),
        (None, Some(r)) => format!("log group {} in {r}", c.group_name()),
        (None, None) => format!("log group {}", c.group_name()),
    }
}

/// An id for this run's test events: host, process and time, so two checks never share one.
pub fn check_id(format: &Format) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{}-{nanos}", format.hostname(), std::process::id())
}

/// The test event: INFO, target `hivelog::check`, `"hivelog check from <host>"`, and a
/// `check_id` field to find it at the destination.
pub fn test_record(format: &Format, check_id: &str) -> Record {
    let mut r = Record::new(
        tracing::Level::INFO,
        Str::Static("hivelog::check"),
        format.max_event_bytes(),
        1,
    );
    r.module = Some(Str::Static("hivelog::check"));
    let msg = r
        .fields
        .push_fmt(format_args!("hivelog check from {}", format.hostname()));
    r.message = Some(msg);
    let id = r.fields.push_str(check_id);
    r.fields.push("check_id", Value::Str(id));
    r
}

async fn probe<S: Sink>(mut sink: S, target: String, record: Record, timeout: Duration) -> Probe {
    let name = sink.name();
    let deadline = tokio::time::Instant::now() + timeout;
    let t0 = Instant::now();
    let mut start = None;
    let mut round_trip = None;
    let run = async {
        sink.start().await;
        start = Some(t0.elapsed());
        let t1 = Instant::now();
        let outcomes = sink.send(std::slice::from_ref(&record)).await;
        round_trip = Some(t1.elapsed());
        outcomes
    };
    let result = tokio::time::timeout_at(deadline, run).await;
    let mut p = match result {
        Ok(outcomes) => classify(name, target, &outcomes),
        Err(_) => Probe {
            sink: name,
            target,
            reachable: Some(false),
            authenticated: None,
            accepted: false,
            round_trip: None,
            start: None,
            note: None,
            failure: Some(FailureKind::TimedOut),
            detail: Some(if start.is_some() {
                format!("the test event was not confirmed within {timeout:?} (--timeout)")
            } else {
                format!("no connection within {timeout:?} (--timeout)")
            }),
        },
    };
    p.start = start;
    p.round_trip = round_trip;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
    p
}

/// Reads one test event's outcome.
pub fn classify(sink: &'static str, target: String, o: &Outcomes) -> Probe {
    let mut p = Probe {
        sink,
        target,
        reachable: Some(true),
        authenticated: Some(true),
        accepted: false,
        round_trip: None,
        start: None,
        detail: None,
        failure: None,
        note: None,
    };
    match o.as_slice().first() {
        Some(Outcome::Delivered) => p.accepted = true,
        Some(Outcome::Rejected(i)) => {
            p.detail = Some(format!("the event was rejected: {}", o.reason(*i)));
        }
        None => p.detail = Some("the sink reported no outcome".to_owned()),
        Some(Outcome::Retry | Outcome::Failed | Outcome::Deferred) => {
            let err = o.error().unwrap_or("failed without a message");
            match o.failure() {
                Some(FailureKind::NoCredentials) => {
                    p.reachable = None;
                    p.authenticated = Some(false);
                }
                Some(FailureKind::Credentials) => p.authenticated = Some(false),
                Some(kind) if kind.reached() == Some(false) => {
                    p.reachable = Some(false);
                    p.authenticated = None;
                }
                _ => p.authenticated = None,
            }
            p.failure = o.failure();
            p.detail = Some(err.to_owned());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_read_from_their_kind_not_their_text() {
        let read = |kind| {
            let p = classify(
                "x",
                "h".into(),
                &Outcomes::retry_all(1, kind, "401 unreachable"),
            );
            (p.reachable, p.authenticated)
        };
        assert_eq!(read(FailureKind::Credentials), (Some(true), Some(false)));
        assert_eq!(read(FailureKind::NoCredentials), (None, Some(false)));
        assert_eq!(read(FailureKind::Unreachable), (Some(false), None));
        assert_eq!(read(FailureKind::TimedOut), (Some(false), None));
        assert_eq!(read(FailureKind::Unavailable), (Some(true), None));
    }

    #[test]
    fn a_rejected_event_was_reachable_and_authenticated() {
        let mut o = Outcomes::delivered(1);
        o.reject(0, "mapper_parsing_exception: bad");
        let p = classify("elasticsearch", "h".into(), &o);
        assert_eq!(
            (p.reachable, p.authenticated, p.accepted),
            (Some(true), Some(true), false)
        );
        assert!(p.detail.unwrap().contains("mapper_parsing_exception"));
        let p = classify("elasticsearch", "h".into(), &Outcomes::delivered(1));
        assert!(p.accepted && p.detail.is_none());
    }
}

//! What moto never does — throttle, fail, refuse some events of a request, deny access, drop
//! connections — scripted with the shared fault-injecting HTTP server.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use hivelog_cloudwatch::{limits, MessageFormat};
use hivelog_core::pipeline::RetryPolicy;
use hivelog_core::{Outcome, Pipeline, PipelineConfig, Sink};
use hivelog_tests::http::{HttpServer, Request, Response};

/// The operation a request calls (`PutLogEvents`), from `X-Amz-Target: Logs_20140328.<op>`.
fn op(req: &Request) -> &str {
    req.header("x-amz-target")
        .and_then(|t| t.split('.').nth(1))
        .unwrap_or("")
}

fn ok(body: &str) -> Response {
    Response::new(200)
        .header("content-type", "application/x-amz-json-1.1")
        .body(body.to_owned())
}

fn aws_error(status: u16, kind: &str) -> Response {
    Response::new(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(format!(
            r#"{{"__type":"{kind}","message":"scripted {kind}"}}"#
        ))
}

/// The messages of every PutLogEvents request received.
fn puts(server: &HttpServer) -> Vec<Vec<String>> {
    server
        .requests()
        .iter()
        .filter(|r| op(r) == "PutLogEvents")
        .map(|r| {
            r.json()["logEvents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

fn fast_retries() -> PipelineConfig {
    PipelineConfig {
        flush_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(30),
        },
        ..PipelineConfig::default()
    }
}

/// Answers CreateLogStream with success and PutLogEvents with `put(n)` for the n-th put.
fn server(put: impl Fn(usize) -> Response + Send + Sync + 'static) -> HttpServer {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    HttpServer::start(move |req| match op(req) {
        "PutLogEvents" => put(count.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
        _ => ok("{}"),
    })
}

#[test]
fn throttling_and_service_unavailable_are_retried_and_nothing_is_lost() {
    let server = server(|n| match n {
        0 => aws_error(400, "ThrottlingException"),
        1 => aws_error(503, "ServiceUnavailableException"),
        _ => ok("{}"),
    });
    runtime().block_on(async {
        let mut sink = sink(
            config(&server.url(), "g")
                .stream("s")
                .unwrap()
                .format(MessageFormat::Text),
        );
        let now = SystemTime::now();
        let batch: Vec<_> = (0..5)
            .map(|i| record("app", &format!("m{i}"), now))
            .collect();
        let first = sink.send(&batch).await;
        assert_eq!(tally(&first), (0, 0, 5, 0, 0));
        assert!(
            first.error().unwrap().contains("ThrottlingException"),
            "{first:?}"
        );
        let second = sink.send(&batch).await;
        assert_eq!(tally(&second), (0, 0, 5, 0, 0));
        assert!(
            second
                .error()
                .unwrap()
                .contains("ServiceUnavailableException"),
            "{second:?}"
        );
        assert_eq!(tally(&sink.send(&batch).await), (5, 0, 0, 0, 0));
    });
    let want: Vec<String> = (0..5).map(|i| text(&format!("m{i}"))).collect();
    assert_eq!(puts(&server), [want.clone(), want.clone(), want]);
}

#[test]
fn through_the_pipeline_throttled_records_are_delivered_exactly_once() {
    let server = server(|n| match n {
        0 => aws_error(400, "ThrottlingException"),
        1 => aws_error(503, "ServiceUnavailableException"),
        _ => ok("{}"),
    });
    let sink = sink(
        config(&server.url(), "g")
            .stream("s")
            .unwrap()
            .format(MessageFormat::Text),
    );
    let pipeline = Pipeline::spawn(sink, fast_retries()).unwrap();
    let now = SystemTime::now();
    for i in 0..100 {
        pipeline.push(record(
            "app",
            &format!("m{i:03}"),
            now + Duration::from_millis(i),
        ));
    }
    let stats = pipeline.shutdown(Instant::now() + Duration::from_secs(20));
    assert_eq!(
        (stats.delivered, stats.failed, stats.rejected, stats.pending),
        (100, 0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.retried >= 200, "{stats:?}");
    let all = puts(&server);
    let delivered: Vec<String> = all.last().unwrap().clone();
    let want: Vec<String> = (0..100).map(|i| text(&format!("m{i:03}"))).collect();
    assert_eq!(delivered, want);
    assert_eq!(all.len(), 3);
}

#[test]
fn rejected_log_events_info_is_accounted_exactly() {
    // Documented indexes: expired [0, 1), too old [0, 2), too new [8, 10) of the sorted request.
    let server = server(|_| {
        ok(
            r#"{"rejectedLogEventsInfo":{"expiredLogEventEndIndex":1,"tooOldLogEventEndIndex":2,"tooNewLogEventStartIndex":8}}"#,
        )
    });
    runtime().block_on(async {
        let mut sink = sink(
            config(&server.url(), "g")
                .stream("s")
                .unwrap()
                .format(MessageFormat::Text),
        );
        let t = SystemTime::now() - Duration::from_secs(60);
        // Logged out of order: the request is sorted, so index i of the request is the record
        // with timestamp t + i seconds.
        let order = [5u64, 0, 9, 1, 8, 2, 7, 3, 6, 4];
        let batch: Vec<_> = order
            .iter()
            .map(|s| record("app", &format!("t{s}"), t + Duration::from_secs(*s)))
            .collect();
        let outcomes = sink.send(&batch).await;
        assert_eq!(tally(&outcomes), (6, 0, 0, 4, 0), "{outcomes:?}");
        for (i, s) in order.iter().enumerate() {
            let got = match outcomes.as_slice()[i] {
                Outcome::Rejected(r) => Some(outcomes.reason(r)),
                Outcome::Delivered => None,
                other => panic!("{other:?}"),
            };
            let want = match s {
                0 => Some(limits::reason::EXPIRED),
                1 => Some(limits::reason::TOO_OLD),
                8 | 9 => Some(limits::reason::TOO_NEW),
                _ => None,
            };
            assert_eq!(got, want, "record t{s}");
        }
    });
    let sent = &puts(&server)[0];
    let sorted: Vec<String> = (0..10).map(|s| text(&format!("t{s}"))).collect();
    assert_eq!(*sent, sorted);
}

#[test]
fn through_the_pipeline_rejected_events_are_counted_and_not_retried() {
    let server = server(|_| ok(r#"{"rejectedLogEventsInfo":{"tooNewLogEventStartIndex":3}}"#));
    let sink = sink(
        config(&server.url(), "g")
            .stream("s")
            .unwrap()
            .format(MessageFormat::Text),
    );
    let pipeline = Pipeline::spawn(sink, fast_retries()).unwrap();
    let now = SystemTime::now();
    for i in 0..5 {
        pipeline.push(record(
            "app",
            &format!("m{i}"),
            now + Duration::from_millis(i),
        ));
    }
    let stats = pipeline.shutdown(Instant::now() + Duration::from_secs(10));
    assert_eq!(
        (stats.delivered, stats.rejected, stats.retried, stats.failed),
        (3, 2, 0, 0),
        "{stats:?}"
    );
    assert_eq!(puts(&server).len(), 1);
}

#[test]
fn a_missing_group_is_created_and_given_its_retention() {
    let server = HttpServer::start(|req| match (op(req), req.index) {
        ("CreateLogStream", 0) => aws_error(400, "ResourceNotFoundException"),
        _ => ok("{}"),
    });
    runtime().block_on(async {
        let mut sink = sink(
            config(&server.url(), "g")
                .stream("s")
                .unwrap()
                .retention_days(Some(14)),
        );
        sink.start().await;
        assert_eq!(
            tally(&sink.send(&[record("app", "x", SystemTime::now())]).await),
            (1, 0, 0, 0, 0)
        );
    });
    let reqs = server.requests();
    let ops: Vec<&str> = reqs.iter().map(op).collect();
    assert_eq!(
        ops,
        [
            "CreateLogStream",
            "CreateLogGroup",
            "CreateLogStream",
            "PutRetentionPolicy",
            "PutLogEvents"
        ]
    );
    assert_eq!(reqs[3].json()["retentionInDays"], 14);
    assert_eq!(reqs[1].json()["logGroupName"], "g");
}

#[test]
fn access_denied_fails_the_records_without_retrying() {
    let server = server(|_| aws_error(400, "AccessDeniedException"));
    let sink = sink(config(&server.url(), "g").stream("s").unwrap());
    let pipeline = Pipeline::spawn(sink, fast_retries()).unwrap();
    for i in 0..3 {
        pipeline.push(record("app", &format!("m{i}"), SystemTime::now()));
    }
    let stats = pipeline.shutdown(Instant::now() + Duration::from_secs(10));
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried),
        (0, 3, 0),
        "{stats:?}"
    );
    assert!(stats.last_error.unwrap().contains("AccessDeniedException"));
    assert_eq!(puts(&server).len(), 1);
}

#[test]
fn a_reset_connection_is_retried() {
    let server = server(|n| {
        if n == 0 {
            Response::new(200).reset()
        } else {
            ok("{}")
        }
    });
    runtime().block_on(async {
        let mut sink = sink(config(&server.url(), "g").stream("s").unwrap());
        let batch = [record("app", "survives a reset", SystemTime::now())];
        let first = sink.send(&batch).await;
        assert_eq!(tally(&first), (0, 0, 1, 0, 0), "{first:?}");
        assert_eq!(tally(&sink.send(&batch).await), (1, 0, 0, 0, 0));
    });
}

#[test]
fn the_sink_reports_its_name_and_limits() {
    let s = sink(config("http://127.0.0.1:9", "g"));
    assert_eq!(s.name(), "cloudwatch");
    let l = s.limits();
    assert_eq!(l.max_events % limits::MAX_BATCH_EVENTS, 0);
    assert_eq!(l.max_bytes % limits::MAX_BATCH_BYTES, 0);
}

//! The OTLP destination end to end: `OTEL_LOGS_EXPORTER=otlp` in the variables, real `tracing`
//! events, and what arrived decoded by the official `opentelemetry-proto` classes
//! (`tests/peers/otlp_receiver.py`), through a real collector (rotel) or straight to the
//! receiver with scripted answers. `scripts/test.sh` starts both.

use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hivelog::trace::{self, TraceParent};
use hivelog_tests::peers::{
    http, otlp_receiver_grpc_url, otlp_receiver_url, rotel_grpc_url, rotel_http_url, unique,
};
use serde_json::{json, Value};

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[derive(Debug)]
struct DbError {
    source: std::io::Error,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("database unreachable")
    }
}

impl Error for DbError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn build(vars: &[(&str, &str)]) -> (tracing::Dispatch, hivelog::Guard) {
    let mut all = vec![
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("HIVELOG_OUTPUT", "none"),
        ("HIVELOG_RETRY_BASE", "10ms"),
        ("HIVELOG_FLUSH_INTERVAL", "50ms"),
    ];
    all.extend_from_slice(vars);
    let env = hivelog::Env::from_pairs(all.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    hivelog::builder()
        .env(env)
        .writer(std::io::sink())
        .try_build()
        .expect("valid configuration")
}

fn otlp_stats(report: &hivelog::Report) -> &hivelog::Stats {
    report
        .sinks
        .iter()
        .find(|s| s.sink == "otlp")
        .expect("the otlp destination is on")
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Every record that reached the receiver at `url` (a tenant's or the collector's), waiting
/// until there are at least `n`.
fn records(url: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, reqs) = http("GET", url, None);
        assert_eq!(status, 200, "{reqs}");
        let recs: Vec<Value> = reqs
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|q| q["records"].as_array().unwrap().clone())
            .collect();
        if recs.len() >= n || Instant::now() > deadline {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn requests(url: &str) -> Vec<Value> {
    let (status, reqs) = http("GET", url, None);
    assert_eq!(status, 200);
    reqs.as_array().unwrap().clone()
}

/// Logs the events whose mapping the collector tests check; returns the innermost span's id
/// and the time window of the events.
fn log_the_mapped_events() -> (String, u64, u64) {
    let before = nanos(SystemTime::now());
    let request = tracing::info_span!("request", http.route = "/articles", attempt = 2u64);
    trace::start(&request, TraceParent::from_w3c([TP], []).as_ref());
    let span_id = request.in_scope(|| {
        let db = tracing::info_span!("db", table = "articles", user = "from-span");
        let span_id = trace::of(&db).unwrap().span_id.to_string();
        db.in_scope(|| {
            let err = DbError {
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused",
                ),
            };
            tracing::error!(
                target: "svc::articles",
                user = "a@b.c",
                count = -3i64,
                ratio = 0.5f64,
                ok = true,
                error = &err as &(dyn Error + 'static),
                "article hit"
            );
            tracing::debug!(target: "svc::articles", "below HIVELOG_OTLP_LEVEL");
        });
        span_id
    });
    tracing::warn!(target: "svc::other", "no trace here");
    (span_id, before, nanos(SystemTime::now()))
}

fn check_mapping(recs: &[Value], service: &str, span_id: &str, before: u64, after: u64) {
    assert_eq!(recs.len(), 2, "the DEBUG event is filtered out: {recs:#?}");
    let hit = recs.iter().find(|r| r["scope"] == "svc::articles").unwrap();
    let other = recs.iter().find(|r| r["scope"] == "svc::other").unwrap();

    let resource = &hit["resource"];
    assert_eq!(resource["service.name"], json!({"string": service}));
    assert_eq!(
        resource["deployment.environment.name"],
        json!({"string": "test"})
    );
    assert_eq!(resource["team"], json!({"string": "core"}), "HIVELOG_EXTRA");

    assert_eq!(hit["body"], json!({"string": "article hit"}));
    assert_eq!(hit["severity_number"], 17);
    assert_eq!(hit["severity_text"], "ERROR");
    let t = hit["time_unix_nano"].as_u64().unwrap();
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    assert_eq!(hit["observed_time_unix_nano"], t);
    assert_eq!(hit["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hit["span_id"], span_id);
    assert_eq!(hit["flags"], 1);

    let a = hit["attributes"].as_object().unwrap();
    assert!(a.get("__duplicate_keys__").is_none(), "{a:?}");
    assert_eq!(
        a["user"],
        json!({"string": "a@b.c"}),
        "the event's field wins"
    );
    assert_eq!(a["count"], json!({"int": -3}));
    assert_eq!(a["ratio"], json!({"double": 0.5}));
    assert_eq!(a["ok"], json!({"bool": true}));
    assert_eq!(a["exception.type"], json!({"string": "DbError"}));
    assert_eq!(
        a["exception.message"],
        json!({"string": "database unreachable: connection refused"})
    );
    assert_eq!(a["table"], json!({"string": "articles"}), "span fields");
    assert_eq!(a["http.route"], json!({"string": "/articles"}));
    assert_eq!(a["attempt"], json!({"int": 2}));
    assert!(a["code.file.path"]["string"]
        .as_str()
        .unwrap()
        .ends_with("otlp.rs"));
    assert!(a["code.line.number"]["int"].as_i64().unwrap() > 0);
    assert_eq!(a["code.function.name"], json!({"string": "otlp"}));
    for never in [
        "trace_id",
        "span_id",
        "error",
        "message",
        "code.filepath",
        "code.lineno",
    ] {
        assert!(a.get(never).is_none(), "{never} is not an attribute: {a:?}");
    }

    assert_eq!(other["body"], json!({"string": "no trace here"}));
    assert_eq!(other["severity_number"], 13);
    assert_eq!(other["severity_text"], "WARN");
    assert_eq!(other["trace_id"], "", "outside a trace: empty ids");
    assert_eq!(other["span_id"], "");
    assert_eq!(other["flags"], 0);
}

fn through_rotel(protocol: &str) {
    let service = unique("otlp-rotel");
    let rotel = if protocol == "grpc" {
        rotel_grpc_url()
    } else {
        rotel_http_url()
    };
    let (dispatch, guard) = build(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", &service),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        ),
        ("HIVELOG_EXTRA", "team=core"),
        ("HIVELOG_LEVEL", "debug"),
        ("HIVELOG_OTLP_LEVEL", "info"),
    ]);
    let (span_id, before, after) =
        tracing::dispatcher::with_default(&dispatch, log_the_mapped_events);
    let report = guard.shutdown(Duration::from_secs(10));
    let s = otlp_stats(&report);
    assert_eq!((s.delivered, s.rejected, s.failed), (2, 0, 0), "{s:?}");
    let url = format!("{}/requests?service={service}", otlp_receiver_url());
    check_mapping(&records(&url, 2), &service, &span_id, before, after);
}

#[test]
fn every_mapped_field_arrives_through_a_collector_over_http_protobuf() {
    through_rotel("http/protobuf");
}

#[test]
fn every_mapped_field_arrives_through_a_collector_over_http_json() {
    through_rotel("http/json");
}

#[test]
fn every_mapped_field_arrives_through_a_collector_over_grpc() {
    through_rotel("grpc");
}

/// A tenant of the receiver with its scripted answers; returns its logs endpoint and its
/// requests URL.
fn tenant(script: Value) -> (String, String) {
    let base = format!("{}/{}", otlp_receiver_url(), unique("t"));
    let (status, _) = http("POST", &format!("{base}/script"), Some(script));
    assert_eq!(status, 200);
    (format!("{base}/v1/logs"), format!("{base}/requests"))
}

fn log_n(dispatch: &tracing::Dispatch, n: usize) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..n {
            tracing::info!(i, "event {i}");
        }
    });
}

#[test]
fn a_503_is_retried_after_its_retry_after_and_then_delivered() {
    let (endpoint, requests_url) =
        tenant(json!([{"status": 503, "retry_after": "1", "message": "busy"}]));
    let (dispatch, guard) = build(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint)]);
    log_n(&dispatch, 3);
    let report = guard.shutdown(Duration::from_secs(15));
    let s = otlp_stats(&report);
    assert_eq!((s.delivered, s.retried, s.failed), (3, 3, 0), "{s:?}");
    let reqs = requests(&requests_url);
    assert_eq!(reqs.len(), 2, "one refused, one accepted");
    assert_eq!(
        reqs[0]["records"], reqs[1]["records"],
        "the same records resent"
    );
    let gap = reqs[1]["received_at"].as_f64().unwrap() - reqs[0]["received_at"].as_f64().unwrap();
    // HIVELOG_RETRY_BASE is 10ms: only Retry-After explains a wait of a second.
    assert!(gap >= 0.9, "resent {gap}s later, before Retry-After: 1");
}

#[test]
fn a_partial_success_rejects_its_count_with_its_message_and_is_never_retried() {
    let (endpoint, requests_url) = tenant(json!([{"partial": 2, "message": "2 records too old"}]));
    let (dispatch, guard) = build(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint)]);
    log_n(&dispatch, 5);
    let report = guard.shutdown(Duration::from_secs(10));
    let s = otlp_stats(&report);
    assert_eq!(
        (s.delivered, s.rejected, s.retried, s.failed),
        (3, 2, 0, 0),
        "{s:?}"
    );
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("2 records too old"),
        "{s:?}"
    );
    assert_eq!(requests(&requests_url).len(), 1);
}

#[test]
fn a_400_fails_the_request_for_good_with_the_status_message() {
    let (endpoint, requests_url) = tenant(json!([{"status": 400, "message": "bad severity"}]));
    let (dispatch, guard) = build(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint)]);
    log_n(&dispatch, 4);
    let report = guard.shutdown(Duration::from_secs(10));
    let s = otlp_stats(&report);
    assert_eq!((s.delivered, s.failed, s.retried), (0, 4, 0), "{s:?}");
    assert_eq!(s.last_failure, Some(hivelog::core::FailureKind::Protocol));
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("400: bad severity"),
        "{s:?}"
    );
    assert_eq!(requests(&requests_url).len(), 1, "never retried");
}

#[test]
fn gzip_bodies_and_headers_arrive_decoded() {
    let (endpoint, requests_url) = tenant(json!([]));
    let (dispatch, guard) = build(&[
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-api-key=s%3Dcr3t,x-tenant=acme",
        ),
        ("HIVELOG_SERVICE", "from-hivelog-service"),
    ]);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..50 {
            tracing::info!(
                i,
                "the same long message, compressible, again and again {i}"
            );
        }
    });
    let report = guard.shutdown(Duration::from_secs(10));
    assert_eq!(otlp_stats(&report).delivered, 50);
    let reqs = requests(&requests_url);
    let h = &reqs[0]["headers"];
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-api-key"], "s=cr3t");
    assert_eq!(h["x-tenant"], "acme");
    let recs = records(&requests_url, 50);
    assert_eq!(recs.len(), 50);
    assert_eq!(
        recs[7]["body"]["string"],
        "the same long message, compressible, again and again 7"
    );
    assert_eq!(
        recs[0]["resource"]["service.name"],
        json!({"string": "from-hivelog-service"}),
        "without OTEL_SERVICE_NAME, HIVELOG_SERVICE names the service"
    );
    let decoded: usize = recs
        .iter()
        .map(|r| r["body"]["string"].as_str().unwrap().len())
        .sum();
    assert!(
        (h["wire_bytes"].as_u64().unwrap() as usize) < decoded,
        "{h}"
    );
}

#[test]
fn a_collector_that_never_answers_cannot_hold_shutdown_past_its_deadline() {
    let (endpoint, requests_url) = tenant(json!([{"hang": true}]));
    let (dispatch, guard) = build(&[
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint),
        // No export timeout of its own: only the shutdown deadline can end the wait.
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
    ]);
    log_n(&dispatch, 3);
    // Let the export reach the receiver and hang there.
    let _ = records(&requests_url, 3);
    let t0 = Instant::now();
    let report = guard.shutdown(Duration::from_secs(1));
    let took = t0.elapsed();
    let s = otlp_stats(&report);
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    assert_eq!(s.delivered, 0, "{s:?}");
    assert_eq!(s.enqueued, 3);
    assert!(s.is_balanced(), "{s:?}");
}

/// A tenant of the receiver's gRPC side (named by the `x-tenant` header, sent as metadata);
/// returns the variables that point hivelog at it and its requests URL.
fn grpc_tenant(script: Value) -> (Vec<(&'static str, String)>, String) {
    let name = unique("g");
    let base = format!("{}/{name}", otlp_receiver_url());
    let (status, _) = http("POST", &format!("{base}/script"), Some(script));
    assert_eq!(status, 200);
    let vars = vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver_grpc_url()),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            format!("x-tenant={name}"),
        ),
    ];
    (vars, format!("{base}/requests"))
}

fn build_with(
    vars: &[(&'static str, String)],
    more: &[(&str, &str)],
) -> (tracing::Dispatch, hivelog::Guard) {
    let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(more);
    build(&all)
}

#[test]
fn grpc_unavailable_is_retried_after_its_retry_info_delay() {
    let (vars, requests_url) =
        grpc_tenant(json!([{"grpc": "UNAVAILABLE", "retry_after": 1, "message": "busy"}]));
    let (dispatch, guard) = build_with(&vars, &[]);
    log_n(&dispatch, 3);
    let report = guard.shutdown(Duration::from_secs(15));
    let s = otlp_stats(&report);
    assert_eq!((s.delivered, s.retried, s.failed), (3, 3, 0), "{s:?}");
    let reqs = requests(&requests_url);
    assert_eq!(reqs.len(), 2, "one refused, one accepted");
    assert_eq!(
        reqs[0]["records"], reqs[1]["records"],
        "the same records resent"
    );
    let gap = reqs[1]["received_at"].as_f64().unwrap() - reqs[0]["received_at"].as_f64().unwrap();
    assert!(gap >= 0.9, "resent {gap}s later, before RetryInfo's 1s");
}

#[test]
fn grpc_resource_exhausted_is_final_without_retry_info_and_retried_with_it() {
    let (vars, requests_url) =
        grpc_tenant(json!([{"grpc": "RESOURCE_EXHAUSTED", "message": "message too large"}]));
    let (dispatch, guard) = build_with(&vars, &[]);
    log_n(&dispatch, 3);
    let report = guard.shutdown(Duration::from_secs(10));
    let s = otlp_stats(&report);
    assert_eq!((s.delivered, s.failed, s.retried), (0, 3, 0), "{s:?}");
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains("message too large"),
        "{s:?}"
    );
    assert_eq!(requests(&requests_url).len(), 1, "never retried");

    let (vars, requests_url) = grpc_tenant(
        json!([{"grpc": "RESOURCE_EXHAUSTED", "retry_after": 0, "message": "slow down"}]),
    );
    let (dispatch, guard) = build_with(&vars, &[]);
    log_n(&dispatch, 3);
    let report = guard.shutdown(Duration::from_secs(10));
    let s = otlp_stats(&report);
    assert_eq!((s.delivered, s.retried, s.failed), (3, 3, 0), "{s:?}");
    assert_eq!(requests(&requests_url).len(), 2);
}

#[test]
fn grpc_gzip_messages_decode_and_a_partial_success_rejects_its_count() {
    let (vars, requests_url) = grpc_tenant(json!([{"partial": 1, "message": "one too old"}]));
    let (dispatch, guard) = build_with(&vars, &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]);
    log_n(&dispatch, 4);
    let report = guard.shutdown(Duration::from_secs(10));
    let s = otlp_stats(&report);
    assert_eq!((s.delivered, s.rejected, s.retried), (3, 1, 0), "{s:?}");
    assert!(
        s.last_error.as_deref().unwrap().contains("one too old"),
        "{s:?}"
    );
    let reqs = requests(&requests_url);
    // grpcio hides `grpc-encoding` from the handler: what is checked is that the compressed
    // messages decode to every record.
    assert_eq!(reqs.len(), 1);
    let bodies: Vec<&str> = reqs[0]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"]["string"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["event 0", "event 1", "event 2", "event 3"]);
}

#[test]
fn tls_trusts_the_collector_only_with_otel_exporter_otlp_certificate() {
    use hivelog_tests::http::{HttpServer, Request, Response};
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = hivelog_tests::forward::tls_material(dir.path());
    let server = HttpServer::start_tls(&cert, &key, |_: &Request| {
        Response::new(200).header("content-type", "application/x-protobuf")
    });
    let endpoint = format!("{}/v1/logs", server.https_url());

    let (dispatch, guard) = build(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint)]);
    log_n(&dispatch, 2);
    let report = guard.shutdown(Duration::from_secs(2));
    let s = otlp_stats(&report);
    assert_eq!(s.delivered, 0, "{s:?}");
    let err = s.last_error.clone().unwrap_or_default().to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknownissuer"),
        "{err}"
    );
    assert_eq!(server.request_count(), 0);

    let ca = ca.to_str().unwrap();
    let (dispatch, guard) = build(&[
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
    ]);
    log_n(&dispatch, 2);
    let report = guard.shutdown(Duration::from_secs(5));
    assert_eq!(otlp_stats(&report).delivered, 2);
    assert_eq!(server.request_count(), 1);
}

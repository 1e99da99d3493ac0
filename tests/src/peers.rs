//! Where the external test servers listen. `scripts/test.sh` starts them and exports:
//!
//! - `HIVELOG_TEST_MOTO`: moto_server's base URL (CloudWatch Logs), e.g. `http://127.0.0.1:41234`
//! - `HIVELOG_TEST_ES`: noida-db's Elasticsearch API base URL
//! - `HIVELOG_TEST_PYTHON`: a python with `fluent-logger`, `msgpack` and `boto3` installed
//! - `HIVELOG_TEST_OTLP_RECEIVER`: `tests/peers/otlp_receiver.py`'s base URL (OTLP/HTTP logs,
//!   decoded with the official `opentelemetry-proto` classes; scripted answers per tenant)
//! - `HIVELOG_TEST_OTLP_RECEIVER_GRPC`: the same receiver's OTLP/gRPC endpoint (`grpcio`)
//! - `HIVELOG_TEST_ROTEL_HTTP`, `HIVELOG_TEST_ROTEL_GRPC`: the `rotel` collector's OTLP
//!   receivers, forwarding to the OTLP receiver's root tenant
//!
//! A test that needs one of them and does not find it fails with a message saying how to run
//! the suite; it never passes silently.

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the test suite with `scripts/test.sh`, which starts the test servers")
    })
}

/// moto_server's base URL.
pub fn moto_url() -> String {
    var("HIVELOG_TEST_MOTO")
}

/// noida-db's Elasticsearch base URL.
pub fn es_url() -> String {
    var("HIVELOG_TEST_ES")
}

/// The OTLP test receiver's base URL.
pub fn otlp_receiver_url() -> String {
    var("HIVELOG_TEST_OTLP_RECEIVER")
}

/// The OTLP test receiver's gRPC endpoint.
pub fn otlp_receiver_grpc_url() -> String {
    var("HIVELOG_TEST_OTLP_RECEIVER_GRPC")
}

/// The rotel collector's OTLP/HTTP base URL (it forwards to the OTLP test receiver).
pub fn rotel_http_url() -> String {
    var("HIVELOG_TEST_ROTEL_HTTP")
}

/// The rotel collector's OTLP/gRPC endpoint (it forwards to the OTLP test receiver).
pub fn rotel_grpc_url() -> String {
    var("HIVELOG_TEST_ROTEL_GRPC")
}

/// A python interpreter with the peer clients installed.
pub fn python() -> String {
    var("HIVELOG_TEST_PYTHON")
}

/// A name no other test, process or earlier run uses (index names, log groups, services):
/// `{prefix}-{pid}-{nanos}-{n}`, lowercase when `prefix` is.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One HTTP call to a test server, outside hivelog: the status and the body as JSON (or as a
/// JSON string when it is not JSON).
pub fn http(method: &str, url: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), url);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    })
}

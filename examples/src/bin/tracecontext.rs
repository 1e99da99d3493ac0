//! A service speaking the W3C Trace Context test harness's protocol, using only hivelog's API
//! for the trace: the harness's `test/test.py` (github.com/w3c/trace-context) checks that a
//! service continues `traceparent`/`tracestate` by the Level 1 rules.
//!
//! The harness `POST`s a JSON list of `{"url", "arguments"}` to `/test`; for each entry the
//! service `POST`s `arguments` (JSON) to `url`, from a span of its own inside the request span,
//! with that span's `traceparent` and `tracestate`. [`hivelog::tower::TraceLayer`] continues
//! (or starts) the trace; [`hivelog::tower::inject`] writes the outgoing headers.
//!
//! ```sh
//! PORT=5000 cargo run -p hivelog-examples --bin tracecontext &
//! python test/test.py http://127.0.0.1:5000/test
//! ```
//!
//! `PORT` is the listen port on 127.0.0.1 (default 5000; `0` picks one, printed in the
//! `listening` line). Lines go to stdout as usual (`HIVELOG_*`).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tracing::Instrument;

fn main() -> std::process::ExitCode {
    let _logs = hivelog::init();
    let port = match std::env::var("PORT").map(|p| p.parse::<u16>()) {
        Err(_) => 5000,
        Ok(Ok(p)) => p,
        Ok(Err(_)) => {
            tracing::error!("PORT is not a port; expected 0 to 65535");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port)))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let client = reqwest::Client::new();
    let app = Router::new()
        .route("/test", post(move |body: Bytes| test(client.clone(), body)))
        .layer(hivelog::tower::TraceLayer::new());
    axum::serve(listener, app).await
}

/// `POST /test`: calls back every `url` with its `arguments`, in order.
async fn test(client: reqwest::Client, body: Bytes) -> StatusCode {
    let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!("the body is not a JSON list");
        return StatusCode::BAD_REQUEST;
    };
    for entry in entries {
        let (Some(url), arguments) = (entry["url"].as_str(), &entry["arguments"]) else {
            continue;
        };
        // Each call is a span of its own (its id is the callee's parent), at ERROR level so
        // that it exists at any `HIVELOG_LEVEL`.
        let call = tracing::error_span!("callback", url);
        callback(&client, url, arguments).instrument(call).await;
    }
    StatusCode::OK
}

/// One callback, made from the current (`callback`) span.
async fn callback(client: &reqwest::Client, url: &str, arguments: &Value) {
    let mut headers = reqwest::header::HeaderMap::new();
    hivelog::tower::inject(&mut headers);
    let sent = client
        .post(url)
        .headers(headers)
        .header("content-type", "application/json")
        .body(arguments.to_string())
        .send()
        .await;
    match sent {
        Ok(res) => tracing::info!(status = res.status().as_u16(), "called back"),
        Err(e) => tracing::warn!(error = %e, "callback failed"),
    }
}

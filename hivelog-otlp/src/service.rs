//! Sending one export: a `reqwest` client (rustls, keep-alive) built once on the sink's thread.
//!
//! TLS: the system's trust is replaced by nothing; `_CERTIFICATE` adds CAs to the built-in
//! roots, `_CLIENT_KEY` + `_CLIENT_CERTIFICATE` present a client certificate (mTLS). Like most
//! HTTP clients, `reqwest` honours `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`.
//!
//! The answer is read chunk by chunk up to [`MAX_RESPONSE_BYTES`]: a misbehaving server cannot
//! make the sink allocate without bound.

use std::time::Duration;

use bytes::Bytes;
use hivelog_core::FailureKind;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use crate::config::{OtlpConfig, Protocol};
use crate::limits::MAX_RESPONSE_BYTES;

/// What the collector answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Connection, timeout or protocol failure: retryable.
    #[error("{1}")]
    Network(FailureKind, String),
    /// The HTTP client could not be built (bad certificate or key): not retryable.
    #[error("{0}")]
    Client(String),
}

/// The HTTP side of the sink.
#[derive(Debug)]
pub(crate) struct Transport {
    client: Result<reqwest::Client, String>,
    url: String,
    content_type: &'static str,
}

impl Transport {
    pub(crate) fn new(config: &OtlpConfig) -> Self {
        Transport {
            client: build_client(config),
            url: config.endpoint(),
            content_type: match config.protocol() {
                Protocol::HttpJson => "application/json",
                _ => "application/x-protobuf",
            },
        }
    }

    /// The URL exports go to.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// POSTs one export.
    pub(crate) async fn send(&self, body: Bytes, gzip: bool) -> Result<Answer, SendError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| SendError::Client(e.clone()))?;
        let mut req = client
            .post(&self.url)
            .header(CONTENT_TYPE, self.content_type)
            .body(body);
        if gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SendError::Network(kind_of(&e), describe(&self.url, &e)))?;
        read(resp, &self.url).await
    }
}

async fn read(mut resp: reqwest::Response, url: &str) -> Result<Answer, SendError> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() == MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(SendError::Network(
                    kind_of(&e),
                    format!("reading the answer of {url} failed: {}", describe(url, &e)),
                ))
            }
        }
    }
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

fn kind_of(e: &reqwest::Error) -> FailureKind {
    if e.is_timeout() {
        FailureKind::TimedOut
    } else {
        FailureKind::Unreachable
    }
}

/// An error with its source chain (`reqwest`'s own message alone says little).
fn describe(url: &str, e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        format!("{url}: timed out (OTEL_EXPORTER_OTLP_TIMEOUT)")
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

fn build_client(config: &OtlpConfig) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in &config.headers {
        // Validated by the configuration; a failure here is a bug, reported, never a panic.
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("header name {k:?} is not valid"))?;
        let mut value = HeaderValue::from_str(v.expose())
            .map_err(|_| format!("the value of header {k:?} is not valid"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("hivelog/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true);
    if let Some(t) = config.timeout {
        b = b.timeout(t).connect_timeout(t.min(Duration::from_secs(10)));
    }
    if let Some(ca) = &config.certificate {
        let certs = reqwest::Certificate::from_pem_bundle(&ca.pem)
            .map_err(|e| format!("{} {}: {e}", ca.var, ca.path.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(key), Some(cert)) = (&config.client_key, &config.client_certificate) {
        let mut pem = cert.pem.clone();
        pem.push(b'\n');
        pem.extend_from_slice(&key.pem);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "{} {} / {} {}: {e}",
                cert.var,
                cert.path.display(),
                key.var,
                key.path.display()
            )
        })?;
        b = b.identity(id);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

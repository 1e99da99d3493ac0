//! Sending requests: one `reqwest` client (rustls, keep-alive), the nodes in round-robin.
//!
//! Each request goes to the next node in turn, which spreads the load of a small cluster
//! without a sniffer. When a node cannot be connected to, the same request is tried on the
//! next one at once (failover), since nothing was sent; any other failure (a timeout, a
//! connection reset after the request was written) returns to the pipeline, whose retry after a
//! backoff goes to the next node anyway. Resending is safe because every document carries its
//! own `_id`.
//!
//! The response body is read chunk by chunk up to a cap, so a misbehaving server cannot make
//! the sink allocate without bound; `reqwest`'s gzip decoding happens before the cap is counted,
//! so a compressed bomb is capped too.
//!
//! Like most HTTP clients, `reqwest` honours `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`: a
//! cluster reached through a corporate proxy needs no hivelog setting.

use hivelog_core::FailureKind;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

use crate::config::EsConfig;

/// What the transport got back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Vec<u8>,
    /// The URL the request went to (no credentials), for messages.
    pub(crate) url: String,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Connection, timeout or protocol failure: retryable.
    #[error("{1}")]
    Network(FailureKind, String),
    /// The HTTP client could not be built (bad CA bundle, TLS backend): not retryable.
    #[error("{0}")]
    Client(String),
}

/// The HTTP side of the sink.
#[derive(Debug)]
pub(crate) struct Transport {
    client: Result<reqwest::Client, String>,
    nodes: Vec<String>,
    next: usize,
}

impl Transport {
    pub(crate) fn new(config: &EsConfig) -> Self {
        Transport {
            client: build_client(config),
            nodes: config.nodes.clone(),
            next: 0,
        }
    }

    /// Sends `body` to `path` (relative to a node's base URL) on the next node, failing over
    /// to the others when a connection cannot be made. Reads at most `cap` bytes of answer.
    pub(crate) async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        content_type: &'static str,
        body: Bytes,
        gzip: bool,
        cap: usize,
    ) -> Result<Answer, SendError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| SendError::Client(e.clone()))?;
        let n = self.nodes.len();
        let first = self.next;
        self.next = (self.next + 1) % n;
        let mut last = String::new();
        for k in 0..n {
            let mut url = format!("{}{path}", self.nodes[(first + k) % n]);
            let mut req = client
                .request(method.clone(), &url)
                .header(CONTENT_TYPE, content_type)
                .body(body.clone());
            if gzip {
                req = req.header(CONTENT_ENCODING, "gzip");
            }
            match req.send().await {
                Ok(resp) => {
                    // Messages name the endpoint, not the long filter_path query.
                    url.truncate(url.find('?').unwrap_or(url.len()));
                    return read(resp, url, cap).await;
                }
                Err(e) if e.is_connect() && k + 1 < n => {
                    last = describe(&e);
                    continue;
                }
                Err(e) => return Err(SendError::Network(kind_of(&e), describe(&e))),
            }
        }
        Err(SendError::Network(FailureKind::Unreachable, last))
    }
}

async fn read(mut resp: reqwest::Response, url: String, cap: usize) -> Result<Answer, SendError> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A claimed length is a hint only: never reserve more than 1 MiB up front on its word.
    let hint = resp.content_length().unwrap_or(4096).min(1 << 20) as usize;
    let mut body = Vec::with_capacity(hint);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(SendError::Network(
                        FailureKind::Protocol,
                        format!("response from {url} is larger than {cap} bytes; not read further"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(SendError::Network(
                    kind_of(&e),
                    format!("reading the response from {url} failed: {}", describe(&e)),
                ))
            }
        }
    }
    Ok(Answer {
        status,
        retry_after,
        body,
        url,
    })
}

/// An error with its source chain (`reqwest`'s own message alone says little).
/// The kind of a transport failure: timed out, else unreachable (refused, reset, DNS).
fn kind_of(e: &reqwest::Error) -> FailureKind {
    if e.is_timeout() {
        FailureKind::TimedOut
    } else {
        FailureKind::Unreachable
    }
}

fn describe(e: &reqwest::Error) -> String {
    let head = if e.is_timeout() {
        format!("{e} (timed out; HIVELOG_ES_TIMEOUT)")
    } else {
        e.to_string()
    };
    hivelog_core::diag::with_sources(head, e)
}

fn build_client(config: &EsConfig) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    if let Some(auth) = config.auth.header_value() {
        let mut v = HeaderValue::from_str(&auth).map_err(|_| {
            "the credentials contain characters not allowed in an HTTP header".to_owned()
        })?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("hivelog/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true);
    if let Some(ca) = &config.ca_cert {
        let certs = reqwest::Certificate::from_pem_bundle(&ca.pem)
            .map_err(|e| format!("HIVELOG_ES_CA_CERT {}: {e}", ca.path.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

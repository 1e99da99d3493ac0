//! Sending one export: over HTTP a `reqwest` client (rustls, keep-alive), over gRPC a `tonic`
//! channel (HTTP/2, rustls) calling `LogsService/Export` with the request's bytes as they are
//! (a pass-through codec: the body is already protobuf); either is built once, on the sink's
//! thread, so nothing of it touches the application's runtime.
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

use crate::config::{Compression, OtlpConfig, Protocol};
use crate::limits::MAX_RESPONSE_BYTES;

/// What the collector answered over HTTP.
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

/// What the collector answered, over either protocol.
#[derive(Debug)]
pub(crate) enum Reply {
    Http(Answer),
    /// The `ExportLogsServiceResponse` bytes, or the call's status.
    Grpc(Result<Vec<u8>, tonic::Status>),
}

/// How exports are sent.
#[derive(Debug)]
pub(crate) enum Transport {
    Http(HttpTransport),
    Grpc(GrpcTransport),
}

impl Transport {
    pub(crate) fn new(config: &OtlpConfig) -> Self {
        match config.protocol() {
            Protocol::Grpc => Transport::Grpc(GrpcTransport::new(config)),
            _ => Transport::Http(HttpTransport::new(config)),
        }
    }

    /// Where exports go.
    pub(crate) fn url(&self) -> &str {
        match self {
            Transport::Http(t) => &t.url,
            Transport::Grpc(t) => &t.url,
        }
    }

    /// Sends one export.
    pub(crate) async fn send(&mut self, body: Bytes, gzip: bool) -> Result<Reply, SendError> {
        match self {
            Transport::Http(t) => t.send(body, gzip).await.map(Reply::Http),
            Transport::Grpc(t) => t.send(body).await.map(Reply::Grpc),
        }
    }
}

/// The HTTP side of the sink.
#[derive(Debug)]
pub(crate) struct HttpTransport {
    client: Result<reqwest::Client, String>,
    url: String,
    content_type: &'static str,
}

impl HttpTransport {
    fn new(config: &OtlpConfig) -> Self {
        HttpTransport {
            client: build_client(config),
            url: config.endpoint(),
            content_type: match config.protocol() {
                Protocol::HttpJson => "application/json",
                _ => "application/x-protobuf",
            },
        }
    }

    /// POSTs one export.
    async fn send(&self, body: Bytes, gzip: bool) -> Result<Answer, SendError> {
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
    let head = if e.is_timeout() {
        format!("{url}: timed out (OTEL_EXPORTER_OTLP_TIMEOUT)")
    } else {
        e.to_string()
    };
    hivelog_core::diag::with_sources(head, e)
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

/// `LogsService/Export`, as the official `logs_service.proto` names it.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The gRPC side of the sink.
pub(crate) struct GrpcTransport {
    grpc: Result<tonic::client::Grpc<tonic::transport::Channel>, String>,
    url: String,
    metadata: Vec<(
        tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    )>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl GrpcTransport {
    fn new(config: &OtlpConfig) -> Self {
        let url = config.endpoint();
        let mut metadata = Vec::new();
        let mut bad = None;
        for (k, v) in &config.headers {
            let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes());
            let value = v.expose().parse::<tonic::metadata::MetadataValue<_>>();
            match (key, value) {
                (Ok(k), Ok(v)) => metadata.push((k, v)),
                _ => bad = Some(format!("header {k:?} cannot be sent as gRPC metadata")),
            }
        }
        let grpc = match bad {
            Some(e) => Err(e),
            None => build_channel(config, &url).map(|channel| {
                let mut g = tonic::client::Grpc::new(channel)
                    .max_encoding_message_size(usize::MAX)
                    .max_decoding_message_size(crate::limits::MAX_RESPONSE_BYTES);
                if config.compression() == Compression::Gzip {
                    g = g.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                g
            }),
        };
        GrpcTransport {
            grpc,
            url,
            metadata,
            timeout: config.timeout,
        }
    }

    async fn send(&mut self, body: Bytes) -> Result<Result<Vec<u8>, tonic::Status>, SendError> {
        let grpc = self
            .grpc
            .as_mut()
            .map_err(|e| SendError::Client(e.clone()))?;
        if let Err(e) = grpc.ready().await {
            return Err(SendError::Network(
                FailureKind::Unreachable,
                format!("{}: {e}", self.url),
            ));
        }
        let mut req = tonic::Request::new(body);
        for (k, v) in &self.metadata {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        if let Some(t) = self.timeout {
            req.set_timeout(t);
        }
        let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
        Ok(grpc
            .unary(req, path, PassThrough)
            .await
            .map(tonic::Response::into_inner))
    }
}

fn build_channel(config: &OtlpConfig, url: &str) -> Result<tonic::transport::Channel, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut e = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("{url}: {e}"))?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .user_agent(concat!("hivelog/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| format!("user agent: {e}"))?;
    if let Some(t) = config.timeout {
        e = e.timeout(t).connect_timeout(t.min(Duration::from_secs(10)));
    }
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &config.certificate {
            tls = tls.ca_certificate(Certificate::from_pem(&ca.pem));
        }
        if let (Some(key), Some(cert)) = (&config.client_key, &config.client_certificate) {
            tls = tls.identity(Identity::from_pem(&cert.pem, &key.pem));
        }
        e = e
            .tls_config(tls)
            .map_err(|e| format!("TLS for {url}: {e}"))?;
    }
    Ok(e.connect_lazy())
}

/// A codec that sends the already-encoded request as it is and keeps the answer's bytes.
struct PassThrough;

impl tonic::codec::Codec for PassThrough {
    type Encode = Bytes;
    type Decode = Vec<u8>;
    type Encoder = PassThrough;
    type Decoder = PassThrough;

    fn encoder(&mut self) -> Self::Encoder {
        PassThrough
    }

    fn decoder(&mut self) -> Self::Decoder {
        PassThrough
    }
}

impl tonic::codec::Encoder for PassThrough {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for PassThrough {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf as _;
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

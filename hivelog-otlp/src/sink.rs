//! [`OtlpSink`]: encode a batch as one export, send it, read the answer, report per record.
//!
//! A batch from the pipeline becomes one `ExportLogsServiceRequest`, cut short (the rest
//! [`Outcome::Deferred`](hivelog_core::Outcome::Deferred)) when it would pass the collector's
//! body limit. What an answer means is decided in `crate::retry`; the pipeline does the
//! backoff, honouring `Retry-After`, and the counters.
//!
//! Shutdown: once the pipeline's shutdown has begun, an export waits for its answer no longer
//! than the shutdown deadline (a collector that never answers cannot hold the process), and
//! its records are reported as still pending.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use hivelog_core::{diag, BatchLimits, FailureKind, Format, Outcomes, Record, Sink};

use crate::config::{Compression, OtlpConfig, Protocol};
use crate::limits::{MAX_BATCH_RECORDS, MAX_GRPC_MESSAGE, MAX_HTTP_BODY, TOO_LARGE};
use crate::request_builder::{Encoded, RequestBuilder};
use crate::retry::{grpc_verdict, partial_success, verdict, Verdict};
use crate::service::{Reply, SendError, Transport};

/// Ships records to an OpenTelemetry collector: hand it to [`hivelog_core::Pipeline::spawn`].
///
/// ```no_run
/// use std::sync::Arc;
/// use hivelog_core::{Env, Format, Pipeline, PipelineConfig};
/// use hivelog_otlp::{OtlpConfig, OtlpSink};
///
/// let env = Env::from_process();
/// if let Some(config) = OtlpConfig::from_env(&env)? {
///     let format = Arc::new(Format::builder().apply_env(&env)?.build());
///     let pipeline = Pipeline::spawn(OtlpSink::new(config, format), PipelineConfig::default())?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct OtlpSink {
    builder: RequestBuilder,
    encoded: Encoded,
    transport: Option<Transport>,
    config: OtlpConfig,
}

impl OtlpSink {
    /// A sink for `config`; `format` gives the service name, the extras (resource attributes)
    /// and the redacted fields. Does no I/O: the HTTP client is built on the sink's thread.
    pub fn new(config: OtlpConfig, format: Arc<Format>) -> OtlpSink {
        let max_body = max_body(config.protocol());
        OtlpSink {
            builder: RequestBuilder::new(&config, format, max_body),
            encoded: Encoded::default(),
            transport: None,
            config,
        }
    }

    /// Encodes `batch` as the request body `send` would POST (not compressed), with the
    /// batch's indices in the order the request holds them (benchmarks, tests).
    pub fn encode(&mut self, batch: &[Record]) -> (&[u8], &[usize]) {
        self.builder.build(batch, &mut self.encoded);
        (&self.encoded.body, &self.encoded.sent)
    }

    /// The body to POST, moved out (no copy of a request of megabytes): the next batch is
    /// encoded into a buffer allocated at its exact size.
    fn body(&mut self) -> Bytes {
        if self.config.compression() == Compression::Gzip {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(self.encoded.body.len() / 4 + 64),
                flate2::Compression::fast(),
            );
            // Writing to a Vec cannot fail.
            let _ = gz.write_all(&self.encoded.body);
            Bytes::from(gz.finish().unwrap_or_default())
        } else {
            Bytes::from(std::mem::take(&mut self.encoded.body))
        }
    }
}

/// The most bytes of one request: the collector's default limit for the protocol.
fn max_body(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Grpc => MAX_GRPC_MESSAGE,
        _ => MAX_HTTP_BODY,
    }
}

impl Sink for OtlpSink {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: MAX_BATCH_RECORDS,
            max_bytes: max_body(self.config.protocol()),
        }
    }

    fn encoded_len(&self, record: &Record) -> usize {
        self.builder.encoded_len(record)
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        let mut out = Outcomes::delivered(batch.len());
        self.builder.build(batch, &mut self.encoded);
        for &i in &self.encoded.too_large {
            out.reject(i, TOO_LARGE);
        }
        for &i in &self.encoded.deferred {
            out.defer(i);
        }
        if self.encoded.sent.is_empty() {
            return out;
        }
        // gRPC compresses the message itself (`grpc-encoding: gzip`).
        let body = if self.config.protocol() == Protocol::Grpc {
            Bytes::from(std::mem::take(&mut self.encoded.body))
        } else {
            self.body()
        };
        let wire = body.len() as u64;
        let transport = self
            .transport
            .get_or_insert_with(|| Transport::new(&self.config));
        let exchange = transport.send(body, self.config.compression() == Compression::Gzip);
        let answer = match hivelog_core::sink::shutdown_deadline() {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), exchange).await {
                Ok(a) => a,
                Err(_) => Err(SendError::Network(
                    FailureKind::TimedOut,
                    format!(
                        "{}: no answer before the shutdown deadline",
                        transport.url()
                    ),
                )),
            },
            None => exchange.await,
        };
        let sent = &self.encoded.sent;
        let answer = match answer {
            Ok(a) => a,
            Err(SendError::Network(kind, e)) => {
                sent.iter().for_each(|&i| out.retry(i));
                out.set_error(kind, e);
                return out;
            }
            Err(SendError::Client(e)) => {
                sent.iter().for_each(|&i| out.fail(i));
                out.set_error(FailureKind::Internal, e);
                return out;
            }
        };
        out.add_bytes_sent(wire);
        let json = self.config.protocol() == Protocol::HttpJson;
        let url = transport.url();
        let verdict = match answer {
            Reply::Http(a) => verdict(a.status, a.retry_after.as_deref(), &a.body, json, url),
            Reply::Grpc(Ok(body)) => {
                let (rejected, message) = partial_success(&body, false);
                Verdict::Delivered { rejected, message }
            }
            Reply::Grpc(Err(status)) => grpc_verdict(&status, url),
        };
        match verdict {
            Verdict::Delivered { rejected, message } => {
                if rejected > 0 {
                    let reason = format!(
                        "rejected by the collector (partial success): {}",
                        message.as_deref().unwrap_or("no message")
                    );
                    let n = (rejected as usize).min(sent.len());
                    for &i in &sent[sent.len() - n..] {
                        out.reject(i, reason.clone());
                    }
                } else if let Some(m) = message {
                    diag::warn("otlp", "partial_success", format_args!("{url}: {m}"));
                }
            }
            Verdict::Retry {
                kind,
                message,
                retry_after,
            } => {
                sent.iter().for_each(|&i| out.retry(i));
                out.set_error(kind, message);
                if let Some(d) = retry_after {
                    out.set_retry_after(d);
                }
            }
            Verdict::Fail { kind, message } => {
                sent.iter().for_each(|&i| out.fail(i));
                out.set_error(kind, message);
            }
        }
        out
    }
}

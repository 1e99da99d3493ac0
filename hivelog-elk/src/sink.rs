//! [`EsSink`]: encode a batch, send it, read the answer item by item, report per record.
//!
//! A batch from the pipeline becomes one `_bulk` request, cut short (the rest
//! [`Outcome::Deferred`](hivelog_core::Outcome::Deferred)) when it would exceed the byte
//! limit. A 413 splits the request in halves, sent one after the other, down to single
//! documents; the limit then shrinks to half the refused size for the rest of the process, so
//! the next batches fit the first time. Everything else an answer can mean is decided in
//! `crate::retry`.
//!
//! Diagnostics: the pipeline already writes retries, failures (with the error set here, such
//! as the 401 explanation) and rejections (with their reason) to stderr through
//! [`hivelog_core::diag`], rate-limited; this sink adds only what the pipeline cannot know
//! (the index template could not be installed, the dead-letter file cannot be written).

use std::sync::Arc;

use bytes::Bytes;
use hivelog_core::diag;
use hivelog_core::{BatchLimits, FailureKind, Format, Outcomes, Record, Sink};
use reqwest::Method;

use crate::config::{Action, Compression, EsConfig};
use crate::dead_letter::DeadLetter;
use crate::request_builder::{gzip, BulkEncoder, Encoded, BULK_PATH, NDJSON};
use crate::retry::{error_summary, parse_bulk, retry_after, verdict, ItemOutcome, Verdict};
use crate::service::{response_cap, SendError, Transport, MIN_RESPONSE_CAP};
use crate::setup::index_template;

/// Smallest byte limit a 413 can shrink batches to.
const MIN_BATCH_BYTES: usize = 1024;

/// The Elasticsearch / OpenSearch sink: hand it to [`hivelog_core::Pipeline::spawn`].
///
/// ```no_run
/// use std::sync::Arc;
/// use hivelog_core::{Env, Format, Pipeline, PipelineConfig};
/// use hivelog_elk::{EsConfig, EsSink};
///
/// let env = Env::from_process();
/// if let Some(config) = EsConfig::from_env(&env)? {
///     let format = Arc::new(Format::builder().apply_env(&env)?.build());
///     let pipeline = Pipeline::spawn(EsSink::new(config, format), PipelineConfig::default())?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct EsSink {
    encoder: BulkEncoder,
    encoded: Encoded,
    transport: Transport,
    action: Action,
    compression: Compression,
    limit_bytes: usize,
    max_bytes: usize,
    max_docs: usize,
    dead_letter: Option<DeadLetter>,
    setup: bool,
    template_pattern: String,
    format: Arc<Format>,
}

impl EsSink {
    /// A sink for `config`, writing documents with `format`. Never fails: a problem building
    /// the HTTP client is reported by the first send.
    pub fn new(config: EsConfig, format: Arc<Format>) -> EsSink {
        let encoder = BulkEncoder::new(Arc::clone(&format), config.action, config.index.clone());
        let template_pattern = config.index.pattern(encoder.service());
        EsSink {
            transport: Transport::new(&config),
            encoder,
            encoded: Encoded::default(),
            action: config.action,
            compression: config.compression,
            limit_bytes: config.max_batch_bytes,
            max_bytes: config.max_batch_bytes,
            max_docs: config.max_batch_docs,
            dead_letter: config.dead_letter.map(DeadLetter::new),
            setup: config.setup,
            template_pattern,
            format,
        }
    }

    async fn install_template(&mut self) {
        let (name, body) = index_template(&self.format, &self.template_pattern);
        let body = Bytes::from(body.to_string());
        let path = format!("/_index_template/{name}");
        match self
            .transport
            .send(
                Method::PUT,
                &path,
                "application/json",
                body,
                false,
                MIN_RESPONSE_CAP,
            )
            .await
        {
            Ok(a) if (200..300).contains(&a.status) => {}
            Ok(a) => {
                diag::warn(
                    "elasticsearch",
                    "setup",
                    format_args!(
                        "HIVELOG_ES_SETUP: installing index template {name} at {} failed with {} ({}); documents still go out, with dynamic mappings",
                        a.url,
                        a.status,
                        error_summary(&a.body)
                    ),
                );
            }
            Err(e) => {
                diag::warn(
                    "elasticsearch",
                    "setup",
                    format_args!(
                        "HIVELOG_ES_SETUP: installing index template {name} failed ({e}); documents still go out, with dynamic mappings"
                    ),
                );
            }
        }
    }
}

impl Sink for EsSink {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.max_docs,
            max_bytes: self.limit_bytes,
        }
    }

    async fn start(&mut self) {
        if self.setup {
            self.install_template().await;
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        let n = batch.len();
        let mut out = Outcomes::delivered(n);
        if n == 0 {
            return out;
        }
        self.encoder
            .encode(batch, self.max_bytes, self.max_docs, &mut self.encoded);
        let count = self.encoded.len();
        // The body moves into a `Bytes` that requests share by slice; it is reclaimed below.
        let body = Bytes::from(std::mem::take(&mut self.encoded.body));
        for i in count..n {
            out.defer(i);
        }
        let mut todo: Vec<(usize, usize)> = vec![(0, count)];
        let mut retried = 0usize;
        let mut retry_reason = None;
        let mut retry_kind = FailureKind::Unavailable;
        while let Some((from, to)) = todo.pop() {
            let range = self.encoded.range(from, to);
            let len = range.len();
            let (payload, gz) = match self.compression {
                Compression::Gzip => (Bytes::from(gzip(&body[range])), true),
                Compression::None => (body.slice(range), false),
            };
            let wire_len = payload.len() as u64;
            let answer = self
                .transport
                .send(
                    Method::POST,
                    BULK_PATH,
                    NDJSON,
                    payload,
                    gz,
                    response_cap(len),
                )
                .await;
            // What ends this send early: the range and everything still to do share its fate.
            let stop = |out: &mut Outcomes, todo: &mut Vec<(usize, usize)>, fail: bool| {
                for (a, b) in std::iter::once((from, to)).chain(todo.drain(..)) {
                    for i in a..b {
                        if fail {
                            out.fail(i)
                        } else {
                            out.retry(i)
                        }
                    }
                }
            };
            let answer = match answer {
                Ok(a) => a,
                Err(SendError::Network(kind, e)) => {
                    stop(&mut out, &mut todo, false);
                    out.set_error(kind, e);
                    break;
                }
                Err(SendError::Client(e)) => {
                    stop(&mut out, &mut todo, true);
                    out.set_error(FailureKind::Internal, e);
                    break;
                }
            };
            out.add_bytes_sent(wire_len);
            match verdict(answer.status, &answer.body, &answer.url) {
                Verdict::Items => {}
                Verdict::Split if to - from > 1 => {
                    let mid = from + (to - from) / 2;
                    todo.push((mid, to));
                    todo.push((from, mid));
                    self.max_bytes = self.max_bytes.min(len / 2).max(MIN_BATCH_BYTES);
                    continue;
                }
                Verdict::Split => {
                    let reason = format!(
                        "request_entity_too_large: the document ({len} bytes with its action line) is larger than the server accepts (http.max_content_length)"
                    );
                    self.dead_letter_write(&body, from, 413, &reason);
                    out.reject(from, reason);
                    continue;
                }
                Verdict::Retry(kind, e) => {
                    stop(&mut out, &mut todo, false);
                    if let Some(d) = retry_after(answer.retry_after.as_deref()) {
                        out.set_retry_after(d);
                    }
                    out.set_error(kind, e);
                    break;
                }
                Verdict::Auth(e) => {
                    stop(&mut out, &mut todo, true);
                    out.set_error(FailureKind::Credentials, e);
                    break;
                }
                Verdict::Fail(e) => {
                    stop(&mut out, &mut todo, true);
                    out.set_error(FailureKind::Protocol, e);
                    break;
                }
            }
            let parsed = match parse_bulk(&answer.body) {
                Ok(p) => p,
                Err(e) => {
                    // Status 2xx but no readable items: resending is safe (409 → delivered).
                    (from..to).for_each(|i| out.retry(i));
                    out.set_error(FailureKind::Protocol, format!("{}: {e}", answer.url));
                    continue;
                }
            };
            let Some(items) = parsed.items else {
                if parsed.errors {
                    (from..to).for_each(|i| out.retry(i));
                    out.set_error(
                        FailureKind::Protocol,
                        format!(
                            "{}: bulk response says errors but lists no items",
                            answer.url
                        ),
                    );
                }
                continue;
            };
            for (k, item) in items.iter().take(to - from).enumerate() {
                let i = from + k;
                match item.outcome(self.action) {
                    ItemOutcome::Delivered => {}
                    ItemOutcome::Retry(reason) => {
                        out.retry(i);
                        retried += 1;
                        if item.status == 429 || reason.starts_with("es_rejected_execution") {
                            retry_kind = FailureKind::Throttled;
                        }
                        retry_reason.get_or_insert(reason);
                    }
                    ItemOutcome::Rejected(reason) => {
                        self.dead_letter_write(&body, i, item.status, &reason);
                        out.reject(i, reason);
                    }
                }
            }
            if items.len() < to - from {
                (from + items.len()..to).for_each(|i| out.retry(i));
                out.set_error(
                    FailureKind::Protocol,
                    format!(
                        "{}: bulk response lists {} items for {} documents; the rest are resent",
                        answer.url,
                        items.len(),
                        to - from
                    ),
                );
            }
        }
        if let Some(reason) = retry_reason {
            if out.error().is_none() {
                out.set_error(
                    retry_kind,
                    format!("{retried} of {count} documents to retry: {reason}"),
                );
            }
        }
        // Reuse the buffer when no request holds a slice of it any more (the usual case).
        if let Ok(buf) = body.try_into_mut() {
            self.encoded.body = buf.into();
        }
        out
    }
}

impl EsSink {
    fn dead_letter_write(&mut self, body: &[u8], i: usize, status: u16, reason: &str) {
        if let Some(dl) = &mut self.dead_letter {
            let action = &body[self.encoded.action_line(i)];
            let doc = &body[self.encoded.document(i)];
            if let Err(e) = dl.write(status, reason, action, doc) {
                diag::warn(
                    "elasticsearch",
                    "dead_letter",
                    format_args!(
                        "HIVELOG_ES_DEAD_LETTER {}: {e}; rejected documents are only counted",
                        dl.path().display()
                    ),
                );
            }
        }
    }
}

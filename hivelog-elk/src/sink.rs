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
//! [`hivelog_core::diag`], rate-limited; this crate adds only what the pipeline cannot know
//! (the index template could not be installed, see `crate::setup`; the dead-letter file
//! cannot be written).

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use hivelog_core::diag;
use hivelog_core::{BatchLimits, FailureKind, Format, Outcomes, Record, Sink};
use reqwest::Method;

use crate::config::{Action, Compression, EsConfig};
use crate::dead_letter::DeadLetter;
use crate::limits::{response_cap, MIN_BATCH_BYTES};
use crate::request_builder::{gzip, BulkEncoder, Encoded, BULK_PATH, NDJSON};
use crate::retry::{parse_bulk, retry_after, verdict, ItemOutcome, Verdict};
use crate::service::{Answer, SendError, Transport};
use crate::setup::install_template;

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
            install_template(&mut self.transport, &self.format, &self.template_pattern).await;
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        if batch.is_empty() {
            return Outcomes::delivered(0);
        }
        self.encoder
            .encode(batch, self.max_bytes, self.max_docs, &mut self.encoded);
        let mut progress = Progress::new(batch.len(), self.encoded.len());
        // The body moves into a `Bytes` that requests share by slice; it is reclaimed below.
        let body = Bytes::from(std::mem::take(&mut self.encoded.body));
        while let Some(range) = progress.todo.pop() {
            if self
                .send_range(&body, range, &mut progress)
                .await
                .is_break()
            {
                break;
            }
        }
        // Reuse the buffer when no request holds a slice of it any more (the usual case).
        if let Ok(buf) = body.try_into_mut() {
            self.encoded.body = buf.into();
        }
        progress.finish()
    }
}

/// Records `from..to` of the encoded batch: what one request carries.
type Range = (usize, usize);

/// One `send` under way: the outcomes so far, the ranges still to send (a 413 adds halves),
/// and the first reason items were retried, for the error of a batch that otherwise went out.
struct Progress {
    out: Outcomes,
    todo: Vec<Range>,
    count: usize,
    retried: usize,
    retry_reason: Option<String>,
    retry_kind: FailureKind,
}

impl Progress {
    /// A send of the first `count` of `n` records; the rest did not fit and are deferred.
    fn new(n: usize, count: usize) -> Self {
        let mut out = Outcomes::delivered(n);
        for i in count..n {
            out.defer(i);
        }
        Progress {
            out,
            todo: vec![(0, count)],
            count,
            retried: 0,
            retry_reason: None,
            retry_kind: FailureKind::Unavailable,
        }
    }

    /// Ends the send early: `range` and every range still to do share its fate (retried, or
    /// failed when `fail`), with `error` as the batch's error.
    fn stop(
        &mut self,
        range: Range,
        fail: bool,
        kind: FailureKind,
        error: String,
    ) -> ControlFlow<()> {
        for (a, b) in std::iter::once(range).chain(self.todo.drain(..)) {
            for i in a..b {
                if fail {
                    self.out.fail(i)
                } else {
                    self.out.retry(i)
                }
            }
        }
        self.out.set_error(kind, error);
        ControlFlow::Break(())
    }

    /// Retries `from..to` of a request whose answer cannot be trusted item by item.
    fn retry_unread(&mut self, (from, to): Range, error: String) {
        (from..to).for_each(|i| self.out.retry(i));
        self.out.set_error(FailureKind::Protocol, error);
    }

    /// Retries document `i` alone; a throttled item makes the batch's error "throttled".
    fn retry_item(&mut self, i: usize, status: u16, reason: String) {
        self.out.retry(i);
        self.retried += 1;
        if status == 429 || reason.starts_with("es_rejected_execution") {
            self.retry_kind = FailureKind::Throttled;
        }
        self.retry_reason.get_or_insert(reason);
    }

    /// The outcomes, with why items were retried when nothing else went wrong.
    fn finish(mut self) -> Outcomes {
        if let Some(reason) = self.retry_reason {
            if self.out.error().is_none() {
                let (retried, count) = (self.retried, self.count);
                self.out.set_error(
                    self.retry_kind,
                    format!("{retried} of {count} documents to retry: {reason}"),
                );
            }
        }
        self.out
    }
}

impl EsSink {
    /// Sends one range of the encoded batch as a `_bulk` request and applies the answer;
    /// `Break` when the rest of the batch shares the range's fate.
    async fn send_range(
        &mut self,
        body: &Bytes,
        (from, to): Range,
        p: &mut Progress,
    ) -> ControlFlow<()> {
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
        let answer = match answer {
            Ok(a) => a,
            Err(SendError::Network(kind, e)) => return p.stop((from, to), false, kind, e),
            Err(SendError::Client(e)) => return p.stop((from, to), true, FailureKind::Internal, e),
        };
        p.out.add_bytes_sent(wire_len);
        match verdict(answer.status, &answer.body, &answer.url) {
            Verdict::Items => self.apply_items(body, (from, to), &answer, p),
            Verdict::Split => self.split_on_413(body, (from, to), len, p),
            Verdict::Retry(kind, e) => {
                if let Some(d) = retry_after(answer.retry_after.as_deref()) {
                    p.out.set_retry_after(d);
                }
                return p.stop((from, to), false, kind, e);
            }
            Verdict::Auth(e) => return p.stop((from, to), true, FailureKind::Credentials, e),
            Verdict::Fail(e) => return p.stop((from, to), true, FailureKind::Protocol, e),
        }
        ControlFlow::Continue(())
    }

    /// A 413: the range goes again in halves, and later batches are cut at half its size; a
    /// single document the server refuses is rejected.
    fn split_on_413(&mut self, body: &[u8], (from, to): Range, len: usize, p: &mut Progress) {
        if to - from > 1 {
            let mid = from + (to - from) / 2;
            p.todo.push((mid, to));
            p.todo.push((from, mid));
            self.max_bytes = self.max_bytes.min(len / 2).max(MIN_BATCH_BYTES);
        } else {
            let reason = format!(
                "request_entity_too_large: the document ({len} bytes with its action line) is larger than the server accepts (http.max_content_length)"
            );
            self.dead_letter_write(body, from, 413, &reason);
            p.out.reject(from, reason);
        }
    }

    /// Applies a 2xx answer item by item (classified in `crate::retry`): delivered, retried
    /// alone, or rejected (and dead-lettered).
    fn apply_items(&mut self, body: &[u8], (from, to): Range, answer: &Answer, p: &mut Progress) {
        let parsed = match parse_bulk(&answer.body) {
            Ok(parsed) => parsed,
            // Status 2xx but no readable items: resending is safe (409 → delivered).
            Err(e) => return p.retry_unread((from, to), format!("{}: {e}", answer.url)),
        };
        let Some(items) = parsed.items else {
            if parsed.errors {
                let e = format!(
                    "{}: bulk response says errors but lists no items",
                    answer.url
                );
                p.retry_unread((from, to), e);
            }
            return;
        };
        for (k, item) in items.iter().take(to - from).enumerate() {
            let i = from + k;
            match item.outcome(self.action) {
                ItemOutcome::Delivered => {}
                ItemOutcome::Retry(reason) => p.retry_item(i, item.status, reason),
                ItemOutcome::Rejected(reason) => {
                    self.dead_letter_write(body, i, item.status, &reason);
                    p.out.reject(i, reason);
                }
            }
        }
        if items.len() < to - from {
            let e = format!(
                "{}: bulk response lists {} items for {} documents; the rest are resent",
                answer.url,
                items.len(),
                to - from
            );
            p.retry_unread((from + items.len(), to), e);
        }
    }

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

//! The sink: a batch → PackedForward messages (one tag each) → written on one connection → acks.
//!
//! - **One message per tag** per send, at most `max_message_bytes`, written as soon as it is
//!   encoded; with several tags, several messages are in flight and their acks are awaited
//!   together (one round trip per batch). The pipeline's batch limit is the message limit minus
//!   the framing, and [`Sink::encoded_len`] is an upper bound of the encoded entry, so batches
//!   fit; a record that still does not fit (a long tag) is `Deferred` to the next send, and one
//!   that could never fit alone is rejected with a reason.
//! - **Outcomes per message**: acked → `Delivered`; unacked at the deadline, a write error or a
//!   dropped connection → `Retry` for that message's records only. The sink remembers the
//!   boundaries of unacked messages and cuts the resent records into the same messages, so a
//!   resend carries the same `chunk` (a duplicate downstream is always a whole message with a
//!   known chunk), and newer records follow in messages of their own. Without acks, written and
//!   flushed counts as delivered (at-most-once, as `fluent-logger` does).
//! - **Authentication failures are not retried in a loop**: a refused handshake or a wrong
//!   server digest fails the batch (`Outcome::Failed`, with the reason) and, for
//!   [`AUTH_RETRY_INTERVAL`], later batches fail at once without connecting. A wrong key is a
//!   deployment mistake; hammering the receiver would not fix it.
//! - **Tags** come from the template; with `{target}` the tag is computed once per distinct
//!   target and cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivelog_core::sink::{BatchLimits, FailureKind, Outcome, Outcomes, Sink};
use hivelog_core::{Format, Record};
use rand::RngCore as _;

use crate::ack::{self, AckError};
use crate::config::{Compression, FluentConfig};
use crate::encode::{self, Encoder};
use crate::handshake::{self, Credentials};
use crate::transport::{Connection, Connector, Idle};

/// How long after a refused handshake batches fail without a new attempt: 30 s.
pub const AUTH_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Most records per batch: 20,000 (a few MB of typical events, one round trip).
pub const MAX_EVENTS_PER_BATCH: usize = 20_000;
/// Room kept in each message for the framing around the entries (tag, headers, options).
const FRAMING_ROOM: usize = 1024;
/// The longest tag (a longer rendered tag is cut): keeps the framing within [`FRAMING_ROOM`].
const MAX_TAG_LEN: usize = 512;

/// A parsed `HIVELOG_FLUENT_TAG` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Service,
    Target,
}

impl TagTemplate {
    /// Parses literal text with `{service}` and `{target}`; `Err` holds what was expected.
    pub fn parse(s: &str) -> Result<TagTemplate, String> {
        let expected = || "text with the placeholders {service} and {target}".to_owned();
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(expected)? + open;
            parts.push(match &rest[open + 1..close] {
                "service" => Part::Service,
                "target" => Part::Target,
                _ => return Err(expected()),
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(expected());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err(expected());
        }
        Ok(TagTemplate { parts })
    }

    /// Whether the tag depends on the record's target.
    pub fn uses_target(&self) -> bool {
        self.parts.contains(&Part::Target)
    }

    /// The tag for a service and a target: `::` becomes `.`, and characters other than
    /// letters, digits, `.`, `_` and `-` become `_`, so tags route with Fluentd's `<match>`
    /// patterns.
    pub fn render(&self, service: &str, target: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Service => push_tag_safe(&mut out, service),
                Part::Target => push_tag_safe(&mut out, target),
            }
        }
        if out.len() > MAX_TAG_LEN {
            let cut = hivelog_core::record::floor_char_boundary(&out, MAX_TAG_LEN);
            out.truncate(cut);
        }
        out
    }
}

fn push_tag_safe(out: &mut String, s: &str) {
    let s = s.replace("::", ".");
    out.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '_'
        }
    }));
}

/// One message being built or in flight.
#[derive(Debug)]
struct Message {
    /// Indices of its records in the batch.
    records: Vec<usize>,
    tag: String,
    /// `seq` of its first and last records.
    seqs: (u64, u64),
    chunk: String,
}

/// Sends records to Fluentd or Fluent Bit with the Forward protocol v1.
///
/// Built by the `hivelog` crate from [`FluentConfig::from_env`]; run by a
/// [`hivelog_core::Pipeline`].
///
/// ```no_run
/// use std::sync::Arc;
/// use hivelog_core::{Format, Pipeline, PipelineConfig};
/// use hivelog_fluent::{FluentConfig, FluentSink};
///
/// let format = Arc::new(Format::builder().service("checkout").build());
/// let config = FluentConfig::new("tcp://127.0.0.1:24224").unwrap();
/// let pipeline = Pipeline::spawn(FluentSink::new(config, format), PipelineConfig::default()).unwrap();
/// ```
pub struct FluentSink {
    config: FluentConfig,
    encoder: Encoder,
    tag: TagTemplate,
    constant_tag: Option<String>,
    tags: HashMap<String, String>,
    connector: Connector,
    conn: Option<Connection>,
    creds: Option<Credentials>,
    salt: [u8; 16],
    buf: Vec<u8>,
    scratch: Vec<u8>,
    auth_failure: Option<(Instant, FailureKind, String)>,
    /// Tag and `seq` range of each message of the last send that was not acked.
    resend: Vec<(String, u64, u64)>,
}

impl std::fmt::Debug for FluentSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluentSink")
            .field("config", &self.config)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl FluentSink {
    /// A sink sending records written with `format`, as configured.
    pub fn new(config: FluentConfig, format: Arc<Format>) -> FluentSink {
        let tag = TagTemplate::parse(&config.tag)
            .unwrap_or_else(|_| TagTemplate::parse(crate::config::DEFAULT_TAG).expect("valid"));
        let constant_tag = (!tag.uses_target()).then(|| tag.render(format.service(), ""));
        let creds = config.shared_key.clone().map(|shared_key| Credentials {
            shared_key,
            hostname: config
                .hostname
                .clone()
                .unwrap_or_else(|| format.hostname().to_owned()),
            username: config.username.clone(),
            password: config.password.clone(),
        });
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        FluentSink {
            encoder: Encoder::new(format, config.time),
            connector: Connector::new(&config),
            config,
            tag,
            constant_tag,
            tags: HashMap::new(),
            conn: None,
            creds,
            salt,
            buf: Vec::new(),
            scratch: Vec::new(),
            auth_failure: None,
            resend: Vec::new(),
        }
    }

    fn tag_of(&mut self, r: &Record) -> &str {
        if let Some(t) = &self.constant_tag {
            return t;
        }
        let target = r.target();
        if !self.tags.contains_key(target) {
            // Targets are few (module paths); bound the cache anyway against dynamic ones.
            if self.tags.len() >= 4096 {
                self.tags.clear();
            }
            let tag = self.tag.render(self.encoder.format().service(), target);
            self.tags.insert(target.to_owned(), tag);
        }
        &self.tags[target]
    }

    /// Groups the batch by tag, keeping first-appearance order and the order within a tag.
    fn group(&mut self, batch: &[Record]) -> Vec<(String, Vec<usize>)> {
        if let Some(t) = &self.constant_tag {
            return vec![(t.clone(), (0..batch.len()).collect())];
        }
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let tag = self.tag_of(r);
            match groups.iter_mut().find(|(t, _)| t == tag) {
                Some((_, v)) => v.push(i),
                None => {
                    let tag = tag.to_owned();
                    groups.push((tag, vec![i]));
                }
            }
        }
        groups
    }

    /// Cuts the batch into messages: one per tag (what Fluentd ingests fastest: splitting a
    /// batch into 1 MiB messages measured 2× slower into Fluentd 1.18); what does not fit in it
    /// is deferred by [`FluentSink::encode_message`].
    ///
    /// Records of a message that was not acked come back first in the next batch (the pipeline
    /// keeps retried records ahead of new ones); they are cut into the same messages again, so
    /// each resent message has the same records and therefore the same chunk id, and newer
    /// records of that tag follow in messages of their own.
    fn plan(&mut self, batch: &[Record]) -> Vec<(String, Vec<usize>)> {
        let resend = std::mem::take(&mut self.resend);
        let mut plan = Vec::new();
        for (tag, indices) in self.group(batch) {
            let mut rest = &indices[..];
            while !rest.is_empty() {
                let seq = batch[rest[0]].seq;
                let cut = match resend
                    .iter()
                    .find(|(t, f, l)| *t == tag && (*f..=*l).contains(&seq))
                {
                    // The unacked message this record began, whole.
                    Some((_, _, last)) => {
                        rest.iter().take_while(|&&i| batch[i].seq <= *last).count()
                    }
                    // New records: up to the next unacked message.
                    None => rest
                        .iter()
                        .skip(1)
                        .position(|&i| {
                            resend
                                .iter()
                                .any(|(t, f, _)| *t == tag && *f == batch[i].seq)
                        })
                        .map_or(rest.len(), |p| p + 1),
                };
                let (segment, tail) = rest.split_at(cut.max(1));
                plan.push((tag.clone(), segment.to_vec()));
                rest = tail;
            }
        }
        plan
    }

    /// Encodes one message of `indices`; false when it filled up before the last record.
    fn encode_message(
        &mut self,
        tag: &str,
        indices: &[usize],
        batch: &[Record],
        outcomes: &mut Outcomes,
        messages: &mut Vec<Message>,
    ) -> bool {
        let max = self.config.max_message_bytes;
        let start = self.buf.len();
        let entries_at = encode::open_message(&mut self.buf, tag);
        let overhead = encode::message_overhead(tag.len());
        let mut records = Vec::with_capacity(indices.len());
        let mut full = false;
        for &i in indices {
            if full {
                outcomes.defer(i);
                continue;
            }
            let before = self.buf.len();
            self.encoder.entry(&batch[i], &mut self.buf);
            if self.buf.len() - start + overhead > max {
                let size = self.buf.len() - before;
                self.buf.truncate(before);
                if records.is_empty() {
                    outcomes.reject(
                        i,
                        format!(
                            "event of {size} bytes does not fit in one message of HIVELOG_FLUENT_MAX_MESSAGE_BYTES={max}"
                        ),
                    );
                    continue;
                }
                full = true;
                outcomes.defer(i);
                continue;
            }
            records.push(i);
        }
        if records.is_empty() {
            self.buf.truncate(start);
            return !full;
        }
        let first = batch[records[0]].seq;
        let last = batch[*records.last().unwrap()].seq;
        let chunk = encode::chunk_id(&self.salt, tag, first, last, records.len());
        encode::close_message(
            &mut self.buf,
            entries_at,
            records.len(),
            self.config.ack.then_some(chunk.as_str()),
            self.config.compress == Compression::Gzip,
            &mut self.scratch,
        );
        messages.push(Message {
            tag: tag.to_owned(),
            seqs: (first, last),
            records,
            chunk,
        });
        !full
    }

    /// A usable connection: the current one if still alive, else a new one (with handshake).
    async fn connect(&mut self) -> Result<(), (FailureKind, String, bool)> {
        if let Some(c) = &mut self.conn {
            // Acks that arrive after their send gave up are stale: ignore them.
            if let (Idle::Dead(_), _) = c.check_idle().await {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let deadline = Instant::now() + self.config.connect_timeout;
            let mut c = self
                .connector
                .connect()
                .await
                .map_err(|e| (e.kind(), e.to_string(), false))?;
            if let Some(creds) = &self.creds {
                if let Err(e) = handshake::handshake(&mut c, creds, deadline).await {
                    let err = e.to_string();
                    if e.is_auth() {
                        self.auth_failure =
                            Some((Instant::now() + AUTH_RETRY_INTERVAL, e.kind(), err.clone()));
                    }
                    return Err((e.kind(), err, e.is_auth()));
                }
            }
            self.conn = Some(c);
        }
        Ok(())
    }

    async fn send_inner(&mut self, batch: &[Record], sent: &mut Vec<Message>) -> Outcomes {
        let n = batch.len();
        if let Some((until, kind, err)) = &self.auth_failure {
            if Instant::now() < *until {
                return Outcomes::fail_all(n, *kind, err.clone());
            }
            self.auth_failure = None;
        }
        match self.connect().await {
            Ok(()) => {}
            Err((kind, err, true)) => return Outcomes::fail_all(n, kind, err),
            Err((kind, err, false)) => {
                // Nothing was encoded: the unacked boundaries still apply next time.
                return Outcomes::retry_all(n, kind, err);
            }
        }
        let mut outcomes = Outcomes::delivered(n);
        let plan = self.plan(batch);
        // Encode and write message by message, so the receiver reads one while the next is
        // encoded; then wait for all acks at once.
        let mut full: Vec<&str> = Vec::new();
        let mut failure = None;
        for (tag, indices) in &plan {
            if failure.is_some() {
                indices.iter().for_each(|&i| outcomes.retry(i));
                continue;
            }
            if full.contains(&tag.as_str()) {
                indices.iter().for_each(|&i| outcomes.defer(i));
                continue;
            }
            self.buf.clear();
            if !self.encode_message(tag, indices, batch, &mut outcomes, sent) {
                full.push(tag);
            }
            if self.buf.is_empty() {
                continue;
            }
            let conn = self.conn.as_mut().expect("connected above");
            if let Err(e) = conn.write_all(&self.buf).await {
                self.conn = None;
                failure = Some((e.kind(), e.to_string()));
                // What this connection carried before is not acked either: resend it all.
                for m in sent.iter() {
                    m.records.iter().for_each(|&i| outcomes.retry(i));
                }
                continue;
            }
            outcomes.add_bytes_sent(self.buf.len() as u64);
        }
        if let Some((kind, err)) = failure {
            outcomes.set_error(kind, err);
            return outcomes;
        }
        if !self.config.ack || sent.is_empty() {
            return outcomes;
        }
        let conn = self.conn.as_mut().expect("connected above");
        let chunks: Vec<&str> = sent.iter().map(|m| m.chunk.as_str()).collect();
        let mut acked = vec![false; sent.len()];
        let timeout = self.config.ack_timeout;
        let result = ack::wait(conn, &chunks, &mut acked, Instant::now() + timeout, timeout).await;
        if let Err(e) = result {
            // The connection's state is unknown (late acks, half-open): start afresh.
            self.conn = None;
            let permanent = matches!(e, AckError::HandshakeRequired { .. });
            if permanent {
                self.auth_failure = Some((
                    Instant::now() + AUTH_RETRY_INTERVAL,
                    e.kind(),
                    e.to_string(),
                ));
            }
            for (m, ok) in sent.iter().zip(&acked) {
                if !ok {
                    for &i in &m.records {
                        if permanent {
                            outcomes.fail(i);
                        } else {
                            outcomes.retry(i);
                        }
                    }
                }
            }
            outcomes.set_error(e.kind(), e.to_string());
        }
        outcomes
    }
}

impl Sink for FluentSink {
    fn name(&self) -> &'static str {
        "fluent"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: MAX_EVENTS_PER_BATCH,
            max_bytes: self.config.max_message_bytes - FRAMING_ROOM,
        }
    }

    fn encoded_len(&self, record: &Record) -> usize {
        self.encoder.bound(record)
    }

    async fn start(&mut self) {
        // Connect early so the first batch does not wait; failures are retried by `send`.
        let _ = self.connect().await;
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        let mut sent = Vec::new();
        let outcomes = self.send_inner(batch, &mut sent).await;
        // Remember the unacked messages' boundaries, to resend them as the same messages.
        for m in &sent {
            if outcomes.as_slice()[m.records[0]] == Outcome::Retry {
                self.resend.push((m.tag.clone(), m.seqs.0, m.seqs.1));
            }
        }
        outcomes
    }

    async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            c.shutdown(Duration::from_secs(1)).await;
        }
    }
}

/// Counts outcomes of each kind, for tests and diagnostics.
pub fn tally(o: &Outcomes) -> [usize; 5] {
    let mut t = [0; 5];
    for x in o.as_slice() {
        t[match x {
            Outcome::Delivered => 0,
            Outcome::Deferred => 1,
            Outcome::Retry => 2,
            Outcome::Rejected(_) => 3,
            Outcome::Failed => 4,
        }] += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_templates_render_service_and_tag_safe_targets() {
        let t = TagTemplate::parse("{service}.{target}").unwrap();
        assert!(t.uses_target());
        assert_eq!(
            t.render("checkout", "app::db::pool"),
            "checkout.app.db.pool"
        );
        assert_eq!(t.render("my svc", "a b"), "my_svc.a_b");
        let t = TagTemplate::parse("logs.{service}").unwrap();
        assert!(!t.uses_target());
        assert_eq!(t.render("api", "x"), "logs.api");
        for bad in ["{pid}", "{service", "service}", ""] {
            assert!(TagTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}

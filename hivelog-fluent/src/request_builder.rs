//! A batch → PackedForward messages under the receiver's limits, each with its chunk id.
//!
//! - **One message per tag and endpoint** per send, at most `HIVELOG_FLUENT_MAX_MESSAGE_BYTES`:
//!   what Fluentd ingests fastest (splitting a batch into 1 MiB messages measured 2× slower into
//!   Fluentd 1.18). With several healthy endpoints, a tag's new records are cut into one message
//!   per endpoint, sized by weight ([`crate::service`] decides the sizes); runs under
//!   [`MIN_PIECE`] events go whole to one endpoint.
//! - **Limits.** The pipeline's batch limit is the message limit minus [`FRAMING_ROOM`], and
//!   [`Sink::encoded_len`](hivelog_core::Sink::encoded_len) is an upper bound of the encoded
//!   entry, so batches fit; a record that still does not fit (a long tag) is `Deferred` to the
//!   next send, and one that could never fit alone is rejected with a reason.
//! - **Same records, same message, same chunk.** Records of a message that was not acked come
//!   back first in the next batch (the pipeline keeps retried records ahead of new ones); they
//!   are cut into the same messages again, so a resent message has the same records and
//!   therefore the same chunk id ([`encode::chunk_id`]), and newer records follow in messages
//!   of their own. A duplicate downstream is always a whole message with a known chunk.
//! - **Tags** come from the template; with `{target}` the tag is computed once per distinct
//!   target and cached.

use std::collections::HashMap;
use std::sync::Arc;

use hivelog_core::{Format, Outcomes, Record};
use rand::RngCore as _;

use crate::config::{Compression, FluentConfig};
use crate::encode::{self, Encoder};
use crate::tag::TagTemplate;

/// Most records per batch: 20,000 (a few MB of typical events, one round trip).
pub const MAX_EVENTS_PER_BATCH: usize = 20_000;
/// Room kept in each message for the framing around the entries (tag, headers, options).
pub const FRAMING_ROOM: usize = 1024;
/// Fewest new records worth a message of their own when a batch is spread over endpoints.
pub const MIN_PIECE: usize = 64;

/// A message to send: its bytes, its chunk, and where its records are in the batch.
#[derive(Debug)]
pub struct Message {
    /// The encoded PackedForward message.
    pub bytes: Vec<u8>,
    /// Its chunk id.
    pub chunk: String,
    /// Indices of its records in the batch.
    pub records: Vec<usize>,
    /// Its tag.
    pub tag: String,
    /// `seq` of its first and last records.
    pub seqs: (u64, u64),
    /// The endpoint the spread planned for it.
    pub node: Option<usize>,
    /// A message of an earlier send that was not acked.
    pub resend: bool,
    /// Whether the receiver acked it (or, without acks, it was written).
    pub acked: bool,
    /// The endpoint it is in flight on.
    pub at: Option<usize>,
    /// How many times it was written in this send.
    pub sends: u32,
}

/// One message's worth of records, before encoding.
#[derive(Debug)]
pub struct Planned {
    /// Its tag.
    pub tag: String,
    /// Indices of its records in the batch.
    pub records: Vec<usize>,
    /// The endpoint the spread chose.
    pub node: Option<usize>,
    /// The records of an unacked message, cut as before.
    pub resend: bool,
}

/// Builds the messages of a batch.
pub struct RequestBuilder {
    encoder: Encoder,
    tag: TagTemplate,
    constant_tag: Option<String>,
    tags: HashMap<String, String>,
    salt: [u8; 16],
    max_message_bytes: usize,
    ack: bool,
    gzip: bool,
    scratch: Vec<u8>,
    /// Buffers of earlier messages, reused.
    pool: Vec<Vec<u8>>,
    /// Tag and `seq` range of each message of the last send that was not acked.
    resend: Vec<(String, u64, u64)>,
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("tag", &self.tag)
            .finish()
    }
}

impl RequestBuilder {
    /// A builder for `config`, writing records with `format`.
    pub fn new(config: &FluentConfig, format: Arc<Format>) -> RequestBuilder {
        // The configuration only holds validated templates.
        let tag = TagTemplate::parse(&config.tag).expect("validated by FluentConfig");
        let constant_tag = (!tag.uses_target()).then(|| tag.render(format.service(), ""));
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        RequestBuilder {
            encoder: Encoder::new(format, config.time),
            tag,
            constant_tag,
            tags: HashMap::new(),
            salt,
            max_message_bytes: config.max_message_bytes,
            ack: config.ack,
            gzip: config.compress == Compression::Gzip,
            scratch: Vec::new(),
            pool: Vec::new(),
            resend: Vec::new(),
        }
    }

    /// An upper bound of a record's encoded entry.
    pub fn bound(&self, record: &Record) -> usize {
        self.encoder.bound(record)
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

    /// Cuts the batch into messages: the unacked messages of the last send as they were, and
    /// new records by tag, spread with `apportion(count) -> [(endpoint, count)]`.
    pub fn plan(
        &mut self,
        batch: &[Record],
        apportion: &mut dyn FnMut(usize) -> Vec<(usize, usize)>,
    ) -> Vec<Planned> {
        let resend = std::mem::take(&mut self.resend);
        let mut plan = Vec::new();
        for (tag, indices) in self.group(batch) {
            let mut rest = &indices[..];
            while !rest.is_empty() {
                let seq = batch[rest[0]].seq;
                let unacked = resend
                    .iter()
                    .find(|(t, f, l)| *t == tag && (*f..=*l).contains(&seq));
                if let Some((_, _, last)) = unacked {
                    // The unacked message this record began, whole.
                    let cut = rest.iter().take_while(|&&i| batch[i].seq <= *last).count();
                    let (segment, tail) = rest.split_at(cut.max(1));
                    plan.push(Planned {
                        tag: tag.clone(),
                        records: segment.to_vec(),
                        node: None,
                        resend: true,
                    });
                    rest = tail;
                    continue;
                }
                // New records: up to the next unacked message, spread over the endpoints.
                let cut = rest
                    .iter()
                    .skip(1)
                    .position(|&i| {
                        resend
                            .iter()
                            .any(|(t, f, _)| *t == tag && *f == batch[i].seq)
                    })
                    .map_or(rest.len(), |p| p + 1);
                let (run, tail) = rest.split_at(cut);
                let mut pieces = apportion(run.len());
                if pieces.is_empty() {
                    pieces.push((usize::MAX, run.len()));
                }
                let mut run = run;
                for (node, n) in pieces {
                    let (piece, more) = run.split_at(n.min(run.len()));
                    plan.push(Planned {
                        tag: tag.clone(),
                        records: piece.to_vec(),
                        node: (node != usize::MAX).then_some(node),
                        resend: false,
                    });
                    run = more;
                }
                rest = tail;
            }
        }
        plan.retain(|p| !p.records.is_empty());
        plan
    }

    /// Encodes one planned message; the flag is false when it filled up before its last record
    /// (the rest is deferred, and later messages of that tag should be too).
    pub fn encode(
        &mut self,
        planned: &Planned,
        batch: &[Record],
        outcomes: &mut Outcomes,
    ) -> (Option<Message>, bool) {
        let max = self.max_message_bytes;
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        let tag = planned.tag.as_str();
        let entries_at = encode::open_message(&mut buf, tag);
        let overhead = encode::message_overhead(tag.len());
        let mut records = Vec::with_capacity(planned.records.len());
        let mut full = false;
        for &i in &planned.records {
            if full {
                outcomes.defer(i);
                continue;
            }
            let before = buf.len();
            self.encoder.entry(&batch[i], &mut buf);
            if buf.len() + overhead > max {
                let size = buf.len() - before;
                buf.truncate(before);
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
            self.pool.push(buf);
            return (None, !full);
        }
        let first = batch[records[0]].seq;
        let last = batch[*records.last().expect("not empty")].seq;
        let ids = (
            batch[records[0]].id,
            batch[*records.last().expect("not empty")].id,
        );
        let chunk = encode::chunk_id(&self.salt, tag, ids.0, ids.1, records.len());
        let ack = self.ack.then_some(chunk.as_str());
        encode::close_message(
            &mut buf,
            entries_at,
            records.len(),
            ack,
            self.gzip,
            &mut self.scratch,
        );
        let message = Message {
            bytes: buf,
            chunk,
            records,
            tag: tag.to_owned(),
            seqs: (first, last),
            node: planned.node,
            resend: planned.resend,
            acked: false,
            at: None,
            sends: 0,
        };
        (Some(message), !full)
    }

    /// Remembers the boundaries of the messages that were not acked, to cut their records into
    /// the same messages when they come back, and keeps the buffers for the next send.
    pub fn finish(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if !m.acked {
                self.resend.push((m.tag, m.seqs.0, m.seqs.1));
            }
            if self.pool.len() < 2 {
                self.pool.push(m.bytes);
            }
        }
    }
}

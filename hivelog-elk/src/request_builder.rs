//! A batch of records → one `_bulk` request body.
//!
//! The body is NDJSON: for each record an action line
//! (`{"create":{"_index":"logs-web","_id":"…"}}`) and the formatter's JSON document, every line
//! ending in `\n` (Elasticsearch refuses a body whose last line lacks it). It is encoded once
//! per batch into one buffer; the byte range of each record is kept, so a batch that must be
//! split after a 413, or a rejected document that goes to the dead-letter file, is sliced out
//! of the same buffer instead of being encoded again.
//!
//! The `_id` is the record's [`RecordId`](hivelog_core::RecordId): its origin (16 hex digits,
//! random per pipeline start) followed by its sequence number in hex. The pipeline keeps the id
//! across retries, and the spill folder keeps it across restarts, so a resent `create` whose
//! first attempt had landed answers 409 and is counted as delivered rather than stored twice.
//! The origin is per pipeline, not per process, so two sinks in one process (two pipelines,
//! each numbering from 0) can never produce the same `_id`. A record that never went through a
//! pipeline (origin 0) gets this encoder's own random salt instead.

use std::io::Write as _;
use std::sync::Arc;

use hivelog_core::format::emit::write_json_str_body;
use hivelog_core::{Format, Record};

use crate::config::Action;
use crate::index::{index_safe_service, IndexTemplate};

/// `Content-Type` of a `_bulk` body.
pub const NDJSON: &str = "application/x-ndjson";

/// The bulk endpoint, relative to a node's base URL. `filter_path` keeps the response to what
/// is read (about 25 bytes per document instead of about 200).
pub const BULK_PATH: &str =
    "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";

/// One encoded batch: the body and where each record sits in it.
///
/// The positions stay valid after the body is moved out (into the `Bytes` that is sent), so the
/// sink can slice halves and rejected documents out of the sent buffer without copying.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    /// The NDJSON body of the records included.
    pub(crate) body: Vec<u8>,
    /// For each included record: where its action line starts and where its document starts.
    /// Its pair of lines ends where the next record's starts (or at `end`).
    pub(crate) starts: Vec<(usize, usize)>,
    /// The body's length.
    pub(crate) end: usize,
}

impl Encoded {
    /// How many records were included (the rest of the batch did not fit).
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    fn end_of(&self, i: usize) -> usize {
        self.starts.get(i + 1).map_or(self.end, |s| s.0)
    }

    /// Byte range of records `from..to` (both lines of each).
    pub(crate) fn range(&self, from: usize, to: usize) -> std::ops::Range<usize> {
        self.starts[from].0..self.end_of(to - 1)
    }

    /// Byte range of the document line of record `i`, without its newline.
    pub(crate) fn document(&self, i: usize) -> std::ops::Range<usize> {
        self.starts[i].1..self.end_of(i) - 1
    }

    /// Byte range of the action line of record `i`, without its newline.
    pub(crate) fn action_line(&self, i: usize) -> std::ops::Range<usize> {
        self.starts[i].0..self.starts[i].1 - 1
    }
}

/// Turns records into bulk lines.
#[derive(Debug)]
pub(crate) struct BulkEncoder {
    format: Arc<Format>,
    action: Action,
    template: IndexTemplate,
    service: String,
    granularity: Option<u64>,
    salt: [u8; 16],
    /// `{"create":{"_index":"NAME","_id":"` for the time slot in `slot`.
    prefix: Vec<u8>,
    slot: u64,
}

impl BulkEncoder {
    pub(crate) fn new(format: Arc<Format>, action: Action, template: IndexTemplate) -> Self {
        let service = index_safe_service(format.service());
        let salt_n: u64 = rand::random();
        let mut salt = [0u8; 16];
        salt.copy_from_slice(format!("{salt_n:016x}").as_bytes());
        let granularity = template.time_granularity();
        let mut e = BulkEncoder {
            format,
            action,
            template,
            service,
            granularity,
            salt,
            prefix: Vec::new(),
            slot: u64::MAX,
        };
        e.set_slot(0);
        e
    }

    /// The index-safe service name used for `{service}`.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    fn set_slot(&mut self, secs: u64) {
        let slot = self.granularity.map_or(0, |g| secs / g);
        if slot == self.slot && !self.prefix.is_empty() {
            return;
        }
        self.slot = slot;
        let name = self.template.render(&self.service, secs);
        self.prefix.clear();
        self.prefix.extend_from_slice(b"{\"");
        self.prefix
            .extend_from_slice(self.action.as_str().as_bytes());
        self.prefix.extend_from_slice(b"\":{\"_index\":\"");
        write_json_str_body(&mut self.prefix, &name);
        self.prefix.extend_from_slice(b"\",\"_id\":\"");
    }

    /// The index name a record goes to.
    #[cfg(test)]
    pub(crate) fn index_for(&self, record: &Record) -> String {
        self.template.render(&self.service, record.unix_time().0)
    }

    /// Encodes records from the start of `batch` into `out` (cleared first) until `max_docs`
    /// records or `max_bytes` bytes; the first record is always included, however large.
    pub(crate) fn encode(
        &mut self,
        batch: &[Record],
        max_bytes: usize,
        max_docs: usize,
        out: &mut Encoded,
    ) {
        out.body.clear();
        out.starts.clear();
        for record in batch.iter().take(max_docs) {
            let start = out.body.len();
            if self.granularity.is_some() {
                self.set_slot(record.unix_time().0);
            }
            out.body.extend_from_slice(&self.prefix);
            match record.id.origin {
                0 => {
                    out.body.extend_from_slice(&self.salt);
                    write_hex(&mut out.body, record.seq);
                }
                origin => {
                    write_hex16(&mut out.body, origin);
                    write_hex(&mut out.body, record.id.seq);
                }
            }
            out.body.extend_from_slice(b"\"}}\n");
            let doc = out.body.len();
            self.format.write_json(record, &mut out.body);
            out.body.push(b'\n');
            if out.body.len() > max_bytes && start > 0 {
                out.body.truncate(start);
                break;
            }
            out.starts.push((start, doc));
        }
        out.end = out.body.len();
    }
}

fn write_hex(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `n` as exactly 16 hex digits.
fn write_hex16(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend((0..16).rev().map(|i| HEX[((n >> (i * 4)) & 0xf) as usize]));
}

/// Gzips a body (level 1: logs compress about 10× even at the fastest level).
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::record::{Str, Value};
    use std::time::{Duration, SystemTime};
    use tracing_core::Level;

    fn record(seq: u64, secs: u64, msg: &str) -> Record {
        let mut r = Record::new(Level::INFO, Str::Static("app::db"), 1 << 20, 4);
        r.time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        r.message = Some(r.fields.push_str(msg));
        r.fields.push("n", Value::I64(seq as i64));
        r.seq = seq;
        r
    }

    fn encoder(template: &str) -> BulkEncoder {
        let format = Arc::new(Format::builder().service("Web App").build());
        BulkEncoder::new(
            format,
            Action::Create,
            IndexTemplate::parse("t", template).unwrap(),
        )
    }

    #[test]
    fn every_line_ends_with_a_newline_and_ids_are_salted_sequence_numbers() {
        let mut e = encoder("logs-{service}");
        let mut out = Encoded::default();
        let batch = [record(1, 0, "a\nb"), record(255, 0, "c")];
        e.encode(&batch, usize::MAX, usize::MAX, &mut out);
        let text = std::str::from_utf8(&out.body).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 4);
        let action: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(action["create"]["_index"], "logs-web-app");
        let id = action["create"]["_id"].as_str().unwrap();
        assert_eq!(id.len(), 17);
        assert!(id.ends_with('1'));
        let id2 = serde_json::from_str::<serde_json::Value>(lines[2]).unwrap()["create"]["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(&id2[..16], &id[..16]);
        assert!(id2.ends_with("ff"));
        let doc: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(doc["message"], "a\nb");
        assert_eq!(&out.body[out.document(1)], lines[3].as_bytes());
        assert_eq!(&out.body[out.action_line(0)], lines[0].as_bytes());
        // Another sink instance has another salt.
        let mut e2 = encoder("logs-{service}");
        let mut out2 = Encoded::default();
        e2.encode(&batch[..1], usize::MAX, usize::MAX, &mut out2);
        assert_ne!(
            &out2.body[out2.action_line(0)],
            &out.body[out.action_line(0)]
        );
    }

    #[test]
    fn ids_come_from_the_records_identity_so_a_replay_after_a_restart_reuses_them() {
        let batch = {
            let mut r = record(3, 0, "a");
            r.id = hivelog_core::RecordId {
                origin: 0xab,
                seq: 0x1f,
            };
            [r]
        };
        let ids: Vec<String> = (0..2)
            .map(|_| {
                let mut out = Encoded::default();
                encoder("logs").encode(&batch, usize::MAX, usize::MAX, &mut out);
                let line = &out.body[out.action_line(0)];
                let action: serde_json::Value = serde_json::from_slice(line).unwrap();
                action["create"]["_id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(ids[0], "00000000000000ab1f");
        assert_eq!(ids[0], ids[1], "another sink instance, the same id");
    }

    #[test]
    fn index_names_follow_each_events_own_utc_date() {
        let mut e = encoder("logs-{service}-{date:%Y.%m.%d}");
        let mut out = Encoded::default();
        // 2025-03-31T23:59:59Z and one second later.
        let batch = [
            record(1, 1_743_465_599, "a"),
            record(2, 1_743_465_600, "b"),
            record(3, 1_743_465_601, "c"),
        ];
        e.encode(&batch, usize::MAX, usize::MAX, &mut out);
        let idx = |i: usize| {
            serde_json::from_slice::<serde_json::Value>(&out.body[out.action_line(i)]).unwrap()
                ["create"]["_index"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(idx(0), "logs-web-app-2025.03.31");
        assert_eq!(idx(1), "logs-web-app-2025.04.01");
        assert_eq!(idx(2), "logs-web-app-2025.04.01");
        assert_eq!(e.index_for(&batch[0]), "logs-web-app-2025.03.31");
    }

    #[test]
    fn batches_stop_at_the_byte_and_count_limits_but_always_take_one() {
        let mut e = encoder("logs");
        let mut out = Encoded::default();
        let batch: Vec<Record> = (0..10).map(|i| record(i, 0, "0123456789")).collect();
        e.encode(&batch, usize::MAX, 3, &mut out);
        assert_eq!(out.len(), 3);
        e.encode(&batch, 1, 100, &mut out);
        assert_eq!(out.len(), 1);
        let one = out.body.len();
        e.encode(&batch, one * 4 + 1, 100, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out.body.len(), one * 4);
        assert_eq!(out.range(1, 3).len(), one * 2);
        assert!(out.body.ends_with(b"\n"));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let data = b"{\"a\":1}\n".repeat(1000);
        let z = gzip(&data);
        assert!(z.len() < data.len() / 10);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}

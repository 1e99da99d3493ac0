//! Records → Forward protocol messages.
//!
//! - **Records are msgpack maps** with the fields and types of the JSON output: the record is
//!   walked once through [`Format::emit`] with a msgpack [`Emit`], so a field is a string, an
//!   integer, a float or a map in Fluentd exactly as it is in the JSON line (non-finite floats
//!   are `nil`, as JSON writes `null`). Sending the JSON line as one string field would force
//!   every Fluentd user to add a parser filter.
//! - **Map lengths are not known in advance** (`Emit` streams keys), so a map or array header
//!   is reserved as one byte (the fix form, up to 15 entries, which most records fit) and
//!   patched at its end; a longer one is widened then, moving its body. The output is what any
//!   msgpack encoder would produce (shortest forms).
//! - **PackedForward** `[tag, bin(entries), {"size": n, "chunk": id}]`: entries are encoded
//!   once straight into the message buffer after a fixed 5-byte `bin32` header, patched last.
//!   With gzip the entries become one gzip member (CompressedPackedForward).
//! - **EventTime** is ext type 0 with big-endian u32 seconds and u32 nanoseconds (`fixext8`);
//!   `HIVELOG_FLUENT_TIME=integer` writes seconds only, for Fluentd v0.12.
//! - **Chunk ids** are derived, not drawn: SHA-256 over a per-process random salt, the tag and
//!   the first and last record `seq` and count, cut to 16 bytes and base64-encoded. A message
//!   resent with the same records therefore carries the same chunk, which lets a downstream
//!   deduplicate, while two processes (different salts) never collide.
//! - **Sizes**: [`Encoder::bound`] is an upper bound of an entry's encoded size computed without
//!   encoding (string lengths plus worst-case headers, over a probe of the fixed part), so the
//!   pipeline can cut batches that always fit the message limit.

use std::io::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use hivelog_core::format::{Attr, Emit, Key};
use hivelog_core::record::{Fields, Str, Value};
use hivelog_core::{Format, Record, RecordId};
use sha2::{Digest, Sha256};

use crate::config::TimeFormat;

/// Bytes of one entry outside its record: the `[time, record]` array header and the time.
const ENTRY_OVERHEAD: usize = 1 + 10;

#[derive(Clone, Copy)]
struct Open {
    /// Where the one-byte header placeholder is.
    at: usize,
    /// Elements (arrays) or pairs (maps) so far.
    count: u32,
    map: bool,
}

/// A msgpack [`Emit`] appending to a byte vector.
#[derive(Debug)]
pub struct MsgpackWriter<'a> {
    out: &'a mut Vec<u8>,
    stack: &'a mut Vec<OpenSlot>,
}

/// Reusable stack storage for [`MsgpackWriter`] (kept between records to avoid allocating).
#[derive(Clone, Copy, Debug)]
pub struct OpenSlot(usize, u32, bool);

impl From<Open> for OpenSlot {
    fn from(o: Open) -> Self {
        OpenSlot(o.at, o.count, o.map)
    }
}

impl<'a> MsgpackWriter<'a> {
    /// A writer appending to `out`, using `stack` as scratch space.
    pub fn new(out: &'a mut Vec<u8>, stack: &'a mut Vec<OpenSlot>) -> Self {
        stack.clear();
        MsgpackWriter { out, stack }
    }

    #[inline]
    fn value(&mut self) {
        if let Some(top) = self.stack.last_mut() {
            if !top.2 {
                top.1 += 1;
            }
        }
    }

    fn open(&mut self, map: bool) {
        self.value();
        let at = self.out.len();
        // One byte, enough for the fix forms (up to 15 entries), the common case.
        self.out.push(0);
        self.stack.push(Open { at, count: 0, map }.into());
    }

    fn close(&mut self) {
        let Some(OpenSlot(at, count, map)) = self.stack.pop() else {
            return;
        };
        let mut head = [0u8; 5];
        let n = match (map, count) {
            (true, 0..=15) => {
                head[0] = 0x80 | count as u8;
                1
            }
            (false, 0..=15) => {
                head[0] = 0x90 | count as u8;
                1
            }
            (_, 16..=0xffff) => {
                head[0] = if map { 0xde } else { 0xdc };
                head[1..3].copy_from_slice(&(count as u16).to_be_bytes());
                3
            }
            _ => {
                head[0] = if map { 0xdf } else { 0xdd };
                head[1..5].copy_from_slice(&count.to_be_bytes());
                5
            }
        };
        self.out[at] = head[0];
        if n > 1 {
            // More than 15 entries: widen the header, moving the body right.
            self.out.splice(at + 1..at + 1, head[1..n].iter().copied());
        }
    }

    #[inline]
    fn key_start(&mut self) {
        if let Some(top) = self.stack.last_mut() {
            top.1 += 1;
        }
    }

    #[inline]
    fn raw_str(&mut self, s: &str) {
        str_header(self.out, s.len());
        self.out.extend_from_slice(s.as_bytes());
    }
}

impl Emit for MsgpackWriter<'_> {
    fn begin_record(&mut self) {
        self.open(true);
    }
    fn end_record(&mut self) {
        self.close();
    }
    #[inline]
    fn key_static(&mut self, key: &Key) {
        self.key(key.as_str());
    }
    #[inline]
    fn key(&mut self, key: &str) {
        self.key_start();
        self.raw_str(key);
    }
    fn key_prefixed(&mut self, prefix: &str, key: &str) {
        self.key_start();
        str_header(self.out, prefix.len() + key.len());
        self.out.extend_from_slice(prefix.as_bytes());
        self.out.extend_from_slice(key.as_bytes());
    }
    #[inline]
    fn str(&mut self, v: &str) {
        self.value();
        self.raw_str(v);
    }
    fn rfc3339(&mut self, secs: u64, nanos: u32, nanos_digits: usize) {
        self.value();
        // `YYYY-MM-DDTHH:MM:SS.fffffffffZ` is at most 30 bytes for 4-digit years: a fixstr
        // whose one-byte header is written first and patched with the real length.
        let at = self.out.len();
        self.out.push(0xa0);
        hivelog_core::format::time::write_rfc3339(self.out, secs, nanos, nanos_digits);
        let len = self.out.len() - at - 1;
        if len <= 31 {
            self.out[at] = 0xa0 | len as u8;
        } else {
            let s = self.out.split_off(at + 1);
            self.out.truncate(at);
            str_header(self.out, s.len());
            self.out.extend_from_slice(&s);
        }
    }
    fn i64(&mut self, v: i64) {
        self.value();
        if v >= 0 {
            uint(self.out, v as u64);
        } else {
            sint(self.out, v);
        }
    }
    fn u64(&mut self, v: u64) {
        self.value();
        uint(self.out, v);
    }
    fn f64(&mut self, v: f64) {
        self.value();
        if v.is_finite() {
            self.out.push(0xcb);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(0xc0);
        }
    }
    fn bool(&mut self, v: bool) {
        self.value();
        self.out.push(if v { 0xc3 } else { 0xc2 });
    }
    fn null(&mut self) {
        self.value();
        self.out.push(0xc0);
    }
    fn begin_array(&mut self) {
        self.open(false);
    }
    fn end_array(&mut self) {
        self.close();
    }
    fn begin_map(&mut self) {
        self.open(true);
    }
    fn end_map(&mut self) {
        self.close();
    }
}

// The hot scalar writers, by hand: `rmp`'s generic writers return `Result`s with an
// `io::Error` inside even for a `Vec`, which cost more than the bytes they write. The forms are
// the shortest ones, as `rmp::encode::write_{str,uint,sint}` choose them.

#[inline]
fn str_header(out: &mut Vec<u8>, len: usize) {
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len < 256 {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len < 65_536 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

#[inline]
fn uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else if v < 256 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v < 65_536 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

#[inline]
fn sint(out: &mut Vec<u8>, v: i64) {
    if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Encodes records as Forward entries and bounds their size.
#[derive(Debug)]
pub struct Encoder {
    format: Arc<Format>,
    time: TimeFormat,
    stack: Vec<OpenSlot>,
    /// Encoded size of a record with every variable part empty.
    probe: usize,
    /// The basic fields' attrs with their keys' worst-case encoded length.
    basic: Vec<(usize, Attr)>,
}

impl Encoder {
    /// An encoder for `format`, writing times as `time`.
    pub fn new(format: Arc<Format>, time: TimeFormat) -> Encoder {
        let mut probe = Record::new(tracing_level(), Str::Static(""), 0, 0);
        probe.time = std::time::UNIX_EPOCH;
        let mut stack = Vec::new();
        let mut out = Vec::new();
        format.emit(&probe, &mut MsgpackWriter::new(&mut out, &mut stack));
        let basic = format.basic().map(|(k, a)| (k.len() + 5, a)).collect();
        Encoder {
            format,
            time,
            stack,
            probe: out.len(),
            basic,
        }
    }

    /// The format.
    pub fn format(&self) -> &Arc<Format> {
        &self.format
    }

    /// Appends `[time, record]` to `out`; returns the bytes written.
    pub fn entry(&mut self, record: &Record, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.push(0x92);
        let (secs, nanos) = record.unix_time();
        match self.time {
            TimeFormat::EventTime => {
                out.extend_from_slice(&[0xd7, 0x00]);
                out.extend_from_slice(&(secs.min(u64::from(u32::MAX)) as u32).to_be_bytes());
                out.extend_from_slice(&nanos.to_be_bytes());
            }
            TimeFormat::Integer => {
                let _ = rmp::encode::write_uint(out, secs);
            }
        }
        self.format
            .emit(record, &mut MsgpackWriter::new(out, &mut self.stack));
        let n = out.len() - start;
        debug_assert!(
            n <= self.bound(record),
            "{n} > bound {}",
            self.bound(record)
        );
        n
    }

    /// An upper bound of what [`Encoder::entry`] writes for `record`, computed without encoding.
    pub fn bound(&self, r: &Record) -> usize {
        // The probe's record map header may be 1 byte where the real one takes 5.
        let mut n = ENTRY_OVERHEAD + self.probe + 4;
        for &(key, attr) in &self.basic {
            n += match attr {
                Attr::Timestamp => 48,
                Attr::Level => 8,
                Attr::Target => r.target().len() + 5,
                Attr::Message => r.message().len() + 5,
                Attr::Module => key + 10 + r.module().map_or(0, str::len),
                Attr::File => key + 10 + r.file().map_or(0, str::len),
                Attr::Line => key + 10,
                Attr::Span => key + 10 + r.span.as_ref().map_or(0, |s| s.name.len()),
                Attr::Spans => {
                    5 + r
                        .span
                        .as_ref()
                        .map_or(0, |s| s.ancestry().map(|n| n.name.len() + 5).sum())
                }
                Attr::Thread => key + 10 + r.thread.as_deref().map_or(0, str::len),
                Attr::ThreadId => 9,
                _ => 0,
            };
        }
        n += fields_bound(&r.fields) + self.format.trace_bound(r) + self.format.metrics_bound(r);
        if let Some(span) = &r.span {
            n += span
                .ancestry()
                .map(|s| fields_bound(&s.fields))
                .sum::<usize>();
        }
        // `"truncated": true`.
        n + 12
    }
}

fn tracing_level() -> tracing_core::Level {
    tracing_core::Level::INFO
}

/// Worst case of a field list: each name possibly prefixed with `fields.`, each value as a
/// string, `[redacted]` or a number, errors as maps (or ECS's three keys, whose stack trace
/// repeats the message and the sources).
fn fields_bound(f: &Fields) -> usize {
    f.iter()
        .map(|field| {
            let key = field.name.len() + 7 + 5;
            let value = match field.value {
                Value::Bool(_) | Value::I64(_) | Value::U64(_) | Value::F64(_) => 11,
                Value::Str(t) => f.text(t).len() + 11,
                Value::Error { message, kind } => {
                    2 * f.text(message).len() + f.text(kind).len() + 128
                }
                Value::Source(t) => 2 * f.text(t).len() + 24,
            };
            key + value
        })
        .sum()
}

/// Starts a PackedForward message `[tag, bin(…), …]` in `out`; returns where entries begin.
pub fn open_message(out: &mut Vec<u8>, tag: &str) -> usize {
    out.push(0x93);
    let _ = rmp::encode::write_str(out, tag);
    // bin32, length patched by `close_message`.
    out.extend_from_slice(&[0xc6, 0, 0, 0, 0]);
    out.len()
}

/// Bytes a message adds around its entries, for a tag of `tag_len` bytes: the array header, the
/// tag, the bin header and the option map (`size`, a 24-byte `chunk`, `compressed`).
pub fn message_overhead(tag_len: usize) -> usize {
    1 + tag_len + 5 + 5 + 64
}

/// Finishes the message opened at `entries_at`: compresses the entries when asked (one gzip
/// member), patches the bin length and appends the options.
pub fn close_message(
    out: &mut Vec<u8>,
    entries_at: usize,
    size: usize,
    chunk: Option<&str>,
    gzip: bool,
    scratch: &mut Vec<u8>,
) {
    if gzip {
        scratch.clear();
        let mut z =
            flate2::write::GzEncoder::new(std::mem::take(scratch), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(&out[entries_at..]);
        *scratch = z.finish().unwrap_or_default();
        out.truncate(entries_at);
        out.extend_from_slice(scratch);
    }
    let len = (out.len() - entries_at) as u32;
    out[entries_at - 4..entries_at].copy_from_slice(&len.to_be_bytes());
    let pairs = 1 + u32::from(chunk.is_some()) + u32::from(gzip);
    let _ = rmp::encode::write_map_len(out, pairs);
    let _ = rmp::encode::write_str(out, "size");
    let _ = rmp::encode::write_uint(out, size as u64);
    if let Some(c) = chunk {
        let _ = rmp::encode::write_str(out, "chunk");
        let _ = rmp::encode::write_str(out, c);
    }
    if gzip {
        let _ = rmp::encode::write_str(out, "compressed");
        let _ = rmp::encode::write_str(out, "gzip");
    }
}

/// The chunk id of a message: base64 of 16 bytes of SHA-256 over the tag, the identities of
/// its first and last records ([`RecordId`]: origin and seq, which a spill folder keeps across
/// a restart) and their count. Identical for identical resends, in this process or, for
/// replayed records cut into the same message, in the next one. Records that never went
/// through a pipeline (origin 0) are keyed by this encoder's `salt` instead.
pub fn chunk_id(
    salt: &[u8; 16],
    tag: &str,
    first: RecordId,
    last: RecordId,
    count: usize,
) -> String {
    let mut h = Sha256::new();
    h.update((tag.len() as u64).to_be_bytes());
    h.update(tag.as_bytes());
    for id in [first, last] {
        match id.origin {
            0 => h.update(salt),
            origin => h.update(origin.to_be_bytes()),
        }
        h.update(id.seq.to_be_bytes());
    }
    h.update((count as u64).to_be_bytes());
    let d = h.finalize();
    base64::engine::general_purpose::STANDARD.encode(&d[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::format::Schema;
    use hivelog_core::record::SpanNode;
    use rmpv::Value as M;
    use tracing_core::Level;

    fn to_json(v: &M) -> serde_json::Value {
        use serde_json::Value as J;
        match v {
            M::Nil => J::Null,
            M::Boolean(b) => J::Bool(*b),
            M::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => J::from(u),
                (_, Some(s)) => J::from(s),
                _ => unreachable!(),
            },
            M::F64(f) => J::from(*f),
            M::F32(f) => J::from(f64::from(*f)),
            M::String(s) => J::String(s.as_str().unwrap().to_owned()),
            M::Array(a) => J::Array(a.iter().map(to_json).collect()),
            M::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_owned(), to_json(v)))
                    .collect(),
            ),
            other => panic!("unexpected msgpack value {other:?}"),
        }
    }

    #[derive(Debug)]
    struct TestErr(&'static str, Option<Box<TestErr>>);
    impl std::fmt::Display for TestErr {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for TestErr {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    /// A record with every kind of value, long and short strings, spans and an error chain.
    fn rich_record(long: usize) -> Record {
        let mut r = Record::new(Level::WARN, Str::Static("app::db::pool"), 1 << 20, 8);
        r.time = std::time::UNIX_EPOCH + std::time::Duration::new(1_763_000_000, 123_456_789);
        r.module = Some(Str::Static("app::db::pool"));
        r.file = Some(Str::Static("src/db/pool.rs"));
        r.line = Some(42);
        r.message = Some(r.fields.push_str("connection \"lost\"\n"));
        let s = r.fields.push_str(&"é".repeat(long));
        r.fields.push("big", Value::Str(s));
        r.fields.push("n", Value::I64(-5));
        r.fields.push("u", Value::U64(u64::MAX));
        r.fields.push("f", Value::F64(1.25));
        r.fields.push("nan", Value::F64(f64::NAN));
        r.fields.push("ok", Value::Bool(false));
        r.fields.push("level", Value::U64(3));
        r.fields.push("password", Value::U64(3));
        // Metrics (with HIVELOG_METRICS=emf): one plain, one whose short name is taken, one
        // that cannot be a metric.
        r.fields.push("metric.latency_ms", Value::F64(2.5));
        r.fields.push("metric.n", Value::I64(7));
        r.fields.push("metric.\"odd\" é", Value::U64(1));
        r.fields.push("metric.bad", Value::F64(f64::INFINITY));
        let e = TestErr("outer", Some(Box::new(TestErr("inner", None))));
        r.fields.push_error("error", &e);
        let mut outer = Fields::with_limit(1024, 2);
        let v = outer.push_str("req-1");
        outer.push("request_id", Value::Str(v));
        outer.push("n", Value::I64(1));
        let outer = Arc::new(SpanNode::new("handle", outer, None));
        let mut inner = Fields::with_limit(1024, 1);
        inner.push("attempt", Value::U64(2));
        r.span = Some(Arc::new(SpanNode::new("query", inner, Some(outer))));
        r
    }

    fn formats() -> Vec<Arc<Format>> {
        vec![
            Arc::new(Format::builder().service("svc").build()),
            Arc::new(
                Format::builder()
                    .service("svc")
                    .fields("ts=timestamp,level,logger=target,message,module,file,line,span,spans,thread,thread_id,pid,hostname,service")
                    .unwrap()
                    .extra("team", "core")
                    .redact(["password"])
                    .timestamp(hivelog_core::format::TimestampFormat::EpochNs)
                    .build(),
            ),
            Arc::new(Format::builder().service("svc").schema(Schema::Ecs).build()),
            Arc::new(
                Format::builder()
                    .service("svc \"ns\"")
                    .extra("route", "/a")
                    .metrics(hivelog_core::format::MetricsConfig {
                        dimensions: vec!["route".into(), "request_id".into(), "n".into()],
                        high_resolution: true,
                        ..Default::default()
                    })
                    .unwrap()
                    .build(),
            ),
        ]
    }

    fn decode_entry(b: &[u8]) -> (M, M) {
        let v = rmpv::decode::read_value(&mut &b[..]).unwrap();
        let M::Array(mut a) = v else {
            panic!("entry not an array")
        };
        assert_eq!(a.len(), 2);
        let rec = a.pop().unwrap();
        (a.pop().unwrap(), rec)
    }

    #[test]
    fn records_have_the_same_fields_and_types_as_the_json_output() {
        for format in formats() {
            for long in [0, 10, 40, 300, 70_000] {
                let r = rich_record(long);
                let mut enc = Encoder::new(format.clone(), TimeFormat::EventTime);
                let mut out = Vec::new();
                let n = enc.entry(&r, &mut out);
                assert_eq!(n, out.len());
                let (time, rec) = decode_entry(&out);
                assert_eq!(
                    time,
                    M::Ext(
                        0,
                        [1_763_000_000u32.to_be_bytes(), 123_456_789u32.to_be_bytes()].concat()
                    )
                );
                let mut json = Vec::new();
                format.write_json(&r, &mut json);
                let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
                assert_eq!(to_json(&rec), json, "format {format:?} long {long}");
            }
        }
    }

    #[test]
    fn the_size_bound_is_never_below_the_encoded_size() {
        for format in formats() {
            let enc = Encoder::new(format.clone(), TimeFormat::EventTime);
            let mut enc2 = Encoder::new(format, TimeFormat::EventTime);
            for long in [0, 1, 15, 31, 32, 255, 256, 65_535, 65_536, 200_000] {
                let r = rich_record(long);
                let mut out = Vec::new();
                let n = enc2.entry(&r, &mut out);
                assert!(n <= enc.bound(&r), "{n} > {}", enc.bound(&r));
                // Not absurdly loose either.
                assert!(enc.bound(&r) < n * 2 + 1024, "{} vs {n}", enc.bound(&r));
            }
            let empty = Record::new(Level::INFO, Str::Static(""), 0, 0);
            let mut out = Vec::new();
            assert!(enc2.entry(&empty, &mut out) <= enc.bound(&empty));
        }
    }

    #[test]
    fn integer_time_writes_plain_seconds() {
        let mut enc = Encoder::new(formats()[0].clone(), TimeFormat::Integer);
        let mut out = Vec::new();
        enc.entry(&rich_record(0), &mut out);
        assert_eq!(decode_entry(&out).0, M::from(1_763_000_000u64));
    }

    #[test]
    fn nested_headers_take_their_shortest_form() {
        let mut out = Vec::new();
        let mut stack = Vec::new();
        let mut w = MsgpackWriter::new(&mut out, &mut stack);
        w.begin_record();
        w.key("a");
        w.begin_array();
        for i in 0..20 {
            w.u64(i);
        }
        w.end_array();
        w.key("m");
        w.begin_map();
        w.end_map();
        w.end_record();
        let mut expected = Vec::new();
        let v = M::Map(vec![
            ("a".into(), M::Array((0..20u64).map(M::from).collect())),
            ("m".into(), M::Map(vec![])),
        ]);
        rmpv::encode::write_value(&mut expected, &v).unwrap();
        assert_eq!(out, expected);
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = M> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(M::Nil),
            any::<bool>().prop_map(M::from),
            any::<u64>().prop_map(M::from),
            any::<i64>().prop_map(M::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(M::F64),
            ".{0,40}".prop_map(|s: String| M::from(s)),
            (0usize..70_000).prop_map(|n| M::from("k".repeat(n))),
        ];
        leaf.prop_recursive(3, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(M::Array),
                proptest::collection::vec(("[a-z]{0,5}", inner), 0..20).prop_map(|kv| {
                    M::Map(
                        kv.into_iter()
                            .map(|(k, v): (String, M)| (M::from(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn emit_value(v: &M, w: &mut MsgpackWriter<'_>) {
        match v {
            M::Nil => w.null(),
            M::Boolean(b) => w.bool(*b),
            M::Integer(i) => match i.as_u64() {
                Some(u) => w.u64(u),
                None => w.i64(i.as_i64().unwrap()),
            },
            M::F64(f) => w.f64(*f),
            M::String(s) => w.str(s.as_str().unwrap()),
            M::Array(a) => {
                w.begin_array();
                a.iter().for_each(|x| emit_value(x, w));
                w.end_array();
            }
            M::Map(m) => {
                w.begin_map();
                for (k, x) in m {
                    w.key(k.as_str().unwrap());
                    emit_value(x, w);
                }
                w.end_map();
            }
            _ => unreachable!(),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn the_writer_produces_what_rmpv_produces(entries in proptest::collection::vec(("[a-z]{1,8}", arb_value()), 0..20)) {
            let mut out = Vec::new();
            let mut stack = Vec::new();
            let mut w = MsgpackWriter::new(&mut out, &mut stack);
            w.begin_record();
            for (k, v) in &entries {
                w.key(k);
                emit_value(v, &mut w);
            }
            w.end_record();
            let map = M::Map(entries.iter().map(|(k, v)| (M::from(k.as_str()), v.clone())).collect());
            let mut expected = Vec::new();
            rmpv::encode::write_value(&mut expected, &map).unwrap();
            proptest::prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn messages_are_packed_forward_with_size_chunk_and_optional_gzip() {
        let format = formats()[0].clone();
        let mut enc = Encoder::new(format, TimeFormat::EventTime);
        for gzip in [false, true] {
            let mut out = Vec::new();
            let at = open_message(&mut out, "svc.app");
            enc.entry(&rich_record(3), &mut out);
            enc.entry(&rich_record(4), &mut out);
            let entries = out[at..].to_vec();
            let chunk = chunk_id(&[7; 16], "svc.app", id(0, 10), id(0, 11), 2);
            close_message(&mut out, at, 2, Some(&chunk), gzip, &mut Vec::new());
            let v = rmpv::decode::read_value(&mut &out[..]).unwrap();
            let a = v.as_array().unwrap();
            assert_eq!(a[0].as_str(), Some("svc.app"));
            let payload = match &a[1] {
                M::Binary(b) => b.clone(),
                other => panic!("{other:?}"),
            };
            let payload = if gzip {
                let mut d = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&payload[..]), &mut d)
                    .unwrap();
                d
            } else {
                payload
            };
            assert_eq!(payload, entries);
            let opt = a[2].as_map().unwrap();
            let get = |k: &str| {
                opt.iter()
                    .find(|(kk, _)| kk.as_str() == Some(k))
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(get("size"), Some(M::from(2)));
            assert_eq!(get("chunk"), Some(M::from(chunk.as_str())));
            assert_eq!(get("compressed"), gzip.then(|| M::from("gzip")));
            assert!(out.len() <= at + entries.len() + message_overhead(0) + 32 || gzip);
        }
    }

    #[test]
    fn chunk_ids_are_stable_per_records_and_differ_otherwise() {
        let a = chunk_id(&[1; 16], "t", id(0, 1), id(0, 5), 5);
        assert_eq!(a, chunk_id(&[1; 16], "t", id(0, 1), id(0, 5), 5));
        assert_eq!(a.len(), 24);
        assert_ne!(a, chunk_id(&[2; 16], "t", id(0, 1), id(0, 5), 5));
        assert_ne!(a, chunk_id(&[1; 16], "u", id(0, 1), id(0, 5), 5));
        assert_ne!(a, chunk_id(&[1; 16], "t", id(0, 1), id(0, 6), 6));
    }

    #[test]
    fn records_with_an_identity_keep_their_chunk_id_whatever_the_salt() {
        // A replay after a restart: another encoder (salt), the same records.
        let a = chunk_id(&[1; 16], "t", id(9, 1), id(9, 5), 5);
        assert_eq!(a, chunk_id(&[2; 16], "t", id(9, 1), id(9, 5), 5));
        assert_ne!(a, chunk_id(&[1; 16], "t", id(8, 1), id(8, 5), 5));
    }

    fn id(origin: u64, seq: u64) -> RecordId {
        RecordId { origin, seq }
    }
}

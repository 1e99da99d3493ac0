//! A [`Record`] as bytes on disk, and back: every part a sink may write (time, level, target,
//! module, file, line, message, thread, fields, error chains, the span chain, truncation and
//! the record's [`RecordId`]).
//!
//! Why a hand-written format rather than serde: a record points into its own text arena by
//! range, so its arena is written once as one string and the ranges as numbers; decoding is
//! one allocation for the arena and one for the fields, as on capture. Integers are LEB128
//! varints. Decoding checks every range against its arena, so a record that passed the
//! segment checksum but came from a different version can never slice out of bounds: it is
//! a [`DecodeError`], counted as corrupt. The same holds for every number: a time, a line or a
//! length that no encoder writes is an error, never an overflow (a panic there would stop the
//! destination at every start, since replay runs before anything is sent).
//!
//! Field and span names are `&'static str` in memory (they come from callsites). A decoded
//! name is interned: leaked once per distinct name and reused, capped at [`MAX_NAMES`] so
//! that a folder full of odd names cannot grow memory without end (past the cap a name reads
//! as `"_"`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tracing_core::Level;

use crate::record::{Field, Fields, Record, RecordId, SpanNode, Str, TextRange, Value};

/// First byte of every encoded record; a different version is not decoded.
const VERSION: u8 = 1;
/// Distinct names kept by the interner.
pub const MAX_NAMES: usize = 10_000;
/// Deepest span chain decoded (a longer one is a [`DecodeError`]).
const MAX_SPANS: usize = 1024;
/// Latest time decoded: 9999-12-31T23:59:59Z, the last second RFC 3339 can write (and every
/// sink's time arithmetic stays far from overflowing).
pub const MAX_SECS: u64 = 253_402_300_799;

/// Why bytes that passed their checksum are still not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the record does.
    #[error("the record ends early")]
    Short,
    /// Written by another version of the codec.
    #[error("unknown record version {0}")]
    Version(u8),
    /// A value that no encoder writes (a level, a value tag, a range outside its text).
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

const F_MODULE: u8 = 1;
const F_FILE: u8 = 2;
const F_LINE: u8 = 4;
const F_MESSAGE: u8 = 8;
const F_THREAD: u8 = 16;
const F_TRUNCATED: u8 = 32;

/// Appends `record` to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let (secs, nanos) = match record.time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_nanos()),
        Err(_) => (0, 0),
    };
    let flags = (record.module.is_some() as u8 * F_MODULE)
        | (record.file.is_some() as u8 * F_FILE)
        | (record.line.is_some() as u8 * F_LINE)
        | (record.message.is_some() as u8 * F_MESSAGE)
        | (record.thread.is_some() as u8 * F_THREAD)
        | (record.truncated() as u8 * F_TRUNCATED);
    out.push(VERSION);
    out.push(level_code(record.level));
    out.push(flags);
    varint(out, secs);
    varint(out, nanos.into());
    varint(out, record.id.origin);
    varint(out, record.id.seq);
    varint(out, record.thread_id);
    string(out, record.target());
    if let Some(m) = record.module() {
        string(out, m);
    }
    if let Some(f) = record.file() {
        string(out, f);
    }
    if let Some(l) = record.line {
        varint(out, l.into());
    }
    if let Some(t) = &record.thread {
        string(out, t);
    }
    if let Some(m) = record.message {
        range(out, m);
    }
    fields(out, &record.fields);
    let spans: Vec<&SpanNode> = record.span.iter().flat_map(|s| s.ancestry()).collect();
    varint(out, spans.len() as u64);
    for span in spans {
        string(out, span.name);
        out.push(span.fields.truncated() as u8);
        fields(out, &span.fields);
    }
}

/// Reads one record written by [`encode`]; `bytes` must hold exactly that record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.byte()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let level = level_from(r.byte()?)?;
    let flags = r.byte()?;
    let secs = Some(r.varint()?)
        .filter(|s| *s <= MAX_SECS)
        .ok_or(DecodeError::Malformed("time"))?;
    let nanos = u32::try_from(r.varint()?)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or(DecodeError::Malformed("nanoseconds"))?;
    let id = RecordId {
        origin: r.varint()?,
        seq: r.varint()?,
    };
    let thread_id = r.varint()?;
    // Target, module and file were `&'static` or arena strings; they come back as text kept
    // after the fields' arena, so the fields' ranges stay valid.
    let target = r.str()?;
    let module = (flags & F_MODULE != 0).then(|| r.str()).transpose()?;
    let file = (flags & F_FILE != 0).then(|| r.str()).transpose()?;
    let line = (flags & F_LINE != 0)
        .then(|| {
            let l = r.varint()?;
            u32::try_from(l).map_err(|_| DecodeError::Malformed("line"))
        })
        .transpose()?;
    let thread = (flags & F_THREAD != 0)
        .then(|| r.str().map(Arc::<str>::from))
        .transpose()?;
    let message = (flags & F_MESSAGE != 0).then(|| r.range()).transpose()?;
    let (mut text, list) = r.fields()?;
    let message = match message {
        Some((s, e)) => {
            Some(TextRange::checked(&text, s, e).ok_or(DecodeError::Malformed("message range"))?)
        }
        None => None,
    };
    let mut own = |s: &str| {
        let start = u32::try_from(text.len()).map_err(|_| DecodeError::Malformed("text length"))?;
        text.push_str(s);
        let end = u32::try_from(text.len()).map_err(|_| DecodeError::Malformed("text length"))?;
        TextRange::checked(&text, start, end)
            .map(Str::Owned)
            .ok_or(DecodeError::Malformed("text length"))
    };
    let target = own(target)?;
    let module = module.map(&mut own).transpose()?;
    let file = file.map(&mut own).transpose()?;
    let span = r.spans()?;
    if r.at != bytes.len() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    let mut record = Record::new(level, target, 0, 0);
    record.time = SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or(DecodeError::Malformed("time"))?;
    record.module = module;
    record.file = file;
    record.line = line;
    record.message = message;
    record.thread = thread;
    record.thread_id = thread_id;
    record.span = span;
    record.id = id;
    record.fields = Fields::from_parts(text, list, flags & F_TRUNCATED != 0);
    Ok(record)
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

fn level_from(code: u8) -> Result<Level, DecodeError> {
    Ok(match code {
        0 => Level::TRACE,
        1 => Level::DEBUG,
        2 => Level::INFO,
        3 => Level::WARN,
        4 => Level::ERROR,
        _ => return Err(DecodeError::Malformed("level")),
    })
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn range(out: &mut Vec<u8>, r: TextRange) {
    let (s, e) = r.bounds();
    varint(out, s.into());
    varint(out, (e - s).into());
}

fn fields(out: &mut Vec<u8>, f: &Fields) {
    string(out, f.arena());
    varint(out, f.as_slice().len() as u64);
    for field in f.iter() {
        string(out, field.name);
        match field.value {
            Value::Bool(b) => out.extend_from_slice(&[0, b as u8]),
            Value::I64(v) => {
                out.push(1);
                varint(out, ((v << 1) ^ (v >> 63)) as u64);
            }
            Value::U64(v) => {
                out.push(2);
                varint(out, v);
            }
            Value::F64(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Value::Str(r) => {
                out.push(4);
                range(out, r);
            }
            Value::Error { message, kind } => {
                out.push(5);
                range(out, message);
                range(out, kind);
            }
            Value::Source(r) => {
                out.push(6);
                range(out, r);
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Short)?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError::Short)?;
        let end = self.at.checked_add(n).ok_or(DecodeError::Short)?;
        let s = self.bytes.get(self.at..end).ok_or(DecodeError::Short)?;
        self.at = end;
        Ok(s)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.varint()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Malformed("utf-8"))
    }

    fn range(&mut self) -> Result<(u32, u32), DecodeError> {
        let start = u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("range"))?;
        let len = u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("range"))?;
        let end = start
            .checked_add(len)
            .ok_or(DecodeError::Malformed("range"))?;
        Ok((start, end))
    }

    fn checked_range(&mut self, text: &str) -> Result<TextRange, DecodeError> {
        let (s, e) = self.range()?;
        TextRange::checked(text, s, e).ok_or(DecodeError::Malformed("range outside its text"))
    }

    fn fields(&mut self) -> Result<(String, Vec<Field>), DecodeError> {
        let text = self.str()?.to_owned();
        let n = self.varint()?;
        // Each field takes at least two bytes: a count larger than what is left is corrupt,
        // and must not reserve memory.
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(DecodeError::Short);
        }
        let mut list = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name = intern(self.str()?);
            let value = match self.byte()? {
                0 => Value::Bool(self.byte()? != 0),
                1 => {
                    let z = self.varint()?;
                    Value::I64((z >> 1) as i64 ^ -((z & 1) as i64))
                }
                2 => Value::U64(self.varint()?),
                3 => {
                    let b: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
                    Value::F64(f64::from_bits(u64::from_le_bytes(b)))
                }
                4 => Value::Str(self.checked_range(&text)?),
                5 => Value::Error {
                    message: self.checked_range(&text)?,
                    kind: self.checked_range(&text)?,
                },
                6 => Value::Source(self.checked_range(&text)?),
                _ => return Err(DecodeError::Malformed("value tag")),
            };
            list.push(Field { name, value });
        }
        Ok((text, list))
    }

    fn spans(&mut self) -> Result<Option<Arc<SpanNode>>, DecodeError> {
        let n = self.varint()?;
        if n > MAX_SPANS as u64 {
            return Err(DecodeError::Malformed("span depth"));
        }
        let mut chain = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name = intern(self.str()?);
            let truncated = self.byte()? != 0;
            let (text, list) = self.fields()?;
            chain.push((name, Fields::from_parts(text, list, truncated)));
        }
        // Written innermost first; linked outermost first.
        let mut parent = None;
        for (name, fields) in chain.into_iter().rev() {
            parent = Some(Arc::new(SpanNode::new(name, fields, parent)));
        }
        Ok(parent)
    }
}

static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// Names this thread interned last: a replay decodes the same few names over and over, and a
/// short scan beats the global lock and hash.
const RECENT: usize = 32;

thread_local! {
    static RECENT_NAMES: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The `'static` copy of a decoded field or span name.
fn intern(name: &str) -> &'static str {
    RECENT_NAMES.with(|recent| {
        let mut recent = recent.borrow_mut();
        if let Some(n) = recent.iter().find(|n| **n == name) {
            return *n;
        }
        let n = intern_global(name);
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push(n);
        n
    })
}

fn intern_global(name: &str) -> &'static str {
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(n) = names.get(name) {
        return n;
    }
    if names.len() >= MAX_NAMES {
        return "_";
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rich() -> Record {
        let mut r = Record::new(Level::WARN, Str::Static("app::db"), 1 << 20, 4);
        r.module = Some(Str::Static("app::db"));
        r.file = Some(Str::Static("src/db.rs"));
        r.line = Some(42);
        r.thread = Some(Arc::from("worker-1"));
        r.thread_id = 7;
        r.id = RecordId {
            origin: u64::MAX,
            seq: 12345,
        };
        r.message = Some(r.fields.push_str("query failed ✓"));
        let s = r.fields.push_str("a@b.c");
        r.fields.push("user", Value::Str(s));
        r.fields.push("n", Value::I64(-5));
        r.fields.push("big", Value::U64(u64::MAX));
        r.fields.push("ratio", Value::F64(0.25));
        r.fields.push("ok", Value::Bool(true));
        let err = std::io::Error::other("disk on fire");
        r.fields.push_error("error", &err);
        let mut outer = Fields::with_limit(1024, 1);
        let v = outer.push_str("req-1");
        outer.push("request", Value::Str(v));
        let outer = Arc::new(SpanNode::new("http", outer, None));
        let mut inner = Fields::with_limit(1024, 1);
        inner.push("attempt", Value::U64(2));
        r.span = Some(Arc::new(SpanNode::new("query", inner, Some(outer))));
        r
    }

    fn json(r: &Record) -> String {
        let f = crate::Format::builder()
            .fields("timestamp,level,target,message,module,file,line,spans,thread")
            .unwrap()
            .build();
        let mut out = Vec::new();
        f.write_json(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_decoded_record_prints_exactly_like_the_original() {
        let r = rich();
        let mut bytes = Vec::new();
        encode(&r, &mut bytes);
        let back = decode(&bytes).unwrap();
        assert_eq!(json(&back), json(&r));
        assert_eq!(back.id, r.id);
        assert_eq!(back.time, r.time);
        assert_eq!(back.thread_id, 7);
        assert_eq!(back.span.as_ref().unwrap().ancestry().count(), 2);
    }

    /// `rich()` encoded with its seconds replaced by `secs` (the varint after the first three
    /// bytes).
    fn with_secs(secs: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(&rich(), &mut bytes);
        let len = bytes[3..].iter().position(|b| *b < 0x80).unwrap() + 1;
        let mut v = Vec::new();
        varint(&mut v, secs);
        bytes.splice(3..3 + len, v);
        bytes
    }

    #[test]
    fn a_time_no_encoder_writes_is_an_error_not_a_panic() {
        for secs in [MAX_SECS + 1, u64::MAX / 2, u64::MAX] {
            assert_eq!(
                decode(&with_secs(secs)).unwrap_err(),
                DecodeError::Malformed("time"),
                "{secs}"
            );
        }
        let last = decode(&with_secs(MAX_SECS)).unwrap();
        assert!(
            json(&last).contains("9999-12-31T23:59:59"),
            "{}",
            json(&last)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any bytes at all (as if their checksum held): a record or an error, never a panic,
        /// and a decoded record prints.
        #[test]
        fn arbitrary_bytes_decode_to_a_record_or_an_error(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            if let Ok(r) = decode(&bytes) {
                json(&r);
            }
        }

        /// A valid record with any one varint-sized value spliced in anywhere: never a panic.
        #[test]
        fn a_valid_record_with_any_value_spliced_in_never_panics(
            at in proptest::prelude::any::<proptest::sample::Index>(),
            value in proptest::prelude::any::<u64>(),
            cut in 0usize..12,
        ) {
            let mut bytes = Vec::new();
            encode(&rich(), &mut bytes);
            let at = at.index(bytes.len());
            let mut v = Vec::new();
            varint(&mut v, value);
            let end = (at + cut).min(bytes.len());
            bytes.splice(at..end, v);
            if let Ok(r) = decode(&bytes) {
                json(&r);
            }
        }
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_an_error_or_a_record_never_a_panic() {
        let mut bytes = Vec::new();
        encode(&rich(), &mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            if let Ok(r) = decode(&b) {
                json(&r);
            }
        }
    }
}

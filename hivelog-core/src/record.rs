//! The captured form of one event: what the caller thread builds once and every output reads.
//!
//! A [`Record`] is built with two allocations at most (one string arena, one field vector):
//! every string value of the event lives in `text` and fields point into it by range. Its
//! heap size is known exactly ([`Record::size`]), which is what the pipelines' byte budgets count.
//!
//! Strings are capped while they are captured: once `text` reaches the configured maximum
//! (`HIVELOG_MAX_EVENT_BYTES`, default 1 MiB) further text is cut at a UTF-8 boundary and the
//! record is marked [`Record::truncated`]. A 10 MB value therefore never enters a queue.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tracing_core::Level;

use crate::trace::TraceContext;

/// A range of bytes inside a record's (or span's) text arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextRange {
    start: u32,
    end: u32,
}

impl TextRange {
    /// The range's start and end offsets (for the spill codec).
    pub(crate) fn bounds(self) -> (u32, u32) {
        (self.start, self.end)
    }

    /// A range of `text`, if it lies on its char boundaries (the spill codec's check, so that a
    /// decoded record can never slice its arena out of bounds).
    pub(crate) fn checked(text: &str, start: u32, end: u32) -> Option<TextRange> {
        let (s, e) = (start as usize, end as usize);
        (s <= e && e <= text.len() && text.is_char_boundary(s) && text.is_char_boundary(e))
            .then_some(TextRange { start, end })
    }
}

/// A record's identity, fixed the first time a pipeline accepts it and kept when it is spilled
/// to disk and replayed by a later process: what sinks derive idempotent ids from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// A random number drawn once per pipeline start (0: not yet assigned).
    pub origin: u64,
    /// The record's sequence number in that pipeline.
    pub seq: u64,
}

/// A string that is either static (metadata) or stored in the record's arena.
#[derive(Clone, Copy, Debug)]
pub enum Str {
    /// A `'static` string, such as a callsite's target.
    Static(&'static str),
    /// A range of the owning arena.
    Owned(TextRange),
}

/// One field value, with its JSON type preserved.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float; NaN and infinities are written as `null` in JSON.
    F64(f64),
    /// A string (`%` and `?` values end up here too).
    Str(TextRange),
    /// An error recorded as `&dyn Error`: its `Display` and a type name guessed from its `Debug`.
    /// The error's sources follow it as [`Value::Source`] fields with the same name.
    Error {
        /// The error's `Display`.
        message: TextRange,
        /// The leading identifier of its `Debug` output (`ParseIntError`), possibly empty.
        kind: TextRange,
    },
    /// One entry of the source chain of the preceding [`Value::Error`].
    Source(TextRange),
}

/// A named field value.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The field's name as written in the macro (`user`, `error`, `http.status`).
    pub name: &'static str,
    /// The value.
    pub value: Value,
}

/// Text and fields, the storage shared by events and spans.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    text: String,
    fields: Vec<Field>,
    max_text: usize,
    truncated: bool,
}

impl Fields {
    /// Empty storage that keeps at most `max_text` bytes of string data.
    pub fn with_limit(max_text: usize, capacity: usize) -> Self {
        Fields {
            text: String::new(),
            fields: Vec::with_capacity(capacity),
            max_text,
            truncated: false,
        }
    }

    /// The fields in the order they were recorded.
    pub fn iter(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter()
    }

    /// The fields as a slice.
    pub fn as_slice(&self) -> &[Field] {
        &self.fields
    }

    /// The string a range points to.
    #[inline]
    pub fn text(&self, range: TextRange) -> &str {
        // Ranges are only created by `push_*` on char boundaries of this arena.
        &self.text[range.start as usize..range.end as usize]
    }

    /// Resolves a [`Str`].
    #[inline]
    pub fn str(&self, s: Str) -> &str {
        match s {
            Str::Static(s) => s,
            Str::Owned(r) => self.text(r),
        }
    }

    /// Whether any string was cut to respect the size limit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Bytes of string data held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The whole text arena (for the spill codec).
    pub(crate) fn arena(&self) -> &str {
        &self.text
    }

    /// Storage rebuilt from its parts (for the spill codec; ranges were checked against `text`).
    pub(crate) fn from_parts(text: String, fields: Vec<Field>, truncated: bool) -> Self {
        Fields {
            max_text: text.len(),
            text,
            fields,
            truncated,
        }
    }

    /// Makes this storage a copy of `src`, keeping its own allocations when they are large
    /// enough.
    pub fn copy_from(&mut self, src: &Fields) {
        self.text.clear();
        self.text.push_str(&src.text);
        self.fields.clear();
        self.fields.extend_from_slice(&src.fields);
        self.max_text = src.max_text;
        self.truncated = src.truncated;
    }

    /// Empties the storage, keeping its allocations (for reuse on the caller thread).
    pub fn clear(&mut self) {
        self.text.clear();
        self.fields.clear();
        self.truncated = false;
    }

    /// Where the text arena's and the field vector's buffers start, and their capacities in
    /// bytes: what the next capture into this storage writes (for a prefetch).
    pub fn buffers(&self) -> [(*const u8, usize); 2] {
        [
            (self.text.as_ptr(), self.text.capacity()),
            (
                self.fields.as_ptr().cast(),
                self.fields.capacity() * std::mem::size_of::<Field>(),
            ),
        ]
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        self.text.capacity() + self.fields.capacity() * std::mem::size_of::<Field>()
    }

    /// Stores a string, cut to the remaining budget.
    pub fn push_str(&mut self, s: &str) -> TextRange {
        let start = self.text.len();
        if self.text.capacity() == 0 {
            // One allocation for a typical event's strings instead of several reallocations.
            self.text.reserve(s.len().max(96).min(self.max_text));
        }
        let room = self.max_text.saturating_sub(start);
        if s.len() <= room {
            self.text.push_str(s);
        } else {
            self.truncated = true;
            self.text.push_str(&s[..floor_char_boundary(s, room)]);
        }
        self.range_from(start)
    }

    /// Stores the `Display`/`Debug` output of a value, cut to the remaining budget
    /// without ever materializing more than the budget.
    pub fn push_fmt(&mut self, args: fmt::Arguments<'_>) -> TextRange {
        let start = self.text.len();
        if let Some(s) = args.as_str() {
            return self.push_str(s);
        }
        if self.text.capacity() == 0 {
            self.text.reserve(96.min(self.max_text));
        }
        let mut w = Capped {
            out: &mut self.text,
            limit: self.max_text,
            cut: false,
        };
        let _ = w.write_fmt(args);
        if w.cut {
            self.truncated = true;
        }
        self.range_from(start)
    }

    fn range_from(&self, start: usize) -> TextRange {
        // The arena never exceeds `max_text` (≤ u32::MAX by construction in `Format`).
        TextRange {
            start: start as u32,
            end: self.text.len() as u32,
        }
    }

    /// Keeps only the fields for which `keep` returns true, in order (the text stays).
    pub fn retain(&mut self, keep: impl FnMut(&Field) -> bool) {
        self.fields.retain(keep);
    }

    /// Appends a field.
    pub fn push(&mut self, name: &'static str, value: Value) {
        self.fields.push(Field { name, value });
    }

    /// Replaces the value of `name` if present (span `record`), else appends it. An error's
    /// source entries go with it.
    pub fn set(&mut self, name: &'static str, value: Value) {
        match self.fields.iter().position(|f| f.name == name) {
            Some(i) => {
                self.fields[i].value = value;
                let mut at = 0;
                self.fields.retain(|f| {
                    at += 1;
                    at <= i + 1 || f.name != name
                });
            }
            None => self.push(name, value),
        }
    }

    /// Like [`Fields::set`] for an error and its source chain (span fields and `record`).
    pub fn set_error(&mut self, name: &'static str, err: &(dyn std::error::Error + 'static)) {
        self.fields.retain(|f| f.name != name);
        self.push_error(name, err);
    }

    /// Records an error and its source chain.
    pub fn push_error(&mut self, name: &'static str, err: &(dyn std::error::Error + 'static)) {
        let message = self.push_fmt(format_args!("{err}"));
        let kind = self.push_error_kind(err);
        self.push(name, Value::Error { message, kind });
        let mut source = err.source();
        let mut depth = 0;
        while let Some(s) = source {
            // A cyclic or absurdly long chain must not hang the caller.
            if depth == 64 {
                break;
            }
            let r = self.push_fmt(format_args!("{s}"));
            self.push(name, Value::Source(r));
            source = s.source();
            depth += 1;
        }
    }

    fn push_error_kind(&mut self, err: &dyn std::error::Error) -> TextRange {
        // `Debug` of most error types starts with the type's name (`ParseIntError { .. }`);
        // keep just that identifier, capped so a huge Debug output costs nothing.
        let mut buf = String::new();
        let mut w = Capped {
            out: &mut buf,
            limit: 64,
            cut: false,
        };
        let _ = write!(w, "{err:?}");
        let ident: &str = {
            let end = buf
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(buf.len());
            let ident = &buf[..end];
            if ident.starts_with(|c: char| c.is_ascii_uppercase()) {
                ident
            } else {
                ""
            }
        };
        self.push_str(ident)
    }
}

/// `fmt::Write` that stops storing at `limit` bytes of the target string.
struct Capped<'a> {
    out: &'a mut String,
    limit: usize,
    cut: bool,
}

impl fmt::Write for Capped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.out.len());
        if s.len() <= room {
            self.out.push_str(s);
        } else {
            self.cut = true;
            self.out.push_str(&s[..floor_char_boundary(s, room)]);
        }
        Ok(())
    }
}

/// The largest index `<= i` that is a char boundary of `s`.
pub fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A span's trace context with its ids already in hex: they are written on every line of the
/// span, so they are encoded once, when the span joins the trace.
#[derive(Clone, Debug)]
pub struct SpanTrace {
    context: TraceContext,
    hex: [u8; 48],
}

impl SpanTrace {
    /// Encodes `context`'s ids.
    pub fn new(context: TraceContext) -> Self {
        let mut hex = [0u8; 48];
        let (t, s) = hex.split_at_mut(32);
        context.trace_id.encode(t.try_into().expect("32 bytes"));
        context.span_id.encode(s.try_into().expect("16 bytes"));
        SpanTrace { context, hex }
    }

    /// The trace context.
    pub fn context(&self) -> &TraceContext {
        &self.context
    }

    /// The trace id, 32 lowercase hex digits.
    #[inline]
    pub fn trace_id_hex(&self) -> &str {
        std::str::from_utf8(&self.hex[..32]).unwrap_or_default()
    }

    /// The span id, 16 lowercase hex digits.
    #[inline]
    pub fn span_id_hex(&self) -> &str {
        std::str::from_utf8(&self.hex[32..]).unwrap_or_default()
    }
}

/// A span's name and fields, linked to its parent: events keep only the innermost one.
///
/// Aligned to a cache line so that, inside an `Arc`, the reference counts (which every event in
/// the span writes on the logging thread) do not share a line with the name and fields (which
/// the writer thread reads): otherwise each event would fetch the line back from the writer's
/// core.
#[derive(Debug)]
#[repr(align(64))]
pub struct SpanNode {
    /// The span's name (for `#[instrument]`, the function's name).
    pub name: &'static str,
    /// The span's fields.
    pub fields: Fields,
    /// The enclosing span.
    pub parent: Option<Arc<SpanNode>>,
    /// The trace this span belongs to, with its own span id (see [`crate::trace`]).
    pub trace: Option<SpanTrace>,
    /// Set once a newer node has taken this one's place on its span (`Span::record`).
    replaced: AtomicBool,
}

impl SpanNode {
    /// A span's node.
    pub fn new(name: &'static str, fields: Fields, parent: Option<Arc<SpanNode>>) -> Self {
        SpanNode {
            name,
            fields,
            parent,
            trace: None,
            replaced: AtomicBool::new(false),
        }
    }

    /// The same node with a trace context.
    pub fn with_trace(mut self, trace: Option<SpanTrace>) -> Self {
        self.trace = trace;
        self
    }

    /// Whether a newer node has taken this one's place on its span: a chain of nodes that
    /// holds a replaced one no longer shows that span's current fields.
    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    /// Marks this node as no longer its span's current one.
    pub fn mark_replaced(&self) {
        self.replaced.store(true, Ordering::Release);
    }

    /// This span and its ancestors, innermost first.
    pub fn ancestry(self: &Arc<Self>) -> impl Iterator<Item = &SpanNode> {
        let mut next: Option<&SpanNode> = Some(self);
        std::iter::from_fn(move || {
            let cur = next?;
            next = cur.parent.as_deref();
            Some(cur)
        })
    }
}

impl Drop for SpanNode {
    // Iterative, so that dropping a very deep chain of spans cannot overflow the stack.
    fn drop(&mut self) {
        let mut parent = self.parent.take();
        while let Some(p) = parent {
            match Arc::try_unwrap(p) {
                Ok(mut node) => parent = node.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// One captured event.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the event was captured.
    pub time: SystemTime,
    /// Its level.
    pub level: Level,
    /// Its target (the module path by default; the logger name for `log` records).
    pub target: Str,
    /// Its module path.
    pub module: Option<Str>,
    /// Its source file.
    pub file: Option<Str>,
    /// Its source line.
    pub line: Option<u32>,
    /// The `message` field.
    pub message: Option<TextRange>,
    /// The capturing thread's name, when the format asks for it.
    pub thread: Option<Arc<str>>,
    /// A small per-process number for the capturing thread, when the format asks for it.
    pub thread_id: u64,
    /// The innermost enclosing span.
    pub span: Option<Arc<SpanNode>>,
    /// Per-pipeline sequence number, set on enqueue; stable across retries (the queue's order).
    pub seq: u64,
    /// The record's identity, set on its first enqueue and kept across retries, spills and
    /// restarts; sinks derive idempotent ids (Elasticsearch `_id`) from it.
    pub id: RecordId,
    /// The event's own fields (all but `message`).
    pub fields: Fields,
}

impl Record {
    /// An empty record at the current time; see [`crate::capture`] for building one from an event.
    pub fn new(level: Level, target: Str, max_text: usize, capacity: usize) -> Self {
        Record {
            time: SystemTime::now(),
            level,
            target,
            module: None,
            file: None,
            line: None,
            message: None,
            thread: None,
            thread_id: 0,
            span: None,
            seq: 0,
            id: RecordId::default(),
            fields: Fields::with_limit(max_text, capacity),
        }
    }

    /// Makes this record a fresh, empty one at the current time, keeping its allocations.
    pub fn reset(&mut self, level: Level, target: Str, max_text: usize) {
        self.time = SystemTime::now();
        self.level = level;
        self.target = target;
        self.module = None;
        self.file = None;
        self.line = None;
        self.message = None;
        self.thread = None;
        self.thread_id = 0;
        self.span = None;
        self.seq = 0;
        self.id = RecordId::default();
        self.fields.clear();
        self.fields.max_text = max_text;
    }

    /// Makes this record a copy of `src` (span and thread references cloned), keeping its own
    /// allocations: what `clone` does, without allocating into a record already used.
    pub fn copy_from(&mut self, src: &Record) {
        self.time = src.time;
        self.level = src.level;
        self.target = src.target;
        self.module = src.module;
        self.file = src.file;
        self.line = src.line;
        self.message = src.message;
        self.thread.clone_from(&src.thread);
        self.thread_id = src.thread_id;
        self.span.clone_from(&src.span);
        self.seq = src.seq;
        self.id = src.id;
        self.fields.copy_from(&src.fields);
    }

    /// Bytes this record holds in memory (the struct and its own heap); what budgets count.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Record>() + self.fields.heap_size()
    }

    /// The trace of the innermost enclosing span, when it belongs to one.
    #[inline]
    pub fn trace(&self) -> Option<&SpanTrace> {
        self.span.as_ref().and_then(|s| s.trace.as_ref())
    }

    /// The message text, or `""`.
    pub fn message(&self) -> &str {
        self.message.map(|r| self.fields.text(r)).unwrap_or("")
    }

    /// The target.
    pub fn target(&self) -> &str {
        self.fields.str(self.target)
    }

    /// The module path.
    pub fn module(&self) -> Option<&str> {
        self.module.map(|s| self.fields.str(s))
    }

    /// The source file.
    pub fn file(&self) -> Option<&str> {
        self.file.map(|s| self.fields.str(s))
    }

    /// Whether some text was cut to respect `HIVELOG_MAX_EVENT_BYTES`.
    pub fn truncated(&self) -> bool {
        self.fields.truncated()
    }

    /// Seconds and nanoseconds since the Unix epoch (0 for times before it).
    pub fn unix_time(&self) -> (u64, u32) {
        match self.time.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (d.as_secs(), d.subsec_nanos()),
            Err(_) => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str, fields: usize) -> Record {
        let mut r = Record::new(Level::WARN, Str::Static("app"), 1 << 20, fields);
        let m = r.fields.push_str(text);
        r.message = Some(m);
        for i in 0..fields {
            let v = r.fields.push_str(&format!("{text}{i}"));
            r.fields.push("f", Value::Str(v));
        }
        r.thread = Some(Arc::from("worker"));
        r.span = Some(Arc::new(SpanNode::new("s", Fields::default(), None)));
        r.line = Some(7);
        r
    }

    #[test]
    fn a_copy_into_a_used_record_is_the_same_as_a_clone() {
        let src = record("short", 1);
        let mut dst = record(&"a much longer message".repeat(10), 5);
        dst.module = Some(Str::Static("other"));
        dst.fields.truncated = true;
        let capacity = dst.fields.heap_size();
        dst.copy_from(&src);
        assert_eq!(format!("{dst:?}"), format!("{:?}", src.clone()));
        assert_eq!(dst.message(), "short");
        assert_eq!(dst.fields.heap_size(), capacity, "no allocation");
        let span = src.span.as_ref().unwrap();
        assert_eq!(Arc::strong_count(span), 2, "the copy holds the span too");
    }
}

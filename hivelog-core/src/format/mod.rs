//! What a record looks like once written: the field mapping every output shares.
//!
//! Output order: basic fields (in `HIVELOG_FIELDS` order), extras, the event's own fields,
//! then the fields of the enclosing spans, innermost first, then `"truncated": true` when
//! some text was cut. A line inside a traced span (see [`crate::trace`]) carries `trace_id`
//! and `span_id` right after the extras (ECS: `trace.id`, `span.id`), unless
//! `HIVELOG_FIELDS` places them itself with the attrs `trace_id` and `span_id`; lines outside
//! any traced span carry no trace fields.
//!
//! Collisions: basic fields and extras own their names. An event or span field whose name is
//! already taken by one of them is written as `fields.<name>`, so it overwrites nothing and is
//! not lost. Between user fields, the event's own field wins over a span's field of the same
//! name, and an inner span's over an outer one's (like shadowed variables); the shadowed value
//! is not written.
//!
//! Errors recorded with `error = &e as &dyn Error` become `{"message", "type", "sources"}`
//! objects (`type` when it can be read from the error's `Debug`, `sources` when the chain is
//! not empty). With `HIVELOG_SCHEMA=ecs` the field named `error` becomes ECS's `error.type`,
//! `error.message` and `error.stack_trace` (the chain, one `Caused by:` line per source).

mod config;
pub mod emit;
pub mod metrics;
pub mod time;

pub use config::{hostname, FormatBuilder, FORMAT_VARS};
pub use emit::{Emit, JsonWriter, Key};
pub use metrics::MetricsConfig;
pub use time::TimestampFormat;

use crate::capture::CaptureOptions;
use crate::record::{Field, Record, SpanTrace, Value};

pub use crate::capture::DEFAULT_MAX_EVENT_BYTES;

/// The ECS version written in `ecs.version`.
pub const ECS_VERSION: &str = "8.11.0";

/// What a basic field is taken from (the right-hand side of `HIVELOG_FIELDS` pairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    /// The event's time, per `HIVELOG_TIMESTAMP`.
    Timestamp,
    /// `INFO`, `WARN`, ….
    Level,
    /// The target (`log` records: the logger name).
    Target,
    /// The message.
    Message,
    /// The module path.
    Module,
    /// The source file.
    File,
    /// The source line.
    Line,
    /// The innermost span's name (`#[instrument]`: the function).
    Span,
    /// The names of all enclosing spans, outermost first.
    Spans,
    /// The thread's name.
    Thread,
    /// A small per-process thread number.
    ThreadId,
    /// The process id.
    Pid,
    /// The host name.
    Hostname,
    /// The service name.
    Service,
    /// The trace id of the enclosing traced span, per `HIVELOG_TRACE_FORMAT`.
    TraceId,
    /// The innermost traced span's id (16 hex digits).
    SpanId,
    /// A constant (`ecs.version`).
    Const(&'static str),
}

/// How trace ids are written (`HIVELOG_TRACE_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TraceFormat {
    /// 32 lowercase hex digits, as in W3C `traceparent` and OpenTelemetry.
    #[default]
    W3c,
    /// X-Ray's `1-5759e988-bd862e3fe1be46a994272793`, which CloudWatch and X-Ray link to traces.
    Xray,
}

impl TraceFormat {
    /// The names accepted by `HIVELOG_TRACE_FORMAT`.
    pub const CHOICES: &'static [(&'static str, TraceFormat)] =
        &[("w3c", TraceFormat::W3c), ("xray", TraceFormat::Xray)];
}

impl Attr {
    /// The names accepted on the right of `HIVELOG_FIELDS` pairs.
    pub const NAMES: &'static [(&'static str, Attr)] = &[
        ("timestamp", Attr::Timestamp),
        ("level", Attr::Level),
        ("target", Attr::Target),
        ("message", Attr::Message),
        ("module", Attr::Module),
        ("file", Attr::File),
        ("line", Attr::Line),
        ("span", Attr::Span),
        ("spans", Attr::Spans),
        ("thread", Attr::Thread),
        ("thread_id", Attr::ThreadId),
        ("pid", Attr::Pid),
        ("hostname", Attr::Hostname),
        ("service", Attr::Service),
        ("trace_id", Attr::TraceId),
        ("span_id", Attr::SpanId),
    ];
}

/// The output schema (`HIVELOG_SCHEMA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Schema {
    /// Basic fields from `HIVELOG_FIELDS`.
    #[default]
    Default,
    /// Elastic Common Schema, per the ecs-logging spec.
    Ecs,
}

/// A static extra field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Extra {
    /// A string.
    Str(String),
    /// Any JSON value (from a JSON-object `HIVELOG_EXTRA`).
    Json(serde_json::Value),
}

/// The resolved field mapping, shared (in an `Arc`) by every output of the process.
#[derive(Debug)]
pub struct Format {
    basic: Vec<(Key, Attr)>,
    extras: Vec<(Key, Extra)>,
    schema: Schema,
    timestamp: TimestampFormat,
    redact: Vec<String>,
    service: String,
    hostname: String,
    pid: u32,
    max_event_bytes: usize,
    error_keys: [Key; 3],
    trace_format: TraceFormat,
    /// The trace fields written on traced lines that `HIVELOG_FIELDS` does not place itself.
    trace_keys: Vec<(Key, Attr)>,
    /// The first bytes of `trace_keys` (ASCII bit set), see [`Format::maybe_trace_key`].
    trace_key_starts: u128,
    /// The first bytes of every key hivelog writes itself (basic fields, extras, `truncated`,
    /// trace keys): a user field starting with another byte cannot collide, and is written
    /// without comparing names (the common case, on every field of every line).
    owned_key_starts: u128,
    /// `HIVELOG_METRICS=emf` (see [`metrics`]).
    metrics: Option<metrics::Metrics>,
}

/// `[redacted]`: what a redacted field's value is replaced with.
pub const REDACTED: &str = "[redacted]";

impl Format {
    /// A builder with the defaults (`HIVELOG_FIELDS=timestamp,level,target,message`).
    pub fn builder() -> FormatBuilder {
        FormatBuilder::default()
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The static extra fields (`HIVELOG_EXTRA` over the builder's), in order: what a
    /// destination with a resource of its own (OTLP) sends once per request, not per line.
    pub fn extras(&self) -> impl Iterator<Item = (&str, &Extra)> {
        self.extras.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The host name.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The schema.
    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// The basic fields, in order.
    pub fn basic(&self) -> impl Iterator<Item = (&str, Attr)> {
        self.basic.iter().map(|(k, a)| (k.as_str(), *a))
    }

    /// The trace fields written on traced lines besides the basic ones (`trace_id`, `span_id`
    /// unless `HIVELOG_FIELDS` places them).
    pub fn trace_fields(&self) -> impl Iterator<Item = (&str, Attr)> {
        self.trace_keys.iter().map(|(k, a)| (k.as_str(), *a))
    }

    /// Whether values of the field `name` are written as [`REDACTED`] (`HIVELOG_REDACT`).
    #[inline]
    pub fn is_redacted(&self, name: &str) -> bool {
        !self.redact.is_empty() && self.redact.iter().any(|n| n == name)
    }

    /// The most text one event may hold.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// What the capture must collect for this format.
    pub fn capture_options(&self) -> CaptureOptions {
        CaptureOptions {
            max_event_bytes: self.max_event_bytes,
            thread_name: self.basic.iter().any(|(_, a)| *a == Attr::Thread),
            thread_id: self.basic.iter().any(|(_, a)| *a == Attr::ThreadId),
            span_cache: 0,
        }
    }

    /// Appends the record as one JSON object (no newline).
    pub fn write_json(&self, record: &Record, out: &mut Vec<u8>) {
        out.reserve(256 + record.fields.text_len());
        self.emit(record, &mut JsonWriter::new(out));
    }

    /// Walks the record through `e`: the single definition of what every output contains.
    pub fn emit<E: Emit>(&self, record: &Record, e: &mut E) {
        e.begin_record();
        for (key, attr) in &self.basic {
            self.emit_basic(record, key, *attr, e);
        }
        for (key, value) in &self.extras {
            e.key_static(key);
            match value {
                Extra::Str(s) => e.str(s),
                Extra::Json(v) => emit_json(v, e),
            }
        }
        if let Some(t) = record.trace() {
            for (key, attr) in &self.trace_keys {
                e.key_static(key);
                self.emit_trace(t, *attr, e);
            }
        }
        let own = record.fields.as_slice();
        // With metrics on, a line with `metric.*` fields notes its metrics as they are written.
        let mut storage;
        let mut found = match &self.metrics {
            Some(m) if metrics::any_metric_name(own) => {
                storage = metrics::Found::new(m, record);
                Some(&mut storage)
            }
            _ => None,
        };
        self.emit_fields(
            record,
            own,
            &record.fields,
            |_| false,
            found.as_deref_mut(),
            e,
        );
        self.emit_spans_fields(record, own, e);
        if record.truncated() {
            e.key("truncated");
            e.bool(true);
        }
        if let Some(found) = found {
            self.emit_aws(record, found, e);
        }
        e.end_record();
    }

    /// The fields of the enclosing spans, innermost first, those shadowed left out.
    fn emit_spans_fields<E: Emit>(&self, record: &Record, own: &[Field], e: &mut E) {
        if let Some(span) = &record.span {
            for (depth, node) in span.ancestry().enumerate() {
                let shadowed = |name: &str| {
                    own.iter().any(|f| f.name == name)
                        || span
                            .ancestry()
                            .take(depth)
                            .any(|inner| inner.fields.iter().any(|f| f.name == name))
                };
                self.emit_fields(
                    record,
                    node.fields.as_slice(),
                    &node.fields,
                    shadowed,
                    None,
                    e,
                );
            }
        }
    }

    fn emit_basic<E: Emit>(&self, r: &Record, key: &Key, attr: Attr, e: &mut E) {
        // ECS omits what is missing; the default schema keeps every configured key (null).
        let ecs = self.schema == Schema::Ecs;
        match attr {
            Attr::Timestamp => {
                e.key_static(key);
                self.emit_timestamp(r, e);
            }
            Attr::Level => {
                e.key_static(key);
                e.str(r.level.as_str());
            }
            Attr::Target => {
                e.key_static(key);
                e.str(r.target());
            }
            Attr::Message => {
                e.key_static(key);
                e.str(r.message());
            }
            Attr::Module => emit_optional(e, key, ecs, r.module(), |e, v| e.str(v)),
            Attr::File => emit_optional(e, key, ecs, r.file(), |e, v| e.str(v)),
            Attr::Line => emit_optional(e, key, ecs, r.line, |e, v| e.u64(u64::from(v))),
            Attr::Span => {
                let name = r.span.as_ref().map(|s| s.name);
                emit_optional(e, key, ecs, name, |e, v| e.str(v))
            }
            Attr::Spans => {
                e.key_static(key);
                emit_spans(r, e);
            }
            Attr::Thread => emit_optional(e, key, ecs, r.thread.as_deref(), |e, v| e.str(v)),
            Attr::ThreadId => {
                e.key_static(key);
                e.u64(r.thread_id);
            }
            Attr::Pid => {
                e.key_static(key);
                e.u64(u64::from(self.pid));
            }
            Attr::Hostname => {
                e.key_static(key);
                e.str(&self.hostname);
            }
            Attr::Service => {
                e.key_static(key);
                e.str(&self.service);
            }
            Attr::TraceId | Attr::SpanId => {
                emit_optional(e, key, ecs, r.trace(), |e: &mut E, t: &SpanTrace| {
                    self.emit_trace(t, attr, e)
                })
            }
            Attr::Const(v) => {
                e.key_static(key);
                e.str(v);
            }
        }
    }

    /// A trace field's value: hex digits, written without an escape scan.
    #[inline]
    fn emit_trace<E: Emit>(&self, t: &SpanTrace, attr: Attr, e: &mut E) {
        match (attr, self.trace_format) {
            (Attr::SpanId, _) => e.str_plain(t.span_id_hex()),
            (_, TraceFormat::W3c) => e.str_plain(t.trace_id_hex()),
            (_, TraceFormat::Xray) => e.str_plain(t.context().trace_id.encode_xray(&mut [0; 35])),
        }
    }

    /// An upper bound of the bytes the trace fields add to `r` in any encoding (for sinks that
    /// size records without encoding them).
    pub fn trace_bound(&self, r: &Record) -> usize {
        if r.trace().is_none() {
            return 0;
        }
        self.basic
            .iter()
            .chain(&self.trace_keys)
            .filter(|(_, a)| matches!(a, Attr::TraceId | Attr::SpanId))
            .map(|(k, _)| k.as_str().len() + 5 + 40)
            .sum()
    }

    /// The record's time in the configured [`TimestampFormat`].
    fn emit_timestamp<E: Emit>(&self, r: &Record, e: &mut E) {
        let (secs, nanos) = r.unix_time();
        match self.timestamp {
            TimestampFormat::Rfc3339Ms => e.rfc3339(secs, nanos, 3),
            TimestampFormat::Rfc3339Ns => e.rfc3339(secs, nanos, 9),
            TimestampFormat::EpochMs => e.u64(
                secs.saturating_mul(1000)
                    .saturating_add(u64::from(nanos / 1_000_000)),
            ),
            TimestampFormat::EpochNs => e.u64(
                secs.saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(nanos)),
            ),
        }
    }

    fn reserved(&self, name: &str) -> bool {
        self.basic.iter().any(|(k, _)| k.as_str() == name)
            || self.extras.iter().any(|(k, _)| k.as_str() == name)
    }

    fn emit_fields<E: Emit>(
        &self,
        r: &Record,
        fields: &[Field],
        store: &crate::record::Fields,
        shadowed: impl Fn(&str) -> bool,
        mut metrics: Option<&mut metrics::Found>,
        e: &mut E,
    ) {
        let mut i = 0;
        while i < fields.len() {
            let f = &fields[i];
            // An error's sources follow it; hand them over together.
            let mut end = i + 1;
            if matches!(f.value, Value::Error { .. }) {
                while end < fields.len()
                    && fields[end].name == f.name
                    && matches!(fields[end].value, Value::Source(_))
                {
                    end += 1;
                }
            }
            // A name given twice in one event is written once, with its first value.
            let repeated = fields[..i]
                .iter()
                .any(|p| p.name == f.name && !matches!(p.value, Value::Source(_)));
            if !matches!(f.value, Value::Source(_)) && !repeated && !shadowed(f.name) {
                let metric = match metrics.as_deref_mut() {
                    Some(found) => self.emit_metric_member(r, i, f, found, e),
                    None => false,
                };
                if !metric {
                    self.emit_field(r, f, &fields[i + 1..end], store, e);
                }
            }
            i = end;
        }
    }

    /// A cheap first test for [`Format::owned_by_hivelog`], run for every user field: whether
    /// `name` starts like one of the automatic trace keys.
    #[inline]
    fn maybe_trace_key(&self, name: &str) -> bool {
        match name.as_bytes().first() {
            Some(&b) if b < 128 => self.trace_key_starts & (1u128 << b) != 0,
            Some(_) => true,
            None => false,
        }
    }

    /// Whether `name` is written by hivelog itself (basic fields, extras, `truncated`, `_aws`
    /// on a line with metrics).
    fn owned_by_hivelog(&self, r: &Record, name: &str) -> bool {
        let may_be_owned = match name.as_bytes().first() {
            Some(&b) if b < 128 && self.owned_key_starts & 1 == 0 => {
                self.owned_key_starts & (1u128 << b) != 0
            }
            _ => true,
        };
        may_be_owned && self.owned_slow(r, name)
    }

    fn owned_slow(&self, r: &Record, name: &str) -> bool {
        self.reserved(name)
            || (name == "truncated" && r.truncated())
            || (name == "_aws" && self.metrics.is_some() && self.has_metric(r))
            || (self.maybe_trace_key(name)
                && r.trace().is_some()
                && self.trace_keys.iter().any(|(k, _)| k.as_str() == name))
    }

    /// Writes a user field's key: its name, or when hivelog owns that name `fields.<name>`,
    /// with one more `fields.` for as long as the result is still taken, by hivelog or by a
    /// user field literally named so, so that no key is ever written twice.
    fn emit_user_key<E: Emit>(&self, r: &Record, name: &str, e: &mut E) {
        if !self.owned_by_hivelog(r, name) {
            return e.key(name);
        }
        let is_user_field = |n: &str| self.is_user_field(r, n);
        let mut prefix = String::from("fields.");
        loop {
            let candidate = format!("{prefix}{name}");
            if !self.owned_by_hivelog(r, &candidate) && !is_user_field(&candidate) {
                return e.key_prefixed(&prefix, name);
            }
            prefix.push_str("fields.");
        }
    }

    fn emit_field<E: Emit>(
        &self,
        r: &Record,
        f: &Field,
        sources: &[Field],
        store: &crate::record::Fields,
        e: &mut E,
    ) {
        let redacted = self.is_redacted(f.name);
        if let (Schema::Ecs, "error", Value::Error { message, kind }) =
            (self.schema, f.name, f.value)
        {
            if !self.reserved("error.message") {
                return self.emit_ecs_error(store, message, kind, sources, redacted, e);
            }
        }
        self.emit_user_key(r, f.name, e);
        if redacted {
            return e.str(REDACTED);
        }
        match f.value {
            Value::Bool(v) => e.bool(v),
            Value::I64(v) => e.i64(v),
            Value::U64(v) => e.u64(v),
            Value::F64(v) => e.f64(v),
            Value::Str(t) | Value::Source(t) => e.str(store.text(t)),
            Value::Error { message, kind } => {
                e.begin_map();
                e.key("message");
                e.str(store.text(message));
                let kind = store.text(kind);
                if !kind.is_empty() {
                    e.key("type");
                    e.str(kind);
                }
                if !sources.is_empty() {
                    e.key("sources");
                    e.begin_array();
                    for s in sources {
                        if let Value::Source(t) = s.value {
                            e.str(store.text(t));
                        }
                    }
                    e.end_array();
                }
                e.end_map();
            }
        }
    }

    fn emit_ecs_error<E: Emit>(
        &self,
        store: &crate::record::Fields,
        message: crate::record::TextRange,
        kind: crate::record::TextRange,
        sources: &[Field],
        redacted: bool,
        e: &mut E,
    ) {
        let [k_type, k_message, k_stack] = &self.error_keys;
        let kind = store.text(kind);
        if !kind.is_empty() {
            e.key_static(k_type);
            e.str(kind);
        }
        e.key_static(k_message);
        if redacted {
            return e.str(REDACTED);
        }
        let message = store.text(message);
        e.str(message);
        let mut stack = String::from(message);
        for s in sources {
            if let Value::Source(t) = s.value {
                stack.push_str("\nCaused by: ");
                stack.push_str(store.text(t));
            }
        }
        e.key_static(k_stack);
        e.str(&stack);
    }
}

/// Writes `key` and `value`; a missing value is `key: null` in the default schema, and left
/// out in ECS.
#[inline]
fn emit_optional<E: Emit, T>(
    e: &mut E,
    key: &Key,
    ecs: bool,
    value: Option<T>,
    write: impl FnOnce(&mut E, T),
) {
    match value {
        Some(v) => {
            e.key_static(key);
            write(e, v)
        }
        None if ecs => {}
        None => {
            e.key_static(key);
            e.null()
        }
    }
}

/// The names of the record's spans, outermost first (an empty array outside any span).
fn emit_spans<E: Emit>(r: &Record, e: &mut E) {
    e.begin_array();
    if let Some(span) = &r.span {
        let mut names: Vec<&str> = span.ancestry().map(|n| n.name).collect();
        names.reverse();
        for n in names {
            e.str(n);
        }
    }
    e.end_array();
}

fn emit_json<E: Emit>(v: &serde_json::Value, e: &mut E) {
    use serde_json::Value as J;
    match v {
        J::Null => e.null(),
        J::Bool(b) => e.bool(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                e.u64(u)
            } else if let Some(i) = n.as_i64() {
                e.i64(i)
            } else {
                e.f64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => e.str(s),
        J::Array(a) => {
            e.begin_array();
            for x in a {
                emit_json(x, e);
            }
            e.end_array();
        }
        J::Object(o) => {
            e.begin_map();
            for (k, x) in o {
                e.key(k);
                emit_json(x, e);
            }
            e.end_map();
        }
    }
}

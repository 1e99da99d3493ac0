//! Records → one `ExportLogsServiceRequest`, in protobuf or in the specification's JSON
//! mapping, within the collector's size limit.
//!
//! The mapping follows the OpenTelemetry logs data model and what `opentelemetry-appender-
//! tracing` does for `tracing` events:
//!
//! | hivelog | OTLP `LogRecord` |
//! |---|---|
//! | message | `body` (a string) |
//! | level | `severity_number` (TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17) and `severity_text` |
//! | time of the event | `time_unix_nano`, and `observed_time_unix_nano` (hivelog observes the event when it is logged) |
//! | the span's trace context | `trace_id`, `span_id`, `flags` (the W3C trace flags); empty outside a trace |
//! | event fields, then span fields (innermost span first) | typed attributes: int, double, bool, string; the first name wins |
//! | an error field | `exception.type` and `exception.message` (its `Display`, then its sources joined by `: `) |
//! | file, line, module | `code.file.path`, `code.line.number`, `code.function.name` (the module path: `tracing` records no function name) |
//! | thread name / id, when `HIVELOG_FIELDS` captures them | `thread.name`, `thread.id` |
//! | target | the instrumentation scope's name (records are grouped by scope) |
//! | `HIVELOG_SERVICE` / `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `HIVELOG_EXTRA` | resource attributes, once per request |
//!
//! `HIVELOG_REDACT` applies: a redacted field's value is `[redacted]`.
//!
//! How: each record is encoded once into an arena; the request around them (resource, scopes,
//! lengths) is assembled afterwards, when every length is known. No per-record tree of owned
//! values is built.

use std::sync::Arc;

use hivelog_core::format::emit::write_json_str;
use hivelog_core::format::{Extra, REDACTED};
use hivelog_core::record::{Fields, Value};
use hivelog_core::{Format, Record};
use tracing_core::Level;

use crate::config::{OtlpConfig, Protocol};
use crate::proto::{self, field, len_field_size, varint_len};

/// The OTLP severity number of a level (data model, "Field: SeverityNumber").
pub(crate) fn severity_number(level: Level) -> u64 {
    match level {
        Level::TRACE => 1,
        Level::DEBUG => 5,
        Level::INFO => 9,
        Level::WARN => 13,
        _ => 17,
    }
}

/// The short name the data model gives each range of severity numbers.
pub(crate) fn severity_text(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        _ => "ERROR",
    }
}

/// A resource attribute's value.
#[derive(Clone, Debug, PartialEq)]
enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// Where the typed attributes of a record are written (protobuf or JSON).
trait AttrWriter {
    fn str(&mut self, key: &str, v: &str);
    /// A string made of `parts` joined by `": "` (an error and its sources).
    fn joined(&mut self, key: &str, parts: &[&str]);
    fn int(&mut self, key: &str, v: i64);
    fn double(&mut self, key: &str, v: f64);
    fn bool(&mut self, key: &str, v: bool);
}

/// The attributes of one record, in the order of the table above; `seen` holds the names
/// written so far (OTLP keys must be unique: the first one wins).
fn write_attributes<W: AttrWriter>(
    format: &Format,
    record: &Record,
    seen: &mut Vec<&'static str>,
    w: &mut W,
) {
    seen.clear();
    let mut exception = false;
    let mut parts: Vec<&str> = Vec::new();
    write_fields(format, &record.fields, seen, &mut exception, &mut parts, w);
    if let Some(span) = &record.span {
        for node in span.ancestry() {
            write_fields(format, &node.fields, seen, &mut exception, &mut parts, w);
        }
    }
    if let Some(file) = record.file() {
        w.str("code.file.path", file);
    }
    if let Some(line) = record.line {
        w.int("code.line.number", i64::from(line));
    }
    if let Some(module) = record.module() {
        w.str("code.function.name", module);
    }
    if let Some(thread) = &record.thread {
        w.str("thread.name", thread);
    }
    if record.thread_id != 0 {
        w.int("thread.id", record.thread_id as i64);
    }
}

fn write_fields<'f, W: AttrWriter>(
    format: &Format,
    fields: &'f Fields,
    seen: &mut Vec<&'static str>,
    exception: &mut bool,
    parts: &mut Vec<&'f str>,
    w: &mut W,
) {
    let all = fields.as_slice();
    let mut i = 0;
    while i < all.len() {
        let f = &all[i];
        i += 1;
        if matches!(f.value, Value::Source(_)) || seen.contains(&f.name) {
            continue;
        }
        seen.push(f.name);
        if format.is_redacted(f.name) {
            w.str(f.name, REDACTED);
            continue;
        }
        match f.value {
            Value::Bool(b) => w.bool(f.name, b),
            Value::I64(v) => w.int(f.name, v),
            Value::U64(v) => match i64::try_from(v) {
                Ok(v) => w.int(f.name, v),
                Err(_) => w.str(f.name, itoa::Buffer::new().format(v)),
            },
            Value::F64(v) => w.double(f.name, v),
            Value::Str(r) => w.str(f.name, fields.text(r)),
            Value::Source(_) => {}
            Value::Error { message, kind } => {
                parts.clear();
                parts.push(fields.text(message));
                while let Some(next) = all.get(i) {
                    match next.value {
                        Value::Source(r) if next.name == f.name => parts.push(fields.text(r)),
                        _ => break,
                    }
                    i += 1;
                }
                if *exception {
                    // One exception per record: a second error is a field like any other.
                    w.joined(f.name, parts);
                } else {
                    *exception = true;
                    let kind = fields.text(kind);
                    if !kind.is_empty() {
                        w.str("exception.type", kind);
                    }
                    w.joined("exception.message", parts);
                }
            }
        }
    }
}

/// Protobuf `KeyValue`s, appended as `LogRecord.attributes` (or `Resource.attributes`).
struct PbAttrs<'a> {
    out: &'a mut Vec<u8>,
    field: u32,
}

impl PbAttrs<'_> {
    #[inline]
    fn kv(&mut self, key: &str, any_len: usize) {
        let kv = len_field_size(key.len()) + len_field_size(any_len);
        proto::put_len_header(self.out, self.field, kv);
        proto::put_bytes(self.out, field::KV_KEY, key.as_bytes());
        proto::put_len_header(self.out, field::KV_VALUE, any_len);
    }
}

impl AttrWriter for PbAttrs<'_> {
    #[inline]
    fn str(&mut self, key: &str, v: &str) {
        self.kv(key, len_field_size(v.len()));
        proto::put_bytes(self.out, field::ANY_STRING, v.as_bytes());
    }

    fn joined(&mut self, key: &str, parts: &[&str]) {
        let n: usize =
            parts.iter().map(|p| p.len()).sum::<usize>() + 2 * parts.len().saturating_sub(1);
        self.kv(key, len_field_size(n));
        proto::put_len_header(self.out, field::ANY_STRING, n);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.out.extend_from_slice(b": ");
            }
            self.out.extend_from_slice(p.as_bytes());
        }
    }

    #[inline]
    fn int(&mut self, key: &str, v: i64) {
        self.kv(key, 1 + varint_len(v as u64));
        proto::put_uint(self.out, field::ANY_INT, v as u64);
    }

    fn double(&mut self, key: &str, v: f64) {
        self.kv(key, 9);
        proto::put_fixed64(self.out, field::ANY_DOUBLE, v.to_bits());
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.kv(key, 2);
        proto::put_uint(self.out, field::ANY_BOOL, u64::from(v));
    }
}

/// JSON `KeyValue`s, comma-separated, inside an `"attributes":[…]` the caller opens.
struct JsonAttrs<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl JsonAttrs<'_> {
    fn key(&mut self, key: &str, kind: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(b"{\"key\":");
        write_json_str(self.out, key);
        self.out.extend_from_slice(b",\"value\":{\"");
        self.out.extend_from_slice(kind.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
}

impl AttrWriter for JsonAttrs<'_> {
    fn str(&mut self, key: &str, v: &str) {
        self.key(key, "stringValue");
        write_json_str(self.out, v);
        self.out.extend_from_slice(b"}}");
    }

    fn joined(&mut self, key: &str, parts: &[&str]) {
        self.str(key, &parts.join(": "));
    }

    fn int(&mut self, key: &str, v: i64) {
        // Proto3 JSON writes 64-bit integers as strings.
        self.key(key, "intValue");
        self.out.push(b'"');
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self.out.extend_from_slice(b"\"}}");
    }

    fn double(&mut self, key: &str, v: f64) {
        self.key(key, "doubleValue");
        json_double(self.out, v);
        self.out.extend_from_slice(b"}}");
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.key(key, "boolValue");
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self.out.extend_from_slice(b"}}");
    }
}

/// Proto3 JSON's double: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn json_double(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

fn json_u64_string(out: &mut Vec<u8>, v: u64) {
    out.push(b'"');
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    out.push(b'"');
}

fn hex(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// What [`RequestBuilder::build`] made of a batch.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    /// The request body (not compressed).
    pub(crate) body: Vec<u8>,
    /// The batch's records in the request, in the order the request holds them.
    pub(crate) sent: Vec<usize>,
    /// Records left for the next request (the body was full).
    pub(crate) deferred: Vec<usize>,
    /// Records that alone exceed the collector's limit.
    pub(crate) too_large: Vec<usize>,
}

/// Builds requests; keeps its buffers between batches.
#[derive(Debug)]
pub(crate) struct RequestBuilder {
    format: Arc<Format>,
    protocol: Protocol,
    max_body: usize,
    /// The `Resource` message's bytes (protobuf) or its JSON object, encoded once.
    resource: Vec<u8>,
    arena: Vec<u8>,
    ranges: Vec<(usize, usize)>,
    seen: Vec<&'static str>,
}

impl RequestBuilder {
    pub(crate) fn new(config: &OtlpConfig, format: Arc<Format>, max_body: usize) -> Self {
        let attrs = resource_attributes(config, &format);
        let protocol = config.protocol();
        let mut resource = Vec::new();
        if protocol == Protocol::HttpJson {
            resource.extend_from_slice(b"{\"attributes\":[");
            let mut w = JsonAttrs {
                out: &mut resource,
                first: true,
            };
            write_values(&attrs, &mut w);
            resource.extend_from_slice(b"]}");
        } else {
            let mut w = PbAttrs {
                out: &mut resource,
                field: field::RESOURCE_ATTRIBUTES,
            };
            write_values(&attrs, &mut w);
        }
        RequestBuilder {
            format,
            protocol,
            max_body,
            resource,
            arena: Vec::new(),
            ranges: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// An upper bound of a record's encoded size (for the pipeline's batch limit): its text,
    /// its field names and a fixed cost per field, its spans' the same; JSON counts every text
    /// byte as a `\u00XX` escape could write it.
    pub(crate) fn encoded_len(&self, r: &Record) -> usize {
        let text_factor = if self.protocol == Protocol::HttpJson {
            6
        } else {
            1
        };
        let per_field = if self.protocol == Protocol::HttpJson {
            64
        } else {
            24
        };
        let fields = |f: &Fields| {
            f.text_len() * text_factor + f.iter().map(|x| x.name.len() + per_field).sum::<usize>()
        };
        let mut n = 320 + fields(&r.fields) + r.target().len() * text_factor;
        n += (r.file().map_or(0, str::len) + r.module().map_or(0, str::len)) * text_factor;
        n += r.thread.as_deref().map_or(0, str::len) * text_factor;
        if let Some(span) = &r.span {
            n += span.ancestry().map(|s| fields(&s.fields)).sum::<usize>();
        }
        n
    }

    /// Encodes `batch` into `into`, as many records as fit in the body limit.
    pub(crate) fn build(&mut self, batch: &[Record], into: &mut Encoded) {
        into.body.clear();
        into.sent.clear();
        into.deferred.clear();
        into.too_large.clear();
        self.arena.clear();
        self.ranges.clear();
        let json = self.protocol == Protocol::HttpJson;
        // Scopes in order of first appearance, each with its records' positions in `ranges`.
        let mut scopes: Vec<(&str, Vec<usize>)> = Vec::new();
        // The request's size so far, bounded from above: resource, per scope and per record
        // framing are counted generously.
        let mut total = self.resource.len() + 64;
        let mut included: Vec<usize> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            let start = self.arena.len();
            if json {
                self.json_record(r);
            } else {
                self.pb_record(r);
            }
            let len = self.arena.len() - start;
            let target = r.target();
            let new_scope = !scopes.iter().any(|(t, _)| *t == target);
            let cost = len + 12 + if new_scope { target.len() * 6 + 64 } else { 0 };
            if total + cost > self.max_body {
                self.arena.truncate(start);
                if included.is_empty() && len + 1024 > self.max_body {
                    into.too_large.push(i);
                    continue;
                }
                into.deferred.extend(i..batch.len());
                break;
            }
            total += cost;
            self.ranges.push((start, start + len));
            let pos = self.ranges.len() - 1;
            included.push(i);
            match scopes.iter_mut().find(|(t, _)| *t == target) {
                Some((_, v)) => v.push(pos),
                None => scopes.push((target, vec![pos])),
            }
        }
        for (_, positions) in &scopes {
            into.sent.extend(positions.iter().map(|&p| included[p]));
        }
        if included.is_empty() {
            return;
        }
        if json {
            self.json_request(&scopes, &mut into.body);
        } else {
            self.pb_request(&scopes, &mut into.body);
        }
    }

    fn pb_record(&mut self, r: &Record) {
        let out = &mut self.arena;
        let (secs, nanos) = r.unix_time();
        let time = secs
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(nanos));
        proto::put_fixed64(out, field::LOG_TIME, time);
        proto::put_uint(out, field::LOG_SEVERITY_NUMBER, severity_number(r.level));
        proto::put_bytes(
            out,
            field::LOG_SEVERITY_TEXT,
            severity_text(r.level).as_bytes(),
        );
        if r.message.is_some() {
            let m = r.message();
            proto::put_len_header(out, field::LOG_BODY, len_field_size(m.len()));
            proto::put_bytes(out, field::ANY_STRING, m.as_bytes());
        }
        let mut w = PbAttrs {
            out,
            field: field::LOG_ATTRIBUTES,
        };
        write_attributes(&self.format, r, &mut self.seen, &mut w);
        if let Some(t) = r.trace() {
            let c = t.context();
            proto::put_fixed32(out, field::LOG_FLAGS, u32::from(c.flags));
            proto::put_bytes(out, field::LOG_TRACE_ID, &c.trace_id.to_bytes());
            proto::put_bytes(out, field::LOG_SPAN_ID, &c.span_id.to_bytes());
        }
        proto::put_fixed64(out, field::LOG_OBSERVED_TIME, time);
    }

    fn pb_request(&self, scopes: &[(&str, Vec<usize>)], body: &mut Vec<u8>) {
        let rec = |p: usize| self.ranges[p].1 - self.ranges[p].0;
        let scope_msg = |name: &str| len_field_size(name.len());
        let scope_logs = |(name, ps): &(&str, Vec<usize>)| {
            len_field_size(scope_msg(name))
                + ps.iter().map(|&p| len_field_size(rec(p))).sum::<usize>()
        };
        let resource_logs = len_field_size(self.resource.len())
            + scopes
                .iter()
                .map(|s| len_field_size(scope_logs(s)))
                .sum::<usize>();
        body.reserve(len_field_size(resource_logs));
        proto::put_len_header(body, field::REQUEST_RESOURCE_LOGS, resource_logs);
        proto::put_bytes(body, field::RESOURCE_LOGS_RESOURCE, &self.resource);
        for s in scopes {
            proto::put_len_header(body, field::RESOURCE_LOGS_SCOPE_LOGS, scope_logs(s));
            proto::put_len_header(body, field::SCOPE_LOGS_SCOPE, scope_msg(s.0));
            proto::put_bytes(body, field::SCOPE_NAME, s.0.as_bytes());
            for &p in &s.1 {
                let (a, b) = self.ranges[p];
                proto::put_bytes(body, field::SCOPE_LOGS_LOG_RECORDS, &self.arena[a..b]);
            }
        }
    }

    fn json_record(&mut self, r: &Record) {
        let out = &mut self.arena;
        let (secs, nanos) = r.unix_time();
        let time = secs
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(nanos));
        out.extend_from_slice(b"{\"timeUnixNano\":");
        json_u64_string(out, time);
        out.extend_from_slice(b",\"observedTimeUnixNano\":");
        json_u64_string(out, time);
        out.extend_from_slice(b",\"severityNumber\":");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(severity_number(r.level))
                .as_bytes(),
        );
        out.extend_from_slice(b",\"severityText\":\"");
        out.extend_from_slice(severity_text(r.level).as_bytes());
        out.push(b'"');
        if r.message.is_some() {
            out.extend_from_slice(b",\"body\":{\"stringValue\":");
            write_json_str(out, r.message());
            out.push(b'}');
        }
        out.extend_from_slice(b",\"attributes\":[");
        let mut w = JsonAttrs { out, first: true };
        write_attributes(&self.format, r, &mut self.seen, &mut w);
        out.push(b']');
        if let Some(t) = r.trace() {
            out.extend_from_slice(b",\"flags\":");
            out.extend_from_slice(itoa::Buffer::new().format(t.context().flags).as_bytes());
            out.extend_from_slice(b",\"traceId\":");
            hex(out, t.trace_id_hex());
            out.extend_from_slice(b",\"spanId\":");
            hex(out, t.span_id_hex());
        }
        out.push(b'}');
    }

    fn json_request(&self, scopes: &[(&str, Vec<usize>)], body: &mut Vec<u8>) {
        body.reserve(self.arena.len() + self.resource.len() + 64 * scopes.len() + 64);
        body.extend_from_slice(b"{\"resourceLogs\":[{\"resource\":");
        body.extend_from_slice(&self.resource);
        body.extend_from_slice(b",\"scopeLogs\":[");
        for (k, (name, ps)) in scopes.iter().enumerate() {
            if k > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"scope\":{\"name\":");
            write_json_str(body, name);
            body.extend_from_slice(b"},\"logRecords\":[");
            for (j, &p) in ps.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                let (a, b) = self.ranges[p];
                body.extend_from_slice(&self.arena[a..b]);
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}]}");
    }
}

/// The resource: `service.name` first (`OTEL_SERVICE_NAME`, else `OTEL_RESOURCE_ATTRIBUTES`,
/// else `HIVELOG_SERVICE` / the binary's name), then `HIVELOG_EXTRA`, then the other
/// `OTEL_RESOURCE_ATTRIBUTES`, which win over an extra of the same name.
fn resource_attributes(config: &OtlpConfig, format: &Format) -> Vec<(String, AttrValue)> {
    let service = config.service_name().unwrap_or(format.service()).to_owned();
    let mut out = vec![("service.name".to_owned(), AttrValue::Str(service))];
    let mut set = |k: &str, v: AttrValue| {
        if k == "service.name" {
            return;
        }
        out.retain(|(name, _)| name != k);
        out.push((k.to_owned(), v));
    };
    for (k, v) in format.extras() {
        let v = match v {
            Extra::Str(s) => AttrValue::Str(s.clone()),
            Extra::Json(serde_json::Value::String(s)) => AttrValue::Str(s.clone()),
            Extra::Json(serde_json::Value::Bool(b)) => AttrValue::Bool(*b),
            Extra::Json(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => AttrValue::Int(i),
                (None, Some(f)) => AttrValue::Double(f),
                _ => AttrValue::Str(n.to_string()),
            },
            Extra::Json(other) => AttrValue::Str(other.to_string()),
        };
        set(k, v);
    }
    for (k, v) in config.resource_attributes() {
        set(k, AttrValue::Str(v.clone()));
    }
    out
}

fn write_values<W: AttrWriter>(attrs: &[(String, AttrValue)], w: &mut W) {
    for (k, v) in attrs {
        match v {
            AttrValue::Str(s) => w.str(k, s),
            AttrValue::Int(i) => w.int(k, *i),
            AttrValue::Double(f) => w.double(k, *f),
            AttrValue::Bool(b) => w.bool(k, *b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::record::Str;
    use hivelog_core::Env;

    fn builder(protocol: Protocol, max_body: usize) -> RequestBuilder {
        let config = OtlpConfig::from_env(&Env::from_pairs([
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.as_str()),
        ]))
        .unwrap()
        .unwrap();
        let format = Arc::new(Format::builder().service("svc").build());
        RequestBuilder::new(&config, format, max_body)
    }

    fn record(target: &'static str, msg: &str) -> Record {
        let mut r = Record::new(Level::INFO, Str::Static(target), 1 << 20, 4);
        let m = r.fields.push_str(msg);
        r.message = Some(m);
        r
    }

    #[test]
    fn records_are_grouped_by_scope_in_order_of_first_appearance() {
        let mut b = builder(Protocol::HttpProtobuf, 1 << 20);
        let batch = [record("a", "1"), record("b", "2"), record("a", "3")];
        let mut e = Encoded::default();
        b.build(&batch, &mut e);
        assert_eq!(e.sent, [0, 2, 1]);
        let top = proto::fields(&e.body).unwrap();
        assert_eq!(top.len(), 1);
        let proto::Wire::Bytes(rl) = top[0].1 else {
            panic!()
        };
        let scopes: Vec<_> = proto::fields(rl)
            .unwrap()
            .into_iter()
            .filter(|(f, _)| *f == field::RESOURCE_LOGS_SCOPE_LOGS)
            .collect();
        assert_eq!(scopes.len(), 2);
    }

    #[test]
    fn a_full_body_defers_the_rest_and_a_record_too_large_alone_is_set_apart() {
        let mut b = builder(Protocol::HttpProtobuf, 4096);
        let big = "x".repeat(1500);
        let huge = "y".repeat(10_000);
        let batch = [
            record("a", &huge),
            record("a", &big),
            record("a", &big),
            record("a", &big),
        ];
        let mut e = Encoded::default();
        b.build(&batch, &mut e);
        assert_eq!(e.too_large, [0]);
        assert_eq!(e.sent, [1, 2]);
        assert_eq!(e.deferred, [3]);
        assert!(e.body.len() <= 4096);
    }

    #[test]
    fn json_is_the_specification_mapping() {
        let mut b = builder(Protocol::HttpJson, 1 << 20);
        let mut r = record("app::db", "hé \"quoted\"");
        let s = r.fields.push_str("a@b.c");
        r.fields.push("user", Value::Str(s));
        r.fields.push("n", Value::I64(-3));
        r.fields.push("big", Value::U64(u64::MAX));
        r.fields.push("ratio", Value::F64(f64::NAN));
        r.fields.push("ok", Value::Bool(true));
        let mut e = Encoded::default();
        b.build(&[r], &mut e);
        let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        let rl = &v["resourceLogs"][0];
        assert_eq!(
            rl["resource"]["attributes"][0],
            serde_json::json!({"key":"service.name","value":{"stringValue":"svc"}})
        );
        let sl = &rl["scopeLogs"][0];
        assert_eq!(sl["scope"]["name"], "app::db");
        let lr = &sl["logRecords"][0];
        assert_eq!(lr["severityNumber"], 9);
        assert_eq!(lr["severityText"], "INFO");
        assert_eq!(lr["body"]["stringValue"], "hé \"quoted\"");
        assert!(lr["timeUnixNano"].as_str().unwrap().parse::<u64>().unwrap() > 0);
        assert_eq!(lr["timeUnixNano"], lr["observedTimeUnixNano"]);
        assert!(lr.get("traceId").is_none(), "no trace: no ids");
        let attrs = &lr["attributes"];
        assert_eq!(attrs[0]["value"]["stringValue"], "a@b.c");
        assert_eq!(attrs[1]["value"]["intValue"], "-3");
        assert_eq!(attrs[2]["value"]["stringValue"], u64::MAX.to_string());
        assert_eq!(attrs[3]["value"]["doubleValue"], "NaN");
        assert_eq!(attrs[4]["value"]["boolValue"], true);
    }
}

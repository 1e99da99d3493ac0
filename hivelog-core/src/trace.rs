//! Trace context: the ids that tie together every line a request writes, across services.
//!
//! Why on spans: a request's trace is decided once, when its span starts (continued from an
//! incoming W3C `traceparent` or AWS `X-Amzn-Trace-Id`, or new), and every span created inside
//! it inherits the trace with a span id of its own. The [`TraceContext`] is stored in the span's
//! [`SpanNode`](crate::record::SpanNode), which an event already keeps, so an event inside a
//! traced span costs only the writing of two hex strings; an event outside any span costs
//! nothing more.
//!
//! Why these parsing rules: they are W3C Trace Context Level 1's. A malformed header (wrong
//! length, upper-case or non-hex digits, version `ff`, all-zero ids, a 10 KB value) is ignored
//! and a new trace starts: a bad header from a client must never fail a request nor panic.
//! A future version (`01`..`fe`) is read by its first four fields, as the specification asks.
//! `tracestate` is kept only alongside a valid `traceparent`, and dropped whole when any
//! list member is malformed or there are more than 32 of them.
//!
//! Ids come from a per-thread small fast generator seeded from the OS: unique enough for
//! correlating logs, not secrets.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};

/// Flag bit 0 of `trace-flags`: the caller may be recording this trace.
pub const SAMPLED: u8 = 0x01;

/// Flag bits hivelog propagates: `sampled`, and Level 2's `random` (the trace id is random).
const KNOWN_FLAGS: u8 = 0x03;

/// Longest `traceparent` value considered; longer ones (a future version with many fields, or
/// garbage) are ignored before being scanned.
const MAX_TRACEPARENT_LEN: usize = 512;

/// Most list members a valid `tracestate` has (W3C: "a maximum of 32 list-members").
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Longest `X-Amzn-Trace-Id` value considered (AWS allows 256 bytes of custom data).
const MAX_XRAY_LEN: usize = 1024;

/// A 128-bit trace id, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A 64-bit span id, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

thread_local! {
    static RNG: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

/// Fills `buf` with random bytes, not all zero.
fn random_nonzero(buf: &mut [u8]) {
    RNG.with(|cell| {
        let mut cell = cell.borrow_mut();
        let rng = cell.get_or_insert_with(|| SmallRng::from_rng(&mut rand::rng()));
        loop {
            rng.fill(buf);
            if buf.iter().any(|b| *b != 0) {
                break;
            }
        }
    });
}

macro_rules! id_type {
    ($t:ident, $n:literal, $hex:literal) => {
        impl $t {
            /// A random id (never all zeros).
            pub fn random() -> Self {
                let mut b = [0u8; $n];
                random_nonzero(&mut b);
                $t(b)
            }

            /// The id from its bytes; `None` when they are all zero (an invalid id).
            pub fn from_bytes(bytes: [u8; $n]) -> Option<Self> {
                bytes.iter().any(|b| *b != 0).then_some($t(bytes))
            }

            /// The id's bytes.
            pub fn to_bytes(self) -> [u8; $n] {
                self.0
            }

            /// The id from lowercase hex digits (exactly the right number of them, not all zeros).
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut b = [0u8; $n];
                decode_hex(s.as_bytes(), &mut b)?;
                Self::from_bytes(b)
            }

            /// Writes the id's lowercase hex digits into `buf` and returns them.
            pub fn encode<'a>(&self, buf: &'a mut [u8; $hex]) -> &'a str {
                encode_hex(&self.0, buf);
                std::str::from_utf8(buf).expect("hex digits are ASCII")
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.encode(&mut [0u8; $hex]))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($t))
            }
        }
    };
}

id_type!(TraceId, 16, 32);
id_type!(SpanId, 8, 16);

impl TraceId {
    /// The id in X-Ray's form, `1-` then 8 hex digits (the trace's start time) then `-` and 24
    /// more: `1-5759e988-bd862e3fe1be46a994272793`.
    pub fn encode_xray<'a>(&self, buf: &'a mut [u8; 35]) -> &'a str {
        let mut hex = [0u8; 32];
        encode_hex(&self.0, &mut hex);
        buf[..2].copy_from_slice(b"1-");
        buf[2..10].copy_from_slice(&hex[..8]);
        buf[10] = b'-';
        buf[11..].copy_from_slice(&hex[8..]);
        std::str::from_utf8(buf).expect("hex digits are ASCII")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
}

/// Lowercase hex only, as W3C requires (`ABCD` is invalid).
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode_hex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(())
}

/// The trace a span belongs to: its trace id, its own span id, the trace flags and the vendor
/// `tracestate` to pass on.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace's id, the same on every line of the request in every service.
    pub trace_id: TraceId,
    /// This span's id.
    pub span_id: SpanId,
    /// `trace-flags` (bit 0: sampled).
    pub flags: u8,
    /// The incoming `tracestate`, validated and normalized, to pass on unchanged.
    pub state: Option<Arc<str>>,
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl TraceContext {
    /// The context of a request span: continuing `parent` when there is one, else a new trace
    /// (random id, sampled); either way with a new span id.
    ///
    /// ```
    /// use hivelog_core::trace::{TraceContext, TraceParent};
    /// let parent = TraceParent::from_w3c(["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], []);
    /// let ctx = TraceContext::continue_or_start(parent.as_ref());
    /// assert_eq!(ctx.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
    /// ```
    pub fn continue_or_start(parent: Option<&TraceParent>) -> Self {
        match parent {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                span_id: SpanId::random(),
                flags: p.flags,
                state: p.state.clone(),
            },
            None => TraceContext {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                flags: SAMPLED,
                state: None,
            },
        }
    }

    /// The context of a span created inside this one: same trace, a new span id.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// Whether the caller marked the trace as sampled.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` header value for a call made from this span:
    /// `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }

    /// The `tracestate` header value to send along, when the trace came with one.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The `X-Amzn-Trace-Id` header value for a call made from this span:
    /// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`.
    pub fn xray_header(&self) -> String {
        let mut root = [0u8; 35];
        format!(
            "Root={};Parent={};Sampled={}",
            self.trace_id.encode_xray(&mut root),
            self.span_id,
            u8::from(self.sampled())
        )
    }
}

/// An incoming trace to continue: the caller's trace id, its span id, flags and `tracestate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id.
    pub trace_id: TraceId,
    /// The calling span's id (absent in an `X-Amzn-Trace-Id` without `Parent`).
    pub parent_id: Option<SpanId>,
    /// `trace-flags`.
    pub flags: u8,
    /// The validated `tracestate`, members joined with `,`.
    pub state: Option<Arc<str>>,
}

impl TraceParent {
    /// Reads W3C headers: every value of `traceparent` received (exactly one must be valid) and
    /// every value of `tracestate`, in order; `None` when there is no valid `traceparent`.
    ///
    /// ```
    /// use hivelog_core::trace::TraceParent;
    /// let p = TraceParent::from_w3c(
    ///     ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
    ///     ["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"],
    /// )
    /// .unwrap();
    /// assert_eq!(p.state.as_deref(), Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
    /// assert!(TraceParent::from_w3c(["ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], []).is_none());
    /// ```
    pub fn from_w3c<'a>(
        traceparent: impl IntoIterator<Item = &'a str>,
        tracestate: impl IntoIterator<Item = &'a str>,
    ) -> Option<Self> {
        let mut values = traceparent.into_iter();
        let (first, second) = (values.next()?, values.next());
        if second.is_some() {
            // Two `traceparent` headers: which one the caller meant is unknowable.
            return None;
        }
        let (trace_id, parent_id, flags) = parse_traceparent(first)?;
        Some(TraceParent {
            trace_id,
            parent_id: Some(parent_id),
            flags,
            state: parse_tracestate(tracestate).map(Arc::from),
        })
    }

    /// Reads an AWS `X-Amzn-Trace-Id` value
    /// (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`);
    /// `None` without a valid `Root`. A malformed `Parent` is ignored; `Sampled=0` clears the
    /// sampled flag.
    ///
    /// ```
    /// use hivelog_core::trace::TraceParent;
    /// let p = TraceParent::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1").unwrap();
    /// assert_eq!(p.trace_id.to_string(), "5759e988bd862e3fe1be46a994272793");
    /// assert_eq!(p.parent_id.unwrap().to_string(), "53995c3f42cd8ad8");
    /// ```
    pub fn from_xray(value: &str) -> Option<Self> {
        if value.len() > MAX_XRAY_LEN {
            return None;
        }
        let mut root = None;
        let mut parent_id = None;
        let mut flags = SAMPLED;
        for part in value.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim() {
                "Root" => root = parse_xray_root(v.trim()),
                "Parent" => parent_id = SpanId::from_hex(&v.trim().to_ascii_lowercase()),
                "Sampled" if v.trim() == "0" => flags = 0,
                _ => {}
            }
        }
        Some(TraceParent {
            trace_id: root?,
            parent_id,
            flags,
            state: None,
        })
    }

    /// The incoming trace from a request's headers: W3C first, else X-Ray, else `None`.
    /// `get_all(name)` returns every value of the header `name` (lowercase), in order;
    /// values that are not text are left out by the caller.
    pub fn from_headers<'a, I>(get_all: impl Fn(&str) -> I) -> Option<Self>
    where
        I: IntoIterator<Item = &'a str>,
    {
        TraceParent::from_w3c(get_all("traceparent"), get_all("tracestate")).or_else(|| {
            let mut xray = get_all("x-amzn-trace-id").into_iter();
            match (xray.next(), xray.next()) {
                (Some(v), None) => TraceParent::from_xray(v),
                _ => None,
            }
        })
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `version-traceid-parentid-flags`, per W3C Trace Context Level 1 §3.2 and §4.3 (versioning).
fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, u8)> {
    if value.len() > MAX_TRACEPARENT_LEN {
        return None;
    }
    let v = value.trim_matches(is_ows).as_bytes();
    if v.len() < 55 {
        return None;
    }
    let mut version = [0u8; 1];
    decode_hex(&v[..2], &mut version)?;
    match version[0] {
        0xff => return None,
        // Version 00 is exactly 55 characters.
        0x00 if v.len() != 55 => return None,
        // A later version may append fields, always after a `-`.
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_hex(std::str::from_utf8(&v[3..35]).ok()?)?;
    let parent_id = SpanId::from_hex(std::str::from_utf8(&v[36..52]).ok()?)?;
    let mut flags = [0u8; 1];
    decode_hex(&v[53..55], &mut flags)?;
    Some((trace_id, parent_id, flags[0] & KNOWN_FLAGS))
}

/// The `tracestate` list members of every header value, validated (W3C §3.3): all of them, or
/// none when any is malformed or there are more than 32.
fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut out = String::new();
    let mut count = 0;
    for value in values {
        for member in value.split(',').map(|m| m.trim_matches(is_ows)) {
            if member.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_TRACESTATE_MEMBERS || !valid_member(member) {
                return None;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `key=value`: a key of at most 256 of `a-z 0-9 _ - * / @`, starting with a letter or digit;
/// a value of 1 to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_member(member: &str) -> bool {
    let Some((key, value)) = member.split_once('=') else {
        return false;
    };
    let key_ok = !key.is_empty()
        && key.len() <= 256
        && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(&c));
    let value_ok = !value.is_empty()
        && value.len() <= 256
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=');
    key_ok && value_ok
}

/// `1-<8 hex>-<24 hex>`.
fn parse_xray_root(v: &str) -> Option<TraceId> {
    let rest = v.strip_prefix("1-")?;
    let (time, unique) = rest.split_once('-')?;
    if time.len() != 8 || unique.len() != 24 {
        return None;
    }
    let mut hex = String::with_capacity(32);
    hex.push_str(time);
    hex.push_str(unique);
    TraceId::from_hex(&hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;

//! The serializer interface a record is walked through, and its JSON implementation.
//!
//! [`Format::emit`](crate::Format::emit) decides *what* is written (names, order, collisions,
//! redaction); an [`Emit`] decides *how* (JSON here, msgpack in `hivelog-fluent`). Object keys
//! whose text is known at configuration time come as [`Key`]s carrying their pre-escaped JSON.

/// An object key, with its JSON form (`"name":`) rendered once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    raw: Box<str>,
    json: Box<[u8]>,
}

impl Key {
    /// A key named `raw`.
    pub fn new(raw: &str) -> Self {
        let mut json = Vec::with_capacity(raw.len() + 3);
        write_json_str(&mut json, raw);
        json.push(b':');
        Key {
            raw: raw.into(),
            json: json.into(),
        }
    }
    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// `"key":`, escaped.
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// A serializer for one record: a top-level map of keys to values, with nested arrays and maps.
///
/// Calls come in order: `key` (or `key_static`) then exactly one value (a scalar, or a
/// `begin_*`/`end_*` pair). Map lengths are not known in advance.
pub trait Emit {
    /// Starts the top-level map.
    fn begin_record(&mut self);
    /// Ends the top-level map.
    fn end_record(&mut self);
    /// A key known at configuration time.
    fn key_static(&mut self, key: &Key) {
        self.key(key.as_str());
    }
    /// A key, given as its parts concatenated (`["fields.", "level"]`).
    fn key(&mut self, key: &str);
    /// A key built from a prefix and a name, written without allocating.
    fn key_prefixed(&mut self, prefix: &str, key: &str);
    /// A string value.
    fn str(&mut self, v: &str);
    /// A string value known to need no escaping in any format (hex digits, say).
    fn str_plain(&mut self, v: &str) {
        self.str(v);
    }
    /// A value that is the timestamp in RFC 3339 form (`nanos_digits` 3 or 9).
    fn rfc3339(&mut self, secs: u64, nanos: u32, nanos_digits: usize);
    /// A signed integer.
    fn i64(&mut self, v: i64);
    /// An unsigned integer.
    fn u64(&mut self, v: u64);
    /// A float (NaN and infinities are the emitter's to map; JSON writes `null`).
    fn f64(&mut self, v: f64);
    /// A boolean.
    fn bool(&mut self, v: bool);
    /// No value.
    fn null(&mut self);
    /// Starts an array.
    fn begin_array(&mut self);
    /// Ends an array.
    fn end_array(&mut self);
    /// Starts a nested map.
    fn begin_map(&mut self);
    /// Ends a nested map.
    fn end_map(&mut self);
    /// For JSON emitters, the output to append one whole member of the current map to
    /// (`"key":value`, JSON text rendered ahead of time); `None` (the default) for other
    /// formats, which get the member as calls.
    fn json_member(&mut self) -> Option<&mut Vec<u8>> {
        None
    }
}

/// Writes one JSON object (no trailing newline) into a byte vector.
#[derive(Debug)]
pub struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next key or element needs a comma before it.
    comma: bool,
}

impl<'a> JsonWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        JsonWriter { out, comma: false }
    }

    #[inline]
    fn sep(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }
}

impl Emit for JsonWriter<'_> {
    fn begin_record(&mut self) {
        self.out.push(b'{');
        self.comma = false;
    }
    fn end_record(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }
    #[inline]
    fn key_static(&mut self, key: &Key) {
        self.sep();
        self.out.extend_from_slice(key.json());
        self.comma = false;
    }
    #[inline]
    fn key(&mut self, key: &str) {
        self.sep();
        write_json_str(self.out, key);
        self.out.push(b':');
        self.comma = false;
    }
    fn key_prefixed(&mut self, prefix: &str, key: &str) {
        self.sep();
        self.out.push(b'"');
        write_json_str_body(self.out, prefix);
        write_json_str_body(self.out, key);
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }
    #[inline]
    fn str(&mut self, v: &str) {
        self.sep();
        write_json_str(self.out, v);
        self.comma = true;
    }
    #[inline]
    fn str_plain(&mut self, v: &str) {
        self.sep();
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
        self.comma = true;
    }
    fn rfc3339(&mut self, secs: u64, nanos: u32, nanos_digits: usize) {
        self.sep();
        self.out.push(b'"');
        super::time::write_rfc3339(self.out, secs, nanos, nanos_digits);
        self.out.push(b'"');
        self.comma = true;
    }
    fn i64(&mut self, v: i64) {
        self.sep();
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self.comma = true;
    }
    fn u64(&mut self, v: u64) {
        self.sep();
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self.comma = true;
    }
    fn f64(&mut self, v: f64) {
        self.sep();
        if v.is_finite() {
            self.out
                .extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
        self.comma = true;
    }
    fn bool(&mut self, v: bool) {
        self.sep();
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self.comma = true;
    }
    fn null(&mut self) {
        self.sep();
        self.out.extend_from_slice(b"null");
        self.comma = true;
    }
    fn begin_array(&mut self) {
        self.sep();
        self.out.push(b'[');
        self.comma = false;
    }
    fn end_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }
    fn begin_map(&mut self) {
        self.sep();
        self.out.push(b'{');
        self.comma = false;
    }
    fn end_map(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }
    #[inline]
    fn json_member(&mut self) -> Option<&mut Vec<u8>> {
        self.sep();
        self.comma = true;
        Some(self.out)
    }
}

/// Bytes that need escaping inside a JSON string.
static ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Writes `s` as a quoted JSON string.
#[inline]
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_json_str_body(out, s);
    out.push(b'"');
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is a zero.
#[inline]
const fn has_zero(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

/// Whether any of the 8 bytes in `w` may need escaping (`< 0x20`, `"` or `\\`); it can say
/// yes for a clean word (then bytes are checked one by one), never no for a dirty one.
#[inline]
const fn may_need_escape(w: u64) -> bool {
    let control = w.wrapping_sub(0x2020_2020_2020_2020) & !w & HI;
    (control | has_zero(w ^ 0x2222_2222_2222_2222) | has_zero(w ^ 0x5c5c_5c5c_5c5c_5c5c)) != 0
}

/// Writes `s` escaped, without quotes. Clean runs are skipped 8 bytes at a time and copied once.
pub fn write_json_str_body(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if !may_need_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if ESCAPE[b as usize] {
            out.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn escaped_strings_parse_back_to_the_original(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            let mut out = Vec::new();
            write_json_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn every_byte_that_needs_escaping_is_escaped_at_every_offset() {
        for b in (0u8..0x20).chain([b'"', b'\\']) {
            for pos in 0..20 {
                let mut s = "a".repeat(20);
                s.replace_range(pos..pos + 1, std::str::from_utf8(&[b]).unwrap());
                let mut out = Vec::new();
                write_json_str(&mut out, &s);
                let back: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(back, s);
            }
        }
    }
}

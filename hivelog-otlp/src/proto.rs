//! The protobuf wire format, written and read by hand for the few OTLP messages hivelog uses.
//!
//! Why not `prost` or the `opentelemetry-proto` crate: a log record is encoded straight from
//! hivelog's [`Record`](hivelog_core::Record) (its text arena, its typed fields) into the
//! request body, without first building a tree of owned `String`s and `Vec`s per record and
//! per attribute, which is most of an OTLP exporter's cost. The messages are few and stable
//! (OTLP 1.x is a stable protocol), and the field numbers below are copied from the official
//! definitions (`opentelemetry/proto/{common,resource,logs,collector/logs}/v1/*.proto`,
//! `google/rpc/status.proto`, `google/rpc/error_details.proto`). Tests decode what this module
//! writes with the official Python classes (`opentelemetry-proto`), through a real collector.

/// Field numbers, named as in the official `.proto` files.
pub(crate) mod field {
    /// `ExportLogsServiceRequest.resource_logs`.
    pub(crate) const REQUEST_RESOURCE_LOGS: u32 = 1;
    /// `ResourceLogs.resource`.
    pub(crate) const RESOURCE_LOGS_RESOURCE: u32 = 1;
    /// `ResourceLogs.scope_logs`.
    pub(crate) const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
    /// `Resource.attributes`.
    pub(crate) const RESOURCE_ATTRIBUTES: u32 = 1;
    /// `ScopeLogs.scope`.
    pub(crate) const SCOPE_LOGS_SCOPE: u32 = 1;
    /// `ScopeLogs.log_records`.
    pub(crate) const SCOPE_LOGS_LOG_RECORDS: u32 = 2;
    /// `InstrumentationScope.name`.
    pub(crate) const SCOPE_NAME: u32 = 1;
    /// `LogRecord.time_unix_nano` (fixed64).
    pub(crate) const LOG_TIME: u32 = 1;
    /// `LogRecord.severity_number` (enum).
    pub(crate) const LOG_SEVERITY_NUMBER: u32 = 2;
    /// `LogRecord.severity_text`.
    pub(crate) const LOG_SEVERITY_TEXT: u32 = 3;
    /// `LogRecord.body` (AnyValue).
    pub(crate) const LOG_BODY: u32 = 5;
    /// `LogRecord.attributes` (KeyValue).
    pub(crate) const LOG_ATTRIBUTES: u32 = 6;
    /// `LogRecord.flags` (fixed32).
    pub(crate) const LOG_FLAGS: u32 = 8;
    /// `LogRecord.trace_id` (16 bytes).
    pub(crate) const LOG_TRACE_ID: u32 = 9;
    /// `LogRecord.span_id` (8 bytes).
    pub(crate) const LOG_SPAN_ID: u32 = 10;
    /// `LogRecord.observed_time_unix_nano` (fixed64).
    pub(crate) const LOG_OBSERVED_TIME: u32 = 11;
    /// `KeyValue.key`.
    pub(crate) const KV_KEY: u32 = 1;
    /// `KeyValue.value`.
    pub(crate) const KV_VALUE: u32 = 2;
    /// `AnyValue.string_value`.
    pub(crate) const ANY_STRING: u32 = 1;
    /// `AnyValue.bool_value`.
    pub(crate) const ANY_BOOL: u32 = 2;
    /// `AnyValue.int_value`.
    pub(crate) const ANY_INT: u32 = 3;
    /// `AnyValue.double_value`.
    pub(crate) const ANY_DOUBLE: u32 = 4;
    /// `ExportLogsServiceResponse.partial_success`.
    pub(crate) const RESPONSE_PARTIAL_SUCCESS: u32 = 1;
    /// `ExportLogsPartialSuccess.rejected_log_records`.
    pub(crate) const PARTIAL_REJECTED: u32 = 1;
    /// `ExportLogsPartialSuccess.error_message`.
    pub(crate) const PARTIAL_MESSAGE: u32 = 2;
    /// `google.rpc.Status.message`.
    pub(crate) const STATUS_MESSAGE: u32 = 2;
    /// `google.rpc.Status.details` (repeated `google.protobuf.Any`).
    pub(crate) const STATUS_DETAILS: u32 = 3;
    /// `google.protobuf.Any.type_url`.
    pub(crate) const ANY_TYPE_URL: u32 = 1;
    /// `google.protobuf.Any.value`.
    pub(crate) const ANY_VALUE: u32 = 2;
    /// `google.rpc.RetryInfo.retry_delay` (`google.protobuf.Duration`).
    pub(crate) const RETRY_INFO_DELAY: u32 = 1;
    /// `google.protobuf.Duration.seconds`.
    pub(crate) const DURATION_SECONDS: u32 = 1;
    /// `google.protobuf.Duration.nanos`.
    pub(crate) const DURATION_NANOS: u32 = 2;
}

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Bytes a varint of `v` takes.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn put_tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from((field << 3) | wire));
}

/// Bytes of a length-delimited field of `len` bytes whose number is below 16 (one-byte tag).
#[inline]
pub(crate) fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The tag and length of a length-delimited field; its `len` bytes follow.
#[inline]
pub(crate) fn put_len_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_tag(out, field, LEN);
    put_varint(out, len as u64);
}

#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_len_header(out, field, b.len());
    out.extend_from_slice(b);
}

#[inline]
pub(crate) fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(out, field, VARINT);
    put_varint(out, v);
}

#[inline]
pub(crate) fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn put_fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    put_tag(out, field, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

/// One field of a message being read: its number and its value.
#[derive(Debug, PartialEq)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads the top-level fields of a message; `None` on malformed input (a wrong answer from a
/// server must never panic the sink).
pub(crate) fn fields(mut b: &[u8]) -> Option<Vec<(u32, Wire<'_>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = get_varint(&mut b)?;
        let (field, wire) = (u32::try_from(tag >> 3).ok()?, (tag & 7) as u32);
        let v = match wire {
            VARINT => Wire::Varint(get_varint(&mut b)?),
            FIXED64 => {
                let (x, rest) = b.split_first_chunk::<8>()?;
                b = rest;
                Wire::Fixed64(u64::from_le_bytes(*x))
            }
            LEN => {
                let n = usize::try_from(get_varint(&mut b)?).ok()?;
                if n > b.len() {
                    return None;
                }
                let (x, rest) = b.split_at(n);
                b = rest;
                Wire::Bytes(x)
            }
            FIXED32 => {
                let (x, rest) = b.split_first_chunk::<4>()?;
                b = rest;
                Wire::Fixed32(u32::from_le_bytes(*x))
            }
            _ => return None,
        };
        out.push((field, v));
    }
    Some(out)
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_their_length_is_exact() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_uint(&mut out, 3, v);
            assert_eq!(out.len(), 1 + varint_len(v), "{v}");
            assert_eq!(fields(&out).unwrap(), [(3, Wire::Varint(v))]);
        }
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        assert!(fields(&[0x0a, 0x05, 1]).is_none());
        assert!(fields(&[0xff; 11]).is_none());
        assert!(fields(&[0x0b]).is_none());
        let mut out = Vec::new();
        put_bytes(&mut out, 2, b"hi");
        put_fixed64(&mut out, 1, 7);
        put_fixed32(&mut out, 8, 1);
        assert_eq!(
            fields(&out).unwrap(),
            [
                (2, Wire::Bytes(b"hi")),
                (1, Wire::Fixed64(7)),
                (8, Wire::Fixed32(1))
            ]
        );
    }
}

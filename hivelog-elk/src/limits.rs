//! What Elasticsearch accepts, and the bounds the sink keeps to, as constants beside the
//! sentence of the Elasticsearch reference they come from (create index API, HTTP settings).
//!
//! noida-db, the server the integration tests run against, is lenient where Elasticsearch is
//! strict, so the sink enforces these itself and its own tests check them.
//!
//! Not a constant, since the server decides it: `http.max_content_length` ("The max size of
//! allowed content of an HTTP request. Defaults to 100mb."). A request over it answers 413,
//! and the sink splits it (`crate::sink`) down to [`MIN_BATCH_BYTES`].

/// Index names "Cannot be longer than 255 bytes (note it is bytes, so multi-byte characters
/// will count towards the 255 limit faster)".
pub const MAX_INDEX_NAME_BYTES: usize = 255;

/// The characters index names "Cannot include": backslash, slash, `*` `?` `"` `<` `>` `|`
/// `,` `#` and the space; and `:`, refused since 8.0 (it names remote clusters).
pub const FORBIDDEN_INDEX_CHARS: &[char] =
    &['\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ' ', ':'];

/// The smallest byte limit a 413 can shrink batches to.
pub const MIN_BATCH_BYTES: usize = 1024;

/// The smallest cap on a response body: 8 MB.
pub const MIN_RESPONSE_CAP: usize = 8 << 20;

/// How much of a response is read for a request of `request_len` bytes: 8× the request, at
/// least [`MIN_RESPONSE_CAP`]. With `filter_path` a bulk answer is far smaller than its
/// request; a proxy or a hostile server answering gigabytes must not make the logging library
/// allocate them.
///
/// ```
/// assert_eq!(hivelog_elk::limits::response_cap(100), hivelog_elk::limits::MIN_RESPONSE_CAP);
/// ```
pub fn response_cap(request_len: usize) -> usize {
    request_len.saturating_mul(8).max(MIN_RESPONSE_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_capped_at_eight_times_the_request() {
        assert_eq!(response_cap(100), MIN_RESPONSE_CAP);
        assert_eq!(response_cap(5_000_000), 40_000_000);
    }
}

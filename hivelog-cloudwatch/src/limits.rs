//! What CloudWatch Logs accepts, as constants, each beside the sentence of the AWS
//! documentation it comes from (PutLogEvents API reference, PutRetentionPolicy, CreateLogGroup,
//! CreateLogStream).
//!
//! moto, the server the integration tests run against, checks only a few of these, so the
//! request builder enforces every one itself and the property tests prove it does.
//!
//! Not a number, so not a constant: "The log events in the batch must be in chronological order
//! by their timestamp." The request builder sorts each batch by timestamp (stably, so events
//! of the same millisecond keep the order they were logged in).

/// "The maximum number of log events in a batch is 10,000."
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// "The maximum batch size is 1,048,576 bytes. This size is calculated as the sum of all event
/// messages in UTF-8, plus 26 bytes for each log event."
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// The 26 bytes every event adds to its batch's size (see [`MAX_BATCH_BYTES`]).
pub const EVENT_OVERHEAD: usize = 26;

/// "A batch of log events in a single request cannot span more than 24 hours. Otherwise, the
/// operation fails." Kept strictly below, in milliseconds (the unit of event timestamps).
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 60 * 60 * 1000;

/// "Each log event can be no larger than 256 KB." — the classic limit, our default for
/// `HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES`. We count it like the batch size (message bytes + 26),
/// which is within the limit under either reading.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;

/// "Each log event can be no larger than 1 MB." — the current limit, the largest
/// `HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES` accepted (one such event fills a whole batch).
pub const MAX_EVENT_BYTES: usize = 1_048_576;

/// The smallest `HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES` accepted: room for the overhead, the
/// truncation marker and some text.
pub const MIN_EVENT_BYTES: usize = 256;

/// InputLogEvent.message: "Length Constraints: Minimum length of 1." An empty message is
/// sent as this instead.
pub const EMPTY_MESSAGE: &str = "(empty)";

/// Appended to a message cut to fit the event size limit, so a reader sees it was cut.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// "Events older than 14 days or preceding the log group's retention period are rejected
/// while processing remaining valid events." In milliseconds.
pub const MAX_EVENT_AGE_MS: i64 = 14 * 24 * 60 * 60 * 1000;

/// "Events more than 2 hours in the future are rejected while processing remaining valid
/// events." In milliseconds.
pub const MAX_EVENT_AHEAD_MS: i64 = 2 * 60 * 60 * 1000;

/// PutRetentionPolicy retentionInDays: "Valid Values: 1 | 3 | 5 | 7 | 14 | 30 | 60 | 90 | 120 |
/// 150 | 180 | 365 | 400 | 545 | 731 | 1096 | 1827 | 2192 | 2557 | 2922 | 3288 | 3653".
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// logGroupName: "Length Constraints: Minimum length of 1. Maximum length of 512.
/// Pattern: `[\.\-_/#A-Za-z0-9]+`".
pub const MAX_GROUP_NAME_LEN: usize = 512;

/// logStreamName: "Length Constraints: Minimum length of 1. Maximum length of 512.
/// Pattern: `[^:*]*`".
pub const MAX_STREAM_NAME_LEN: usize = 512;

/// Characters a stream name may not contain (see [`MAX_STREAM_NAME_LEN`]); rendered stream
/// names have them replaced by [`STREAM_NAME_REPLACEMENT`].
pub const STREAM_NAME_FORBIDDEN: &[char] = &[':', '*'];

/// What replaces a forbidden stream-name character (`my_svc::db` → `my_svc__db`).
pub const STREAM_NAME_REPLACEMENT: char = '_';

/// Whether `c` may appear in a log group name.
pub fn is_group_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')
}

/// Why a message was refused before sending (the `reason` of an [`hivelog_core::Outcome::Rejected`]).
pub mod reason {
    /// Older than 14 days (or the group's retention): CloudWatch would refuse it.
    pub const TOO_OLD: &str =
        "tooOld: older than CloudWatch accepts (14 days or the group's retention)";
    /// More than 2 hours ahead of the clock: CloudWatch would refuse it.
    pub const TOO_NEW: &str = "tooNew: more than 2 hours in the future";
    /// Older than the log group's retention, as reported by CloudWatch.
    pub const EXPIRED: &str = "expired: older than the log group's retention";
}

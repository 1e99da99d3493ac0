//! Which answers are retried, which are refusals, and how a partial refusal
//! (`rejectedLogEventsInfo`) maps back to records.
//!
//! The SDK's own retries are turned off (see [`crate::service`]): the pipeline already retries
//! with exponential backoff, full jitter and a deadline, and counts every attempt. Retrying in
//! two layers would multiply the attempts and hide them from the counters.
//!
//! | answer | outcome |
//! |---|---|
//! | `ThrottlingException`, `ServiceUnavailableException`, `LimitExceededException`, other 5xx, 429 | retry |
//! | timeouts, connection and I/O errors, unreadable responses (a `2xx` included) | retry |
//! | `ExpiredTokenException` (temporary credentials rotate) | retry |
//! | `ResourceNotFoundException` | create the group/stream, resend once, else retry |
//! | `AccessDeniedException`, `UnrecognizedClientException`, bad signature | failed: retrying cannot help |
//! | any other 4xx (`InvalidParameterException`) | the request's records are rejected with the message |

use aws_sdk_cloudwatchlogs::config::http::HttpResponse;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo;
use hivelog_core::{FailureKind, Outcomes};

use crate::limits::reason;

/// What to do after a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Temporary: send again after a backoff.
    Retry,
    /// The group or stream is gone: create it and send again.
    NotFound,
    /// The request was refused for good; its records are rejected.
    Reject,
    /// Nothing sent with this configuration can succeed (credentials, permissions).
    Fail,
}

/// Classifies an SDK error.
pub(crate) fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Disposition {
    let status = match err {
        // A 2xx the SDK could not read (a truncated body, a proxy's page): whether CloudWatch
        // stored the events is unknown, and nothing in the answer says they were refused.
        SdkError::ServiceError(ctx) if ctx.raw().status().is_success() => {
            return Disposition::Retry
        }
        SdkError::ServiceError(ctx) => ctx.raw().status().as_u16(),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return Disposition::Retry
        }
        // Building the request failed: no region, no credentials provider. Not temporary.
        _ => return Disposition::Fail,
    };
    classify_code(err.code().unwrap_or(""), status)
}

/// The kind of an SDK error, for the report and `hivelog check`.
pub(crate) fn failure_kind<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> FailureKind {
    match err {
        SdkError::ServiceError(ctx) if ctx.raw().status().is_success() => FailureKind::Protocol,
        SdkError::ServiceError(ctx) => {
            kind_of_code(err.code().unwrap_or(""), ctx.raw().status().as_u16())
        }
        SdkError::TimeoutError(_) => FailureKind::TimedOut,
        SdkError::DispatchFailure(f) if f.is_timeout() => FailureKind::TimedOut,
        SdkError::DispatchFailure(_) => FailureKind::Unreachable,
        SdkError::ResponseError(_) => FailureKind::Protocol,
        // Building the request failed: no region, or no credentials to sign it with.
        _ => FailureKind::NoCredentials,
    }
}

/// The kind of an AWS error code and HTTP status.
pub(crate) fn kind_of_code(code: &str, status: u16) -> FailureKind {
    match code {
        "ThrottlingException" | "LimitExceededException" | "RequestLimitExceeded" => {
            FailureKind::Throttled
        }
        "ServiceUnavailableException" | "InternalFailure" => FailureKind::Unavailable,
        _ if classify_code(code, status) == Disposition::Fail => FailureKind::Credentials,
        "ExpiredTokenException" => FailureKind::Credentials,
        _ if status == 429 => FailureKind::Throttled,
        _ if status >= 500 => FailureKind::Unavailable,
        _ => FailureKind::Protocol,
    }
}

/// Classifies an error code and HTTP status.
pub(crate) fn classify_code(code: &str, status: u16) -> Disposition {
    match code {
        "ThrottlingException"
        | "ServiceUnavailableException"
        | "LimitExceededException"
        | "RequestLimitExceeded"
        | "InternalFailure"
        | "ExpiredTokenException" => Disposition::Retry,
        "ResourceNotFoundException" => Disposition::NotFound,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidClientTokenId" => Disposition::Fail,
        _ if status == 429 || status >= 500 => Disposition::Retry,
        _ if status == 401 || status == 403 => Disposition::Fail,
        _ => Disposition::Reject,
    }
}

/// Marks the events CloudWatch refused (`indices[i]` is the record of the request's event `i`) in an otherwise accepted request, per the documented
/// indexes: `tooOldLogEventEndIndex` and `expiredLogEventEndIndex` are exclusive ends of a
/// prefix, `tooNewLogEventStartIndex` the inclusive start of a suffix (the request is in
/// timestamp order, so each refusal is a contiguous run). Returns how many were rejected.
pub(crate) fn apply_rejected(
    info: &RejectedLogEventsInfo,
    indices: &[usize],
    outcomes: &mut Outcomes,
) -> usize {
    let n = indices.len();
    let clamp = |i: i32| usize::try_from(i).unwrap_or(0).min(n);
    let mut rejected = vec![None; n];
    if let Some(end) = info.too_old_log_event_end_index() {
        rejected[..clamp(end)].fill(Some(reason::TOO_OLD));
    }
    if let Some(end) = info.expired_log_event_end_index() {
        rejected[..clamp(end)].fill(Some(reason::EXPIRED));
    }
    if let Some(start) = info.too_new_log_event_start_index() {
        rejected[clamp(start)..].fill(Some(reason::TOO_NEW));
    }
    let mut count = 0;
    for (&index, why) in indices.iter().zip(rejected) {
        if let Some(why) = why {
            outcomes.reject(index, why);
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::Outcome;

    #[test]
    fn throttling_and_unavailability_are_retried_and_permissions_are_not() {
        assert_eq!(
            classify_code("ThrottlingException", 400),
            Disposition::Retry
        );
        assert_eq!(
            classify_code("ServiceUnavailableException", 503),
            Disposition::Retry
        );
        assert_eq!(classify_code("", 502), Disposition::Retry);
        assert_eq!(
            classify_code("ResourceNotFoundException", 400),
            Disposition::NotFound
        );
        assert_eq!(
            classify_code("AccessDeniedException", 400),
            Disposition::Fail
        );
        assert_eq!(
            classify_code("UnrecognizedClientException", 400),
            Disposition::Fail
        );
        assert_eq!(
            classify_code("InvalidParameterException", 400),
            Disposition::Reject
        );
    }

    #[test]
    fn rejected_log_events_info_marks_exactly_the_documented_ranges() {
        let events: Vec<usize> = (100..110).collect();
        let mut outcomes = Outcomes::delivered(110);
        let info = RejectedLogEventsInfo::builder()
            .too_old_log_event_end_index(3)
            .expired_log_event_end_index(1)
            .too_new_log_event_start_index(8)
            .build();
        assert_eq!(apply_rejected(&info, &events, &mut outcomes), 5);
        let reason_of = |i: usize| match outcomes.as_slice()[i] {
            Outcome::Rejected(r) => Some(outcomes.reason(r).to_owned()),
            _ => None,
        };
        assert_eq!(reason_of(100).as_deref(), Some(reason::EXPIRED));
        assert_eq!(reason_of(101).as_deref(), Some(reason::TOO_OLD));
        assert_eq!(reason_of(102).as_deref(), Some(reason::TOO_OLD));
        assert_eq!(reason_of(103), None);
        assert_eq!(reason_of(107), None);
        assert_eq!(reason_of(108).as_deref(), Some(reason::TOO_NEW));
        assert_eq!(reason_of(109).as_deref(), Some(reason::TOO_NEW));
        // Out-of-range indexes are clamped, never panic.
        let wild = RejectedLogEventsInfo::builder()
            .too_old_log_event_end_index(99)
            .too_new_log_event_start_index(-4)
            .build();
        assert_eq!(
            apply_rejected(&wild, &events, &mut Outcomes::delivered(110)),
            10
        );
    }
}

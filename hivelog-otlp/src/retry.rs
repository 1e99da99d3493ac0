//! Which answers are retried, which are permanent, and what a partial success means; the
//! rules of the OTLP specification ("OTLP/HTTP Response", "Failures", "Throttling").
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx, no `partial_success` | delivered |
//! | 2xx, `partial_success.rejected_log_records = n > 0` | the last `n` records of the request rejected with `error_message` (OTLP does not say which; the count is what the report needs), the rest delivered, never retried |
//! | 2xx, `rejected_log_records = 0` and an `error_message` | delivered; the message is a warning |
//! | 429, 502, 503, 504 | retried after a backoff, at least `Retry-After` (seconds) when given |
//! | connection refused, reset, timed out | retried |
//! | 401, 403 | failed: the credentials (`OTEL_EXPORTER_OTLP_HEADERS`) are refused |
//! | any other status (400, 404, 413, 500 …) | failed: "all other responses MUST NOT be retried"; the `google.rpc.Status` message is in the error |
//!
//! Over gRPC ("OTLP/gRPC Response"):
//!
//! | status | outcome |
//! |---|---|
//! | `OK`, with or without `partial_success` | as a 2xx above |
//! | `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS` | retried, at least the `google.rpc.RetryInfo` delay when the status carries one |
//! | `RESOURCE_EXHAUSTED` with `RetryInfo` | retried (the server is throttling) |
//! | `RESOURCE_EXHAUSTED` without it | failed: it usually means a message too large, which resending cannot fix |
//! | `UNAUTHENTICATED`, `PERMISSION_DENIED` | failed: the credentials are refused |
//! | any other | failed |

use std::time::Duration;

use hivelog_core::FailureKind;

use crate::limits::MAX_RETRY_AFTER;
use crate::proto::{self, field, Wire};

/// What to do with the records of one request.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Accepted; `rejected` of them refused for good with `message`.
    Delivered {
        rejected: u64,
        message: Option<String>,
    },
    /// Send again after a backoff.
    Retry {
        kind: FailureKind,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Refused for good.
    Fail { kind: FailureKind, message: String },
}

/// Reads an HTTP answer. `json` says how the body is encoded (as the request was).
pub(crate) fn verdict(
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
    json: bool,
    url: &str,
) -> Verdict {
    if (200..300).contains(&status) {
        let (rejected, message) = partial_success(body, json);
        return Verdict::Delivered { rejected, message };
    }
    let detail = status_message(body, json);
    let message = format!("{url} answered {status}: {detail}");
    match status {
        429 | 502 | 503 | 504 => Verdict::Retry {
            kind: if status == 429 {
                FailureKind::Throttled
            } else {
                FailureKind::Unavailable
            },
            message,
            retry_after: retry_after(retry_after_header),
        },
        401 | 403 => Verdict::Fail {
            kind: FailureKind::Credentials,
            message: format!("{message} (check OTEL_EXPORTER_OTLP_HEADERS)"),
        },
        s if s >= 500 => Verdict::Fail {
            kind: FailureKind::Unavailable,
            message,
        },
        _ => Verdict::Fail {
            kind: FailureKind::Protocol,
            message,
        },
    }
}

/// Reads a gRPC call's failure status.
pub(crate) fn grpc_verdict(status: &tonic::Status, url: &str) -> Verdict {
    use tonic::Code;
    let code = status.code();
    let message = format!("{url} answered {code:?}: {}", status.message());
    let retry_after = retry_info(status.details());
    let kind = match code {
        Code::DeadlineExceeded => FailureKind::TimedOut,
        // A status tonic made from a transport error (refused, reset): nothing answered.
        Code::Unavailable if std::error::Error::source(status).is_some() => {
            FailureKind::Unreachable
        }
        Code::ResourceExhausted => FailureKind::Throttled,
        Code::Unauthenticated | Code::PermissionDenied => FailureKind::Credentials,
        Code::Cancelled | Code::Aborted | Code::OutOfRange | Code::Unavailable | Code::DataLoss => {
            FailureKind::Unavailable
        }
        _ => FailureKind::Protocol,
    };
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Verdict::Retry {
            kind,
            message,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => Verdict::Retry {
            kind,
            message,
            retry_after,
        },
        Code::ResourceExhausted => Verdict::Fail {
            kind: FailureKind::Protocol,
            message: format!("{message} (no RetryInfo: the request is likely too large)"),
        },
        _ => Verdict::Fail { kind, message },
    }
}

/// The delay of a `google.rpc.RetryInfo` among the details of a `google.rpc.Status`
/// (`details` is the status's encoded bytes, as the `grpc-status-details-bin` trailer carries).
pub(crate) fn retry_info(details: &[u8]) -> Option<Duration> {
    let status = proto::fields(details)?;
    let any = status.into_iter().find_map(|(f, w)| match (f, w) {
        (field::STATUS_DETAILS, Wire::Bytes(any)) => {
            let fs = proto::fields(any)?;
            let is_retry_info = fs.iter().any(|(f, w)| {
                matches!((f, w), (&field::ANY_TYPE_URL, Wire::Bytes(t)) if t.ends_with(b"/google.rpc.RetryInfo"))
            });
            is_retry_info.then(|| {
                fs.into_iter().find_map(|(f, w)| match (f, w) {
                    (field::ANY_VALUE, Wire::Bytes(v)) => Some(v),
                    _ => None,
                })
            })?
        }
        _ => None,
    })?;
    let delay = proto::fields(any)?
        .into_iter()
        .find_map(|(f, w)| match (f, w) {
            (field::RETRY_INFO_DELAY, Wire::Bytes(d)) => Some(d),
            _ => None,
        })?;
    let (mut secs, mut nanos) = (0u64, 0u32);
    for (f, w) in proto::fields(delay)? {
        match (f, w) {
            (field::DURATION_SECONDS, Wire::Varint(v)) => secs = (v as i64).max(0) as u64,
            (field::DURATION_NANOS, Wire::Varint(v)) => {
                nanos = (v as i32).clamp(0, 999_999_999) as u32
            }
            _ => {}
        }
    }
    Some(Duration::new(secs, nanos).min(MAX_RETRY_AFTER))
}

/// `Retry-After` in seconds (the form collectors send), capped.
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// `ExportLogsServiceResponse.partial_success`: rejected count and message. An empty or
/// unreadable 2xx body counts as full success, as the specification's "the server MUST respond
/// with HTTP 200 OK" makes the body informative only.
pub(crate) fn partial_success(body: &[u8], json: bool) -> (u64, Option<String>) {
    let (n, m) = if json {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return (0, None);
        };
        let p = &v["partialSuccess"];
        let n = match &p["rejectedLogRecords"] {
            serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            _ => 0,
        };
        (n, p["errorMessage"].as_str().map(str::to_owned))
    } else {
        let mut n = 0;
        let mut m = None;
        for (f, w) in proto::fields(body).unwrap_or_default() {
            let (field::RESPONSE_PARTIAL_SUCCESS, Wire::Bytes(p)) = (f, w) else {
                continue;
            };
            for (f, w) in proto::fields(p).unwrap_or_default() {
                match (f, w) {
                    (field::PARTIAL_REJECTED, Wire::Varint(v)) => n = (v as i64).max(0) as u64,
                    (field::PARTIAL_MESSAGE, Wire::Bytes(b)) => {
                        m = Some(String::from_utf8_lossy(b).into_owned())
                    }
                    _ => {}
                }
            }
        }
        (n, m)
    };
    (n, m.filter(|m| !m.is_empty()))
}

/// The message of a `google.rpc.Status` body, else the start of the body as text.
pub(crate) fn status_message(body: &[u8], json: bool) -> String {
    let from_status = if json {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
    } else {
        proto::fields(body).and_then(|fs| {
            fs.into_iter().find_map(|(f, w)| match (f, w) {
                (field::STATUS_MESSAGE, Wire::Bytes(b)) => {
                    std::str::from_utf8(b).ok().map(str::to_owned)
                }
                _ => None,
            })
        })
    };
    if let Some(m) = from_status.filter(|m| !m.is_empty()) {
        return m;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        "empty body".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb_partial(n: i64, msg: &str) -> Vec<u8> {
        let mut inner = Vec::new();
        proto::put_uint(&mut inner, field::PARTIAL_REJECTED, n as u64);
        proto::put_bytes(&mut inner, field::PARTIAL_MESSAGE, msg.as_bytes());
        let mut out = Vec::new();
        proto::put_bytes(&mut out, field::RESPONSE_PARTIAL_SUCCESS, &inner);
        out
    }

    #[test]
    fn the_specification_s_retryable_statuses_are_retried_and_no_other() {
        for s in [429, 502, 503, 504] {
            assert!(
                matches!(verdict(s, None, b"", false, "u"), Verdict::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 413, 500, 501] {
            assert!(
                matches!(verdict(s, None, b"", false, "u"), Verdict::Fail { .. }),
                "{s}"
            );
        }
        assert!(matches!(
            verdict(401, None, b"", false, "u"),
            Verdict::Fail {
                kind: FailureKind::Credentials,
                ..
            }
        ));
        assert_eq!(
            verdict(503, Some("7"), b"", false, "u"),
            Verdict::Retry {
                kind: FailureKind::Unavailable,
                message: "u answered 503: empty body".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(retry_after(Some("99999")), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn partial_success_is_read_in_both_encodings() {
        assert_eq!(
            partial_success(&pb_partial(2, "too old"), false),
            (2, Some("too old".into()))
        );
        assert_eq!(partial_success(b"", false), (0, None));
        assert_eq!(partial_success(&pb_partial(-5, ""), false), (0, None));
        assert_eq!(
            partial_success(
                br#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"x"}}"#,
                true
            ),
            (3, Some("x".into()))
        );
        assert_eq!(partial_success(b"{}", true), (0, None));
    }

    fn status_with_retry_info(code: tonic::Code, secs: Option<u64>) -> tonic::Status {
        let mut details = Vec::new();
        proto::put_uint(&mut details, 1, code as u64);
        proto::put_bytes(&mut details, field::STATUS_MESSAGE, b"slow down");
        if let Some(secs) = secs {
            let mut duration = Vec::new();
            proto::put_uint(&mut duration, field::DURATION_SECONDS, secs);
            proto::put_uint(&mut duration, field::DURATION_NANOS, 500_000_000);
            let mut info = Vec::new();
            proto::put_bytes(&mut info, field::RETRY_INFO_DELAY, &duration);
            let mut any = Vec::new();
            proto::put_bytes(
                &mut any,
                field::ANY_TYPE_URL,
                b"type.googleapis.com/google.rpc.RetryInfo",
            );
            proto::put_bytes(&mut any, field::ANY_VALUE, &info);
            proto::put_bytes(&mut details, field::STATUS_DETAILS, &any);
        }
        tonic::Status::with_details(code, "slow down", details.into())
    }

    #[test]
    fn grpc_codes_follow_the_specification_and_resource_exhausted_needs_retry_info() {
        use tonic::Code;
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            let v = grpc_verdict(&tonic::Status::new(code, "x"), "u");
            assert!(matches!(v, Verdict::Retry { .. }), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Internal,
            Code::Unimplemented,
            Code::Unknown,
            Code::ResourceExhausted,
        ] {
            let v = grpc_verdict(&tonic::Status::new(code, "x"), "u");
            assert!(matches!(v, Verdict::Fail { .. }), "{code:?}");
        }
        assert!(matches!(
            grpc_verdict(&tonic::Status::new(Code::Unauthenticated, "x"), "u"),
            Verdict::Fail {
                kind: FailureKind::Credentials,
                ..
            }
        ));
        let throttled = status_with_retry_info(Code::ResourceExhausted, Some(2));
        assert_eq!(
            grpc_verdict(&throttled, "u"),
            Verdict::Retry {
                kind: FailureKind::Throttled,
                message: "u answered ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_millis(2500)),
            }
        );
        let unavailable = status_with_retry_info(Code::Unavailable, Some(1));
        assert!(matches!(
            grpc_verdict(&unavailable, "u"),
            Verdict::Retry { retry_after: Some(d), .. } if d == Duration::from_millis(1500)
        ));
        assert_eq!(
            retry_info(status_with_retry_info(Code::Unavailable, None).details()),
            None
        );
        assert_eq!(retry_info(b"\xff"), None);
    }

    #[test]
    fn an_error_names_the_status_message() {
        let mut status = Vec::new();
        proto::put_uint(&mut status, 1, 3);
        proto::put_bytes(&mut status, field::STATUS_MESSAGE, b"bad severity");
        let Verdict::Fail { kind, message } =
            verdict(400, None, &status, false, "http://c/v1/logs")
        else {
            panic!()
        };
        assert_eq!(kind, FailureKind::Protocol);
        assert_eq!(message, "http://c/v1/logs answered 400: bad severity");
        assert_eq!(status_message(br#"{"code":3,"message":"m"}"#, true), "m");
        assert_eq!(status_message(b"<html>oops", true), "<html>oops");
    }
}

//! What an answer from `_bulk` means for each document: the one file that says what is
//! retried, what is rejected and what stops the sink.
//!
//! The pipeline does the retrying (backoff, jitter, deadline, counters); this file only says
//! which documents go back to it. A document resent after a timeout is safe: its `_id` is
//! ours and unique to the record, so a copy that had landed answers 409.
//!
//! | answer | outcome |
//! |---|---|
//! | connection refused or reset, timeout, TLS failure | the request and the rest of the batch are retried |
//! | the HTTP client cannot be built (an unusable CA certificate) | failed |
//! | 2xx | each item is read (below) |
//! | 2xx that cannot be read, or lists fewer items than documents | the unread documents are retried |
//! | 413 | the request is split in halves; a single document is rejected |
//! | 408, 429, 5xx | the request is retried after a backoff (honouring `Retry-After`) |
//! | 401, 403 | failed, not retried: the credentials or privileges are wrong, and retrying would hammer the cluster |
//! | 404 (a wrong path prefix) and any other status | failed: a configuration problem |
//! | item 2xx, item 409 on `create` | delivered (a 409 means an earlier attempt landed) |
//! | item 429, 5xx, `es_rejected_execution_exception` | that document alone is retried |
//! | any other item error (`document_parsing_exception`, `mapper_parsing_exception`, `illegal_argument_exception`, 404 `index_not_found_exception`, …) | rejected for good with `error.type: reason` (and written to the dead-letter file) |
//!
//! A whole-request failure ends the send: the ranges of the batch not yet sent share its fate.
//! Responses are read with a size cap ([`crate::limits::response_cap`]): a proxy or a hostile
//! server answering gigabytes must not make the logging library allocate them.

use hivelog_core::FailureKind;
use std::time::Duration;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::config::Action;

/// What to do with a whole request, from its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Read the items.
    Items,
    /// The body is too large for the server: send it in halves.
    Split,
    /// Resend everything after a backoff.
    Retry(FailureKind, String),
    /// Bad credentials or missing privileges: fail, report once.
    Auth(String),
    /// Any other refusal of the whole request: fail.
    Fail(String),
}

/// Classifies a whole-request answer.
pub(crate) fn verdict(status: u16, body: &[u8], url: &str) -> Verdict {
    match status {
        200..=299 => Verdict::Items,
        413 => Verdict::Split,
        401 => Verdict::Auth(format!(
            "Elasticsearch at {url} answered 401 Unauthorized ({}): check HIVELOG_ES_USERNAME/HIVELOG_ES_PASSWORD or HIVELOG_ES_API_KEY; documents are not retried",
            error_summary(body)
        )),
        403 => Verdict::Auth(format!(
            "Elasticsearch at {url} answered 403 Forbidden ({}): the user or API key lacks the 'create_doc' (or 'index') privilege on the index; documents are not retried",
            error_summary(body)
        )),
        408 | 429 | 500..=599 => Verdict::Retry(
            match status {
                408 => FailureKind::TimedOut,
                429 => FailureKind::Throttled,
                _ => FailureKind::Unavailable,
            },
            format!(
                "Elasticsearch at {url} answered {status} ({})",
                error_summary(body)
            ),
        ),
        404 => Verdict::Fail(format!(
            "Elasticsearch at {url} answered 404 Not Found ({}): check HIVELOG_ES_URL (is a path prefix missing or wrong?)",
            error_summary(body)
        )),
        _ => Verdict::Fail(format!(
            "Elasticsearch at {url} answered {status} ({})",
            error_summary(body)
        )),
    }
}

/// `Retry-After` in seconds (the form Elasticsearch and proxies use), capped at 10 minutes.
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(600)))
}

/// `type: reason` from an Elasticsearch error body, or the start of the body.
pub(crate) fn error_summary(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let e = &v["error"];
        if let Some(r) = e
            .get("root_cause")
            .and_then(|r| r.get(0))
            .filter(|_| e.get("reason").is_none())
        {
            return error_text(r);
        }
        if e.is_object() {
            return error_text(e);
        }
        if let Some(s) = e.as_str() {
            return s.to_owned();
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        "empty body".to_owned()
    } else {
        text.to_owned()
    }
}

fn error_text(e: &serde_json::Value) -> String {
    let kind = e["type"].as_str().unwrap_or("error");
    match e["reason"].as_str() {
        Some(r) => format!("{kind}: {r}"),
        None => kind.to_owned(),
    }
}

/// One item of a bulk answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) status: u16,
    /// `error.type`, when there is an error.
    pub(crate) error_type: Option<String>,
    /// `error.reason`.
    pub(crate) reason: Option<String>,
}

/// A parsed bulk answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BulkResponse {
    pub(crate) errors: bool,
    /// `None` when the answer has no `items` (some compatible servers omit them when
    /// `errors` is false).
    pub(crate) items: Option<Vec<Item>>,
}

/// What happened to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ItemOutcome {
    Delivered,
    Retry(String),
    Rejected(String),
}

impl Item {
    /// Classifies the item (see the module docs).
    pub(crate) fn outcome(&self, action: Action) -> ItemOutcome {
        let kind = self.error_type.as_deref().unwrap_or("");
        if (200..300).contains(&self.status) || (self.status == 0 && self.error_type.is_none()) {
            return ItemOutcome::Delivered;
        }
        if self.status == 409 && action == Action::Create {
            return ItemOutcome::Delivered;
        }
        let reason = match (&self.error_type, &self.reason) {
            (Some(t), Some(r)) => format!("{t}: {r}"),
            (Some(t), None) => t.clone(),
            (None, Some(r)) => format!("{}: {r}", self.status),
            (None, None) => format!("status {}", self.status),
        };
        if self.status == 429 || self.status >= 500 || kind == "es_rejected_execution_exception" {
            ItemOutcome::Retry(reason)
        } else {
            ItemOutcome::Rejected(with_hint(reason))
        }
    }
}

/// Adds what to do to the rejections a configuration causes. The usual one: an index named
/// `logs-<a>-<b>` (a service name with a dash) matches Elasticsearch's built-in `logs-*-*`
/// data-stream template, which requires `@timestamp` and `create`.
fn with_hint(reason: String) -> String {
    let hint = if reason.contains("[@timestamp]") && reason.contains("missing") {
        "; the index is a data stream (Elasticsearch's built-in logs-*-* template matches it), which needs @timestamp: set HIVELOG_SCHEMA=ecs, or rename the timestamp field (HIVELOG_FIELDS=@timestamp=timestamp,level,target,message), or choose an HIVELOG_ES_INDEX that matches no data-stream template"
    } else if reason.contains("op_type of create") {
        "; data streams only accept HIVELOG_ES_ACTION=create"
    } else {
        return reason;
    };
    reason + hint
}

/// Parses a bulk answer; `Err` says why it is not one.
///
/// When `errors: false` comes before `items` (as Elasticsearch writes it), the items are
/// skipped without being built: every one of them succeeded, and a 10,000-item answer is
/// then read at scanning speed.
pub(crate) fn parse_bulk(body: &[u8]) -> Result<BulkResponse, String> {
    serde_json::from_slice::<RawResponse>(body)
        .map(|r| r.0)
        .map_err(|e| format!("unreadable bulk response ({e}): {}", error_summary(body)))
}

struct RawResponse(BulkResponse);

impl<'de> Deserialize<'de> for RawResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Errors,
            Items,
            #[serde(other)]
            Other,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawResponse;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a bulk response object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawResponse, A::Error> {
                let mut errors = None;
                let mut items = None;
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::Errors => errors = Some(map.next_value::<bool>()?),
                        Field::Items if errors == Some(false) => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        Field::Items => {
                            let v: Vec<RawItem> = map.next_value()?;
                            items = Some(v.into_iter().map(|i| i.0).collect());
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawResponse(BulkResponse {
                    errors: errors.unwrap_or(false),
                    items,
                }))
            }
        }
        d.deserialize_map(V)
    }
}

/// `{"<action>": {"status": …, "error": {…}}}`, whatever the action's name.
struct RawItem(Item);

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawItem;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a bulk item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem, A::Error> {
                let mut item = None;
                while map.next_key::<IgnoredAny>()?.is_some() {
                    let body: ItemBody = map.next_value()?;
                    item.get_or_insert(body);
                }
                let body = item.unwrap_or_default();
                let (error_type, reason) = match body.error {
                    None => (None, None),
                    Some(serde_json::Value::String(s)) => (Some(s), None),
                    Some(e) => (
                        Some(e["type"].as_str().unwrap_or("error").to_owned()),
                        e["reason"].as_str().map(str::to_owned),
                    ),
                };
                Ok(RawItem(Item {
                    status: body.status,
                    error_type,
                    reason,
                }))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize, Default)]
struct ItemBody {
    #[serde(default)]
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_read_one_by_one() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"i","status":201}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict, document already exists"}}},
            {"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
            {"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"[1:9] failed to parse field [n] of type [long]"}}},
            {"index":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
            {"create":{"status":400,"error":{"type":"es_rejected_execution_exception","reason":"odd"}}}
        ]}"#;
        let r = parse_bulk(body).unwrap();
        assert!(r.errors);
        let out: Vec<ItemOutcome> = r
            .items
            .unwrap()
            .iter()
            .map(|i| i.outcome(Action::Create))
            .collect();
        assert_eq!(out[0], ItemOutcome::Delivered);
        assert_eq!(out[1], ItemOutcome::Delivered);
        assert!(
            matches!(&out[2], ItemOutcome::Retry(r) if r.starts_with("es_rejected_execution_exception"))
        );
        assert_eq!(
            out[3],
            ItemOutcome::Rejected(
                "document_parsing_exception: [1:9] failed to parse field [n] of type [long]".into()
            )
        );
        assert!(matches!(out[4], ItemOutcome::Retry(_)));
        assert!(matches!(out[5], ItemOutcome::Retry(_)));
    }

    #[test]
    fn data_stream_rejections_say_what_to_change() {
        let item = Item {
            status: 400,
            error_type: Some("document_parsing_exception".into()),
            reason: Some(
                "[1:2] failed to parse: data stream timestamp field [@timestamp] is missing".into(),
            ),
        };
        let ItemOutcome::Rejected(r) = item.outcome(Action::Create) else {
            panic!()
        };
        assert!(r.contains("HIVELOG_SCHEMA=ecs"), "{r}");
        let item = Item {
            status: 400,
            error_type: Some("illegal_argument_exception".into()),
            reason: Some(
                "only write ops with an op_type of create are allowed in data streams".into(),
            ),
        };
        let ItemOutcome::Rejected(r) = item.outcome(Action::Index) else {
            panic!()
        };
        assert!(r.ends_with("only accept HIVELOG_ES_ACTION=create"), "{r}");
    }

    #[test]
    fn a_409_is_delivered_only_for_create() {
        let item = Item {
            status: 409,
            error_type: Some("version_conflict_engine_exception".into()),
            reason: None,
        };
        assert_eq!(item.outcome(Action::Create), ItemOutcome::Delivered);
        assert!(matches!(
            item.outcome(Action::Index),
            ItemOutcome::Rejected(_)
        ));
    }

    #[test]
    fn answers_without_items_and_broken_answers() {
        assert_eq!(
            parse_bulk(br#"{"errors":false}"#).unwrap(),
            BulkResponse {
                errors: false,
                items: None
            }
        );
        assert!(parse_bulk(b"<html>bad gateway</html>")
            .unwrap_err()
            .contains("bad gateway"));
        assert!(parse_bulk(br#"{"errors":true,"items":[{"create":{"status":"x"}}]}"#).is_err());
    }

    #[test]
    fn whole_request_statuses() {
        let body = br#"{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials"}],"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]"},"status":401}"#;
        match verdict(401, body, "http://h") {
            Verdict::Auth(m) => {
                assert!(
                    m.contains(
                        "security_exception: missing authentication credentials for REST request"
                    ),
                    "{m}"
                );
                assert!(m.contains("HIVELOG_ES_USERNAME"), "{m}");
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(verdict(403, b"", "u"), Verdict::Auth(_)));
        assert_eq!(verdict(413, b"", "u"), Verdict::Split);
        assert!(matches!(
            verdict(429, b"", "u"),
            Verdict::Retry(FailureKind::Throttled, _)
        ));
        assert!(
            matches!(verdict(502, b"<html>", "u"), Verdict::Retry(FailureKind::Unavailable, m) if m.contains("<html>"))
        );
        assert!(matches!(verdict(404, b"", "u"), Verdict::Fail(m) if m.contains("path prefix")));
        assert_eq!(verdict(200, b"", "u"), Verdict::Items);
        assert_eq!(retry_after(Some("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }
}

//! `HIVELOG_ES_SETUP=true`: an index template so Kibana sorts and filters right on first use.
//!
//! Without a template, Elasticsearch guesses mappings from the first document: an RFC 3339
//! `timestamp` becomes a `date` only if date detection happens to apply, `level` becomes `text`
//! (plus a `.keyword` sub-field) and cannot be filtered on directly, and a later document with
//! another type for the same field is rejected. The template maps hivelog's basic fields
//! explicitly: the timestamp as `date`, the message as `text`, the level, target, service and
//! other names as `keyword`, line and pid as `long`.
//!
//! It is installed by the sink's `start`, on the sink's own thread: `init` never waits on the
//! network, and the template is in place before the first batch creates the index. A failure
//! is reported on stderr and delivery goes on (documents still land, with dynamic mappings).
//! The template is a composable `_index_template` named `hivelog-<pattern>`; it creates plain
//! indices, not data streams. Its priority is 200 plus the pattern's length: above
//! Elasticsearch's built-in `logs-*-*` (100), and distinct for two services whose patterns
//! overlap (`logs-web-*` and `logs-web-api-*`), where equal priorities would make Elasticsearch
//! refuse the second template; the longer, more specific pattern wins.

use bytes::Bytes;
use hivelog_core::diag;
use hivelog_core::format::{Attr, Format};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::limits::MIN_RESPONSE_CAP;
use crate::retry::error_summary;
use crate::service::Transport;

/// Base priority of the installed template (the pattern's length is added).
pub const TEMPLATE_PRIORITY: u32 = 200;

/// Installs the index template for `pattern` (`HIVELOG_ES_SETUP`); a failure is reported on
/// stderr and delivery goes on, with dynamic mappings.
pub(crate) async fn install_template(transport: &mut Transport, format: &Format, pattern: &str) {
    let (name, body) = index_template(format, pattern);
    let body = Bytes::from(body.to_string());
    let path = format!("/_index_template/{name}");
    match transport
        .send(
            Method::PUT,
            &path,
            "application/json",
            body,
            false,
            MIN_RESPONSE_CAP,
        )
        .await
    {
        Ok(a) if (200..300).contains(&a.status) => {}
        Ok(a) => {
            diag::warn(
                "elasticsearch",
                "setup",
                format_args!(
                    "HIVELOG_ES_SETUP: installing index template {name} at {} failed with {} ({}); documents still go out, with dynamic mappings",
                    a.url,
                    a.status,
                    error_summary(&a.body)
                ),
            );
        }
        Err(e) => {
            diag::warn(
                "elasticsearch",
                "setup",
                format_args!(
                    "HIVELOG_ES_SETUP: installing index template {name} failed ({e}); documents still go out, with dynamic mappings"
                ),
            );
        }
    }
}

/// The template's name and body for index pattern `pattern`.
pub(crate) fn index_template(format: &Format, pattern: &str) -> (String, Value) {
    let mut properties = Map::new();
    for (key, attr) in format.basic().chain(format.trace_fields()) {
        let mapping = match attr {
            Attr::Timestamp => {
                json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"})
            }
            Attr::Message => json!({"type": "text"}),
            Attr::Line | Attr::Pid | Attr::ThreadId => json!({"type": "long"}),
            Attr::Level
            | Attr::Target
            | Attr::Module
            | Attr::File
            | Attr::Span
            | Attr::Spans
            | Attr::Thread
            | Attr::Hostname
            | Attr::Service
            | Attr::TraceId
            | Attr::SpanId
            | Attr::Const(_) => json!({"type": "keyword", "ignore_above": 1024}),
        };
        properties.insert(key.to_owned(), mapping);
    }
    let name: String = pattern
        .chars()
        .map(|c| if c == '*' { '_' } else { c })
        .collect();
    let name = format!("hivelog-{}", name.trim_end_matches(['_', '-']));
    let body = json!({
        "index_patterns": [pattern],
        "priority": TEMPLATE_PRIORITY + pattern.len() as u32,
        "template": { "mappings": { "properties": properties } },
        "_meta": { "created_by": "hivelog" }
    });
    (name, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_fields_get_explicit_mappings() {
        let format = Format::builder().service("web").build();
        let (name, body) = index_template(&format, "logs-web-*");
        assert_eq!(name, "hivelog-logs-web");
        let p = &body["template"]["mappings"]["properties"];
        assert_eq!(p["timestamp"]["type"], "date");
        assert_eq!(p["level"]["type"], "keyword");
        assert_eq!(p["message"]["type"], "text");
        assert_eq!(body["index_patterns"][0], "logs-web-*");
        assert_eq!(body["priority"], 210);
        let ecs = Format::builder()
            .schema(hivelog_core::format::Schema::Ecs)
            .build();
        let (_, body) = index_template(&ecs, "logs-x");
        let p = &body["template"]["mappings"]["properties"];
        assert_eq!(p["@timestamp"]["type"], "date");
        assert_eq!(p["log.level"]["type"], "keyword");
    }
}

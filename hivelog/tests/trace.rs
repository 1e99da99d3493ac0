//! Trace correlation on the lines: `trace_id` and `span_id` on every line of a traced span,
//! parsed back from the output.

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use hivelog::trace::{self, TraceParent};
use serde_json::Value;
use support::{json_lines, keys};
use tracing::{info, info_span, Instrument};

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn incoming() -> Option<TraceParent> {
    TraceParent::from_w3c([TP], [])
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn line<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:?}"))
}

#[test]
fn every_line_of_a_traced_span_and_its_children_carries_the_trace() {
    let mut outgoing = None;
    let lines = json_lines(&[], || {
        info!("before");
        let request = info_span!("request", path = "/x");
        trace::start(&request, incoming().as_ref());
        request.in_scope(|| {
            info!("in request");
            let db = info_span!("db");
            db.in_scope(|| info!("in db"));
            outgoing = trace::of(&db).map(|c| (c.traceparent(), c.span_id.to_string()));
        });
        info_span!("untraced").in_scope(|| info!("untraced span"));
        info!("after");
    });
    let req = line(&lines, "in request");
    let db = line(&lines, "in db");
    assert_eq!(
        keys(req),
        [
            "timestamp",
            "level",
            "target",
            "message",
            "trace_id",
            "span_id",
            "path"
        ]
    );
    assert_eq!(req["trace_id"], TRACE);
    assert_eq!(db["trace_id"], TRACE);
    assert!(is_hex(&req["span_id"], 16) && is_hex(&db["span_id"], 16));
    assert_ne!(req["span_id"], db["span_id"]);
    assert_ne!(
        req["span_id"], "b7ad6b7169203331",
        "a new span id, not the caller's"
    );
    let (traceparent, db_span) = outgoing.expect("db span has a trace");
    assert_eq!(db["span_id"], db_span.as_str());
    assert_eq!(traceparent, format!("00-{TRACE}-{db_span}-01"));
    for outside in ["before", "untraced span", "after"] {
        let l = line(&lines, outside);
        assert!(
            l.get("trace_id").is_none() && l.get("span_id").is_none(),
            "{l}"
        );
    }
}

#[test]
fn without_an_incoming_trace_a_new_random_one_starts() {
    let lines = json_lines(&[], || {
        for _ in 0..2 {
            let s = info_span!("request");
            trace::start(&s, None);
            s.in_scope(|| info!("hit"));
        }
    });
    assert_eq!(lines.len(), 2);
    assert!(is_hex(&lines[0]["trace_id"], 32), "{}", lines[0]);
    assert_ne!(lines[0]["trace_id"], "0".repeat(32));
    assert_ne!(lines[0]["trace_id"], lines[1]["trace_id"]);
}

#[test]
fn an_instrumented_future_keeps_the_trace_wherever_it_is_polled() {
    let lines = json_lines(&[], || {
        let span = info_span!("request");
        trace::start(&span, incoming().as_ref());
        let mut fut = pin!(async { info!("in future") }.instrument(span));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_ready());
    });
    assert_eq!(line(&lines, "in future")["trace_id"], TRACE);
}

#[test]
fn fields_can_rename_and_place_the_ids() {
    let lines = json_lines(
        &[("HIVELOG_FIELDS", "tid=trace_id,message,sid=span_id")],
        || {
            info!("outside");
            let s = info_span!("request");
            trace::start(&s, incoming().as_ref());
            s.in_scope(|| info!("inside"));
        },
    );
    let inside = line(&lines, "inside");
    assert_eq!(keys(inside), ["tid", "message", "sid"]);
    assert_eq!(inside["tid"], TRACE);
    assert!(is_hex(&inside["sid"], 16));
    let outside = line(&lines, "outside");
    assert_eq!(keys(outside), ["tid", "message", "sid"]);
    assert!(outside["tid"].is_null() && outside["sid"].is_null());
}

#[test]
fn ecs_names_them_trace_id_and_span_id_and_xray_format_is_for_cloudwatch() {
    let lines = json_lines(
        &[("HIVELOG_SCHEMA", "ecs"), ("HIVELOG_TRACE_FORMAT", "xray")],
        || {
            info!("outside");
            let s = info_span!("request");
            trace::start(
                &s,
                TraceParent::from_xray(
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                )
                .as_ref(),
            );
            s.in_scope(|| info!("inside"));
        },
    );
    let inside = line(&lines, "inside");
    assert_eq!(inside["trace.id"], "1-5759e988-bd862e3fe1be46a994272793");
    assert!(is_hex(&inside["span.id"], 16));
    assert!(inside.get("trace_id").is_none());
    let outside = line(&lines, "outside");
    assert!(outside.get("trace.id").is_none() && outside.get("span.id").is_none());
}

#[test]
fn a_user_field_named_trace_id_is_kept_beside_the_real_one() {
    let lines = json_lines(&[], || {
        let s = info_span!("request", trace_id = "mine");
        trace::start(&s, incoming().as_ref());
        s.in_scope(|| info!(span_id = 5, "inside"));
    });
    let l = line(&lines, "inside");
    assert_eq!(l["trace_id"], TRACE);
    assert_eq!(l["fields.trace_id"], "mine");
    assert_eq!(l["fields.span_id"], 5);
}

#[test]
fn a_bad_trace_format_names_the_variable() {
    let err = support::config_error(&[("HIVELOG_TRACE_FORMAT", "zipkin")]);
    assert_eq!(
        err,
        "HIVELOG_TRACE_FORMAT: 'zipkin' is not a trace id format; expected one of w3c, xray"
    );
}

#[test]
fn without_hivelog_the_api_returns_a_context_and_logs_nothing() {
    let span = info_span!("request");
    let ctx = trace::start(&span, incoming().as_ref());
    assert_eq!(ctx.trace_id.to_string(), TRACE);
    assert!(trace::of(&span).is_none());
    assert!(trace::current().is_none());
}

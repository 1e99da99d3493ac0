//! With OpenTelemetry, the ids on the lines are the exported spans' ids (checked against
//! `opentelemetry_sdk`'s in-memory exporter), and an incoming `traceparent` is the exported
//! request span's remote parent.

mod support;

use std::collections::HashMap;
use std::future::Future;

use hivelog::trace::{self, TraceParent};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use support::{parse, Buf};
use tracing::{info, info_span, Instrument};

#[test]
fn line_ids_are_the_exported_spans_ids() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let buf = Buf::default();
    let (dispatch, guard) = hivelog::builder()
        .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
        .otel(provider.tracer("hivelog-test"))
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let request = info_span!("request");
        let incoming = TraceParent::from_w3c(
            ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
            ["congo=t61rcWkgMzE"],
        );
        let ctx = trace::start(&request, incoming.as_ref());
        assert_eq!(ctx.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(ctx.tracestate(), Some("congo=t61rcWkgMzE"));
        request.in_scope(|| {
            info!("in request");
            info_span!("db").in_scope(|| info!("in db"));
        });
        let job = info_span!("job");
        let mut fut = std::pin::pin!(async { info!("in job") }.instrument(job));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_ready());
    });
    drop(dispatch);
    drop(guard);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let by_name: HashMap<String, _> = spans.iter().map(|s| (s.name.to_string(), s)).collect();
    let lines = parse(&buf.text());
    for (message, span) in [
        ("in request", "request"),
        ("in db", "db"),
        ("in job", "job"),
    ] {
        let line = lines.iter().find(|l| l["message"] == message).unwrap();
        let exported = by_name
            .get(span)
            .unwrap_or_else(|| panic!("{span} not exported: {spans:?}"));
        assert_eq!(
            line["trace_id"],
            exported.span_context.trace_id().to_string(),
            "{line}"
        );
        assert_eq!(
            line["span_id"],
            exported.span_context.span_id().to_string(),
            "{line}"
        );
    }
    let request = by_name["request"];
    assert_eq!(
        request.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(request.parent_span_id.to_string(), "b7ad6b7169203331");
    assert_eq!(by_name["db"].parent_span_id, request.span_context.span_id());
    assert_ne!(
        by_name["job"].span_context.trace_id(),
        request.span_context.trace_id(),
        "a span outside the request is its own trace"
    );
}

/// hivelog as a layer beside the caller's own `tracing-opentelemetry` layer (no
/// `Builder::otel`), before or after it: the lines carry the exported spans' ids.
fn caller_otel_layer(hivelog_first: bool) {
    use tracing_subscriber::prelude::*;

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let buf = Buf::default();
    let run = || {
        let request = info_span!("request");
        let incoming = TraceParent::from_w3c(
            ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
            [],
        );
        trace::start(&request, incoming.as_ref());
        request.in_scope(|| {
            info!("in request");
            info_span!("db").in_scope(|| info!("in db"));
        });
    };
    let build = || {
        hivelog::builder()
            .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
            .output_mode(hivelog::OutputMode::Sync)
            .writer(buf.clone())
    };
    let guard = if hivelog_first {
        let (hivelog, guard) = build().layer().unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(hivelog)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("caller")));
        tracing::subscriber::with_default(subscriber, run);
        guard
    } else {
        let (hivelog, guard) = build().layer().unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("caller")))
            .with(hivelog);
        tracing::subscriber::with_default(subscriber, run);
        guard
    };
    drop(guard);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let by_name: HashMap<String, _> = spans.iter().map(|s| (s.name.to_string(), s)).collect();
    let lines = parse(&buf.text());
    for (message, span) in [("in request", "request"), ("in db", "db")] {
        let line = lines.iter().find(|l| l["message"] == message).unwrap();
        let exported = by_name
            .get(span)
            .unwrap_or_else(|| panic!("{span} not exported: {spans:?}"));
        assert_eq!(
            line["trace_id"],
            exported.span_context.trace_id().to_string(),
            "{line}"
        );
        assert_eq!(
            line["span_id"],
            exported.span_context.span_id().to_string(),
            "{line}"
        );
    }
    assert_eq!(
        by_name["request"].span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(
        by_name["request"].parent_span_id.to_string(),
        "b7ad6b7169203331"
    );
}

#[test]
fn lines_carry_the_ids_of_the_callers_own_otel_layer_added_after_hivelog() {
    caller_otel_layer(true);
}

#[test]
fn lines_carry_the_ids_of_the_callers_own_otel_layer_added_before_hivelog() {
    caller_otel_layer(false);
}

#[test]
fn builder_otel_with_layer_names_what_to_do_instead() {
    let provider = SdkTracerProvider::builder().build();
    let err = hivelog::builder()
        .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
        .output(hivelog::Output::None)
        .otel(provider.tracer("x"))
        .layer::<tracing_subscriber::Registry>()
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("Builder::otel: layer() returns hivelog's layer alone; add tracing_opentelemetry::layer()"),
        "{err}"
    );
}

//! OpenTelemetry: with `tracing-opentelemetry`'s layer in the subscriber (put there by
//! [`Builder::otel`](crate::Builder::otel), or by the caller beside [`crate::layer`]), the
//! ids on the lines are the OpenTelemetry span context's, the same the exporter sends, so a
//! line leads to its span in the tracing backend and back.
//!
//! Why the layer is found by asking, once per span: `tracing-opentelemetry` exposes no type to
//! look for in a subscriber, only [`tracing_opentelemetry::get_otel_context`]. A span's first
//! entry asks it (and marks the span, so later entries cost one extension lookup), and
//! [`crate::trace::start`] asks it to continue an incoming trace (`LayerNotFound` without
//! one: hivelog's own ids are used). The `tracing-opentelemetry` in the caller's stack must be the
//! version hivelog's `otel` feature uses (0.34), or its layer is not recognised.
//!
//! Why ids are read when a span is first entered: `tracing-opentelemetry` starts the
//! OpenTelemetry span lazily (on entry, or when its context is asked for), after a parent may
//! have been set with `set_parent`; asking for the context at creation would start the span
//! too early and lose an incoming parent. [`crate::trace::start`] sets the incoming parent,
//! then reads the ids at once. Every span is then part of a trace, as OpenTelemetry has it.

use std::sync::Arc;

use hivelog_core::capture;
use hivelog_core::record::SpanNode;
use hivelog_core::trace::{SpanId, TraceContext, TraceId, TraceParent};
use opentelemetry::trace::{self as ot, TraceContextExt as _};
use tracing::Span;
use tracing_core::span::Id;
use tracing_core::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, Registry};

/// The OpenTelemetry layer hivelog's layer sits on.
pub(crate) type OtelLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The layer for `tracer`, with `tracing-opentelemetry`'s defaults.
pub(crate) fn layer<T>(tracer: T) -> OtelLayer
where
    T: ot::Tracer + Send + Sync + 'static,
    T::Span: Send + Sync,
{
    Box::new(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Marks a span whose node carries the OpenTelemetry ids.
struct Synced;

/// Copies the OpenTelemetry ids onto the span's node on its first entry; call from
/// `Layer::on_enter`.
pub(crate) fn on_enter<S>(id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    if span.extensions().get::<Synced>().is_some() {
        return;
    }
    // Not while holding the span's extensions: the OpenTelemetry layer takes them.
    let otel = tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(id, d));
    let Some(sc) = otel.map(|cx| cx.span().span_context().clone()) else {
        // No OpenTelemetry layer, or it does not take this span: not asked again.
        span.extensions_mut().insert(Synced);
        return;
    };
    let state = span
        .extensions()
        .get::<Arc<SpanNode>>()
        .and_then(|n| n.trace.as_ref().and_then(|t| t.context().state.clone()));
    if let Some(trace) = from_otel(&sc, state) {
        capture::set_trace(&span, trace);
    }
    span.extensions_mut().insert(Synced);
}

/// [`crate::trace::start`] with OpenTelemetry: the incoming parent becomes the OpenTelemetry
/// span's remote parent, and the span's ids are OpenTelemetry's. `None` without an
/// OpenTelemetry layer, or when the span was already started (entered) before.
pub(crate) fn start(span: &Span, parent: Option<&TraceParent>) -> Option<TraceContext> {
    if let Some(p) = parent {
        let remote = ot::SpanContext::new(
            ot::TraceId::from_bytes(p.trace_id.to_bytes()),
            // An X-Ray header may name no parent; OpenTelemetry needs one to continue.
            ot::SpanId::from_bytes(p.parent_id.unwrap_or_else(SpanId::random).to_bytes()),
            ot::TraceFlags::new(p.flags),
            true,
            ot::TraceState::default(),
        );
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote))
            .ok()?;
    }
    let sc = span.context().span().span_context().clone();
    from_otel(&sc, parent.and_then(|p| p.state.clone()))
}

fn from_otel(sc: &ot::SpanContext, state: Option<Arc<str>>) -> Option<TraceContext> {
    if !sc.is_valid() {
        return None;
    }
    Some(TraceContext {
        trace_id: TraceId::from_bytes(sc.trace_id().to_bytes())?,
        span_id: SpanId::from_bytes(sc.span_id().to_bytes())?,
        flags: sc.trace_flags().to_u8(),
        state,
    })
}

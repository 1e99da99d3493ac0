//! Trace correlation: the same `trace_id` on every line of a request, in every service.
//!
//! A request's span is put in a trace once, when the request arrives ([`start`]): it continues
//! the caller's W3C `traceparent` (with its `tracestate`) or AWS `X-Amzn-Trace-Id`, or starts a
//! new trace. Every span created inside it inherits the trace with a span id of its own, and
//! every line logged inside carries `trace_id` and `span_id` (ECS: `trace.id`, `span.id`;
//! `HIVELOG_TRACE_FORMAT=xray` writes the trace id as X-Ray does). The context follows the
//! span, so `Instrument`ed futures and tasks spawned with the span keep it.
//!
//! ```
//! use hivelog::trace::{self, TraceParent};
//! let span = tracing::info_span!("request");
//! let incoming = TraceParent::from_w3c(["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], []);
//! trace::start(&span, incoming.as_ref());
//! let _in_request = span.enter();
//! // ... and for a call to another service, from a span of its own:
//! let call = tracing::info_span!("call");
//! if let Some(ctx) = trace::of(&call) {
//!     let _header = ctx.traceparent(); // "00-0af7…319c-<call's span id>-01"
//! }
//! ```
//!
//! With the `tower` feature, [`TraceLayer`](crate::tower::TraceLayer) does all of this for an
//! HTTP server in one line.

use tracing::Span;

use hivelog_core::capture::SpanAccess;
pub use hivelog_core::format::TraceFormat;
pub use hivelog_core::trace::{SpanId, TraceContext, TraceId, TraceParent};

/// Puts `span` in a trace: it continues `parent` when given, else starts a new one; returns
/// the span's context. Call it before creating spans inside `span`, which inherit the trace
/// when they are created. Without hivelog's subscriber the context is returned but no line
/// carries it.
///
/// ```
/// let span = tracing::info_span!("request");
/// let ctx = hivelog::trace::start(&span, None);
/// assert_eq!(ctx.trace_id.to_string().len(), 32);
/// ```
pub fn start(span: &Span, parent: Option<&TraceParent>) -> TraceContext {
    #[cfg(feature = "otel")]
    if let Some(ctx) = crate::otel::start(span, parent) {
        set(span, ctx.clone());
        return ctx;
    }
    let ctx = TraceContext::continue_or_start(parent);
    set(span, ctx.clone());
    ctx
}

/// Gives `span` exactly this trace context (for ids decided elsewhere); `false` when the
/// span is disabled or hivelog's subscriber is not the span's.
pub fn set(span: &Span, ctx: TraceContext) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        dispatch
            .downcast_ref::<SpanAccess>()
            .is_some_and(|access| access.set_trace(dispatch, id, ctx))
    })
    .unwrap_or(false)
}

/// The trace context of `span`: its trace id and its own span id, to put on an outgoing
/// request ([`TraceContext::traceparent`], [`TraceContext::xray_header`]).
pub fn of(span: &Span) -> Option<TraceContext> {
    span.with_subscriber(|(id, dispatch)| {
        dispatch
            .downcast_ref::<SpanAccess>()
            .and_then(|access| access.trace(dispatch, id))
    })
    .flatten()
}

/// The trace context of the current span ([`of`]`(&Span::current())`).
pub fn current() -> Option<TraceContext> {
    of(&Span::current())
}

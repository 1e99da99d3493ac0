//! An HTTP server's requests traced and logged in one line: `.layer(hivelog::tower::TraceLayer::new())`.
//!
//! For each request the layer continues the caller's trace (W3C `traceparent` and `tracestate`,
//! else AWS `X-Amzn-Trace-Id`, else a new trace), makes the request span (`method`, `route`),
//! logs `request completed` once with `status` and `latency_ms` when the response is ready (WARN
//! for 5xx, like tower-http's `TraceLayer` classifying server errors), and answers with the
//! request's `traceparent` so a client can find the request's lines. A malformed header only
//! means a new trace: it never fails the request.
//!
//! [`TraceLayer::latency_metric`] names the field `metric.latency_ms`: with
//! `HIVELOG_METRICS=emf` the line then still has `latency_ms` at its root, and is a CloudWatch
//! embedded-metric-format document making it a metric (dimensions from
//! `HIVELOG_METRICS_DIMENSIONS`, `route,method` say), so a latency alarm needs no other code.
//!
//! The trace lives on the request span, so the span must be enabled: it is an ERROR-level span
//! (target `hivelog::tower`), on whenever anything is logged. With `HIVELOG_OUTPUT=none` and no
//! sink, or a filter that turns `hivelog::tower` off, there is no span and no trace.
//!
//! ```
//! use hivelog::tower::TraceLayer;
//! let layer = TraceLayer::new().route(|parts| parts.uri.path().strip_prefix("/api").map(str::to_owned));
//! # let _ = layer;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tracing::Span;

use crate::trace::{self, TraceContext, TraceParent};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The `X-Amzn-Trace-Id` header (AWS load balancers, API Gateway, X-Ray).
pub const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// Reads the incoming trace from request headers: W3C first, else X-Ray. Values that are not
/// text count as malformed.
pub fn parent_from(headers: &HeaderMap) -> Option<TraceParent> {
    TraceParent::from_headers(|name| {
        headers
            .get_all(name)
            .iter()
            // Not text: kept as a value no parser accepts, so a duplicate still counts.
            .map(|v| v.to_str().unwrap_or("="))
            .collect::<Vec<_>>()
    })
}

/// Puts the current span's `traceparent` (and `tracestate`) on an outgoing request's headers;
/// call it from the span of the call, so the callee's parent is that span. Returns the context
/// used, `None` outside any traced span.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// assert!(hivelog::tower::inject(&mut headers).is_none()); // not in a traced span
/// ```
pub fn inject(headers: &mut HeaderMap) -> Option<TraceContext> {
    let ctx = trace::current()?;
    insert(headers, &ctx);
    Some(ctx)
}

/// Writes `ctx` as `traceparent` and `tracestate` headers.
pub fn insert(headers: &mut HeaderMap, ctx: &TraceContext) {
    if let Ok(v) = HeaderValue::from_str(&ctx.traceparent()) {
        headers.insert(TRACEPARENT, v);
    }
    if let Some(v) = ctx.tracestate().and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(TRACESTATE, v);
    }
}

/// How the `route` field is found: the matched route template (`/article/{id}`), not the path
/// with its ids, keeps the field groupable.
type RouteFn = fn(&http::request::Parts) -> Option<String>;

/// The tower layer that traces and logs each request; see the [module docs](self).
#[derive(Clone, Copy, Default)]
pub struct TraceLayer {
    route: Option<RouteFn>,
    latency_metric: bool,
}

impl fmt::Debug for TraceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceLayer").finish_non_exhaustive()
    }
}

impl TraceLayer {
    /// A layer whose `route` field is the request's path.
    pub fn new() -> Self {
        TraceLayer::default()
    }

    /// Takes the `route` field from the request (with axum, its `MatchedPath` extension);
    /// the path is used when this returns `None`.
    pub fn route(mut self, route: RouteFn) -> Self {
        self.route = Some(route);
        self
    }

    /// Logs the latency as the metric field `metric.latency_ms` (see the [module docs](self)).
    pub fn latency_metric(mut self) -> Self {
        self.latency_metric = true;
        self
    }
}

impl<S> tower_layer::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService {
            inner,
            route: self.route,
            latency_metric: self.latency_metric,
        }
    }
}

/// The service [`TraceLayer`] wraps around the application.
#[derive(Clone, Debug)]
pub struct TraceService<S> {
    inner: S,
    route: Option<RouteFn>,
    latency_metric: bool,
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for TraceService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let route = self
            .route
            .and_then(|f| f(&parts))
            .unwrap_or_else(|| parts.uri.path().to_owned());
        // ERROR level: the span exists whenever anything is logged (`HIVELOG_LEVEL=warn` too),
        // so the trace is kept and propagated; a span's level is not written on lines.
        let span = tracing::error_span!("request", method = %parts.method, route = %route);
        let ctx = trace::start(&span, parent_from(&parts.headers).as_ref());
        let traceparent = HeaderValue::from_str(&ctx.traceparent()).ok();
        let inner = span.in_scope(|| self.inner.call(Request::from_parts(parts, body)));
        ResponseFuture {
            inner,
            span,
            start: Instant::now(),
            traceparent,
            latency_metric: self.latency_metric,
        }
    }
}

pin_project! {
    /// The response of a [`TraceService`]: logs the request's outcome once, when ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        start: Instant,
        traceparent: Option<HeaderValue>,
        latency_metric: bool,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _in_request = this.span.enter();
        let result = ready!(this.inner.poll(cx));
        let latency_ms = this.start.elapsed().as_secs_f64() * 1000.0;
        Poll::Ready(match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                match (response.status().is_server_error(), *this.latency_metric) {
                    (true, false) => tracing::warn!(status, latency_ms, "request completed"),
                    (false, false) => tracing::info!(status, latency_ms, "request completed"),
                    (true, true) => {
                        tracing::warn!(status, metric.latency_ms = latency_ms, "request completed")
                    }
                    (false, true) => {
                        tracing::info!(status, metric.latency_ms = latency_ms, "request completed")
                    }
                }
                if let Some(v) = this.traceparent.take() {
                    response.headers_mut().insert(TRACEPARENT, v);
                }
                Ok(response)
            }
            Err(e) if *this.latency_metric => {
                tracing::error!(error = %e, metric.latency_ms = latency_ms, "request failed");
                Err(e)
            }
            Err(e) => {
                tracing::error!(error = %e, latency_ms, "request failed");
                Err(e)
            }
        })
    }
}

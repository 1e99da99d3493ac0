//! The `tracing` layer: captures each event once, and hands the [`Record`] to the local output
//! (queued for its writer thread, or written now in `sync` mode) and to each sink's pipeline
//! (enqueued).
//!
//! What reaches this layer is decided by its per-layer filter, [`crate::HivelogFilter`] (see
//! `filter.rs`): the union of the destinations' levels, so an event no destination wants never
//! reaches it, and is never taken away from the other layers of the subscriber. The rate limit
//! comes first in `on_event` (see `filter.rs` for why not in the filter). With several
//! destinations the layer then asks each destination's own
//! `EnvFilter` (`HIVELOG_LEVEL`, `HIVELOG_<SINK>_LEVEL`) and captures the event once for all
//! that take it.
//!
//! The filters live in a [`FilterCell`] so the main level can change at run time without a
//! lock on the log call (see `level.rs`).
//!
//! With `HIVELOG_REQUEST_BUFFER_LEVEL` the filter also lets through, inside a span, the events
//! the request buffer may hold, and the layer routes each event three ways: written to the
//! destinations whose level takes it, held for the others, or (at the flush level) written
//! after its request's held lines (see `request_buffer`).

use std::any::TypeId;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use hivelog_core::capture::{self, CaptureOptions, SpanAccess};
use hivelog_core::format::metrics::MAX_METRICS_PER_DOCUMENT;
use hivelog_core::{Format, Record};
use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::{Dispatch, Event, Subscriber};

use crate::level::FilterCell;
use crate::ratelimit::Limiter;
use crate::request_buffer::{self, BufferAccess, Buffers, Held, Taken};
use crate::route::Dest;
use hivelog_core::record::{Str, Value};
use tracing_core::{Level, Metadata};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::output::Local;

/// What the layer does once it is part of a subscriber (binds the level control, starts the
/// heartbeat): run from `on_register_dispatch`.
pub(crate) type OnDispatch = Box<dyn Fn(&Dispatch) + Send + Sync>;

/// hivelog's layer, without its filter: it writes every event it is given. Built by
/// [`crate::Builder`] inside a [`crate::Layer`], whose [`crate::HivelogFilter`] decides what
/// it is given.
pub struct HivelogLayer {
    /// Destinations, in the order of the cell's filters.
    routes: Vec<Dest>,
    filters: Arc<FilterCell>,
    capture: CaptureOptions,
    /// `HIVELOG_RATE_LIMIT`, when set.
    limiter: Option<Arc<Limiter>>,
    /// `HIVELOG_REQUEST_BUFFER_LEVEL`, when on.
    requests: Option<Arc<Buffers>>,
    on_dispatch: Option<OnDispatch>,
    /// The format, with `HIVELOG_METRICS=emf` only: an event with more than 100 metrics is
    /// queued as several records (see `hivelog_core::format::metrics`).
    metrics: Option<Arc<Format>>,
}

impl HivelogLayer {
    pub(crate) fn new(
        routes: Vec<Dest>,
        filters: Arc<FilterCell>,
        capture: CaptureOptions,
        limiter: Option<Arc<Limiter>>,
        requests: Option<Arc<Buffers>>,
        on_dispatch: Option<OnDispatch>,
    ) -> Self {
        HivelogLayer {
            routes,
            filters,
            capture: CaptureOptions {
                span_cache: capture::span_cache_key(),
                ..capture
            },
            limiter,
            requests,
            on_dispatch,
            metrics: None,
        }
    }

    /// Splits events with more metrics than one EMF document holds, when `format` has metrics on.
    pub(crate) fn with_metrics(mut self, format: &Arc<Format>) -> Self {
        self.metrics = format.metrics_enabled().then(|| format.clone());
        self
    }

    /// One bit per destination whose filter takes the event.
    fn wanted<S>(&self, meta: &Metadata<'_>, ctx: &Context<'_, S>) -> u64
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // Bare levels everywhere: one load answers below all of them, or for a single route.
        if let Some(max) = self.filters.simple() {
            if *meta.level() > max {
                return 0;
            }
            if self.routes.len() == 1 {
                return 1;
            }
        }
        self.filters.with(|f| {
            let mut wanted: u64 = 0;
            for (i, filter) in f.by_route.iter().enumerate().take(64) {
                if filter.enabled(meta, ctx.clone()) {
                    wanted |= 1 << i;
                }
            }
            wanted
        })
    }

    /// One bit per destination.
    fn all_routes(&self) -> u64 {
        match self.routes.len() {
            n if n >= 64 => u64::MAX,
            n => (1 << n) - 1,
        }
    }

    /// Sends `record` to the destinations of `wanted`'s bits (copies for all but the last).
    fn deliver_to(&self, record: Record, wanted: u64) {
        if wanted == 0 {
            return;
        }
        // More metrics than one EMF document holds: several complete lines.
        if let Some(parts) = self.metrics.as_ref().map(|f| f.metric_parts(&record)) {
            if !parts.is_empty() {
                return parts.into_iter().for_each(|p| self.route(wanted, p));
            }
        }
        self.route(wanted, record);
    }

    /// Hands `record` to every destination whose bit is set in `wanted` (not zero).
    fn route(&self, wanted: u64, record: Record) {
        let last = 63 - wanted.leading_zeros() as usize;
        for (i, dest) in self.routes.iter().enumerate().take(last) {
            if wanted & (1 << i) != 0 {
                match dest {
                    Dest::Local(l) => l.write(&record),
                    Dest::Sink(p) => p.push(record.clone()),
                }
            }
        }
        send(&self.routes[last], record);
    }

    fn admit(&self, event: &Event<'_>) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.admit(event))
    }

    /// `on_event` with the request buffer on: write, hold, or flush then write. The rate
    /// limit counts what is written, when it is written.
    fn buffered<S>(&self, rb: &Arc<Buffers>, event: &Event<'_>, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let level = meta.level();
        let wanted = self.wanted(meta, &ctx);
        let hold_for = if rb.holds(level) {
            self.all_routes() & !wanted
        } else {
            0
        };
        // Outside any span nothing is held: the common case, one thread-local read.
        if wanted == 0 && !request_buffer::in_span() {
            return;
        }
        let flushes = wanted != 0 && rb.flushes(level);
        let span = match hold_for != 0 || flushes {
            true => ctx.event_span(event),
            false => None,
        };
        let Some(span) = span else {
            if wanted != 0 && self.admit(event) {
                self.deliver_to(capture::capture_event(event, &ctx, &self.capture), wanted);
            }
            return;
        };
        if flushes {
            let taken = request_buffer::take(span);
            let trigger = self
                .admit(event)
                .then(|| capture::capture_event(event, &ctx, &self.capture));
            match taken {
                Some(taken) => self.flush(rb, taken, trigger, wanted),
                None => {
                    if let Some(record) = trigger {
                        self.deliver_to(record, wanted);
                    }
                }
            }
            return;
        }
        // Captured with the span already at hand (into a dropped line's record when there is one).
        let mut record = request_buffer::spare().unwrap_or_else(|| {
            Record::new(
                *level,
                Str::Static(meta.target()),
                self.capture.max_event_bytes,
                meta.fields().len(),
            )
        });
        capture::capture_event_into_span(&mut record, event, Some(&span), &self.capture);
        if wanted != 0 && self.admit(event) {
            self.deliver_to(record.clone(), wanted);
        }
        let line = Held {
            record,
            routes: hold_for,
            callsite: meta,
        };
        request_buffer::hold(rb, span, line);
    }

    /// Writes a request's held lines (after one WARN line when some were evicted), then the
    /// trigger, to `to`'s destinations; one flush at a time.
    fn flush(&self, rb: &Buffers, taken: Taken, trigger: Option<Record>, to: u64) {
        let _one_at_a_time = rb.writing();
        if taken.evicted > 0 {
            let held_for = taken.lines.iter().fold(0, |m, h| m | h.routes);
            let routes = if taken.lines.is_empty() {
                to
            } else {
                held_for & to
            };
            let first = taken.lines.front().map(|h| &h.record).or(trigger.as_ref());
            self.deliver_to(eviction_line(taken.evicted, first, &self.capture), routes);
        }
        let (mut written, mut unwanted) = (0, 0);
        for held in taken.lines {
            let routes = held.routes & to;
            if routes == 0 {
                unwanted += 1;
                continue;
            }
            written += 1;
            if self
                .limiter
                .as_ref()
                .is_none_or(|l| l.admit_callsite(held.callsite))
            {
                self.deliver_to(held.record, routes);
            }
        }
        rb.count_flushed(written);
        rb.count_discarded(unwanted);
        if let Some(record) = trigger {
            self.deliver_to(record, to);
        }
    }

    fn deliver<S>(&self, event: &Event<'_>, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match (self.routes.as_slice(), self.metrics.as_deref()) {
            // One destination: the filter already said yes for it.
            ([Dest::Local(local)], None) => return write_local(local, event, &ctx, &self.capture),
            // With metrics on, an event with more than 100 fields may have more than 100
            // metrics, and become several lines: `deliver_to` splits it.
            ([Dest::Local(local)], Some(format)) if !may_split(event) => {
                return write_local_counted(local, event, &ctx, &self.capture, format)
            }
            ([only], None) => {
                return send(only, capture::capture_event(event, &ctx, &self.capture))
            }
            ([_], Some(_)) => {
                return self.deliver_to(capture::capture_event(event, &ctx, &self.capture), 1)
            }
            _ => {}
        }
        let wanted = self.wanted(event.metadata(), &ctx);
        self.deliver_to(capture::capture_event(event, &ctx, &self.capture), wanted);
    }
}

/// The WARN line a flush starts with when the request lost lines to a budget; it carries
/// the request's span (trace ids) and the time of the first line kept.
fn eviction_line(evicted: u64, first: Option<&Record>, opts: &CaptureOptions) -> Record {
    let mut record = Record::new(Level::WARN, Str::Static("hivelog"), opts.max_event_bytes, 1);
    if let Some(first) = first {
        record.time = first.time;
        record.span = first.span.clone();
    }
    record.message = Some(record.fields.push_str(
        "request buffer: older lines of this request were evicted (HIVELOG_REQUEST_BUFFER_BYTES / _TOTAL)",
    ));
    record.fields.push("evicted", Value::U64(evicted));
    record
}

fn flush_via<S>(dispatch: &Dispatch, id: &Id) -> usize
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let (Some(layer), Some(sub)) = (
        dispatch.downcast_ref::<HivelogLayer>(),
        dispatch.downcast_ref::<S>(),
    ) else {
        return 0;
    };
    let (Some(rb), Some(span)) = (&layer.requests, sub.span(id)) else {
        return 0;
    };
    let Some(taken) = request_buffer::take_visible(span) else {
        return 0;
    };
    let n = taken.lines.len();
    layer.flush(rb, taken, None, layer.all_routes());
    n
}

fn discard_via<S>(dispatch: &Dispatch, id: &Id) -> usize
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    dispatch
        .downcast_ref::<S>()
        .and_then(|sub| sub.span(id))
        .map_or(0, request_buffer::discard_in)
}

fn write_local<S>(local: &Local, event: &Event<'_>, ctx: &Context<'_, S>, opts: &CaptureOptions)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    local.log(|r| capture::capture_event_into(r, event, ctx, opts));
}

/// [`write_local`] with metrics on, for an event that cannot be split (see [`may_split`]):
/// its `metric.*` fields that cannot be metrics are counted, as in
/// [`HivelogLayer::deliver_to`], and the local output's reused record is kept.
fn write_local_counted<S>(
    local: &Local,
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    opts: &CaptureOptions,
    format: &Format,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    local.log(|r| {
        capture::capture_event_into(r, event, ctx, opts);
        let parts = format.metric_parts(r);
        debug_assert!(parts.is_empty(), "an event that may_split() said not");
    });
}

/// Whether `event` may carry more metrics than one EMF document holds: only with more fields
/// than that at its callsite (every captured field is one of them, or an error's source).
fn may_split(event: &Event<'_>) -> bool {
    event.metadata().fields().len() > MAX_METRICS_PER_DOCUMENT
}

fn send(dest: &Dest, record: Record) {
    match dest {
        Dest::Local(l) => l.send(record),
        Dest::Sink(p) => p.push(record),
    }
}

impl<S> Layer<S> for HivelogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        if let Some(f) = &self.on_dispatch {
            f(dispatch);
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        capture::on_new_span(attrs, id, &ctx, self.capture.max_event_bytes);
    }

    fn on_close(&self, _id: Id, _ctx: Context<'_, S>) {
        capture::on_close();
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, ctx: Context<'_, S>) {
        capture::on_record(id, values, &ctx);
    }

    fn on_enter(&self, _id: &Id, _ctx: Context<'_, S>) {
        #[cfg(feature = "otel")]
        crate::otel::on_enter(_id, &_ctx);
        if self.requests.is_some() {
            request_buffer::entered();
        }
    }

    fn on_exit(&self, _id: &Id, _ctx: Context<'_, S>) {
        if self.requests.is_some() {
            request_buffer::exited();
        }
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        // `hivelog::trace` reaches span nodes through this; see `SpanAccess`.
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<SpanAccess>() {
            let access: &'static SpanAccess = const { &SpanAccess::new::<S>() };
            Some(access as *const SpanAccess as *const ())
        } else if id == TypeId::of::<BufferAccess>() {
            let access: &'static BufferAccess = const {
                &BufferAccess {
                    flush: flush_via::<S>,
                    discard: discard_via::<S>,
                }
            };
            Some(access as *const BufferAccess as *const ())
        } else {
            None
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if let Some(rb) = &self.requests {
            let held = std::panic::catch_unwind(AssertUnwindSafe(|| self.buffered(rb, event, ctx)));
            if held.is_err() {
                hivelog_core::diag::warn(
                    "hivelog",
                    "event-panic",
                    "formatting an event panicked; the event was dropped",
                );
            }
            return;
        }
        // Only events hivelog's filter let through are counted; the other layers have them.
        if let Some(limiter) = &self.limiter {
            if !limiter.admit(event) {
                return;
            }
        }
        // A log call must never panic because of logging (a user's `Display` that panics, say).
        if std::panic::catch_unwind(AssertUnwindSafe(|| self.deliver(event, ctx))).is_err() {
            hivelog_core::diag::warn(
                "hivelog",
                "event-panic",
                "formatting an event panicked; the event was dropped",
            );
        }
    }
}

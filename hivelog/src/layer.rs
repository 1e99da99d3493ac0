//! The `tracing` layer: filters per destination, captures each event once, and hands the
//! [`Record`] to the local output (queued for its writer thread, or written now in `sync` mode)
//! and to each sink's pipeline (enqueued).
//!
//! Each destination (the local output, each sink) has its own `EnvFilter` (`HIVELOG_LEVEL`,
//! `HIVELOG_<SINK>_LEVEL`). The layer tells `tracing` the union of them (callsite interest and
//! max level), so an event no destination wants is rejected by the macro itself, before any
//! field is evaluated; an event some destination wants is captured once and routed.
//!
//! The filters live in a [`FilterCell`] so the main level can change at run time without a
//! lock on the log call (see `level.rs`).

use std::any::TypeId;
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use hivelog_core::capture::{self, CaptureOptions, SpanAccess};
use hivelog_core::{Format, Pipeline, Record};
use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::level::FilterCell;
use crate::ratelimit::Limiter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::output::Local;

/// Where a route sends what its filter lets through.
#[derive(Clone)]
pub(crate) enum Dest {
    Local(Arc<Local>),
    Sink(Pipeline),
}

/// hivelog's layer; built by [`crate::Builder`].
pub struct HivelogLayer {
    /// Destinations, in the order of the cell's filters.
    routes: Vec<Dest>,
    filters: Arc<FilterCell>,
    capture: CaptureOptions,
    /// `HIVELOG_RATE_LIMIT`, when set.
    limiter: Option<Arc<Limiter>>,
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
    ) -> Self {
        HivelogLayer {
            routes,
            filters,
            capture,
            limiter,
            metrics: None,
        }
    }

    /// Splits events with more metrics than one EMF document holds, when `format` has metrics on.
    pub(crate) fn with_metrics(mut self, format: &Arc<Format>) -> Self {
        self.metrics = format.metrics_enabled().then(|| format.clone());
        self
    }

    /// The records to write for `record`: itself, or its parts when it has more than 100
    /// metrics (then `record` itself is not written).
    #[inline]
    fn parts(&self, record: &Record) -> Vec<Record> {
        match &self.metrics {
            Some(f) => f.metric_parts(record),
            None => Vec::new(),
        }
    }

    /// The most verbose level any destination wants now.
    pub(crate) fn max_level(&self) -> LevelFilter {
        self.filters.with(|f| f.max_level())
    }

    fn deliver<S>(&self, event: &Event<'_>, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self.routes.as_slice() {
            // One destination: `enabled` already said yes for it.
            [Dest::Local(local)] => return write_local(local, event, &ctx, &self.capture, self),
            [only] => {
                let record = capture::capture_event(event, &ctx, &self.capture);
                return match self.parts(&record) {
                    parts if parts.is_empty() => send(only, record),
                    parts => parts.into_iter().for_each(|p| send(only, p)),
                };
            }
            _ => {}
        }
        let meta = event.metadata();
        let wanted = self.filters.with(|f| {
            let mut wanted: u64 = 0;
            for (i, filter) in f.by_route.iter().enumerate().take(64) {
                if filter.enabled(meta, ctx.clone()) {
                    wanted |= 1 << i;
                }
            }
            wanted
        });
        if wanted == 0 {
            return;
        }
        let record = capture::capture_event(event, &ctx, &self.capture);
        let parts = self.parts(&record);
        if !parts.is_empty() {
            return parts.into_iter().for_each(|p| self.route(wanted, p));
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
}

thread_local! {
    /// The record reused by events that only go to a `sync` local output (never queued).
    static SCRATCH: RefCell<Option<Record>> = const { RefCell::new(None) };
}

fn write_local<S>(
    local: &Local,
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    opts: &CaptureOptions,
    layer: &HivelogLayer,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if local.is_async() {
        let record = capture::capture_event(event, ctx, opts);
        return match layer.parts(&record) {
            parts if parts.is_empty() => local.send(record),
            parts => parts.into_iter().for_each(|p| local.send(p)),
        };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            match slot.as_mut() {
                Some(r) => capture::capture_event_into(r, event, ctx, opts),
                None => *slot = Some(capture::capture_event(event, ctx, opts)),
            }
            if let Some(r) = slot.as_mut() {
                match layer.parts(r) {
                    parts if parts.is_empty() => local.write(r),
                    parts => parts.iter().for_each(|p| local.write(p)),
                }
                // Release span references now; don't keep a huge event's buffers forever.
                r.span = None;
                if r.size() > 64 * 1024 {
                    *slot = None;
                }
            }
        }
        // An event logged while formatting another (a `Display` that logs): no reuse.
        Err(_) => {
            let record = capture::capture_event(event, ctx, opts);
            match layer.parts(&record) {
                parts if parts.is_empty() => local.write(&record),
                parts => parts.iter().for_each(|p| local.write(p)),
            }
        }
    })
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
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.filters.with(|f| {
            let mut any_sometimes = false;
            for filter in &f.by_route {
                let i = <EnvFilter as Layer<S>>::register_callsite(filter, meta);
                if i.is_always() {
                    return Interest::always();
                }
                any_sometimes |= i.is_sometimes();
            }
            if any_sometimes {
                Interest::sometimes()
            } else {
                Interest::never()
            }
        })
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.filters
            .with(|f| f.by_route.iter().any(|r| r.enabled(meta, ctx.clone())))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.filters.with(|f| {
            for r in &f.by_route {
                r.on_new_span(attrs, id, ctx.clone());
            }
        });
        capture::on_new_span(attrs, id, &ctx, self.capture.max_event_bytes);
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, ctx: Context<'_, S>) {
        self.filters.with(|f| {
            for r in &f.by_route {
                r.on_record(id, values, ctx.clone());
            }
        });
        capture::on_record(id, values, &ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.filters.with(|f| {
            for r in &f.by_route {
                r.on_enter(id, ctx.clone());
            }
        });
        #[cfg(feature = "otel")]
        crate::otel::on_enter(id, &ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.filters.with(|f| {
            for r in &f.by_route {
                r.on_exit(id, ctx.clone());
            }
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.filters.with(|f| {
            for r in &f.by_route {
                r.on_close(id.clone(), ctx.clone());
            }
        });
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        // `hivelog::trace` reaches span nodes through this; see `SpanAccess`.
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<SpanAccess>() {
            let access: &'static SpanAccess = const { &SpanAccess::new::<S>() };
            Some(access as *const SpanAccess as *const ())
        } else {
            None
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
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

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

use std::any::TypeId;
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use hivelog_core::capture::{self, CaptureOptions, SpanAccess};
use hivelog_core::Record;
use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::{Dispatch, Event, Subscriber};

use crate::level::FilterCell;
use crate::ratelimit::Limiter;
use crate::route::Dest;
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
    on_dispatch: Option<OnDispatch>,
}

impl HivelogLayer {
    pub(crate) fn new(
        routes: Vec<Dest>,
        filters: Arc<FilterCell>,
        capture: CaptureOptions,
        limiter: Option<Arc<Limiter>>,
        on_dispatch: Option<OnDispatch>,
    ) -> Self {
        HivelogLayer {
            routes,
            filters,
            capture,
            limiter,
            on_dispatch,
        }
    }

    fn deliver<S>(&self, event: &Event<'_>, ctx: Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self.routes.as_slice() {
            // One destination: the filter already said yes for it.
            [Dest::Local(local)] => return write_local(local, event, &ctx, &self.capture),
            [only] => return send(only, capture::capture_event(event, &ctx, &self.capture)),
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

fn write_local<S>(local: &Local, event: &Event<'_>, ctx: &Context<'_, S>, opts: &CaptureOptions)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if local.is_async() {
        return local.send(capture::capture_event(event, ctx, opts));
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            match slot.as_mut() {
                Some(r) => capture::capture_event_into(r, event, ctx, opts),
                None => *slot = Some(capture::capture_event(event, ctx, opts)),
            }
            if let Some(r) = slot.as_mut() {
                local.write(r);
                // Release span references now; don't keep a huge event's buffers forever.
                r.span = None;
                if r.size() > 64 * 1024 {
                    *slot = None;
                }
            }
        }
        // An event logged while formatting another (a `Display` that logs): no reuse.
        Err(_) => local.write(&capture::capture_event(event, ctx, opts)),
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
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        if let Some(f) = &self.on_dispatch {
            f(dispatch);
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        capture::on_new_span(attrs, id, &ctx, self.capture.max_event_bytes);
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, ctx: Context<'_, S>) {
        capture::on_record(id, values, &ctx);
    }

    #[cfg(feature = "otel")]
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        crate::otel::on_enter(id, &ctx);
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

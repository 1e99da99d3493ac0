//! hivelog's filter: what hivelog writes, decided per layer, never what the other layers of
//! the subscriber see.
//!
//! Why a per-layer filter (`tracing_subscriber::layer::Filter`, wrapped with the layer in a
//! [`Filtered`](tracing_subscriber::filter::Filtered)): a layer's own `enabled` and
//! `register_callsite` are *global* filters in `tracing-subscriber`'s model. A `debug!` that
//! hivelog does not want would then be taken away from a `fmt` or OpenTelemetry layer beside
//! it. As a per-layer filter, hivelog's "no" only skips hivelog's layer; the registry disables
//! a callsite for everybody only when every layer's filter said no. With hivelog alone (what
//! `init()` builds) that is hivelog's own answer, so a filtered-out `debug!` is still rejected
//! by the macro's cached interest and the static max level, at the same 7 instructions.
//!
//! What it decides, in order:
//! 1. **The levels**: the union of every destination's filter (the local output's
//!    `HIVELOG_LEVEL` or level file or [`crate::set_level`], each `HIVELOG_<SINK>_LEVEL`),
//!    read from the [`FilterCell`] so a level change swaps them without a lock on the log call.
//!    The layer then routes each event to the destinations whose own filter takes it.
//!    Callsite interest ([`Filter::callsite_enabled`]), `enabled` and `max_level_hint` all
//!    answer through [`HivelogFilter::wants_callsite`], [`HivelogFilter::wants`] and
//!    [`HivelogFilter::max_level`]: a new reason for hivelog to take an event it would not
//!    write at once (the per-request buffer holds lines below a destination's level, down to
//!    `HIVELOG_REQUEST_BUFFER_LEVEL`, while inside a span) is one clause in each of those three,
//!    and the layer then decides per event whether to write or hold.
//!
//! The rate limit (`HIVELOG_RATE_LIMIT`) is not here but first thing in the layer's
//! `on_event`, which this filter's "yes" guards: it counts only events the levels let through,
//! and what it suppresses has already reached the other layers. Why not in
//! [`Filter::event_enabled`]: a `false` there for a callsite of `always` interest trips a
//! debug assertion of `tracing-subscriber` 0.3 (`FilterState::event_enabled`), so an
//! application's debug build would panic; the same holds for any per-event decision, which
//! belongs in the layer.
//!
//! The span callbacks keep the filters' span-based directives (`[request]=debug`) current;
//! they run only for spans this filter enabled, as `Filtered` calls them.

use std::sync::Arc;

use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::subscriber::Interest;
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

use crate::level::FilterCell;
use crate::request_buffer::{self, Buffers};

/// hivelog's per-layer filter: its levels (`HIVELOG_LEVEL`, the per-destination levels, the
/// level file, [`crate::set_level`]).
///
/// Built by [`crate::layer`] and [`crate::Builder::layer`] around a [`crate::HivelogLayer`], as
/// a [`crate::Layer`]; it decides only what hivelog writes.
#[derive(Clone)]
pub struct HivelogFilter {
    filters: Arc<FilterCell>,
    /// Whether this filter keeps the filters' span state (span-based directives). Only one
    /// filter over a cell may, or a span would be entered twice in their scope.
    span_state: bool,
    /// `HIVELOG_REQUEST_BUFFER_LEVEL`, when on: events it may hold are taken inside a span.
    requests: Option<Arc<Buffers>>,
}

impl HivelogFilter {
    pub(crate) fn new(filters: Arc<FilterCell>, requests: Option<Arc<Buffers>>) -> Self {
        HivelogFilter {
            filters,
            span_state: true,
            requests,
        }
    }

    /// The same levels without the span state: for a layer that hivelog's
    /// level decides like its own (the OpenTelemetry layer of [`crate::Builder::otel`]).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn levels_only(&self) -> Self {
        HivelogFilter {
            filters: self.filters.clone(),
            span_state: false,
            requests: None,
        }
    }

    /// The most verbose level hivelog takes now.
    pub(crate) fn max_level(&self) -> LevelFilter {
        let routes = self.filters.with(|f| f.max_level());
        match &self.requests {
            Some(rb) => routes.max(LevelFilter::from_level(rb.config.level)),
            None => routes,
        }
    }

    /// Whether the request buffer may hold an event of `meta` (at any time).
    #[inline]
    fn may_hold(&self, meta: &Metadata<'_>) -> bool {
        self.requests
            .as_ref()
            .is_some_and(|rb| meta.is_event() && rb.holds(meta.level()))
    }

    /// The callsite's interest: `always` if a destination always takes it, `never` if none
    /// ever does, else `sometimes` (decided per event by [`HivelogFilter::wants`]).
    fn wants_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        let routes = self.filters.with(|f| {
            let mut any_sometimes = false;
            for filter in &f.by_route {
                let i = <EnvFilter as Filter<tracing_subscriber::Registry>>::callsite_enabled(
                    filter, meta,
                );
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
        });
        // Held only inside a request, which the layer checks first (cheaper than asking here).
        if routes.is_never() && self.may_hold(meta) {
            return Interest::always();
        }
        routes
    }

    /// Whether some destination takes an event or span of `meta` here. (A new reason to take
    /// an event goes before the one-level fast path, which answers for the levels alone.)
    fn wants<S>(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if self.may_hold(meta) && request_buffer::in_span() {
            return true;
        }
        if let Some(max) = self.filters.simple() {
            return *meta.level() <= max;
        }
        self.filters
            .with(|f| f.by_route.iter().any(|r| Filter::<S>::enabled(r, meta, cx)))
    }

    /// Runs `f` on each destination's filter, if this filter keeps their span state.
    fn each_span_state(&self, f: impl Fn(&EnvFilter)) {
        if self.span_state {
            self.filters
                .with(|filters| filters.by_route.iter().for_each(f));
        }
    }
}

impl<S> Filter<S> for HivelogFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.wants(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        self.wants_callsite(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        self.each_span_state(|r| Filter::<S>::on_new_span(r, attrs, id, cx.clone()));
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, cx: Context<'_, S>) {
        self.each_span_state(|r| Filter::<S>::on_record(r, id, values, cx.clone()));
    }

    fn on_enter(&self, id: &Id, cx: Context<'_, S>) {
        self.each_span_state(|r| Filter::<S>::on_enter(r, id, cx.clone()));
    }

    fn on_exit(&self, id: &Id, cx: Context<'_, S>) {
        self.each_span_state(|r| Filter::<S>::on_exit(r, id, cx.clone()));
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        self.each_span_state(|r| Filter::<S>::on_close(r, id.clone(), cx.clone()));
    }
}

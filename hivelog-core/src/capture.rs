//! Turning `tracing` events and spans (and `log` records bridged by `tracing-log`) into
//! [`Record`]s and [`SpanNode`]s, visiting each field once.
//!
//! Spans store an `Arc<SpanNode>` in their registry extensions when created; an event keeps
//! only a clone of the innermost one, and outputs walk the parent links. `Span::record` replaces
//! the span's node (copy on write) and marks the old one replaced: events already captured keep
//! the values they were logged with, and later events see the new ones, in a child span
//! created before the `record` too (its chain is relinked once, on its next event).

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tracing_core::field::{Field as TField, Visit};
use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::{Dispatch, Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::record::{Fields, Record, SpanNode, SpanTrace, Str, Value};
use crate::trace::TraceContext;

/// Default cap on an event's text (`HIVELOG_MAX_EVENT_BYTES`): the capture enforces it, the
/// format documents it.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// What to capture beyond the event itself; derived from the format so unused data costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct CaptureOptions {
    /// Longest text kept per event (`HIVELOG_MAX_EVENT_BYTES`).
    pub max_event_bytes: usize,
    /// Capture the thread's name.
    pub thread_name: bool,
    /// Capture the thread's id.
    pub thread_id: bool,
    /// Identifies the layer (from [`span_cache_key`]) whose thread-local cache of the last
    /// event's span the capture may use; 0: no cache. A layer must call [`on_close`] from its
    /// `on_close` when this is set.
    pub span_cache: u64,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            thread_name: false,
            thread_id: false,
            span_cache: 0,
        }
    }
}

/// A new key for [`CaptureOptions::span_cache`], one per layer.
pub fn span_cache_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Spans closed so far, by every layer that caches: a cached span is trusted only if none closed
/// since (a closed span's id may be given to a new span).
static CLOSED: AtomicU64 = AtomicU64::new(0);

/// Counts a span closing; call from `Layer::on_close` when [`CaptureOptions::span_cache`] is set.
pub fn on_close() {
    CLOSED.fetch_add(1, Ordering::Relaxed);
}

/// The node of this thread's last event's innermost span, for the next event in the same span.
///
/// Why: finding an event's span in the registry takes a slot reference and the span's
/// extensions lock, four atomic read-modify-writes per event. On x86 each of them first waits
/// for the thread's earlier stores to reach the cache, and a log call's stores go to memory the
/// writer thread read a moment ago, so on two cores each costs a cache-line round trip
/// (BENCHMARKS.md section 7b). The registry's current span id is a thread-local read; when it
/// is the one cached, no span closed since, and the cached node is still its span's current one,
/// the cache answers.
struct LastSpan {
    layer: u64,
    id: Id,
    closed: u64,
    node: Arc<SpanNode>,
}

thread_local! {
    static LAST_SPAN: RefCell<Option<LastSpan>> = const { RefCell::new(None) };
}

thread_local! {
    static THREAD: RefCell<Option<(Arc<str>, u64)>> = const { RefCell::new(None) };
}
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

fn thread_info() -> (Arc<str>, u64) {
    THREAD.with(|t| {
        t.borrow_mut()
            .get_or_insert_with(|| {
                let cur = std::thread::current();
                let name: Arc<str> = Arc::from(cur.name().unwrap_or("<unnamed>"));
                (name, NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed))
            })
            .clone()
    })
}

/// Builds a record from an event; `span` is the innermost enclosing span, if any.
pub fn capture_event<S>(event: &Event<'_>, ctx: &Context<'_, S>, opts: &CaptureOptions) -> Record
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    let mut record = Record::new(
        *meta.level(),
        Str::Static(meta.target()),
        opts.max_event_bytes,
        meta.fields().len(),
    );
    fill(&mut record, event, ctx, opts);
    record
}

/// Like [`capture_event`], into an existing record whose allocations are reused (the caller
/// thread keeps one for events that only go to the local output and are never queued).
pub fn capture_event_into<S>(
    record: &mut Record,
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    opts: &CaptureOptions,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    record.reset(
        *meta.level(),
        Str::Static(meta.target()),
        opts.max_event_bytes,
    );
    fill(record, event, ctx, opts);
}

/// Like [`capture_event_into`], with the event's span already looked up
/// (`ctx.event_span(event)`) by a caller that needs it too (the request buffer, which keeps
/// the record in the span's request).
pub fn capture_event_into_span<S>(
    record: &mut Record,
    event: &Event<'_>,
    span: Option<&SpanRef<'_, S>>,
    opts: &CaptureOptions,
) where
    S: for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    record.reset(
        *meta.level(),
        Str::Static(meta.target()),
        opts.max_event_bytes,
    );
    fill_event(record, event, opts);
    if let Some(span) = span {
        set_span(record, span);
    }
}

fn fill<S>(record: &mut Record, event: &Event<'_>, ctx: &Context<'_, S>, opts: &CaptureOptions)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // The span first: its atomics come before the event's fields are stored (see `LastSpan`).
    let span = event_node(event, ctx, opts.span_cache);
    fill_event(record, event, opts);
    record.span = span;
}

/// The node of the event's innermost span (from this thread's cache when it can answer).
fn event_node<S>(event: &Event<'_>, ctx: &Context<'_, S>, layer: u64) -> Option<Arc<SpanNode>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if layer == 0 || !event.is_contextual() {
        return ctx.event_span(event).and_then(|s| span_node(&s));
    }
    let current = ctx.current_span();
    let id = current.id()?;
    let closed = CLOSED.load(Ordering::Relaxed);
    let cached = LAST_SPAN
        .try_with(|c| {
            c.try_borrow().ok().and_then(|last| {
                let last = last.as_ref()?;
                (last.layer == layer
                    && last.id == *id
                    && last.closed == closed
                    && !stale(&last.node))
                .then(|| last.node.clone())
            })
        })
        .ok()
        .flatten();
    if cached.is_some() {
        return cached;
    }
    let span = ctx.event_span(event)?;
    let node = span_node(&span);
    // Only when hivelog's innermost span is the thread's: otherwise the answer depends on the
    // rest of the thread's span stack (per-layer filters skip spans they did not enable).
    if let Some(node) = node.as_ref().filter(|_| span.id() == *id) {
        let _ = LAST_SPAN.try_with(|c| {
            if let Ok(mut last) = c.try_borrow_mut() {
                *last = Some(LastSpan {
                    layer,
                    id: id.clone(),
                    closed,
                    node: node.clone(),
                });
            }
        });
    }
    node
}

/// Whether a `Span::record` (or a trace set later) replaced a node of this chain.
fn stale(node: &Arc<SpanNode>) -> bool {
    RECORDED.load(Ordering::Relaxed) && node.ancestry().any(SpanNode::is_replaced)
}

/// The event's own part of a record: metadata, thread, fields.
fn fill_event(record: &mut Record, event: &Event<'_>, opts: &CaptureOptions) {
    let meta = event.metadata();
    record.module = meta.module_path().map(Str::Static);
    record.file = meta.file().map(Str::Static);
    record.line = meta.line();
    if opts.thread_name || opts.thread_id {
        let (name, id) = thread_info();
        record.thread_id = id;
        if opts.thread_name {
            record.thread = Some(name);
        }
    }
    // `tracing-log`'s callsites all have the target "log": a cheap test before the callsite
    // comparison `is_log` makes (about 55 instructions per event otherwise).
    if meta.target() == "log" && event.is_log() {
        // `log` records arrive with a generic callsite; their real metadata is in `log.*` fields.
        if let Some(m) = event.normalized_metadata() {
            record.level = *m.level();
            record.target = Str::Owned(record.fields.push_str(m.target()));
            record.module = m
                .module_path()
                .map(|s| Str::Owned(record.fields.push_str(s)));
            record.file = m.file().map(|s| Str::Owned(record.fields.push_str(s)));
            record.line = m.line();
        }
        event.record(&mut EventVisitor {
            record,
            skip_log_fields: true,
        });
    } else {
        event.record(&mut EventVisitor {
            record,
            skip_log_fields: false,
        });
    }
}

/// Links the record to `span`'s node (rebuilt first if a `Span::record` made it stale).
fn set_span<S>(record: &mut Record, span: &SpanRef<'_, S>)
where
    S: for<'a> LookupSpan<'a>,
{
    record.span = span_node(span);
}

/// `span`'s node (rebuilt first if a `Span::record` made it stale).
fn span_node<S>(span: &SpanRef<'_, S>) -> Option<Arc<SpanNode>>
where
    S: for<'a> LookupSpan<'a>,
{
    let node = span.extensions().get::<Arc<SpanNode>>().cloned();
    match node {
        Some(n) if stale(&n) => current_chain(span).or(Some(n)),
        other => other,
    }
}

/// Set by the first `Span::record` in the process. Until then no node can have been replaced,
/// and events skip the check.
static RECORDED: AtomicBool = AtomicBool::new(false);

/// The span's chain rebuilt from its ancestors' current nodes, after a `Span::record` on one of
/// them replaced a node the chain links to. Each span whose node links to a replaced parent
/// gets a new current node, so the copy is made once per span, and a later `record` on any of
/// them marks the chain stale again.
fn current_chain<S>(span: &SpanRef<'_, S>) -> Option<Arc<SpanNode>>
where
    S: for<'a> LookupSpan<'a>,
{
    let mut parent: Option<Arc<SpanNode>> = None;
    for s in span.scope().from_root() {
        let mut ext = s.extensions_mut();
        let Some(current) = ext.get_mut::<Arc<SpanNode>>() else {
            continue;
        };
        let linked_right = match (&current.parent, &parent) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !linked_right {
            let relinked = Arc::new(
                SpanNode::new(current.name, current.fields.clone(), parent.take())
                    .with_trace(current.trace.clone()),
            );
            std::mem::replace(current, relinked).mark_replaced();
        }
        parent = Some(current.clone());
    }
    parent
}

/// Stores a new span's node in its extensions; call from `Layer::on_new_span`.
pub fn on_new_span<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>, max_text: usize)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let parent = span
        .parent()
        .and_then(|p| p.extensions().get::<Arc<SpanNode>>().cloned());
    let mut fields = Fields::with_limit(max_text, attrs.metadata().fields().len());
    attrs.record(&mut FieldsVisitor(&mut fields));
    // A span inside a traced one continues its trace with an id of its own.
    let trace = parent
        .as_ref()
        .and_then(|p| p.trace.as_ref())
        .map(|t| SpanTrace::new(t.context().child()));
    let node = Arc::new(SpanNode::new(attrs.metadata().name(), fields, parent).with_trace(trace));
    span.extensions_mut().insert(node);
}

/// Puts `span` in a trace (a request span continuing an incoming trace, say). Spans created
/// inside it afterwards inherit the trace; events already captured keep what they had.
/// Returns `false` when the span has no node (it was not seen by hivelog's layer).
pub fn set_trace<S>(span: &SpanRef<'_, S>, trace: TraceContext) -> bool
where
    S: for<'a> LookupSpan<'a>,
{
    let mut ext = span.extensions_mut();
    let Some(node) = ext.get_mut::<Arc<SpanNode>>() else {
        return false;
    };
    match Arc::get_mut(node) {
        // No event or child holds the node yet: change it in place.
        Some(only) => only.trace = Some(SpanTrace::new(trace)),
        None => {
            RECORDED.store(true, Ordering::Relaxed);
            let traced = SpanNode::new(node.name, node.fields.clone(), node.parent.clone())
                .with_trace(Some(SpanTrace::new(trace)));
            std::mem::replace(node, Arc::new(traced)).mark_replaced();
        }
    }
    true
}

/// The trace `span` belongs to, if any.
pub fn trace_of<S>(span: &SpanRef<'_, S>) -> Option<TraceContext>
where
    S: for<'a> LookupSpan<'a>,
{
    span.extensions()
        .get::<Arc<SpanNode>>()
        .and_then(|n| n.trace.as_ref().map(|t| t.context().clone()))
}

fn set_via<S>(d: &Dispatch, id: &Id, trace: TraceContext) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    d.downcast_ref::<S>()
        .and_then(|s| s.span(id))
        .is_some_and(|span| set_trace(&span, trace))
}

fn get_via<S>(d: &Dispatch, id: &Id) -> Option<TraceContext>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    d.downcast_ref::<S>()
        .and_then(|s| s.span(id))
        .and_then(|span| trace_of(&span))
}

/// Reaches the trace of a span from outside the subscriber (`hivelog::trace`), through
/// [`Dispatch::downcast_ref`]: a layer that stores [`SpanNode`]s returns one of these from its
/// `downcast_raw`, made for its subscriber type.
#[derive(Clone, Copy, Debug)]
pub struct SpanAccess {
    set: fn(&Dispatch, &Id, TraceContext) -> bool,
    get: fn(&Dispatch, &Id) -> Option<TraceContext>,
}

impl SpanAccess {
    /// The access for a layer whose inner subscriber is `S`.
    pub const fn new<S>() -> Self
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        SpanAccess {
            set: set_via::<S>,
            get: get_via::<S>,
        }
    }

    /// [`set_trace`] on the span `id` of `dispatch`.
    pub fn set_trace(&self, dispatch: &Dispatch, id: &Id, trace: TraceContext) -> bool {
        (self.set)(dispatch, id, trace)
    }

    /// [`trace_of`] the span `id` of `dispatch`.
    pub fn trace(&self, dispatch: &Dispatch, id: &Id) -> Option<TraceContext> {
        (self.get)(dispatch, id)
    }
}

/// Applies `Span::record` values; call from `Layer::on_record`.
pub fn on_record<S>(id: &Id, values: &SpanValues<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let mut ext = span.extensions_mut();
    let Some(node) = ext.get_mut::<Arc<SpanNode>>() else {
        return;
    };
    let mut fields = node.fields.clone();
    values.record(&mut FieldsVisitor(&mut fields));
    RECORDED.store(true, Ordering::Relaxed);
    let recorded = Arc::new(
        SpanNode::new(node.name, fields, node.parent.clone()).with_trace(node.trace.clone()),
    );
    std::mem::replace(node, recorded).mark_replaced();
}

struct EventVisitor<'a> {
    record: &'a mut Record,
    skip_log_fields: bool,
}

impl EventVisitor<'_> {
    #[inline]
    fn put(&mut self, field: &TField, value: Value) {
        if self.skip_log_fields && field.name().starts_with("log.") {
            return;
        }
        self.record.fields.push(field.name(), value);
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &TField, value: f64) {
        self.put(field, Value::F64(value));
    }
    fn record_i64(&mut self, field: &TField, value: i64) {
        self.put(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &TField, value: u64) {
        self.put(field, Value::U64(value));
    }
    fn record_i128(&mut self, field: &TField, value: i128) {
        let v = match i64::try_from(value) {
            Ok(v) => Value::I64(v),
            Err(_) => Value::Str(self.record.fields.push_fmt(format_args!("{value}"))),
        };
        self.put(field, v);
    }
    fn record_u128(&mut self, field: &TField, value: u128) {
        let v = match u64::try_from(value) {
            Ok(v) => Value::U64(v),
            Err(_) => Value::Str(self.record.fields.push_fmt(format_args!("{value}"))),
        };
        self.put(field, v);
    }
    fn record_bool(&mut self, field: &TField, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &TField, value: &str) {
        if field.name() == "message" {
            self.record.message = Some(self.record.fields.push_str(value));
        } else if !(self.skip_log_fields && field.name().starts_with("log.")) {
            let r = self.record.fields.push_str(value);
            self.record.fields.push(field.name(), Value::Str(r));
        }
    }
    fn record_error(&mut self, field: &TField, value: &(dyn std::error::Error + 'static)) {
        self.record.fields.push_error(field.name(), value);
    }
    fn record_debug(&mut self, field: &TField, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.record.message = Some(self.record.fields.push_fmt(format_args!("{value:?}")));
        } else if !(self.skip_log_fields && field.name().starts_with("log.")) {
            let r = self.record.fields.push_fmt(format_args!("{value:?}"));
            self.record.fields.push(field.name(), Value::Str(r));
        }
    }
}

struct FieldsVisitor<'a>(&'a mut Fields);

impl Visit for FieldsVisitor<'_> {
    fn record_f64(&mut self, field: &TField, value: f64) {
        self.0.set(field.name(), Value::F64(value));
    }
    fn record_i64(&mut self, field: &TField, value: i64) {
        self.0.set(field.name(), Value::I64(value));
    }
    fn record_u64(&mut self, field: &TField, value: u64) {
        self.0.set(field.name(), Value::U64(value));
    }
    fn record_bool(&mut self, field: &TField, value: bool) {
        self.0.set(field.name(), Value::Bool(value));
    }
    fn record_str(&mut self, field: &TField, value: &str) {
        let r = self.0.push_str(value);
        self.0.set(field.name(), Value::Str(r));
    }
    fn record_error(&mut self, field: &TField, value: &(dyn std::error::Error + 'static)) {
        self.0.set_error(field.name(), value);
    }
    fn record_debug(&mut self, field: &TField, value: &dyn fmt::Debug) {
        let r = self.0.push_fmt(format_args!("{value:?}"));
        self.0.set(field.name(), Value::Str(r));
    }
}

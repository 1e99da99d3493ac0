//! The per-request log buffer: a request's DEBUG lines, written only if the request fails.
//!
//! In production the level is INFO, so the lines that would explain a failure were never
//! written; DEBUG everywhere multiplies the volume and the bill. With
//! `HIVELOG_REQUEST_BUFFER_LEVEL=debug`, a line below a destination's level but at or above
//! the buffer's, logged inside a request, is captured and held in memory. The first line at or
//! above `HIVELOG_REQUEST_BUFFER_FLUSH_ON` (ERROR by default) in the same request writes the
//! held lines first (oldest first, with their own timestamps, fields and trace ids), then
//! itself, to the destinations that take it. When the request ends without one, its held
//! lines are dropped and counted. A panic inside a request flushes it (the panic hook's ERROR
//! line is the trigger), and [`flush`] / [`discard`] do it on demand for handled errors.
//!
//! **What a request is.** The outermost span of the event's span context (the tower layer's
//! request span, any root span). The lines are stored in that span's extensions in the
//! registry, so a future instrumented with the span keeps one buffer whichever thread polls
//! it, and the buffer ends with the span: nothing leaks into the next request, and an event
//! outside any span is never held.
//!
//! **Why records, not lines.** A held line is kept as the captured [`hivelog_core::Record`]:
//! nothing is formatted unless it is written, which is the common case's whole saving. Its
//! cost to the caller is a capture and a push, about what an INFO line costs to enqueue.
//!
//! **Bounded.** `HIVELOG_REQUEST_BUFFER_BYTES` per request and `HIVELOG_REQUEST_BUFFER_TOTAL`
//! per process, in bytes of records as the queues count them; past either, the request's oldest
//! lines go first, and the flush starts with one WARN line whose numeric field `evicted` says
//! how many were lost (see `store.rs` for who gives up what).
//!
//! **Filters.** The buffer is part of hivelog's per-layer filter (`HivelogFilter`): it widens
//! what hivelog asks `tracing` for (max level) to the buffer's level, and a callsite only the
//! buffer wants gets an `always` interest: the layer's first check is then one thread-local
//! read (is a span entered on this thread?), cheaper than the subscriber's per-event `enabled`
//! round (234 against 301 instructions, about 10 ns; see BENCHMARKS.md section 14). Where
//! another layer's filter disagrees, `tracing-subscriber` makes the interest `sometimes` and
//! the filter answers per event the same way. Other layers see what they saw before. The rate limit counts a held line only when it is written.
//! Events with an explicit `parent:` logged on a thread where no span is entered are not held.
//!
//! **Ordering.** One flush writes at a time, so the lines of two failing requests never
//! interleave; lines that other requests write directly meanwhile may fall between them.

mod config;
mod store;

use std::cell::Cell;

pub(crate) use config::{from_env, VARS};
pub use config::{RequestBufferConfig, DEFAULT_REQUEST_BYTES, DEFAULT_TOTAL_BYTES};
pub(crate) use store::{spare, Buffer, Buffers, Held, Taken};

use tracing_core::span::Id;
use tracing_core::Dispatch;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// The request buffer's counters, in [`crate::Report`], the heartbeat and `hivelog check`.
///
/// `held = flushed + discarded + evicted + holding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestBufferReport {
    /// Lines taken into a request's buffer.
    pub held: u64,
    /// Held lines written by a flush.
    pub flushed: u64,
    /// Held lines dropped because their request ended without a flush (or [`discard`]).
    pub discarded: u64,
    /// Held lines dropped to stay within `HIVELOG_REQUEST_BUFFER_BYTES` / `_TOTAL`.
    pub evicted: u64,
    /// Lines held now.
    pub holding: u64,
    /// Bytes held now.
    pub holding_bytes: u64,
}

/// Writes the current request's held lines now, to the destinations they were held for;
/// returns how many were taken. For a handled error that should leave its context in the
/// logs without an ERROR line. `0` outside a request, or when hivelog's layer is not the
/// current subscriber's.
///
/// ```
/// let (dispatch, _guard) = hivelog::builder()
///     .writer(std::io::sink())
///     .request_buffer(hivelog::RequestBufferConfig::new(tracing::Level::DEBUG))
///     .try_build()
///     .unwrap();
/// tracing::dispatcher::with_default(&dispatch, || {
///     let _request = tracing::info_span!("request").entered();
///     tracing::debug!("held");
///     assert_eq!(hivelog::request_buffer::flush(), 1);
/// });
/// ```
pub fn flush() -> usize {
    with_current(|access, dispatch, id| (access.flush)(dispatch, id))
}

/// Drops the current request's held lines now (counted as discarded); returns how many.
///
/// ```
/// let (dispatch, guard) = hivelog::builder()
///     .writer(std::io::sink())
///     .request_buffer(hivelog::RequestBufferConfig::new(tracing::Level::DEBUG))
///     .try_build()
///     .unwrap();
/// tracing::dispatcher::with_default(&dispatch, || {
///     let _request = tracing::info_span!("request").entered();
///     tracing::debug!("held");
///     assert_eq!(hivelog::request_buffer::discard(), 1);
/// });
/// assert_eq!(guard.report().request_buffer.unwrap().discarded, 1);
/// ```
pub fn discard() -> usize {
    with_current(|access, dispatch, id| (access.discard)(dispatch, id))
}

fn with_current(f: impl Fn(&BufferAccess, &Dispatch, &Id) -> usize) -> usize {
    tracing::dispatcher::get_default(|dispatch| {
        let Some(access) = dispatch.downcast_ref::<BufferAccess>() else {
            return 0;
        };
        let current = dispatch.current_span();
        current.id().map_or(0, |id| f(access, dispatch, id))
    })
}

/// Reaches the layer's buffers from outside the subscriber ([`flush`], [`discard`]) through
/// `Dispatch::downcast_ref`, as `SpanAccess` does for traces: the layer's `downcast_raw`
/// returns one made for its subscriber type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BufferAccess {
    pub(crate) flush: fn(&Dispatch, &Id) -> usize,
    pub(crate) discard: fn(&Dispatch, &Id) -> usize,
}

thread_local! {
    /// Spans of a buffering layer entered on this thread now: 0 means no event logged here
    /// can be in a request (bar an explicit `parent:`), which is the cheap early answer.
    static ENTERED: Cell<u32> = const { Cell::new(0) };
}

/// Whether a span is entered on this thread (a hint: the event's own span decides).
#[inline]
pub(crate) fn in_span() -> bool {
    ENTERED.with(|e| e.get() != 0)
}

/// A span was entered on this thread (a buffering layer's `on_enter`).
#[inline]
pub(crate) fn entered() {
    ENTERED.with(|e| e.set(e.get().saturating_add(1)));
}

/// A span was exited on this thread (a buffering layer's `on_exit`).
#[inline]
pub(crate) fn exited() {
    ENTERED.with(|e| e.set(e.get().saturating_sub(1)));
}

/// The request `span` belongs to: its outermost ancestor.
pub(crate) fn root<'a, S>(span: SpanRef<'a, S>) -> SpanRef<'a, S>
where
    S: LookupSpan<'a>,
{
    let mut span = span;
    while let Some(parent) = span.parent() {
        span = parent;
    }
    span
}

/// Holds `line` in the buffer of `span`'s request.
pub(crate) fn hold<'a, S>(buffers: &std::sync::Arc<Buffers>, span: SpanRef<'a, S>, line: Held)
where
    S: LookupSpan<'a>,
{
    let root = root(span);
    let mut ext = root.extensions_mut();
    match ext.get_mut::<Buffer>() {
        Some(buf) => buf.hold(line),
        None => {
            let mut buf = buffers.buffer();
            buf.hold(line);
            ext.insert(buf);
        }
    }
}

/// Takes the held lines of `span`'s request (none when it holds nothing).
pub(crate) fn take<'a, S>(span: SpanRef<'a, S>) -> Option<Taken>
where
    S: LookupSpan<'a>,
{
    let root = root(span);
    let mut ext = root.extensions_mut();
    let taken = ext.get_mut::<Buffer>()?.take();
    (!taken.lines.is_empty() || taken.evicted > 0).then_some(taken)
}

/// Takes the held lines of the request `span` is in, seen from outside the layer (the raw
/// registry, whose spans include those hivelog's filter disabled): the buffer is in the one
/// ancestor that holds one.
pub(crate) fn take_visible<'a, S>(span: SpanRef<'a, S>) -> Option<Taken>
where
    S: LookupSpan<'a>,
{
    for s in span.scope() {
        let mut ext = s.extensions_mut();
        if let Some(buf) = ext.get_mut::<Buffer>() {
            let taken = buf.take();
            return (!taken.lines.is_empty() || taken.evicted > 0).then_some(taken);
        }
    }
    None
}

/// Discards the held lines of the request `span` is in (seen as by [`take_visible`]);
/// returns how many.
pub(crate) fn discard_in<'a, S>(span: SpanRef<'a, S>) -> usize
where
    S: LookupSpan<'a>,
{
    for s in span.scope() {
        let mut ext = s.extensions_mut();
        if let Some(buf) = ext.get_mut::<Buffer>() {
            return buf.discard() as usize;
        }
    }
    0
}

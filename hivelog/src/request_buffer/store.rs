//! The held lines: one [`Buffer`] per request, inside the request's root span, and the
//! [`Buffers`] every request shares (configuration, counters, the process-wide byte count).
//!
//! Budgets are in bytes of captured records ([`Record::size`], what the queues count), so a
//! request that logs a few huge values holds as much memory as one that logs many small ones.
//! When a request goes over its own budget its oldest lines go first: the newest lines are the
//! ones nearest the failure. When the process goes over its budget the request that is adding
//! a line gives up its own oldest lines, never another request's: one runaway request cannot
//! erase the context of the others (it loses its own instead, and says so at flush).
//!
//! Every line is counted once as `held`, and ends as exactly one of `flushed`, `discarded` or
//! `evicted` (or is still held): `held = flushed + discarded + evicted + holding`.
//!
//! Most held lines are dropped, not written, so the records of discarded and evicted lines
//! are kept for reuse by the next held line on the same thread ([`spare`]): holding a line
//! then allocates nothing and ending a request frees nothing. At most [`SPARE_RECORDS`]
//! records of at most [`SPARE_RECORD_BYTES`] each are kept per thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hivelog_core::Record;
use tracing_core::{Level, Metadata};

use super::RequestBufferConfig;
use super::RequestBufferReport;

/// Records kept for reuse per thread.
pub(crate) const SPARE_RECORDS: usize = 32;
/// Larger records are freed rather than kept for reuse.
pub(crate) const SPARE_RECORD_BYTES: usize = 1024;

thread_local! {
    static SPARE: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
}

/// A record of a dropped held line, to capture the next one into (its allocations reused).
#[inline]
pub(crate) fn spare() -> Option<Record> {
    SPARE
        .try_with(|s| s.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
}

/// Keeps a dropped line's record for [`spare`], if it is small and the thread has room.
fn recycle(mut record: Record) {
    if record.size() > SPARE_RECORD_BYTES {
        return;
    }
    // Release what it points to now, not when it is reused.
    record.span = None;
    record.thread = None;
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARE_RECORDS {
                s.push(record);
            }
        }
    });
}

/// One held line: the captured record, and the destinations it is held for (one bit per
/// route of the layer: those whose level did not take it when it was logged).
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) record: Record,
    pub(crate) routes: u64,
    /// The event's callsite, for the rate limit when the line is written.
    pub(crate) callsite: &'static Metadata<'static>,
}

/// What all requests share.
#[derive(Debug)]
pub(crate) struct Buffers {
    pub(crate) config: RequestBufferConfig,
    /// Bytes held now, all requests together.
    bytes: AtomicUsize,
    holding: AtomicU64,
    held: AtomicU64,
    flushed: AtomicU64,
    discarded: AtomicU64,
    evicted: AtomicU64,
    /// Taken while a flush writes, so two requests' flushed lines never interleave.
    writing: Mutex<()>,
}

/// One request's held lines; lives in the extensions of the request's root span, so it
/// follows the span across threads and is dropped (its lines discarded and counted) when the
/// span closes.
#[derive(Debug)]
pub(crate) struct Buffer {
    lines: VecDeque<Held>,
    bytes: usize,
    /// Lines lost to a budget since the last flush.
    evicted: u64,
    shared: Arc<Buffers>,
}

/// A request's lines taken out for writing, with how many were evicted before them.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub(crate) lines: VecDeque<Held>,
    pub(crate) evicted: u64,
}

impl Buffers {
    pub(crate) fn new(config: RequestBufferConfig) -> Arc<Buffers> {
        Arc::new(Buffers {
            config,
            bytes: AtomicUsize::new(0),
            holding: AtomicU64::new(0),
            held: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            writing: Mutex::new(()),
        })
    }

    /// Whether an event at `level` may be held (at or above the buffer's level).
    #[inline]
    pub(crate) fn holds(&self, level: &Level) -> bool {
        *level <= self.config.level
    }

    /// Whether an event at `level` flushes its request's lines.
    #[inline]
    pub(crate) fn flushes(&self, level: &Level) -> bool {
        *level <= self.config.flush_on
    }

    /// An empty buffer for a new request.
    pub(crate) fn buffer(self: &Arc<Self>) -> Buffer {
        Buffer {
            lines: VecDeque::new(),
            bytes: 0,
            evicted: 0,
            shared: self.clone(),
        }
    }

    /// Serializes flushes (see `writing`).
    pub(crate) fn writing(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts lines written by a flush.
    pub(crate) fn count_flushed(&self, n: u64) {
        self.flushed.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts taken lines that no destination of the flush wanted.
    pub(crate) fn count_discarded(&self, n: u64) {
        self.discarded.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub(crate) fn report(&self) -> RequestBufferReport {
        RequestBufferReport {
            held: self.held.load(Ordering::Relaxed),
            flushed: self.flushed.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            holding: self.holding.load(Ordering::Relaxed),
            holding_bytes: self.bytes.load(Ordering::Relaxed) as u64,
        }
    }
}

impl Buffer {
    /// Holds a line, evicting this request's oldest lines while a budget is exceeded. A line
    /// larger than the request's whole budget is counted as evicted at once.
    pub(crate) fn hold(&mut self, line: Held) {
        let shared = self.shared.clone();
        let size = line.record.size();
        shared.held.fetch_add(1, Ordering::Relaxed);
        if size > shared.config.request_bytes {
            self.evicted += 1;
            shared.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while self.bytes + size > shared.config.request_bytes && self.evict_oldest() {}
        let mut total = shared.bytes.fetch_add(size, Ordering::Relaxed) + size;
        while total > shared.config.total_bytes {
            if !self.evict_oldest() {
                shared.bytes.fetch_sub(size, Ordering::Relaxed);
                self.evicted += 1;
                shared.evicted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            total = shared.bytes.load(Ordering::Relaxed);
        }
        self.bytes += size;
        self.lines.push_back(line);
        shared.holding.fetch_add(1, Ordering::Relaxed);
    }

    fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.lines.pop_front() else {
            return false;
        };
        self.release(1, old.record.size());
        recycle(old.record);
        self.evicted += 1;
        self.shared.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn release(&mut self, lines: u64, bytes: usize) {
        self.bytes -= bytes;
        self.shared.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.shared.holding.fetch_sub(lines, Ordering::Relaxed);
    }

    /// Takes every held line (oldest first) and the eviction count, for a flush; the caller
    /// counts them as flushed or discarded.
    pub(crate) fn take(&mut self) -> Taken {
        let lines = std::mem::take(&mut self.lines);
        let bytes = self.bytes;
        self.release(lines.len() as u64, bytes);
        Taken {
            lines,
            evicted: std::mem::take(&mut self.evicted),
        }
    }

    /// Drops every held line, counted as discarded; returns how many.
    pub(crate) fn discard(&mut self) -> u64 {
        let taken = self.take();
        let n = taken.lines.len() as u64;
        self.shared.count_discarded(n);
        for line in taken.lines {
            recycle(line.record);
        }
        n
    }

    /// Lines held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lines.len()
    }
}

impl Drop for Buffer {
    // The request's span closed without a flush.
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::record::{Str, Value};

    static CALLSITE: &Metadata<'static> = {
        struct Cs;
        impl tracing_core::Callsite for Cs {
            fn set_interest(&self, _: tracing_core::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                CALLSITE
            }
        }
        static CS: Cs = Cs;
        &Metadata::new(
            "held",
            "test",
            Level::DEBUG,
            None,
            None,
            None,
            tracing_core::field::FieldSet::new(&[], tracing_core::identify_callsite!(&CS)),
            tracing_core::metadata::Kind::EVENT,
        )
    };

    fn line(i: u64) -> Held {
        let mut record = Record::new(Level::DEBUG, Str::Static("test"), 1 << 20, 1);
        record.fields.push("i", Value::U64(i));
        Held {
            record,
            routes: 1,
            callsite: CALLSITE,
        }
    }

    fn size() -> usize {
        line(0).record.size()
    }

    fn config(per_request_lines: usize, total_lines: usize) -> RequestBufferConfig {
        RequestBufferConfig {
            request_bytes: per_request_lines * size(),
            total_bytes: total_lines * size(),
            ..RequestBufferConfig::new(Level::DEBUG)
        }
    }

    fn numbers(taken: &Taken) -> Vec<u64> {
        taken
            .lines
            .iter()
            .map(|h| match h.record.fields.as_slice()[0].value {
                Value::U64(i) => i,
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_request_over_its_budget_keeps_its_newest_lines_and_counts_the_rest() {
        let shared = Buffers::new(config(3, 100));
        let mut buf = shared.buffer();
        for i in 0..10 {
            buf.hold(line(i));
        }
        let taken = buf.take();
        assert_eq!(numbers(&taken), [7, 8, 9]);
        assert_eq!(taken.evicted, 7);
        let r = shared.report();
        assert_eq!(
            (r.held, r.evicted, r.holding, r.holding_bytes),
            (10, 7, 0, 0)
        );
    }

    #[test]
    fn the_process_budget_makes_the_adding_request_give_up_its_own_oldest_lines() {
        let shared = Buffers::new(config(10, 4));
        let (mut a, mut b) = (shared.buffer(), shared.buffer());
        for i in 0..3 {
            a.hold(line(i));
        }
        for i in 10..13 {
            b.hold(line(i));
        }
        // a keeps its three lines; b could only ever have one of its own at a time.
        assert_eq!(numbers(&a.take()), [0, 1, 2]);
        let b = b.take();
        assert_eq!((numbers(&b), b.evicted), (vec![12], 2));
    }

    #[test]
    fn a_request_that_cannot_fit_one_line_counts_it_as_evicted() {
        let shared = Buffers::new(config(10, 1));
        let (mut a, mut b) = (shared.buffer(), shared.buffer());
        a.hold(line(0));
        b.hold(line(1));
        let b = b.take();
        assert_eq!((b.lines.len(), b.evicted), (0, 1));
        assert_eq!(a.len(), 1);
        let tiny = Buffers::new(RequestBufferConfig {
            request_bytes: 10,
            ..config(1, 1)
        });
        let mut c = tiny.buffer();
        c.hold(line(2));
        assert_eq!((c.len(), tiny.report().evicted), (0, 1));
    }

    #[test]
    fn a_closed_request_discards_what_it_held_and_the_counters_add_up() {
        let shared = Buffers::new(config(2, 100));
        {
            let mut buf = shared.buffer();
            for i in 0..5 {
                buf.hold(line(i));
            }
            let flushed = buf.take();
            shared.count_flushed(flushed.lines.len() as u64);
            buf.hold(line(5));
        }
        let r = shared.report();
        assert_eq!(r.held, 6);
        assert_eq!((r.flushed, r.discarded, r.evicted, r.holding), (2, 1, 3, 0));
        assert_eq!(r.held, r.flushed + r.discarded + r.evicted + r.holding);
        assert_eq!(r.holding_bytes, 0);
    }

    #[test]
    fn dropped_lines_leave_their_records_for_the_next_held_line_of_the_thread() {
        while spare().is_some() {}
        let shared = Buffers::new(config(3, 100));
        let mut buf = shared.buffer();
        for i in 0..5 {
            buf.hold(line(i));
        }
        buf.discard();
        let mut kept = 0;
        while let Some(r) = spare() {
            assert!(r.span.is_none());
            kept += 1;
        }
        assert_eq!(kept, 5, "2 evicted and 3 discarded");
    }

    #[test]
    fn levels_held_and_levels_that_flush() {
        let shared = Buffers::new(RequestBufferConfig::new(Level::DEBUG));
        assert!(shared.holds(&Level::DEBUG) && shared.holds(&Level::INFO));
        assert!(!shared.holds(&Level::TRACE));
        assert!(shared.flushes(&Level::ERROR) && !shared.flushes(&Level::WARN));
    }
}

//! The byte-bounded queue between the threads that log and the pipeline's worker.
//!
//! One `Mutex` guards the queued records, the byte count, the counters and the shutdown
//! state. A log call takes it once, for a push that is a few stores: it never waits on I/O
//! and never wakes the worker per event. The worker is woken only when a batch's worth has
//! queued (by count or bytes), when half the budget is used, or by `flush`/`shutdown`;
//! otherwise it picks up partial batches on its own every flush interval.
//!
//! The budget counts [`Record::size`] of every event queued *or in flight*, so memory stays
//! bounded even while a slow destination holds a batch. When a new event does not fit:
//! - `drop_newest` drops it (the log call never waits);
//! - `drop_oldest` drops queued events from the front until it fits (events already handed
//!   to the sink are not taken back; if they alone leave no room, the new event is dropped);
//! - `block:<d>` waits on a condition variable, at most `d`, for the worker to free room,
//!   then drops it.
//!
//! Every drop is counted, by reason. An event larger than the whole budget is always dropped.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::config::{Overflow, PipelineConfig};
use super::stats::Stats;
use crate::record::Record;
use crate::sink::BatchLimits;

/// State shared by the pipeline's handles and its worker.
pub(crate) struct Shared {
    pub name: &'static str,
    pub config: PipelineConfig,
    /// Queue length that wakes the worker (the sink's `max_events`).
    wake_events: usize,
    /// Queued bytes that wake the worker (the sink's `max_bytes`, or half the budget).
    wake_bytes: usize,
    state: Mutex<State>,
    /// Signalled when the worker frees budget (for `Overflow::Block`).
    room: Condvar,
    /// Signalled when records resolve or the worker stops (for `flush`/`shutdown`).
    done: Condvar,
    /// Wakes the worker: a batch's worth queued, flush, shutdown.
    pub work: Notify,
    /// Tells an in-progress send that shutdown began, so it can watch the deadline.
    pub stop: Notify,
    /// The sink's per-endpoint figures, if it publishes any ([`crate::Sink::endpoints`]).
    pub endpoints: std::sync::OnceLock<crate::endpoints::Endpoints>,
}

struct State {
    queue: VecDeque<Record>,
    queued_bytes: usize,
    /// The live counters; `stats()` clones them under the lock, so a snapshot always balances.
    counters: Stats,
    next_seq: u64,
    /// Lowest `seq` held by the worker (in flight or waiting for a retry), if any.
    inflight_min: Option<u64>,
    /// `flush` wants every record with a lower `seq` resolved.
    flush_upto: u64,
    closing: bool,
    deadline: Option<Instant>,
    finished: bool,
    /// The worker was notified and has not taken a batch since; avoids repeated wake-ups.
    woken: bool,
    room_waiters: u32,
    done_waiters: u32,
}

impl State {
    fn oldest_pending(&self) -> u64 {
        self.inflight_min
            .or_else(|| self.queue.front().map(|r| r.seq))
            .unwrap_or(self.next_seq)
    }
}

/// What the worker needs to decide whether to send now.
#[derive(Debug)]
pub(crate) struct View {
    pub closing: bool,
    pub deadline: Option<Instant>,
    pub queued: usize,
    pub queued_bytes: usize,
    pub pending: u64,
    pub pending_bytes: u64,
    pub flush_wanted: bool,
    pub dropped_overflow: u64,
}

/// What one batch's outcomes change in the counters.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    pub delivered: u64,
    pub rejected: u64,
    pub failed: u64,
    pub retried: u64,
    /// [`Record::size`] of the delivered, rejected and failed records.
    pub resolved_bytes: u64,
    pub bytes_sent: u64,
    pub last_error: Option<String>,
    pub last_failure: Option<crate::sink::FailureKind>,
}

impl Shared {
    pub fn new(name: &'static str, config: PipelineConfig, limits: BatchLimits) -> Self {
        let half_budget = (config.buffer_bytes / 2).max(1);
        Shared {
            name,
            wake_events: limits.max_events.max(1),
            wake_bytes: limits.max_bytes.clamp(1, half_budget),
            config,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                counters: Stats {
                    sink: name,
                    ..Stats::default()
                },
                next_seq: 0,
                inflight_min: None,
                flush_upto: 0,
                closing: false,
                deadline: None,
                finished: false,
                woken: false,
                room_waiters: 0,
                done_waiters: 0,
            }),
            room: Condvar::new(),
            done: Condvar::new(),
            work: Notify::new(),
            stop: Notify::new(),
            endpoints: std::sync::OnceLock::new(),
        }
    }

    /// Waits on `done` until `ready` holds or `deadline` passes.
    fn wait_until<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        deadline: Instant,
        ready: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        while !ready(&st) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st.done_waiters += 1;
            st = self
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.done_waiters -= 1;
        }
        st
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the counters are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enqueues a record, or drops and counts it; see the module docs.
    pub fn push(&self, mut record: Record) {
        let size = record.size();
        let budget = self.config.buffer_bytes;
        let mut st = self.lock();
        st.counters.enqueued += 1;
        if st.closing {
            st.counters.dropped_shutdown += 1;
            return;
        }
        if st.counters.pending_bytes as usize + size > budget {
            if size > budget {
                st.counters.dropped_overflow += 1;
                return;
            }
            match self.config.overflow {
                Overflow::DropNewest => {
                    st.counters.dropped_overflow += 1;
                    return;
                }
                Overflow::DropOldest => {
                    // Records in flight cannot be evicted: if evicting every queued one would
                    // not make room, keep them and drop only the new one.
                    let in_flight = st.counters.pending_bytes as usize - st.queued_bytes;
                    if in_flight + size > budget {
                        st.counters.dropped_overflow += 1;
                        return;
                    }
                    while st.counters.pending_bytes as usize + size > budget {
                        let Some(old) = st.queue.pop_front() else {
                            break;
                        };
                        let old_size = old.size();
                        st.queued_bytes -= old_size;
                        st.counters.pending -= 1;
                        st.counters.pending_bytes -= old_size as u64;
                        st.counters.dropped_overflow += 1;
                    }
                    if st.done_waiters > 0 {
                        self.done.notify_all();
                    }
                }
                Overflow::Block(max_wait) => {
                    let until = Instant::now() + max_wait;
                    loop {
                        if !st.woken {
                            st.woken = true;
                            self.work.notify_one();
                        }
                        let now = Instant::now();
                        if now >= until {
                            st.counters.dropped_overflow += 1;
                            return;
                        }
                        st.room_waiters += 1;
                        st = self
                            .room
                            .wait_timeout(st, until - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                        st.room_waiters -= 1;
                        if st.closing {
                            st.counters.dropped_shutdown += 1;
                            return;
                        }
                        if st.counters.pending_bytes as usize + size <= budget {
                            break;
                        }
                    }
                }
            }
        }
        record.seq = st.next_seq;
        st.next_seq += 1;
        st.counters.pending += 1;
        st.counters.pending_bytes += size as u64;
        st.queued_bytes += size;
        st.queue.push_back(record);
        if !st.woken
            && (st.queue.len() >= self.wake_events
                || st.queued_bytes >= self.wake_bytes
                || st.counters.pending_bytes as usize >= budget / 2)
        {
            st.woken = true;
            drop(st);
            self.work.notify_one();
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let stats = self.lock().counters.clone();
        self.with_endpoints(stats)
    }

    /// Adds the sink's per-endpoint figures to a snapshot (read outside the queue's lock).
    fn with_endpoints(&self, mut stats: Stats) -> Stats {
        if let Some(e) = self.endpoints.get() {
            stats.endpoints = e.snapshot();
        }
        stats
    }

    /// For the worker: the state that decides its next step.
    pub fn view(&self) -> View {
        let st = self.lock();
        View {
            closing: st.closing,
            deadline: st.deadline,
            queued: st.queue.len(),
            queued_bytes: st.queued_bytes,
            pending: st.counters.pending,
            pending_bytes: st.counters.pending_bytes,
            flush_wanted: st.queue.front().is_some_and(|r| r.seq < st.flush_upto),
            dropped_overflow: st.counters.dropped_overflow,
        }
    }

    /// For the worker: moves up to `max` queued records to the back of `batch` (they stay
    /// pending, now in flight). `held_min` is the lowest `seq` the worker already holds.
    ///
    /// When `batch` is empty and the whole queue fits, the two buffers are swapped: the lock is
    /// held for O(1) whatever the batch size, and the queue reuses the batch's allocation.
    pub fn take(&self, max: usize, batch: &mut VecDeque<Record>, held_min: Option<u64>) {
        let mut st = self.lock();
        st.woken = false;
        if batch.is_empty() && st.queue.len() <= max {
            std::mem::swap(&mut st.queue, batch);
            st.queued_bytes = 0;
        } else {
            let n = max.min(st.queue.len());
            let mut bytes = 0;
            batch.extend(st.queue.drain(..n).inspect(|r| bytes += r.size()));
            st.queued_bytes -= bytes;
        }
        st.inflight_min = held_min.or_else(|| batch.front().map(|r| r.seq));
        // After a burst, give back the queue's memory rather than keep its peak forever.
        let cap = st.queue.capacity();
        if cap > 65_536 && st.queue.len() < cap / 8 {
            let keep = (st.queue.len() * 2).max(1024);
            st.queue.shrink_to(keep);
        }
    }

    /// For the worker: records a batch's outcomes. `inflight_min` is the lowest `seq` the
    /// worker still holds for a retry.
    pub fn resolve(&self, r: Resolution, inflight_min: Option<u64>) {
        let mut st = self.lock();
        let c = &mut st.counters;
        let resolved = r.delivered + r.rejected + r.failed;
        c.delivered += r.delivered;
        c.rejected += r.rejected;
        c.failed += r.failed;
        c.retried += r.retried;
        c.bytes_sent += r.bytes_sent;
        c.pending -= resolved;
        c.pending_bytes -= r.resolved_bytes;
        if r.last_error.is_some() {
            c.last_error = r.last_error;
            c.last_failure = r.last_failure;
        }
        st.inflight_min = inflight_min;
        if st.room_waiters > 0 && resolved > 0 {
            self.room.notify_all();
        }
        if st.done_waiters > 0 {
            self.done.notify_all();
        }
    }

    /// For the worker: the worker has stopped; wakes everyone waiting on it.
    pub fn finish(&self) {
        let mut st = self.lock();
        st.finished = true;
        st.closing = true;
        self.done.notify_all();
        self.room.notify_all();
    }

    /// Asks the worker to send every record queued now; waits until they are resolved or
    /// `deadline`.
    pub fn flush(&self, deadline: Instant) -> Stats {
        let mut st = self.lock();
        if super::worker::on_pipeline_thread() {
            return st.counters.clone();
        }
        let target = st.next_seq;
        st.flush_upto = st.flush_upto.max(target);
        self.work.notify_one();
        let st = self.wait_until(st, deadline, |st| {
            st.finished || st.oldest_pending() >= target
        });
        let stats = st.counters.clone();
        drop(st);
        self.with_endpoints(stats)
    }

    /// Stops intake and tells the worker to drain until `deadline`, without waiting.
    /// The first call's deadline is the one the worker keeps.
    pub fn begin_shutdown(&self, deadline: Instant) {
        let mut st = self.lock();
        if !st.closing {
            st.closing = true;
            st.deadline = Some(deadline);
        }
        if st.room_waiters > 0 {
            self.room.notify_all();
        }
        drop(st);
        self.work.notify_one();
        self.stop.notify_waiters();
    }

    /// Stops intake, lets the worker drain until `deadline`, and waits for it (at most until
    /// `deadline`).
    pub fn shutdown(&self, deadline: Instant) -> Stats {
        self.begin_shutdown(deadline);
        let st = self.lock();
        if super::worker::on_pipeline_thread() {
            return st.counters.clone();
        }
        let st = self.wait_until(st, deadline, |st| st.finished);
        let stats = st.counters.clone();
        drop(st);
        self.with_endpoints(stats)
    }

    /// The shutdown deadline, once shutdown began.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }
}

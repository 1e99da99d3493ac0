//! The byte-bounded queue between the threads that log and the local writer thread.
//!
//! Why not the sinks' queue (`hivelog_core::pipeline`): that one wakes its worker only when a
//! batch's worth has queued or the flush interval has passed, keeps per-record state for
//! retries, and feeds an async runtime. The local output needs the opposite wake-up rule (the
//! writer drains continuously, so a developer at a terminal sees each line at once), never
//! retries, and its log call must stay a lock and a few stores. A small dedicated queue is
//! cheaper than bending the shared one; the byte budget (`HIVELOG_BUFFER_BYTES`) and the
//! overflow policy (`HIVELOG_OVERFLOW`) mean the same as for a sink:
//! - `drop_newest` drops the new event (the log call never waits);
//! - `drop_oldest` drops queued lines from the front until it fits (the buffer the writer is
//!   writing is not taken back: if it alone leaves no room, the new event is dropped);
//! - `block:<d>` waits at most `d` for the writer to free room, then drops it;
//! - `drop_lowest` (the default) drops queued lines of the lowest level below the new event's,
//!   newest first, until it fits; an event is dropped only when nothing below its level is
//!   queued (the buffer being written is not taken back).
//!
//! The budget counts [`Record::size`] of every record queued or being written, and every drop
//! is counted. An event larger than the whole budget is always dropped.
//!
//! Wake-ups: when the queue runs empty the writer first naps for [`LINGER`], then sleeps until
//! a push wakes it; a push wakes it only then, so there is one wake-up per idle period, not one
//! per event, and none at all while events come less than a nap apart. While the writer writes, pushes
//! only append; its next take swaps the whole queue out in O(1), which is what puts many lines
//! in one write when lines come faster than one `write(2)` each. The price of "no flush
//! interval": a push that finds the writer asleep (a quiet service) pays one futex wake, a
//! syscall of about a microsecond, instead of the write it saves.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hivelog_core::pipeline::{level_rank as rank, Overflow};

/// How long the writer naps after the queue ran empty, before it sleeps until woken: lines
/// queued during the nap need no wake-up (a futex call costs more than a whole log call), and
/// are written together when it ends. A nap is a sleep, not a spin, so an idle or quiet service
/// pays no CPU for it; a line logged during one waits at most the nap (about 0.1 ms with
/// Linux's default timer slack), a line logged while the writer sleeps wakes it at once.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);
use hivelog_core::Record;

/// The queue, its counters and the writer's wake-up.
pub(crate) struct LineQueue {
    budget: usize,
    overflow: Overflow,
    state: Mutex<State>,
    /// The writer waits on it for records.
    work: Condvar,
    /// `block:` pushes wait on it for room.
    room: Condvar,
    /// `flush` and `shutdown` wait on it for the writer's progress.
    done: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Record>,
    queued_bytes: usize,
    /// Bytes queued per level (see [`rank`]), to tell at once whether `drop_lowest` can evict.
    level_bytes: [usize; 5],
    /// Records queued or being written, and their bytes.
    pending: u64,
    pending_bytes: usize,
    /// Sequence number of the next record queued.
    next_seq: u64,
    /// The first sequence number in the buffer being written, if any.
    held_min: Option<u64>,
    dropped: u64,
    idle: bool,
    closing: bool,
    finished: bool,
    room_waiters: u32,
    done_waiters: u32,
}

impl State {
    /// Takes queued record `i` out, uncounted as pending (the caller counts the drop).
    fn evict(&mut self, i: usize) {
        if let Some(old) = self.queue.remove(i) {
            let size = old.size();
            self.queued_bytes -= size;
            self.pending_bytes -= size;
            self.level_bytes[rank(old.level)] -= size;
            self.pending -= 1;
            self.dropped += 1;
        }
    }

    /// `drop_lowest`: evicts the newest queued records of the lowest levels below `level`
    /// until `size` fits; `false` when even all of them would not make room.
    fn evict_lower(&mut self, level: tracing::Level, size: usize, budget: usize) -> bool {
        let below = rank(level);
        let evictable: usize = self.level_bytes[..below].iter().sum();
        if self.pending_bytes - evictable + size > budget {
            return false;
        }
        for r in 0..below {
            let mut i = self.queue.len();
            while self.pending_bytes + size > budget && self.level_bytes[r] > 0 && i > 0 {
                i -= 1;
                if rank(self.queue[i].level) == r {
                    self.evict(i);
                }
            }
        }
        true
    }

    fn oldest_pending(&self) -> u64 {
        self.held_min
            .or_else(|| self.queue.front().map(|r| r.seq))
            .unwrap_or(self.next_seq)
    }
}

impl LineQueue {
    pub(crate) fn new(budget: usize, overflow: Overflow) -> LineQueue {
        LineQueue {
            budget,
            overflow,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the counters are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a record or drops it by the overflow policy (and counts it). Once the writer has
    /// stopped (after a shutdown), hands it back: the caller writes it itself.
    pub(crate) fn push(&self, mut record: Record) -> Option<Record> {
        let size = record.size();
        let mut st = self.lock();
        if st.pending_bytes + size > self.budget && !st.finished {
            match self.make_room(st, record.level, size) {
                Some(guard) => st = guard,
                None => return None,
            }
        }
        if st.finished {
            return Some(record);
        }
        record.seq = st.next_seq;
        st.next_seq += 1;
        st.pending += 1;
        st.pending_bytes += size;
        st.queued_bytes += size;
        st.level_bytes[rank(record.level)] += size;
        st.queue.push_back(record);
        let wake = std::mem::take(&mut st.idle);
        drop(st);
        if wake {
            self.work.notify_one();
        }
        None
    }

    /// Applies the overflow policy; `None` when the new record is dropped (and counted).
    fn make_room<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        level: tracing::Level,
        size: usize,
    ) -> Option<MutexGuard<'a, State>> {
        if size > self.budget {
            st.dropped += 1;
            return None;
        }
        match self.overflow {
            Overflow::DropNewest => {
                st.dropped += 1;
                None
            }
            Overflow::DropLowest => {
                if !st.evict_lower(level, size, self.budget) {
                    st.dropped += 1;
                    return None;
                }
                if st.done_waiters > 0 {
                    self.done.notify_all();
                }
                Some(st)
            }
            Overflow::DropOldest => {
                let held = st.pending_bytes - st.queued_bytes;
                if held + size > self.budget {
                    st.dropped += 1;
                    return None;
                }
                while st.pending_bytes + size > self.budget && !st.queue.is_empty() {
                    st.evict(0);
                }
                if st.done_waiters > 0 {
                    self.done.notify_all();
                }
                Some(st)
            }
            Overflow::Block(max_wait) => {
                let until = Instant::now() + max_wait;
                while st.pending_bytes + size > self.budget && !st.finished {
                    let now = Instant::now();
                    if now >= until {
                        st.dropped += 1;
                        return None;
                    }
                    st.room_waiters += 1;
                    st = self
                        .room
                        .wait_timeout(st, until - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    st.room_waiters -= 1;
                }
                Some(st)
            }
        }
    }

    /// For the writer: marks the previous buffer (`lines` records of `bytes`) as resolved, then
    /// waits for records and swaps them all into `batch`. Returns `false` once the queue is
    /// closed and empty: the writer then stops.
    pub(crate) fn next(&self, batch: &mut VecDeque<Record>, lines: u64, bytes: usize) -> bool {
        let mut st = self.lock();
        st.pending -= lines;
        st.pending_bytes -= bytes;
        st.held_min = None;
        if lines > 0 {
            if st.room_waiters > 0 {
                self.room.notify_all();
            }
            if st.done_waiters > 0 {
                self.done.notify_all();
            }
        }
        let mut napped = false;
        while st.queue.is_empty() {
            if st.closing {
                st.finished = true;
                self.done.notify_all();
                self.room.notify_all();
                return false;
            }
            if !std::mem::replace(&mut napped, true) {
                // Awake (not `idle`), so a push meanwhile does not pay a wake-up.
                drop(st);
                std::thread::sleep(LINGER);
                st = self.lock();
                continue;
            }
            st.idle = true;
            st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.idle = false;
        std::mem::swap(&mut st.queue, batch);
        st.queued_bytes = 0;
        st.level_bytes = [0; 5];
        st.held_min = batch.front().map(|r| r.seq);
        true
    }

    /// Waits until every record queued before the call is written (or failed), the writer
    /// stopped, or `deadline` passed.
    pub(crate) fn flush(&self, deadline: Instant) {
        let st = self.lock();
        let target = st.next_seq;
        drop(self.wait_until(st, deadline, |st| {
            st.finished || st.oldest_pending() >= target
        }));
    }

    /// Stops the writer once the queue is empty; later records are written by their callers.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closing = true;
        if std::mem::take(&mut st.idle) {
            self.work.notify_one();
        }
    }

    /// Whether a shutdown began (its caller already waited for the writer, up to its deadline).
    pub(crate) fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// [`close`](Self::close), then waits for the writer to drain and stop, until `deadline`.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        self.close();
        drop(self.wait_until(self.lock(), deadline, |st| st.finished));
    }

    fn wait_until<'a>(
        &'a self,
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

    /// For the writer: says on stderr (at most once per cause and interval, as the sinks do)
    /// that lines were dropped since `reported`.
    pub(crate) fn warn_dropped(&self, output: &str, reported: &mut u64) {
        let (_, dropped) = self.counts();
        if dropped > *reported {
            *reported = dropped;
            hivelog_core::diag::warn(
                output,
                "overflow",
                format_args!(
                    "buffer full ({} bytes): {dropped} lines dropped so far (HIVELOG_OVERFLOW={}, HIVELOG_BUFFER_BYTES)",
                    self.budget, self.overflow
                ),
            );
        }
    }

    /// Records pending (queued or being written) and records dropped.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.pending, st.dropped)
    }
}

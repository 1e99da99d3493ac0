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
//! The budget counts [`Record::size`] of every record queued or being written, plus the bytes
//! of lines already formatted, and every drop is counted. An event larger than the whole budget
//! is always dropped.
//!
//! **Two kinds of entries, one order.** Normally a log call queues its captured [`Record`] and
//! the writer formats it: the caller's share stays a capture. When the writer falls behind
//! (more than [`FORMAT_AFTER`] bytes of records wait), it is either waiting for a CPU (one
//! CPU, a busy neighbour) or busy. The first log call to see it yields its CPU
//! (`sched_yield`), once per batch: if the writer was waiting for that CPU it now runs and
//! takes the batch while it is still in the cache, which costs the caller a syscall instead of
//! formatting hundreds of lines (a yield waits for nothing: with no other thread ready it
//! returns at once, and a stalled writer is not ready). If the writer still has not taken the batch, a queue of
//! unformatted records would only grow, and each record would be formatted long after it left
//! the cache. Then the log call formats its own line (on its own thread, into its own buffer, no
//! lock held) and appends the bytes to the queue's text ([`Batch::text`]); the writer only copies them, many lines
//! per `write(2)`. The callers thereby take exactly the share of the work the writer cannot
//! keep up with, whatever the number of cores, so a burst loses no line and the queue stays a
//! few hundred kilobytes. A record remembers where in `text` it was queued, so the writer
//! restores the order in which lines were logged. Formatted lines are never evicted (like the
//! buffer being written). While the output is stalled (a `write(2)` that has not returned for
//! [`STALLED_AFTER`]) the text is capped at [`TEXT_MAX`], beyond which records queue again and
//! the overflow policy applies to them: a stalled output still drops, counted, and never
//! blocks a log call. Otherwise (a writer without a CPU) the text grows up to the budget: a
//! formatted line takes about half the memory of its record.
//!
//! **Reused memory.** A record the writer has formatted goes back to the queue's pool of spares
//! (`State::spares`, at most [`SPARES`] records of at most [`SPARE_MAX`] bytes each) and a log
//! call takes one back with its push, so a steady flow allocates nothing: no allocation on the
//! caller, no cross-thread free on the writer. The text buffers are swapped, never reallocated.
//! Records move by pointer (`Box`), and the pool is first in, first out: a log call captures
//! into the record the writer formatted longest ago, about a thousand events back, not the one
//! it read a moment ago. Every store into a cache line the other core has read must first take
//! that line back from it; a line the writer read long ago has left its nearest caches (the
//! paced case of BENCHMARKS.md section 7b: 0.243× → 0.189× `fmt().json()` on two cores).
//!
//! **Short critical sections.** The lock is held for short work only: a push (plus, on `drop_*`
//! overflow, evictions), an O(1) swap of the whole queue, and the move of the pointers of the
//! records the writer formatted into the pool (one per record written, at most [`SPARES`]).
//! Nothing is formatted under it, and the queue's buffers, swapped back and forth, only grow
//! (amortized) until they hold a burst, so a thread preempted while holding it holds it for a
//! few dozen instructions' worth of its time slice at most.
//!
//! Wake-ups: when the queue runs empty the writer first naps for [`LINGER`], then sleeps until
//! a push wakes it. A push wakes a sleeping writer, and a napping one only once [`WAKE_AT`]
//! bytes have queued, so a steady flow pays no wake-up on the log call at all (the writer's
//! own timer ends its nap and it writes everything that came meanwhile with one `write(2)`),
//! and a burst wakes it long before the callers would start formatting. While the writer writes,
//! pushes only append; its next take swaps the whole queue out in O(1), which is what puts many
//! lines in one write when lines come faster than one `write(2)` each. The price of "no flush
//! interval": a push that finds the writer asleep (a quiet service, after a whole nap without
//! a line) pays one futex wake, a syscall of about a microsecond, instead of the write it
//! saves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hivelog_core::pipeline::{level_rank as rank, Overflow};
use hivelog_core::Record;

/// How long the writer naps after the queue ran empty, before it sleeps until woken: lines
/// queued during the nap need no wake-up (a futex call costs more than a whole log call), and
/// are written together when it ends. A nap is a sleep, not a spin, so an idle or quiet service
/// pays no CPU for it; a line logged during one waits at most the nap (2 ms: nobody reading a
/// log sees it), a line logged while the writer sleeps wakes it at once. At one event every
/// 10 µs, a nap gathers about 200 lines (about 100 KB of records, below [`WAKE_AT`], so no log
/// call pays a wake-up) into one write: the writer's own wake-ups (a timer, a context switch,
/// a `write(2)`) cost the process 40 times less than at 50 µs, and 1 ms cost it a third more
/// CPU than 2 ms (BENCHMARKS.md section 7b). Longer naps reach `WAKE_AT` at that rate: the
/// log call then pays the futex wake (4 ms: 0.19× instead of 0.14× `fmt().json()`).
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Bytes queued (records and lines) at which a push ends the writer's nap early (one futex
/// wake per about 270 events of a burst, of about 490 bytes of record each):
/// half of [`FORMAT_AFTER`], so that the writer is awake (and, on a CPU of its own, has taken
/// the batch) before the callers would yield or format. 64 KB woke it twice as often in a
/// tight loop, for 10 % more process CPU.
const WAKE_AT: usize = 128 * 1024;

/// Bytes of unformatted records ([`Record::size`]) queued beyond which log calls format their
/// own lines: about a thousand typical events, enough that a writer keeping up (or only
/// briefly descheduled) never lets it be reached, small enough to stay in the cache.
pub(crate) const FORMAT_AFTER: usize = 256 * 1024;

/// The most bytes of caller-formatted lines queued; beyond it (an output that does not take
/// them) log calls queue records again, and the overflow policy applies to those.
pub(crate) const TEXT_MAX: usize = 4 * 1024 * 1024;

/// A write that has not returned after this long means the output is stalled (a reader that
/// stopped reading): log calls then stop formatting lines beyond [`TEXT_MAX`], and queue
/// records, which the overflow policy can evict.
const STALLED_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

/// The most formatted records kept for reuse, and the largest one kept ([`Record::size`]): at
/// most 1 MiB of memory outside the budget.
pub(crate) const SPARES: usize = 1024;
/// See [`SPARES`].
pub(crate) const SPARE_MAX: usize = 1024;

/// One queued record, and how much of the formatted text was queued before it.
pub(crate) struct Queued {
    /// Bytes of [`Batch::text`] logged before this record.
    pub(crate) at: usize,
    /// Lines in those bytes.
    pub(crate) at_lines: u64,
    /// The record, boxed: moving it through the queue and the pool of spares moves a pointer,
    /// and the writer never writes to the memory a log call captures into.
    pub(crate) record: Box<Record>,
}

/// What the writer takes out at once: records to format and lines already formatted, in one
/// order (see [`Queued::at`]).
#[derive(Default)]
pub(crate) struct Batch {
    /// Records, oldest first.
    pub(crate) records: VecDeque<Queued>,
    /// Whole lines formatted by the callers, oldest first.
    pub(crate) text: Vec<u8>,
    /// Lines in `text`.
    pub(crate) text_lines: u64,
}

impl Batch {
    /// Lines in the batch.
    pub(crate) fn lines(&self) -> u64 {
        self.records.len() as u64 + self.text_lines
    }

    /// Bytes the budget counted for the batch.
    pub(crate) fn bytes(&self) -> usize {
        self.records.iter().map(|q| q.record.size()).sum::<usize>() + self.text.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.text.is_empty()
    }
}

/// The queue, its counters and the writer's wake-up.
pub(crate) struct LineQueue {
    budget: usize,
    overflow: Overflow,
    /// Unformatted records beyond which callers format ([`FORMAT_AFTER`], or a quarter of a
    /// smaller budget).
    format_after: usize,
    /// Formatted bytes beyond which callers queue records again ([`TEXT_MAX`], or a quarter of a
    /// smaller budget).
    text_max: usize,
    /// Set (under the lock) while log calls should format their own lines; read without it.
    format_here: AtomicBool,
    /// When the writer's current `write(2)` began (µs since `epoch`, plus 1), 0 between writes.
    writing_since: AtomicU64,
    epoch: Instant,
    state: Mutex<State>,
    /// The writer waits on it for records.
    work: Condvar,
    /// `block:` pushes wait on it for room.
    room: Condvar,
    /// `flush` and `shutdown` wait on it for the writer's progress.
    done: Condvar,
}

/// What a push of a formatted line did.
pub(crate) enum Pushed {
    /// Queued, or dropped and counted.
    Done,
    /// The writer has stopped: the caller writes the line itself.
    Late,
}

#[derive(Default)]
#[allow(
    clippy::vec_box,
    reason = "records move between the pool and the queue by pointer"
)]
struct State {
    queued: Batch,
    /// Bytes of the records in `queued` (not of its text).
    queued_bytes: usize,
    /// Bytes queued per level (see [`rank`]), to tell at once whether `drop_lowest` can evict.
    level_bytes: [usize; 5],
    /// The sequence number of the first line of `queued`, if it holds any.
    queued_min: Option<u64>,
    /// Records pending (queued or being written), and their bytes.
    pending: u64,
    pending_bytes: usize,
    /// Sequence number of the next line queued.
    next_seq: u64,
    /// The first sequence number in the batch being written, if any.
    held_min: Option<u64>,
    /// Formatted records for log calls to capture into, the one formatted longest ago first
    /// (boxed: they move between the pool, a thread's scratch slot and the queue by pointer).
    spares: VecDeque<Box<Record>>,
    dropped: u64,
    /// Batches the writer has taken.
    takes: u64,
    /// The value of `takes` when a log call last yielded the CPU to the writer.
    yielded_for: Option<u64>,
    /// The writer sleeps until woken.
    idle: bool,
    /// The writer naps: a push wakes it only at [`WAKE_AT`].
    napping: bool,
    closing: bool,
    finished: bool,
    room_waiters: u32,
    done_waiters: u32,
}

impl State {
    /// Takes queued record `i` out, uncounted as pending (the caller counts the drop).
    fn evict(&mut self, i: usize) {
        if let Some(old) = self.queued.records.remove(i) {
            let size = old.record.size();
            self.queued_bytes -= size;
            self.pending_bytes -= size;
            self.level_bytes[rank(old.record.level)] -= size;
            self.pending -= 1;
            self.dropped += 1;
        }
        if self.queued.is_empty() {
            self.queued_min = None;
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
            let mut i = self.queued.records.len();
            while self.pending_bytes + size > budget && self.level_bytes[r] > 0 && i > 0 {
                i -= 1;
                if rank(self.queued.records[i].record.level) == r {
                    self.evict(i);
                }
            }
        }
        true
    }

    fn oldest_pending(&self) -> u64 {
        self.held_min.or(self.queued_min).unwrap_or(self.next_seq)
    }

    /// Counts one more line queued, of `size` bytes; returns its sequence number.
    fn count_in(&mut self, size: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queued_min.get_or_insert(seq);
        self.pending += 1;
        self.pending_bytes += size;
        seq
    }
}

impl LineQueue {
    pub(crate) fn new(budget: usize, overflow: Overflow) -> LineQueue {
        LineQueue {
            budget,
            overflow,
            format_after: FORMAT_AFTER.min(budget / 4),
            text_max: TEXT_MAX.min(budget / 4),
            format_here: AtomicBool::new(false),
            writing_since: AtomicU64::new(0),
            epoch: Instant::now(),
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

    /// Whether log calls should format their own lines now ([`push_line`](Self::push_line))
    /// rather than queue records: the writer has fallen behind on formatting. A hint, read
    /// without the lock.
    #[inline]
    pub(crate) fn wants_lines(&self) -> bool {
        self.format_here.load(Ordering::Relaxed)
    }

    /// Updates [`wants_lines`](Self::wants_lines) after a change of the queue: callers format
    /// when more than `format_after` bytes of records wait, once a log call has yielded the CPU
    /// for them without the writer taking them, unless the output is stalled and `text_max` is
    /// reached.
    fn update_hint(&self, st: &State) {
        let want = st.queued_bytes > self.format_after
            && st.yielded_for == Some(st.takes)
            && (st.queued.text.len() < self.text_max || !self.stalled());
        if self.format_here.load(Ordering::Relaxed) != want {
            self.format_here.store(want, Ordering::Relaxed);
        }
    }

    /// Whether the writer has been inside one `write(2)` for [`STALLED_AFTER`].
    fn stalled(&self) -> bool {
        let since = self.writing_since.load(Ordering::Relaxed);
        since != 0
            && self.epoch.elapsed().as_micros() as u64 + 1 - since
                > STALLED_AFTER.as_micros() as u64
    }

    /// For the writer: a `write(2)` begins (`true`) or ended (`false`).
    pub(crate) fn writing(&self, now: bool) {
        let since = if now {
            self.epoch.elapsed().as_micros() as u64 + 1
        } else {
            0
        };
        self.writing_since.store(since, Ordering::Relaxed);
    }

    /// Queues a record or drops it by the overflow policy (and counts it), and puts a spare
    /// record in `spare` (if it is empty and the pool has one) for the caller's next capture.
    /// Once the writer has stopped (after a shutdown), hands the record back: the caller writes
    /// it itself.
    pub(crate) fn push(
        &self,
        record: Box<Record>,
        spare: &mut Option<Box<Record>>,
    ) -> Option<Box<Record>> {
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
        st.count_in(size);
        st.queued_bytes += size;
        st.level_bytes[rank(record.level)] += size;
        let (at, at_lines) = (st.queued.text.len(), st.queued.text_lines);
        st.queued.records.push_back(Queued {
            at,
            at_lines,
            record,
        });
        if spare.is_none() {
            *spare = st.spares.pop_front();
        }
        crate::prefetch::next_slots(&st.queued.records, &st.spares);
        // The writer (runnable since `WAKE_AT`) may be waiting for this very CPU (one CPU, or
        // a busy neighbour). Yielding to it once per batch costs less than formatting here and
        // keeps its batch in the cache; if it does not take the batch meanwhile, callers format.
        let yield_now =
            st.queued_bytes > self.format_after && st.yielded_for.is_none_or(|t| t != st.takes);
        if yield_now {
            st.yielded_for = Some(st.takes);
        }
        self.update_hint(&st);
        self.wake(st);
        if yield_now {
            std::thread::yield_now();
        }
        None
    }

    /// Queues `line`, one whole formatted line of an event at `level`, or drops it by the
    /// overflow policy (and counts it).
    pub(crate) fn push_line(&self, line: &[u8], level: tracing::Level) -> Pushed {
        let size = line.len();
        let mut st = self.lock();
        if st.pending_bytes + size > self.budget && !st.finished {
            match self.make_room(st, level, size) {
                Some(guard) => st = guard,
                None => return Pushed::Done,
            }
        }
        if st.finished {
            return Pushed::Late;
        }
        st.count_in(size);
        st.queued.text.extend_from_slice(line);
        st.queued.text_lines += 1;
        self.update_hint(&st);
        self.wake(st);
        Pushed::Done
    }

    /// After a push: wakes the writer if it sleeps, or naps with [`WAKE_AT`] bytes queued.
    fn wake(&self, mut st: MutexGuard<'_, State>) {
        let wake = std::mem::take(&mut st.idle)
            || (st.napping && st.queued_bytes + st.queued.text.len() >= WAKE_AT);
        if wake {
            st.napping = false;
            drop(st);
            self.work.notify_one();
        }
    }

    /// Wakes the writer whether it sleeps or naps (a flush or a shutdown waits for it).
    fn kick(&self, st: &mut State) {
        if std::mem::take(&mut st.idle) | std::mem::take(&mut st.napping) {
            self.work.notify_one();
        }
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
                self.after_evict(&st);
                Some(st)
            }
            Overflow::DropOldest => {
                // Formatted lines and the batch being written are not taken back.
                let held = st.pending_bytes - st.queued_bytes;
                if held + size > self.budget {
                    st.dropped += 1;
                    return None;
                }
                while st.pending_bytes + size > self.budget && !st.queued.records.is_empty() {
                    st.evict(0);
                }
                self.after_evict(&st);
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

    fn after_evict(&self, st: &State) {
        if st.done_waiters > 0 {
            self.done.notify_all();
        }
        self.update_hint(st);
    }

    /// For the writer: marks the previous batch (`lines` lines of `bytes`) as resolved, offers
    /// its formatted records (`recycled`) to the pool, then waits for lines and swaps them all
    /// into `batch` (which must be empty). Returns `false` once the queue is closed and empty:
    /// the writer then stops.
    #[allow(
        clippy::vec_box,
        reason = "records move between the pool and the queue by pointer"
    )]
    pub(crate) fn next(
        &self,
        batch: &mut Batch,
        recycled: &mut Vec<Box<Record>>,
        lines: u64,
        bytes: usize,
    ) -> bool {
        let mut st = self.lock();
        st.pending -= lines;
        st.pending_bytes -= bytes;
        st.held_min = None;
        // Oldest last: log calls take from the front.
        let room = SPARES.saturating_sub(st.spares.len()).min(recycled.len());
        st.spares.extend(recycled.drain(..room));
        if lines > 0 {
            if st.room_waiters > 0 {
                self.room.notify_all();
            }
            if st.done_waiters > 0 {
                self.done.notify_all();
            }
        }
        let mut napped = false;
        while st.queued.is_empty() {
            if st.closing {
                st.finished = true;
                self.done.notify_all();
                self.room.notify_all();
                return false;
            }
            if !std::mem::replace(&mut napped, true) {
                // Not `idle`, so a push meanwhile does not pay a wake-up (until `WAKE_AT`).
                st.napping = true;
                st = self
                    .work
                    .wait_timeout(st, LINGER)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                st.napping = false;
                continue;
            }
            st.idle = true;
            st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.idle = false;
        std::mem::swap(&mut st.queued, batch);
        st.takes += 1;
        st.queued_bytes = 0;
        st.level_bytes = [0; 5];
        st.held_min = st.queued_min.take();
        self.update_hint(&st);
        true
    }

    /// Waits until every line queued before the call is written (or failed), the writer
    /// stopped, or `deadline` passed.
    pub(crate) fn flush(&self, deadline: Instant) {
        let mut st = self.lock();
        let target = st.next_seq;
        if st.oldest_pending() < target {
            self.kick(&mut st);
        }
        drop(self.wait_until(st, deadline, |st| {
            st.finished || st.oldest_pending() >= target
        }));
    }

    /// Stops the writer once the queue is empty; later records are written by their callers.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closing = true;
        self.kick(&mut st);
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

    /// Lines pending (queued or being written) and lines dropped.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.pending, st.dropped)
    }
}

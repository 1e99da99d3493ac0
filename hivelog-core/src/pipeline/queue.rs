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
//! - `drop_lowest` (the default) drops the least important events: the newest queued event of
//!   the lowest level below the new one's, again until the new one fits; when the queue holds
//!   too little below its level, the new event itself. So an ERROR or WARN is lost only when
//!   nothing less important is left to give way, and within one level it behaves like
//!   `drop_newest` (the first events of a burst are kept, the gap is at its end). Why newest
//!   first inside a level: the kept lines stay one unbroken run per level, and the search from
//!   the back of the queue stops at once under a flood of the lowest level;
//! - `drop_newest` drops it (the log call never waits);
//! - `drop_oldest` drops queued events from the front until it fits (events already handed
//!   to the sink are not taken back; if they alone leave no room, the new event is dropped);
//! - `block:<d>` waits on a condition variable, at most `d`, for the worker to free room,
//!   then drops it.
//!
//! Under `drop_lowest` the worker takes at most half the budget in flight (see [`Shared::take`]):
//! what is in flight cannot give way, so a stalled destination holding the whole budget in one
//! unanswered batch would leave nothing to evict, and the next ERROR would be dropped.
//!
//! Every drop is counted, by reason and by level. An event larger than the whole budget is
//! always dropped.
//!
//! With a spill folder ([`crate::spill`]), an event that does not fit goes to disk (the
//! overflow policy applies only when the disk budget is full or the folder broke), and so does
//! every later event while older ones still wait on disk, so that delivery stays in order. In
//! `always` mode every event goes to disk. The log call does not write it: it queues it in the
//! *outbox*, and the worker's thread encodes and writes the outbox to the segment files (its
//! own task, so a send in progress does not delay it; at least every `HIVELOG_SPILL_FSYNC`).
//! Why: a write, even buffered, can block on a slow or full disk, and the log call must never
//! wait on I/O. The outbox has a byte budget of its own (the memory budget again, at least
//! 1 MiB, [`outbox_budget`]); only when it is full, the disk being that far behind, does a log
//! call wait: for the writer to take the outbox, at most `d` under `block:<d>` and
//! [`DISK_BEHIND_WAIT`] otherwise, and then the event is dropped and counted (it cannot go to
//! memory ahead of older events, nor, in `always` mode, be sent without its copy on disk).
//! Why wait at all: a burst of a few thousand events must reach the disk as it did when the
//! log call wrote it, and this is the same backpressure, paid only when the disk is behind.
//! Why at most once per stall (except under `block`): a hung disk must not make every log
//! call wait; after one wait in vain, a full outbox drops at once until the writer catches up.
//! An event the disk refuses after its log call (its budget full, the folder broken) joins the
//! memory queue if it fits, else is dropped and counted. The worker reads
//! segments back into this queue while memory is at most half used; a replayed segment may
//! exceed the budget by its own size (a quarter of the budget at most, 4 MiB at most). Per
//! destination, memory is therefore bounded by twice `HIVELOG_BUFFER_BYTES` (at least 1 MiB for
//! the outbox) plus one segment.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;
use tracing_core::Level;

use super::config::{Overflow, PipelineConfig, SpillMode};
use super::stats::{level_rank as rank, Stats};
use super::thread::{on_pipeline_thread, ShutdownClock};
use crate::diag;
use crate::record::{Record, RecordId};
use crate::sink::BatchLimits;
use crate::spill::{self, Store};

mod spill_io;

/// Longest wait of a log call for the spill writer when the outbox is full (except under
/// `block:<d>`, which waits `d`): once per stall, see the module docs.
pub(crate) const DISK_BEHIND_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long `shutdown` waits past its deadline for the worker to write what is pending to
/// the spill folder (the worker stops sending at the deadline, then writes and closes).
pub(crate) const SPILL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The outbox's byte budget for a memory budget of `buffer_bytes`: as much again, at least
/// 1 MiB, so that a burst of log calls does not outrun the writer before it is scheduled.
pub(crate) fn outbox_budget(buffer_bytes: usize) -> usize {
    buffer_bytes.max(1 << 20)
}

/// State shared by the pipeline's handles and its worker.
pub(crate) struct Shared {
    pub name: &'static str,
    pub config: PipelineConfig,
    /// This pipeline's [`RecordId::origin`]: random, so ids differ between processes.
    origin: u64,
    /// The spill mode, when a spill folder is configured.
    pub spill_mode: Option<SpillMode>,
    /// The spill folder opened (it may still break later): retries are then not limited by
    /// `max_elapsed`.
    pub spill_active: bool,
    /// Queue length that wakes the worker (the sink's `max_events`).
    wake_events: usize,
    /// Queued bytes that wake the worker (the sink's `max_bytes`, or half the budget).
    wake_bytes: usize,
    state: Mutex<State>,
    /// The destination's spill folder, when configured and usable. Only the worker's thread
    /// takes this lock, and always before the queue's (never while holding it): writes happen
    /// under it, so the log calls, which take only the queue's lock, never wait on the disk.
    store: Mutex<Option<Store>>,
    /// The outbox's byte budget ([`outbox_budget`]).
    outbox_budget: usize,
    /// Wakes the worker's spill writer: the outbox holds a batch's worth.
    pub disk_work: Notify,
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

/// The queue's copy of the spill folder's state (the folder itself is the worker's).
#[derive(Default)]
struct Disk {
    /// A folder is open and writable.
    on: bool,
    /// Events wait in the outbox or in the folder: later ones go to disk too, to keep order.
    /// Set by the log call, cleared by the worker when both are empty.
    unread: bool,
    /// Lowest `seq` among this process's events in the outbox or in segments not yet read
    /// back (for `flush`).
    oldest_own: Option<u64>,
}

struct State {
    queue: VecDeque<Record>,
    /// Events on their way to the spill folder, in `seq` order (see the module docs).
    outbox: VecDeque<Record>,
    /// [`Record::size`] of the outbox's events.
    outbox_bytes: usize,
    /// The spill writer was notified and has not taken the outbox since.
    disk_woken: bool,
    /// A log call waited [`DISK_BEHIND_WAIT`] for the writer in vain: until the writer takes
    /// the outbox again, a full outbox drops at once.
    disk_behind: bool,
    /// What the log call needs to know of the spill folder, kept by the worker.
    disk: Disk,
    queued_bytes: usize,
    /// `queued_bytes` by level ([`rank`]), so `drop_lowest` knows what it may evict.
    level_bytes: [usize; 5],
    /// The live counters; `stats()` clones them under the lock, so a snapshot always balances.
    counters: Stats,
    next_seq: u64,
    /// Lowest `seq` held by the worker (in flight or waiting for a retry), if any.
    inflight_min: Option<u64>,
    /// `flush` wants every record with a lower `seq` resolved.
    flush_upto: u64,
    /// Records replayed from disk that a `flush` waits for have a `seq` below this.
    replay_flush_end: u64,
    /// A segment was handed to the worker to read back and its records are not queued yet:
    /// they are neither on disk unread nor in memory, so a `flush` waits for them.
    replay_in_hand: bool,
    closing: bool,
    deadline: Option<Instant>,
    finished: bool,
    /// The worker was notified and has not taken a batch since; avoids repeated wake-ups.
    woken: bool,
    room_waiters: u32,
    done_waiters: u32,
}

/// How a full budget ended for a new event.
enum Admit {
    Yes,
    Overflow,
    Shutdown,
}

impl State {
    /// Counts a dropped event.
    fn dropped(&mut self, level: Level, shutdown: bool) {
        if shutdown {
            self.counters.dropped_shutdown += 1;
        } else {
            self.counters.dropped_overflow += 1;
        }
        self.counters.dropped_by_level.add(level, 1);
    }

    /// Takes a queued record out of the budget and counts it as an overflow drop.
    fn evicted(&mut self, old: &Record) {
        let size = old.size();
        self.queued_bytes -= size;
        self.level_bytes[rank(old.level)] -= size;
        self.counters.pending -= 1;
        self.counters.pending_bytes -= size as u64;
        self.dropped(old.level, false);
    }

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
    pub spill_bytes: u64,
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
        let store = config.spill.as_ref().and_then(|c| {
            let folder = spill::folder(&c.dir, &c.service, name);
            Store::open(folder, c.max_bytes, config.buffer_bytes)
                .map_err(|e| diag::warn(name, "spill", e))
                .ok()
        });
        let disk = Disk {
            on: store.is_some(),
            unread: store.as_ref().is_some_and(Store::has_unread),
            oldest_own: None,
        };
        Shared {
            name,
            origin: rand::random::<u64>().max(1),
            spill_mode: config.spill.as_ref().map(|c| c.mode),
            spill_active: store.is_some(),
            wake_events: limits.max_events.max(1),
            wake_bytes: limits.max_bytes.clamp(1, half_budget),
            outbox_budget: outbox_budget(config.buffer_bytes),
            config,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                outbox: VecDeque::new(),
                outbox_bytes: 0,
                disk_woken: false,
                disk_behind: false,
                disk,
                queued_bytes: 0,
                level_bytes: [0; 5],
                counters: Stats {
                    sink: name,
                    spill_bytes: store.as_ref().map_or(0, |s| s.bytes),
                    ..Stats::default()
                },
                next_seq: 0,
                inflight_min: None,
                flush_upto: 0,
                replay_flush_end: 0,
                replay_in_hand: false,
                closing: false,
                deadline: None,
                finished: false,
                woken: false,
                room_waiters: 0,
                done_waiters: 0,
            }),
            store: Mutex::new(store),
            disk_work: Notify::new(),
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

    /// Enqueues a record, queues it for the spill folder, or drops and counts it; see the
    /// module docs.
    pub fn push(&self, record: Record) {
        let size = record.size();
        let mut st = self.lock();
        st.counters.enqueued += 1;
        if st.closing {
            st.dropped(record.level, true);
            return;
        }
        let fits = st.counters.pending_bytes as usize + size <= self.config.buffer_bytes;
        // The hook where an event would be dropped for overflow: the disk takes it first (and
        // every event while older ones wait on disk, so that order is kept).
        if !fits || self.disk_first(&st) {
            if self.outbox_room(&st, size) {
                self.to_disk(&mut st, record);
                return;
            }
            if st.disk.on {
                // The outbox is full: the disk is behind. Memory would send the event ahead of
                // older ones (and in `always` mode without its copy on disk): wait for the
                // writer (see the module docs), else drop it.
                let max_wait = match self.config.overflow {
                    // The writer runs on the pipeline's thread: it cannot wait for itself.
                    _ if on_pipeline_thread() => std::time::Duration::ZERO,
                    Overflow::Block(d) => d,
                    _ if st.disk_behind => std::time::Duration::ZERO,
                    _ => DISK_BEHIND_WAIT,
                };
                if !max_wait.is_zero() {
                    let (guard, room) = self.wait_for_outbox(st, size, max_wait);
                    st = guard;
                    if room && self.outbox_room(&st, size) {
                        self.to_disk(&mut st, record);
                        return;
                    }
                    st.disk_behind |= !room;
                }
                if st.disk.on || st.closing {
                    let closing = st.closing;
                    st.dropped(record.level, closing);
                    return;
                }
            }
            if !fits {
                match self.overflow(st, record.level, size) {
                    Some(guard) => st = guard,
                    None => return,
                }
            }
        }
        self.enqueue(st, record, size);
    }

    /// Whether events go to disk even when memory has room: `always` mode, or older events
    /// still wait in the spill folder.
    fn disk_first(&self, st: &State) -> bool {
        st.disk.on && (self.spill_mode == Some(SpillMode::Always) || st.disk.unread)
    }

    /// Applies the overflow policy to an event of `level` and `size` bytes that does not fit;
    /// returns the lock if it now fits, `None` if it was dropped (and counted).
    fn overflow<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        level: Level,
        size: usize,
    ) -> Option<MutexGuard<'a, State>> {
        let admit = if size > self.config.buffer_bytes {
            Admit::Overflow
        } else {
            match self.config.overflow {
                Overflow::DropLowest => self.evict_lower(&mut st, level, size),
                Overflow::DropNewest => Admit::Overflow,
                Overflow::DropOldest => self.evict_oldest(&mut st, size),
                Overflow::Block(max_wait) => {
                    let (guard, admit) = self.wait_for_room(st, size, max_wait);
                    st = guard;
                    admit
                }
            }
        };
        match admit {
            Admit::Yes => Some(st),
            Admit::Overflow => {
                st.dropped(level, false);
                None
            }
            Admit::Shutdown => {
                st.dropped(level, true);
                None
            }
        }
    }

    /// Gives a record its identity the first time a pipeline accepts it.
    fn identify(&self, st: &mut State, record: &mut Record) {
        record.seq = st.next_seq;
        st.next_seq += 1;
        if record.id.origin == 0 {
            record.id = RecordId {
                origin: self.origin,
                seq: record.seq,
            };
        }
    }

    /// Appends an accepted record to the memory queue; wakes the worker when a batch's worth
    /// (or half the budget) is queued.
    fn enqueue(&self, mut st: MutexGuard<'_, State>, mut record: Record, size: usize) {
        self.identify(&mut st, &mut record);
        st.counters.pending += 1;
        st.counters.pending_bytes += size as u64;
        st.queued_bytes += size;
        st.level_bytes[rank(record.level)] += size;
        st.queue.push_back(record);
        if !st.woken
            && (st.queue.len() >= self.wake_events
                || st.queued_bytes >= self.wake_bytes
                || st.counters.pending_bytes as usize >= self.config.buffer_bytes / 2)
        {
            st.woken = true;
            drop(st);
            self.work.notify_one();
        }
    }

    /// `drop_lowest`: evicts the newest queued records of the lowest levels below `level`
    /// until `size` fits, unless even evicting all of them would not make room.
    fn evict_lower(&self, st: &mut State, level: Level, size: usize) -> Admit {
        let budget = self.config.buffer_bytes;
        let below = rank(level);
        let evictable: usize = st.level_bytes[..below].iter().sum();
        if st.counters.pending_bytes as usize - evictable + size > budget {
            return Admit::Overflow;
        }
        while st.counters.pending_bytes as usize + size > budget {
            let Some(lowest) = st.level_bytes[..below].iter().position(|&b| b > 0) else {
                break;
            };
            let Some(old) = st
                .queue
                .iter()
                .rposition(|r| rank(r.level) == lowest)
                .and_then(|at| st.queue.remove(at))
            else {
                break;
            };
            st.evicted(&old);
        }
        if st.done_waiters > 0 {
            self.done.notify_all();
        }
        Admit::Yes
    }

    /// `drop_oldest`: evicts queued records from the front until `size` fits.
    fn evict_oldest(&self, st: &mut State, size: usize) -> Admit {
        let budget = self.config.buffer_bytes;
        // Records in flight cannot be evicted: if evicting every queued one would not make
        // room, keep them and drop only the new one.
        let in_flight = st.counters.pending_bytes as usize - st.queued_bytes;
        if in_flight + size > budget {
            return Admit::Overflow;
        }
        while st.counters.pending_bytes as usize + size > budget {
            let Some(old) = st.queue.pop_front() else {
                break;
            };
            st.evicted(&old);
        }
        if st.done_waiters > 0 {
            self.done.notify_all();
        }
        Admit::Yes
    }

    /// `block:<d>`: waits for the worker to free room for `size`, at most `max_wait`.
    fn wait_for_room<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        size: usize,
        max_wait: std::time::Duration,
    ) -> (MutexGuard<'a, State>, Admit) {
        let until = Instant::now() + max_wait;
        loop {
            if !st.woken {
                st.woken = true;
                self.work.notify_one();
            }
            let now = Instant::now();
            if now >= until {
                return (st, Admit::Overflow);
            }
            st.room_waiters += 1;
            st = self
                .room
                .wait_timeout(st, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.room_waiters -= 1;
            if st.closing {
                return (st, Admit::Shutdown);
            }
            if st.counters.pending_bytes as usize + size <= self.config.buffer_bytes {
                return (st, Admit::Yes);
            }
        }
    }

    /// `block:<d>` with the outbox full: waits for the spill writer to take it, at most
    /// `max_wait`; whether there is room now (or the folder broke: memory then).
    fn wait_for_outbox<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        size: usize,
        max_wait: std::time::Duration,
    ) -> (MutexGuard<'a, State>, bool) {
        let until = Instant::now() + max_wait;
        loop {
            if !st.disk_woken {
                st.disk_woken = true;
                self.disk_work.notify_one();
            }
            let now = Instant::now();
            if now >= until || st.closing {
                return (st, false);
            }
            st.room_waiters += 1;
            st = self
                .room
                .wait_timeout(st, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.room_waiters -= 1;
            if !st.disk.on || st.outbox_bytes + size <= self.outbox_budget {
                return (st, true);
            }
        }
    }

    /// For the worker: the lowest `seq` not yet resolved (everything below is delivered,
    /// rejected or failed).
    pub fn oldest_pending(&self) -> u64 {
        self.lock().oldest_pending()
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
            spill_bytes: st.counters.spill_bytes,
        }
    }

    /// For the worker: moves up to `max` queued records to the back of `batch` (they stay
    /// pending, now in flight). `held_min` is the lowest `seq` the worker already holds.
    ///
    /// When `batch` is empty and the whole queue fits, the two buffers are swapped: the lock is
    /// held for O(1) whatever the batch size, and the queue reuses the batch's allocation.
    /// Under `drop_lowest`, what is in flight stays within half the budget, so the other half
    /// stays queued and evictable.
    pub fn take(&self, max: usize, batch: &mut VecDeque<Record>, held_min: Option<u64>) {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.woken = false;
        let in_flight = st.counters.pending_bytes as usize - st.queued_bytes;
        let cap = match self.config.overflow {
            Overflow::DropLowest => self.config.buffer_bytes / 2,
            _ => usize::MAX,
        };
        if batch.is_empty() && st.queue.len() <= max && in_flight + st.queued_bytes <= cap {
            std::mem::swap(&mut st.queue, batch);
            st.queued_bytes = 0;
            st.level_bytes = [0; 5];
        } else {
            // Up to `max` records, keeping what is in flight within `cap` (but always one
            // record when nothing is, so a record larger than `cap` still goes).
            let mut n = 0;
            let mut taken = in_flight;
            for r in st.queue.iter().take(max) {
                taken = taken.saturating_add(r.size());
                if taken > cap && (n > 0 || in_flight > 0) {
                    break;
                }
                n += 1;
            }
            let level_bytes = &mut st.level_bytes;
            let mut bytes = 0;
            batch.extend(st.queue.drain(..n).inspect(|r| {
                bytes += r.size();
                level_bytes[rank(r.level)] -= r.size();
            }));
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
        // Releases the folder's lock now, not when the last handle goes.
        if let Some(store) = self.lock_store().take() {
            store.close();
        }
        let mut st = self.lock();
        st.finished = true;
        st.closing = true;
        st.disk.on = false;
        self.done.notify_all();
        self.room.notify_all();
    }

    /// Asks the worker to send every record queued now; waits until they are resolved or
    /// `deadline`.
    pub fn flush(&self, deadline: Instant) -> Stats {
        let mut st = self.lock();
        if on_pipeline_thread() {
            return st.counters.clone();
        }
        let target = st.next_seq;
        st.flush_upto = st.flush_upto.max(target);
        self.work.notify_one();
        let st = self.wait_until(st, deadline, |st| {
            st.finished
                || (st.oldest_pending() >= target.max(st.replay_flush_end)
                    && !st.replay_in_hand
                    && st.disk.oldest_own.is_none_or(|id| id >= target))
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
        if on_pipeline_thread() {
            return st.counters.clone();
        }
        let mut st = self.wait_until(st, deadline, |st| st.finished);
        if self.spill_mode.is_some() && !st.finished {
            // The worker writes what is pending to the spill folder once the deadline passed.
            st = self.wait_until(st, Instant::now() + SPILL_GRACE, |st| st.finished);
        }
        let stats = st.counters.clone();
        drop(st);
        self.with_endpoints(stats)
    }

    /// The shutdown deadline, once shutdown began.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }
}

impl ShutdownClock for Shared {
    fn deadline(&self) -> Option<Instant> {
        Shared::deadline(self)
    }
}

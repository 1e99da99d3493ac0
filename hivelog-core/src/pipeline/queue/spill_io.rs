//! The queue's side of the spill folder: the log call's hand-off of an event to the outbox, and
//! what the worker does with the folder: writing the outbox, the next segment to replay,
//! queueing its records, forgetting deleted segments, syncing, and saving what is pending at
//! the shutdown deadline.
//!
//! The folder ([`Store`]) has a lock of its own that only the worker's thread takes, always
//! before the queue's: the disk is written under it alone, so a log call (which takes only the
//! queue's lock) never waits on a write. The queue keeps what the log call must know of the
//! folder ([`Disk`](super::Disk)); the worker updates it, and clears `unread` only while holding
//! both locks with the outbox and the folder both empty, so no event can land in memory ahead
//! of older ones on their way to disk (see [`crate::spill`]).

use std::ops::Range;
use std::sync::{MutexGuard, PoisonError};

use super::{Overflow, Shared, State};
use crate::diag;
use crate::pipeline::level_rank as rank;
use crate::record::Record;
use crate::spill::{Replay, Sealed, Store};

impl Shared {
    /// The spill folder's lock (the worker's thread only).
    pub(crate) fn lock_store(&self) -> MutexGuard<'_, Option<Store>> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the outbox takes an event of `size` bytes now (a usable folder, room).
    pub(super) fn outbox_room(&self, st: &State, size: usize) -> bool {
        st.disk.on && st.outbox_bytes + size <= self.outbox_budget
    }

    /// The log call: queues `record` for the spill folder, when [`Shared::outbox_room`] said
    /// so. No I/O: the worker writes the outbox.
    pub(super) fn to_disk(&self, st: &mut State, mut record: Record) {
        let size = record.size();
        self.identify(st, &mut record);
        st.disk.unread = true;
        st.disk.oldest_own.get_or_insert(record.seq);
        st.counters.pending += 1;
        st.outbox_bytes += size;
        st.outbox.push_back(record);
        if !st.disk_woken
            && (st.outbox.len() >= self.wake_events || st.outbox_bytes >= self.outbox_budget / 2)
        {
            st.disk_woken = true;
            self.disk_work.notify_one();
        }
    }

    /// For the worker: encodes and writes the outbox to the spill folder, under the folder's
    /// lock only. An event the folder refuses (its budget full, or it broke) joins the memory
    /// queue if it fits, else is dropped and counted.
    pub fn write_outbox(&self) {
        let mut store = self.lock_store();
        let mut st = self.lock();
        st.disk_woken = false;
        if st.outbox.is_empty() {
            return;
        }
        let mut records = std::mem::take(&mut st.outbox);
        st.outbox_bytes = 0;
        st.disk_behind = false;
        if st.room_waiters > 0 {
            self.room.notify_all();
        }
        drop(st);
        let mut refused = Vec::new();
        let mut written = 0u64;
        let mut error = None;
        for r in records.drain(..) {
            if let Some(s) = store.as_mut().filter(|s| error.is_none() && !s.broken) {
                match s.append(&r) {
                    Ok(true) => {
                        written += 1;
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => error = Some(e),
                }
            }
            refused.push(r);
        }
        if let (Some(e), Some(s)) = (&error, store.as_ref()) {
            spill_failed(self.name, &s.folder, e);
        }
        let mut st = self.lock();
        let st = &mut *st;
        if st.outbox.is_empty() && st.outbox.capacity() < records.capacity() {
            // The log calls reuse the allocation rather than grow a new outbox each time.
            std::mem::swap(&mut st.outbox, &mut records);
        }
        self.mirror(st, store.as_ref());
        st.counters.spilled += written;
        for r in refused {
            self.admit_refused(st, r);
        }
        if written > 0 && !st.woken {
            // The main loop reads the new frames back (in `always` mode, to send them).
            st.woken = true;
            self.work.notify_one();
        }
        if st.done_waiters > 0 {
            self.done.notify_all();
        }
    }

    /// Copies what the log call must know of the folder into the queue's state.
    fn mirror(&self, st: &mut State, store: Option<&Store>) {
        let outbox = st.outbox.front().map(|r| r.seq);
        let (on, bytes, own) = store.map_or((false, st.counters.spill_bytes, None), |s| {
            (!s.broken, s.bytes, s.oldest_unread_own())
        });
        st.disk.on = on && !st.finished;
        st.counters.spill_bytes = bytes;
        st.disk.oldest_own = match (own, outbox) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// An event accepted for the disk that the disk refused: into memory, behind what is
    /// queued (with a new `seq`), if it fits or the policy can make room; else dropped.
    fn admit_refused(&self, st: &mut State, mut record: Record) {
        let size = record.size();
        let fits = st.counters.pending_bytes as usize + size <= self.config.buffer_bytes
            || (size <= self.config.buffer_bytes
                && match self.config.overflow {
                    Overflow::DropLowest => {
                        matches!(self.evict_lower(st, record.level, size), super::Admit::Yes)
                    }
                    Overflow::DropOldest => {
                        matches!(self.evict_oldest(st, size), super::Admit::Yes)
                    }
                    // The worker cannot wait for itself to free room.
                    Overflow::DropNewest | Overflow::Block(_) => false,
                });
        if !fits {
            st.counters.pending -= 1;
            st.dropped(record.level, false);
            return;
        }
        let flushed = record.seq < st.flush_upto;
        record.seq = st.next_seq;
        st.next_seq += 1;
        if flushed {
            // A `flush` waiting for it now waits for its new `seq`.
            st.flush_upto = st.next_seq;
            st.replay_flush_end = st.next_seq;
        }
        st.counters.pending_bytes += size as u64;
        st.queued_bytes += size;
        st.level_bytes[rank(record.level)] += size;
        st.queue.push_back(record);
    }

    /// For the worker: the oldest spilled segment to replay, when memory is at most half used.
    pub fn next_replay(&self) -> Option<Sealed> {
        let mut store = self.lock_store();
        let mut st = self.lock();
        if st.counters.pending_bytes as usize > self.config.buffer_bytes / 2 {
            return None;
        }
        let s = store.as_mut()?;
        if !s.has_unread() {
            if st.outbox.is_empty() {
                // Nothing older waits anywhere: new events may go to memory again.
                st.disk.unread = false;
            }
            return None;
        }
        drop(st);
        let sealed = match s.next_sealed() {
            Ok(sealed) => sealed,
            Err(e) => {
                spill_failed(self.name, &s.folder, &e);
                s.next_sealed().ok().flatten()
            }
        };
        let mut st = self.lock();
        self.mirror(&mut st, Some(s));
        st.replay_in_hand = sealed.is_some();
        sealed
    }

    /// For the worker: queues the records read back from `segment`, behind what is queued;
    /// returns the `seq` range they got.
    pub fn enqueue_replayed(&self, segment: &Sealed, replay: Replay) -> Range<u64> {
        let mut st = self.lock();
        let st = &mut *st;
        st.replay_in_hand = false;
        let start = st.next_seq;
        let n = replay.records.len() as u64;
        for mut record in replay.records {
            let size = record.size();
            record.seq = st.next_seq;
            st.next_seq += 1;
            st.counters.pending_bytes += size as u64;
            st.queued_bytes += size;
            st.level_bytes[rank(record.level)] += size;
            st.queue.push_back(record);
        }
        let c = &mut st.counters;
        c.replayed += n;
        c.corrupt_skipped += replay.corrupt;
        c.spill_set_aside += u64::from(segment.set_aside);
        match segment.written {
            // Written by this process: already counted; the unreadable ones are lost.
            Some(own) => {
                let lost = own.count.saturating_sub(n);
                c.pending -= lost;
                c.failed += lost;
                // A `flush` waiting for these now waits for their new `seq`s.
                if own.first_id < st.flush_upto {
                    st.replay_flush_end = st.next_seq;
                    st.flush_upto = st.next_seq;
                }
            }
            None => {
                c.enqueued += n;
                c.pending += n;
            }
        }
        if st.done_waiters > 0 {
            self.done.notify_all();
        }
        start..st.next_seq
    }

    /// For the worker: a replayed segment was deleted (or could not be read: `bytes` is then
    /// still what it held).
    pub fn forget_segment(&self, bytes: u64) {
        let mut store = self.lock_store();
        if let Some(s) = store.as_mut() {
            s.bytes = s.bytes.saturating_sub(bytes);
            self.lock().counters.spill_bytes = s.bytes;
        }
    }

    /// For the worker: hands spilled frames to the operating system; returns the files to
    /// `sync_data` outside the lock.
    pub fn flush_spill(&self) -> Vec<std::fs::File> {
        let mut store = self.lock_store();
        let Some(s) = store.as_mut() else {
            return Vec::new();
        };
        match s.flush() {
            Ok(files) => files,
            Err(e) => {
                spill_failed(self.name, &s.folder, &e);
                self.mirror(&mut self.lock(), Some(s));
                Vec::new()
            }
        }
    }

    /// For the worker: `failed` `sync_data` calls failed with `error`; counts them and says so
    /// on stderr (once per cause and interval, as the folder's other errors).
    pub fn sync_failed(&self, failed: u64, error: &str) {
        let folder = self
            .lock_store()
            .as_ref()
            .map(|s| s.folder.display().to_string());
        self.lock().counters.spill_sync_failed += failed;
        diag::warn(
            self.name,
            "fsync",
            format_args!(
                "cannot sync the spill folder {}: {error}; events written there may not survive \
                 a power loss (counted as spill_sync_failed)",
                folder.as_deref().unwrap_or("(not open)")
            ),
        );
    }

    /// For the worker at the shutdown deadline: writes `held` and the queued records to the
    /// spill folder, except those whose `seq` is in `backed` (already on disk); returns how
    /// many were written. They stay `pending`. The outbox must have been written first.
    pub fn save_pending(&self, held: Vec<Record>, backed: &[Range<u64>]) -> u64 {
        let mut store = self.lock_store();
        let Some(store) = store.as_mut().filter(|s| !s.broken) else {
            return 0;
        };
        let unsaved: Vec<Record> = {
            let mut st = self.lock();
            let st = &mut *st;
            st.queued_bytes = 0;
            st.level_bytes = [0; 5];
            let queued = st.queue.drain(..);
            held.into_iter()
                .chain(queued)
                .filter(|r| !backed.iter().any(|b| b.contains(&r.seq)))
                .collect()
        };
        if unsaved.is_empty() {
            return 0;
        }
        let folder = store.folder.clone();
        let mut saved = 0;
        let result = store.prepend().and_then(|()| {
            for r in &unsaved {
                if !store.append(r)? {
                    break;
                }
                saved += 1;
            }
            Ok(())
        });
        if let Err(e) = result {
            diag::warn(
                self.name,
                "spill",
                format_args!("cannot write to the spill folder {}: {e}", folder.display()),
            );
        }
        let mut st = self.lock();
        st.counters.spilled += saved;
        st.counters.spill_bytes = store.bytes;
        saved
    }
}

/// One stderr line (rate-limited) saying the spill folder failed and the destination keeps its
/// backlog in memory only.
fn spill_failed(sink: &str, folder: &std::path::Path, e: &dyn std::fmt::Display) {
    diag::warn(
        sink,
        "spill",
        format_args!(
            "cannot write to the spill folder {}: {e}; keeping events in memory only",
            folder.display()
        ),
    );
}

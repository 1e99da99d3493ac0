//! The queue's side of the spill folder: writing an event that memory cannot hold (or every
//! event, in `always` mode), and what the worker asks of the folder: the next segment to
//! replay, queueing its records, forgetting deleted segments, syncing, and saving what is
//! pending at the shutdown deadline. Every step runs under the queue's one lock, so the
//! choice "memory or disk" and the counters change together (see [`crate::spill`]).

use std::ops::Range;

use super::{Shared, State};
use crate::diag;
use crate::pipeline::level_rank as rank;
use crate::record::Record;
use crate::spill::{Replay, Sealed};

impl Shared {
    /// Writes a record to the spill folder; `false` if there is none, it is full, or it broke
    /// (then says so once on stderr and the pipeline keeps to memory).
    pub(super) fn spill(&self, st: &mut State, record: &mut Record) -> bool {
        if st.store.as_ref().is_none_or(|s| s.broken) {
            return false;
        }
        self.identify(st, record);
        let store = st.store.as_mut().expect("checked above");
        match store.append(record) {
            Ok(true) => {
                st.counters.spill_bytes = store.bytes;
                st.counters.spilled += 1;
                st.counters.pending += 1;
                st.on_disk_unwoken += 1;
                if !st.woken && st.on_disk_unwoken >= self.wake_events {
                    st.woken = true;
                    self.work.notify_one();
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                spill_failed(self.name, &store.folder, &e);
                false
            }
        }
    }

    /// For the worker: the oldest spilled segment to replay, when memory is at most half used.
    pub fn next_replay(&self) -> Option<Sealed> {
        let mut st = self.lock();
        st.on_disk_unwoken = 0;
        if st.counters.pending_bytes as usize > self.config.buffer_bytes / 2 {
            return None;
        }
        let store = st.store.as_mut()?;
        if !store.has_unread() {
            return None;
        }
        match store.next_sealed() {
            Ok(s) => s,
            Err(e) => {
                spill_failed(self.name, &store.folder, &e);
                store.next_sealed().ok().flatten()
            }
        }
    }

    /// For the worker: queues the records read back from `segment`, behind what is queued;
    /// returns the `seq` range they got.
    pub fn enqueue_replayed(&self, segment: &Sealed, replay: Replay) -> Range<u64> {
        let mut st = self.lock();
        let st = &mut *st;
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
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(store) = &mut st.store {
            store.bytes = store.bytes.saturating_sub(bytes);
            st.counters.spill_bytes = store.bytes;
        }
    }

    /// For the worker: hands spilled frames to the operating system; returns the files to
    /// `sync_data` outside the lock.
    pub fn flush_spill(&self) -> Vec<std::fs::File> {
        let mut st = self.lock();
        let Some(store) = &mut st.store else {
            return Vec::new();
        };
        match store.flush() {
            Ok(files) => files,
            Err(e) => {
                spill_failed(self.name, &store.folder, &e);
                Vec::new()
            }
        }
    }

    /// For the worker: `failed` `sync_data` calls failed with `error`; counts them and says so
    /// on stderr (once per cause and interval, as the folder's other errors).
    pub fn sync_failed(&self, failed: u64, error: &str) {
        let mut st = self.lock();
        st.counters.spill_sync_failed += failed;
        let folder = st.store.as_ref().map(|s| s.folder.display().to_string());
        drop(st);
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
    /// many were written. They stay `pending`.
    pub fn save_pending(&self, held: Vec<Record>, backed: &[Range<u64>]) -> u64 {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(store) = st.store.as_mut().filter(|s| !s.broken) else {
            return 0;
        };
        let queued = st.queue.drain(..);
        let unsaved: Vec<Record> = held
            .into_iter()
            .chain(queued)
            .filter(|r| !backed.iter().any(|b| b.contains(&r.seq)))
            .collect();
        st.queued_bytes = 0;
        st.level_bytes = [0; 5];
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

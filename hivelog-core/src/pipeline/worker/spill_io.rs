//! The worker's side of the spill folder: reading segments back while memory has room,
//! deleting them once every record read from them is resolved, syncing written frames on a
//! timer of their own, and saving what is pending at the shutdown deadline.
//!
//! A failed `sync_data` (or a sync task that never finished) is counted
//! ([`Stats::spill_sync_failed`](crate::Stats::spill_sync_failed)) and said on stderr, like the
//! folder's other errors: `HIVELOG_SPILL_FSYNC` promises what a power loss can lose, and a
//! silent failure would make that promise false.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use super::Worker;
use crate::diag;
use crate::pipeline::queue::Shared;
use crate::record::Record;
use crate::sink::Sink;
use crate::spill;

impl<S: Sink> Worker<S> {
    /// Reads spilled segments back into the queue while memory is at most half used.
    pub(super) fn replay(&mut self) {
        if self.shared.spill_mode.is_none() {
            return;
        }
        while let Some(mut segment) = self.shared.next_replay() {
            // Outside the send's `catch_unwind`: a panic here would stop the destination at
            // every start, so reading is guarded too (see `spill`'s module docs).
            let read = catch_unwind(AssertUnwindSafe(|| spill::read(&segment.path)));
            let (replay, why) = match read {
                Ok(Ok(r)) if r.undecodable == 0 => (r, None),
                Ok(Ok(r)) => {
                    let why = format!("{} records do not decode", r.undecodable);
                    (r, Some(why))
                }
                Ok(Err(e)) => (spill::Replay::default(), Some(e.to_string())),
                Err(_) => (
                    spill::Replay::default(),
                    Some("reading it panicked".to_owned()),
                ),
            };
            if let Some(why) = why {
                segment.set_aside = true;
                diag::warn(
                    self.shared.name,
                    "spill-set-aside",
                    format_args!(
                        "cannot read back {} whole ({why}); its readable records are sent, \
                         and the file is kept as {} (counted as spill_set_aside)",
                        segment.path.display(),
                        segment.bad_path().display()
                    ),
                );
            }
            let range = self.shared.enqueue_replayed(&segment, replay);
            self.replaying.push_back((segment, range));
        }
    }

    /// Deletes the replayed segments whose records are all resolved.
    pub(super) fn ack_segments(&mut self) {
        if self.replaying.is_empty() {
            return;
        }
        let oldest = self.shared.oldest_pending();
        while let Some((segment, _)) = self.replaying.front().filter(|(_, r)| r.end <= oldest) {
            let (done, what) = if segment.set_aside {
                (
                    std::fs::rename(&segment.path, segment.bad_path()),
                    "set aside",
                )
            } else {
                (std::fs::remove_file(&segment.path), "delete")
            };
            if let Err(e) = done {
                if e.kind() != std::io::ErrorKind::NotFound {
                    diag::warn(
                        self.shared.name,
                        "spill",
                        format_args!("cannot {what} {}: {e}", segment.path.display()),
                    );
                }
            }
            self.shared.forget_segment(segment.bytes);
            self.replaying.pop_front();
        }
    }

    /// At the shutdown deadline: writes what is still pending in memory to the spill folder
    /// (records replayed from segments that still exist are already there) and syncs it.
    pub(super) async fn save_pending(&mut self) -> u64 {
        if self.shared.spill_mode.is_none() {
            return 0;
        }
        self.shared.write_outbox();
        self.ack_segments();
        let held: Vec<Record> = self.held.drain(..).map(|h| h.record).collect();
        let backed: Vec<_> = self.replaying.iter().map(|(_, r)| r.clone()).collect();
        let saved = self.shared.save_pending(held, &backed);
        sync_files(&self.shared, self.shared.flush_spill()).await;
        saved
    }
}

/// Writes the outbox whenever the log calls have queued a batch's worth, off the worker's
/// loop (a send in progress does not delay it).
pub(super) async fn write_spill(shared: Arc<Shared>) {
    loop {
        shared.disk_work.notified().await;
        shared.write_outbox();
    }
}

/// Writes the outbox and hands spilled frames to the disk every `every`, off the worker's
/// loop (a send in progress does not delay it).
pub(super) async fn sync_spill(shared: Arc<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        shared.write_outbox();
        sync_files(&shared, shared.flush_spill()).await;
    }
}

/// `sync_data` on a blocking thread, so a slow disk never stalls the runtime; failures are
/// counted and reported.
async fn sync_files(shared: &Shared, files: Vec<std::fs::File>) {
    if files.is_empty() {
        return;
    }
    let n = files.len() as u64;
    let synced = tokio::task::spawn_blocking(move || {
        let mut failed = (0u64, None);
        for f in files {
            if let Err(e) = f.sync_data() {
                failed.0 += 1;
                failed.1.get_or_insert(e.to_string());
            }
        }
        failed
    })
    .await;
    let (failed, error) = match synced {
        Ok(r) => r,
        Err(e) => (n, Some(format!("the sync task did not finish ({e})"))),
    };
    if failed > 0 {
        shared.sync_failed(failed, error.as_deref().unwrap_or("unknown error"));
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::pipeline::PipelineConfig;
    use crate::sink::BatchLimits;

    #[test]
    fn a_failed_sync_is_counted_not_ignored() {
        let shared = Shared::new(
            "sync-test",
            PipelineConfig::default(),
            BatchLimits {
                max_events: 10,
                max_bytes: 1 << 20,
            },
        );
        // A character device: `fdatasync` fails on it with EINVAL, without privileges.
        let open = || {
            std::fs::File::options()
                .write(true)
                .open("/dev/null")
                .unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(sync_files(&shared, vec![open(), open()]));
        assert_eq!(shared.stats().spill_sync_failed, 2);
        rt.block_on(sync_files(&shared, vec![open()]));
        assert_eq!(shared.stats().spill_sync_failed, 3);
    }
}

//! A destination's disk buffer: what memory cannot hold during an outage, what is still
//! pending at the shutdown deadline, and (in `always` mode) every event, written to checksummed
//! segment files and replayed oldest first, at the next start too.
//!
//! ```text
//!  <HIVELOG_SPILL_DIR>/<service>.<sink>/lock              flock'ed by the one process using it
//!                                      /00000000000000000007.seg   oldest, replayed first
//!                                      /00000000000000000008.seg   being written
//! ```
//!
//! Why one folder per service and destination, locked: two services sharing a spill dir must
//! not send each other's events, and two processes of one service must not write or delete the
//! same segments. The second process to open a folder says so on stderr and keeps its backlog
//! in memory ([`SpillError::Locked`]).
//!
//! Why segments that are read whole and deleted whole: a segment is only deleted once every
//! record read from it is resolved (delivered, rejected or failed); a crash before that replays
//! it again. Records keep their [`RecordId`](crate::record::RecordId), so a destination that
//! deduplicates by id (Elasticsearch `create` with a client `_id`) stores each event once.
//!
//! Why the log call never writes here: a write, even into a 64 KiB buffer, ends in a system
//! call that can block on a slow or full disk. The log call only queues the event in the
//! pipeline's outbox, under the queue's lock, where the choice "memory or disk" is made; the
//! worker's thread encodes and writes the outbox under this folder's own lock, and says when
//! outbox and folder are both drained (holding both locks), so no record can be sent ahead of
//! older ones still on their way to disk. `fsync` runs on a blocking thread of the pipeline's
//! runtime, outside both locks ([`SpillConfig::fsync`]).
//!
//! Why a segment that cannot be read back is set aside rather than deleted or retried: a frame
//! whose checksum holds but that does not decode (written by another version, or by a bug), or
//! a file that cannot be read, is not a torn write. Its readable records are replayed, then the
//! file is renamed `<number>.bad` ([`BAD_EXT`]) and counted
//! ([`Stats::spill_set_aside`](crate::Stats::spill_set_aside)): it is kept for inspection, out
//! of the replay and of the disk budget, and never stops the other segments. Reading runs under
//! `catch_unwind` too, so even a decoder bug costs one segment, not the destination.
//!
//! Errors never stop the application: a folder that cannot be created, a full disk or an
//! unwritable file is one stderr line naming the folder and the error, and the destination
//! continues in memory only.

pub mod codec;
pub mod segment;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub use crate::pipeline::{SpillConfig, SpillMode};
use crate::record::Record;
use segment::SegmentWriter;

/// A segment is sealed and a new one started past this many bytes (or a quarter of the memory
/// budget if that is smaller, since a segment is replayed into memory whole).
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// The smallest segment size, whatever the memory budget.
const MIN_SEGMENT_BYTES: u64 = 64 << 10;
/// Gap between the numbers of consecutive segments, leaving room to write a segment that must
/// be replayed before the others ([`Store::prepend`]).
const NUMBER_STEP: u64 = 1 << 20;
/// The name of the lock file inside a destination's folder.
pub const LOCK_FILE: &str = "lock";
/// The extension of segment files.
pub const SEGMENT_EXT: &str = "seg";
/// The extension a segment that could not be read back is renamed to (kept for inspection).
pub const BAD_EXT: &str = "bad";

/// Why a destination's spill folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// Another process holds the folder's lock.
    #[error(
        "spill folder {0} is in use by another process; this one keeps its backlog in memory only"
    )]
    Locked(PathBuf),
    /// The folder or its lock file cannot be created or read.
    #[error("spill folder {folder} is not usable ({error}); keeping the backlog in memory only")]
    Io {
        /// The folder.
        folder: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
}

/// The folder for `sink` of `service` under `dir`: `<dir>/<service>.<sink>`, with characters
/// other than letters, digits, `-`, `_` and `.` replaced by `_`.
///
/// ```
/// use hivelog_core::spill::folder;
/// use std::path::Path;
/// assert_eq!(folder(Path::new("/var/spool"), "check out", "elasticsearch"),
///            Path::new("/var/spool/check_out.elasticsearch"));
/// ```
pub fn folder(dir: &Path, service: &str, sink: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    dir.join(format!("{}.{}", clean(service), clean(sink)))
}

/// The segments waiting in a folder, oldest first: `(number, bytes)`. Used by `hivelog check`
/// to list what the next start will replay.
pub fn list(folder: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == SEGMENT_EXT) {
            if let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            {
                segments.push((n, entry.metadata()?.len()));
            }
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// A sealed segment handed to the worker for replay.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub path: PathBuf,
    pub bytes: u64,
    /// Records this process wrote into it and the lowest `seq` of their ids (`None`: written
    /// by an earlier process).
    pub written: Option<Own>,
    /// It could not be read back whole: renamed `.bad` instead of deleted once replayed.
    pub set_aside: bool,
}

impl Sealed {
    /// Where the segment goes when it is set aside.
    pub fn bad_path(&self) -> PathBuf {
        self.path.with_extension(BAD_EXT)
    }
}

/// What this process wrote into one segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Own {
    /// Records written.
    pub count: u64,
    /// The lowest [`RecordId::seq`](crate::record::RecordId::seq) among them.
    pub first_id: u64,
}

/// One destination's open spill folder; only the pipeline's worker thread uses it.
pub(crate) struct Store {
    pub folder: PathBuf,
    /// Holds the folder's lock for the store's life.
    _lock: File,
    max_bytes: u64,
    segment_bytes: u64,
    /// Sealed segments not yet handed out, oldest first: `(number, bytes)`.
    sealed: VecDeque<(u64, u64)>,
    /// The segment being written: its number and writer.
    writer: Option<(u64, SegmentWriter)>,
    next_number: u64,
    /// Records written by this process per segment not yet handed out.
    written: HashMap<u64, Own>,
    /// Bytes of every segment in the folder (sealed, being replayed, being written).
    pub bytes: u64,
    /// A write failed: no more writes (what is on disk is still replayed).
    pub broken: bool,
    /// Sealed segments not yet `fsync`ed.
    unsynced: Vec<File>,
    scratch: Vec<u8>,
}

impl Store {
    /// Opens (creating it if needed) and locks the folder, and lists the segments it holds;
    /// `memory` is the pipeline's memory budget (segments are cut to a quarter of it).
    pub fn open(folder: PathBuf, max_bytes: u64, memory: usize) -> Result<Store, SpillError> {
        let io_err = |error| SpillError::Io {
            folder: folder.clone(),
            error,
        };
        std::fs::create_dir_all(&folder).map_err(io_err)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(folder.join(LOCK_FILE))
            .map_err(io_err)?;
        lock_exclusive(&lock).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => SpillError::Locked(folder.clone()),
            _ => io_err(e),
        })?;
        let segments = list(&folder).map_err(io_err)?;
        let next_number = segments
            .last()
            .map_or(NUMBER_STEP, |(n, _)| (n / NUMBER_STEP + 1) * NUMBER_STEP);
        Ok(Store {
            bytes: segments.iter().map(|(_, b)| b).sum(),
            sealed: segments.into_iter().collect(),
            folder,
            _lock: lock,
            max_bytes,
            segment_bytes: (memory as u64 / 4).clamp(MIN_SEGMENT_BYTES, SEGMENT_BYTES),
            writer: None,
            next_number,
            written: HashMap::new(),
            broken: false,
            unsynced: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Whether segments wait to be replayed (sealed, or the one being written holds frames).
    pub fn has_unread(&self) -> bool {
        !self.sealed.is_empty() || self.writer.as_ref().is_some_and(|(_, w)| !w.is_empty())
    }

    /// Writes `record` to the current segment. `Ok(false)`: the disk budget is full, or the
    /// store is broken. On an error the store is broken from then on.
    pub fn append(&mut self, record: &Record) -> io::Result<bool> {
        if self.broken {
            return Ok(false);
        }
        self.scratch.clear();
        codec::encode(record, &mut self.scratch);
        let frame = (segment::FRAME_HEADER + self.scratch.len()) as u64;
        let header = if self.writer.is_none() {
            segment::MAGIC.len() as u64
        } else {
            0
        };
        if self.bytes + frame + header > self.max_bytes {
            return Ok(false);
        }
        let r = self.append_scratch(record.id.seq);
        if r.is_err() {
            self.broken = true;
        }
        r.map(|()| true)
    }

    fn append_scratch(&mut self, id: u64) -> io::Result<()> {
        if self.writer.is_none() {
            let n = self.next_number;
            let w = SegmentWriter::create(&self.segment_path(n))?;
            self.next_number += NUMBER_STEP;
            self.bytes += w.len();
            self.writer = Some((n, w));
        }
        let (n, w) = self.writer.as_mut().expect("created above");
        self.bytes += w.append(&self.scratch)?;
        let own = self.written.entry(*n).or_insert(Own {
            count: 0,
            first_id: id,
        });
        own.count += 1;
        own.first_id = own.first_id.min(id);
        // A prepended segment is never cut: its continuation would be replayed last.
        let prepended = *n + NUMBER_STEP < self.next_number;
        if w.len() >= self.segment_bytes && !prepended {
            self.seal()?;
        }
        Ok(())
    }

    /// Flushes the segment being written and queues it for replay.
    pub fn seal(&mut self) -> io::Result<()> {
        let Some((n, mut w)) = self.writer.take() else {
            return Ok(());
        };
        let r = w.flush().and_then(|()| w.file());
        // In number order: a prepended segment goes before the others.
        let at = self.sealed.partition_point(|(m, _)| *m < n);
        self.sealed.insert(at, (n, w.len()));
        match r {
            Ok(f) => {
                self.unsynced.push(f);
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Makes the next frames go to a new segment replayed before every segment not yet handed
    /// out: for the records still in memory at shutdown, which are older than those. Keeps
    /// appending where it was if no number is free before them.
    pub fn prepend(&mut self) -> io::Result<()> {
        self.seal()?;
        let first = self.sealed.front().map_or(self.next_number, |(n, _)| *n);
        let Some(n) = first
            .checked_sub(1)
            .filter(|n| !self.segment_path(*n).exists())
        else {
            return Ok(());
        };
        let w = SegmentWriter::create(&self.segment_path(n))?;
        self.bytes += w.len();
        self.writer = Some((n, w));
        Ok(())
    }

    /// The oldest segment to replay, sealing the one being written if nothing older waits.
    pub fn next_sealed(&mut self) -> io::Result<Option<Sealed>> {
        if self.sealed.is_empty() {
            self.seal()?;
        }
        Ok(self.sealed.pop_front().map(|(number, bytes)| Sealed {
            path: self.segment_path(number),
            bytes,
            written: self.written.remove(&number),
            set_aside: false,
        }))
    }

    /// The lowest id `seq` among the records this process wrote that are not handed out yet.
    pub fn oldest_unread_own(&self) -> Option<u64> {
        self.written.values().map(|o| o.first_id).min()
    }

    /// Hands buffered frames to the operating system; returns the files to `sync_data`
    /// outside the lock (the one being written and those sealed since the last call).
    pub fn flush(&mut self) -> io::Result<Vec<File>> {
        let mut files = std::mem::take(&mut self.unsynced);
        if let Some((_, w)) = &mut self.writer {
            match w.flush().and_then(|()| w.file()) {
                Ok(f) => files.push(f),
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        Ok(files)
    }

    /// Flushes the segment being written, or deletes it if it holds no frame, and releases the
    /// folder's lock.
    pub fn close(mut self) {
        if let Some((n, mut w)) = self.writer.take() {
            if w.is_empty() {
                let _ = std::fs::remove_file(self.segment_path(n));
            } else {
                let _ = w.flush();
            }
        }
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.folder.join(format!("{number:020}.{SEGMENT_EXT}"))
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> io::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(io::Error::from)
}

#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> io::Result<()> {
    // Without flock, two processes sharing a folder are the operator's responsibility.
    Ok(())
}

/// What reading one segment gave.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub records: Vec<Record>,
    /// Frames skipped: failed their checks, or did not decode.
    pub corrupt: u64,
    /// Frames whose checksum held but that did not decode (or whose decoding panicked): the
    /// segment is set aside.
    pub undecodable: u64,
}

/// Reads and decodes a sealed segment; frames or records that fail their checks are counted.
pub(crate) fn read(path: &Path) -> io::Result<Replay> {
    let data = std::fs::read(path)?;
    let mut out = Replay::default();
    for frame in segment::frames(&data) {
        match frame {
            segment::Frame::Record(bytes) => {
                let decoded = std::panic::catch_unwind(|| codec::decode(bytes));
                match decoded {
                    Ok(Ok(r)) => out.records.push(r),
                    Ok(Err(_)) | Err(_) => {
                        out.corrupt += 1;
                        out.undecodable += 1;
                    }
                }
            }
            segment::Frame::Corrupt => out.corrupt += 1,
        }
    }
    Ok(out)
}

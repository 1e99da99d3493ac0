//! The disk buffer seen from the pipeline: what memory cannot hold goes to the folder, what is
//! pending at the deadline too, and the next pipeline on the same folder sends it first, once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{fast_config, numbered, record, Control, TestSink};
use hivelog_core::pipeline::{SpillConfig, SpillMode};
use hivelog_core::{spill, Pipeline, PipelineConfig, Stats};

/// A small memory budget (about 20 records) with a spill folder for service `svc`.
fn spilling(dir: &Path, mode: SpillMode) -> PipelineConfig {
    let mut spill = SpillConfig::new(dir);
    spill.mode = mode;
    spill.fsync = Duration::from_millis(10);
    PipelineConfig {
        buffer_bytes: 20 * numbered(0).size(),
        spill: Some(spill),
        ..fast_config()
    }
    .for_service("svc")
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

fn folder(dir: &Path) -> std::path::PathBuf {
    spill::folder(dir, "svc", "test")
}

/// The pipeline's counters once `ready` holds of them (the log call leaves the disk writes to
/// the worker), or after 10 s.
fn stats_once(p: &Pipeline, ready: impl Fn(&Stats) -> bool) -> Stats {
    let until = soon(10_000);
    loop {
        let s = p.stats();
        if ready(&s) || Instant::now() >= until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a pipeline whose destination hangs, logs `n` records, shuts down after 200 ms.
fn outage(dir: &Path, mode: SpillMode, n: usize) -> Stats {
    let ctl = Control::new();
    ctl.hang();
    let p = Pipeline::spawn(TestSink::new(&ctl), spilling(dir, mode)).unwrap();
    for i in 0..n {
        p.push(numbered(i));
    }
    let stats = p.shutdown(soon(200));
    ctl.release();
    stats
}

#[test]
fn an_outage_longer_than_memory_is_spilled_and_replayed_first_and_once_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = outage(dir.path(), SpillMode::Overflow, 500);
    assert_eq!(
        (first.dropped(), first.pending, first.delivered),
        (0, 500, 0)
    );
    assert_eq!(
        first.spilled, 500,
        "overflow plus what was in memory at the deadline"
    );
    assert!(first.spill_bytes > 0);
    assert!(first.is_balanced());

    let ctl = Control::new();
    let p = Pipeline::spawn(
        TestSink::new(&ctl),
        spilling(dir.path(), SpillMode::Overflow),
    )
    .unwrap();
    for i in 0..10 {
        p.push(record(&format!("new{i}")));
    }
    let second = p.shutdown(soon(5000));
    // The new events queue behind the old ones on disk, so they are replayed too.
    assert_eq!(
        (
            second.delivered,
            second.replayed,
            second.spilled,
            second.pending
        ),
        (510, 510, 10, 0)
    );
    assert_eq!(
        second.enqueued, 510,
        "replayed events count as enqueued: {second:?}"
    );
    assert!(second.is_balanced());
    let messages = ctl.messages();
    let mut expected: Vec<String> = (0..500).map(|i| format!("m{i:04}")).collect();
    expected.extend((0..10).map(|i| format!("new{i}")));
    assert_eq!(
        messages, expected,
        "oldest first, then the new events, each once"
    );
    assert_eq!(second.spill_bytes, 0);
    assert!(
        spill::list(&folder(dir.path())).unwrap().is_empty(),
        "acknowledged segments are deleted"
    );
}

#[test]
fn replayed_records_keep_their_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Control::new();
    ctl.hang();
    let p = Pipeline::spawn(TestSink::new(&ctl), spilling(dir.path(), SpillMode::Always)).unwrap();
    p.push(record("a"));
    p.push(record("b"));
    p.shutdown(soon(100));
    ctl.release();

    // Read what the next start will replay, as the pipeline does.
    let segments = spill::list(&folder(dir.path())).unwrap();
    assert!(!segments.is_empty());
    let ctl2 = Control::new();
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = IdSink {
        inner: TestSink::new(&ctl2),
        ids: ids.clone(),
    };
    let p = Pipeline::spawn(sink, spilling(dir.path(), SpillMode::Always)).unwrap();
    p.shutdown(soon(5000));
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0].0, 0);
    assert_eq!(ids[0].0, ids[1].0, "one origin per pipeline");
    assert_eq!(ids[1].1, ids[0].1 + 1);
}

/// A sink that notes each record's id.
struct IdSink {
    inner: TestSink,
    ids: std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
}

impl hivelog_core::Sink for IdSink {
    fn name(&self) -> &'static str {
        "test"
    }
    fn limits(&self) -> hivelog_core::BatchLimits {
        self.inner.limits
    }
    async fn send(&mut self, batch: &[hivelog_core::Record]) -> hivelog_core::Outcomes {
        self.ids
            .lock()
            .unwrap()
            .extend(batch.iter().map(|r| (r.id.origin, r.id.seq)));
        self.inner.send(batch).await
    }
}

#[test]
fn always_mode_puts_every_event_on_disk_before_sending_it() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Control::new();
    let p = Pipeline::spawn(TestSink::new(&ctl), spilling(dir.path(), SpillMode::Always)).unwrap();
    for i in 0..300 {
        p.push(numbered(i));
    }
    let s = p.shutdown(soon(5000));
    assert_eq!(
        (s.spilled, s.replayed, s.delivered, s.pending),
        (300, 300, 300, 0)
    );
    let expected: Vec<String> = (0..300).map(|i| format!("m{i:04}")).collect();
    assert_eq!(ctl.messages(), expected);
    assert!(spill::list(&folder(dir.path())).unwrap().is_empty());
}

#[test]
fn flush_waits_for_the_events_that_went_through_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Control::new();
    let mut config = spilling(dir.path(), SpillMode::Always);
    // Without the flush, nothing would be sent for a minute.
    config.flush_interval = Duration::from_secs(60);
    let p = Pipeline::spawn(TestSink::new(&ctl), config).unwrap();
    for i in 0..50 {
        p.push(numbered(i));
    }
    let s = p.flush(soon(5000));
    assert_eq!((s.delivered, s.pending), (50, 0), "{s:?}");
    p.shutdown(soon(1000));
}

#[test]
fn with_a_spill_folder_an_outage_longer_than_max_elapsed_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Control::new();
    ctl.script().fail_next = 20;
    let mut config = spilling(dir.path(), SpillMode::Overflow);
    config.retry.max_elapsed = Duration::from_millis(1);
    let p = Pipeline::spawn(TestSink::new(&ctl), config).unwrap();
    for i in 0..100 {
        p.push(numbered(i));
    }
    let s = p.shutdown(soon(10_000));
    assert_eq!((s.delivered, s.failed), (100, 0), "{s:?}");
    assert!(s.retried > 0);
}

#[test]
fn a_second_process_on_the_same_folder_keeps_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Control::new();
    ctl.hang();
    let first = Pipeline::spawn(
        TestSink::new(&ctl),
        spilling(dir.path(), SpillMode::Overflow),
    )
    .unwrap();
    let second = Pipeline::spawn(
        TestSink::new(&ctl),
        spilling(dir.path(), SpillMode::Overflow),
    )
    .unwrap();
    for i in 0..100 {
        first.push(numbered(i));
        second.push(numbered(i));
    }
    let (a, b) = (stats_once(&first, |s| s.spilled > 0), second.stats());
    assert!(a.spilled > 0 && a.dropped() == 0, "{a:?}");
    assert!(b.spilled == 0 && b.dropped() > 0, "{b:?}");
    first.shutdown(soon(100));
    second.shutdown(soon(100));
    ctl.release();
}

#[test]
fn a_folder_that_cannot_be_created_falls_back_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let ctl = Control::new();
    let p = Pipeline::spawn(TestSink::new(&ctl), spilling(&file, SpillMode::Always)).unwrap();
    for i in 0..10 {
        p.push(numbered(i));
    }
    let s = p.shutdown(soon(5000));
    assert_eq!((s.delivered, s.spilled), (10, 0));
}

#[test]
fn the_disk_budget_bounds_the_folder_and_the_rest_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = spilling(dir.path(), SpillMode::Overflow);
    config.spill.as_mut().unwrap().max_bytes = 2000;
    let ctl = Control::new();
    ctl.hang();
    let p = Pipeline::spawn(TestSink::new(&ctl), config).unwrap();
    for i in 0..500 {
        p.push(numbered(i));
    }
    // The worker writes (and refuses) what the log calls queued for the disk.
    let s = stats_once(&p, |s| s.spilled > 0 && s.dropped_overflow > 0);
    assert!(s.spilled > 0 && s.dropped_overflow > 0, "{s:?}");
    assert!(s.spill_bytes <= 2000, "{s:?}");
    assert!(s.is_balanced());
    p.shutdown(soon(100));
    ctl.release();
}

#[test]
fn truncated_and_bit_flipped_segments_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    outage(dir.path(), SpillMode::Always, 200);
    let segments = spill::list(&folder(dir.path())).unwrap();
    let path = |n: u64| folder(dir.path()).join(format!("{n:020}.seg"));
    // Cut the last segment in the middle of a frame; flip a bit in the first one's payload.
    let (last, len) = *segments.last().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path(last))
        .unwrap();
    f.set_len(len - 3).unwrap();
    let (first, _) = segments[0];
    let mut bytes = std::fs::read(path(first)).unwrap();
    bytes[30] ^= 0x10;
    std::fs::write(path(first), bytes).unwrap();

    let ctl = Control::new();
    let p = Pipeline::spawn(
        TestSink::new(&ctl),
        spilling(dir.path(), SpillMode::Overflow),
    )
    .unwrap();
    let s = p.shutdown(soon(5000));
    assert_eq!(s.corrupt_skipped, 2, "{s:?}");
    assert_eq!(s.delivered, 198);
    let messages = ctl.messages();
    let mut unique = messages.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 198);
    assert!(
        messages.iter().all(|m| m.len() == 5 && m.starts_with('m')),
        "no garbage replayed"
    );
    assert!(spill::list(&folder(dir.path())).unwrap().is_empty());
}

#[test]
fn a_segment_that_passes_its_checksum_but_does_not_decode_is_set_aside_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    outage(dir.path(), SpillMode::Always, 20);
    let folder = folder(dir.path());
    assert!(!spill::list(&folder).unwrap().is_empty());

    // Before the others: one good record, then the same record with a time in the year
    // 584 billion (its seconds varint replaced), both with valid checksums.
    let mut good = Vec::new();
    spill::codec::encode(&record("crafted-good"), &mut good);
    let secs_len = good[3..].iter().position(|b| *b < 0x80).unwrap() + 1;
    let mut huge = good.clone();
    huge.splice(3..3 + secs_len, [0xff; 9].into_iter().chain([0x01]));
    let crafted = folder.join("00000000000000000001.seg");
    let mut w = spill::segment::SegmentWriter::create(&crafted).unwrap();
    w.append(&good).unwrap();
    w.append(&huge).unwrap();
    w.flush().unwrap();
    drop(w);

    let ctl = Control::new();
    let p = Pipeline::spawn(
        TestSink::new(&ctl),
        spilling(dir.path(), SpillMode::Overflow),
    )
    .unwrap();
    let s = p.shutdown(soon(5000));
    assert_eq!(
        (s.delivered, s.corrupt_skipped, s.spill_set_aside, s.pending),
        (21, 1, 1, 0),
        "{s:?}"
    );
    let messages = ctl.messages();
    assert_eq!(messages[0], "crafted-good", "replayed first: {messages:?}");
    assert!(
        spill::list(&folder).unwrap().is_empty(),
        "every segment resolved"
    );
    let bad = folder.join("00000000000000000001.bad");
    assert_eq!(
        spill::segment::frames(&std::fs::read(&bad).unwrap()).count(),
        2,
        "the set-aside file is kept as it was found"
    );
}

/// Write system calls made by the calling thread so far, and the bytes they wrote (Linux's
/// per-thread I/O accounting).
#[cfg(target_os = "linux")]
fn thread_writes() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (field("syscw:"), field("wchar:"))
}

#[cfg(target_os = "linux")]
#[test]
fn in_always_mode_the_log_call_writes_nothing_and_every_event_still_goes_through_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Control::new();
    let mut config = spilling(dir.path(), SpillMode::Always);
    // A burst larger than the outbox: the log calls wait for the writer rather than drop.
    config.overflow = hivelog_core::pipeline::Overflow::Block(Duration::from_secs(10));
    let p = Pipeline::spawn(TestSink::new(&ctl), config).unwrap();
    // About 300 KB of frames: several 64 KiB buffers and segments.
    let records: Vec<_> = (0..3000).map(numbered).collect();
    let before = thread_writes();
    for r in records {
        p.push(r);
    }
    let after = thread_writes();
    let (calls, bytes) = (after.0 - before.0, after.1 - before.1);
    let s = p.shutdown(soon(10_000));
    // The only writes a log call may make are the 8-byte wake-ups of the worker's runtime
    // (an eventfd), never frames.
    assert_eq!(
        bytes,
        8 * calls,
        "the log calls wrote {bytes} bytes in {calls} calls"
    );
    assert_eq!(
        (s.spilled, s.replayed, s.delivered, s.dropped(), s.pending),
        (3000, 3000, 3000, 0, 0),
        "{s:?}"
    );
    let expected: Vec<String> = (0..3000).map(|i| format!("m{i:04}")).collect();
    assert_eq!(ctl.messages(), expected, "in order, each once");
}

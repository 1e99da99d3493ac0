//! The local output (stdout, stderr, `file:`): JSON lines or pretty text, a destination like
//! the sinks.
//!
//! In `async` mode (`HIVELOG_OUTPUT_MODE`, the default) the log call only captures the event
//! and queues it ([`crate::line_queue`], same byte budget, overflow policy and counters as a
//! sink); the writer thread ([`crate::writer`]) writes many lines per syscall. When the writer
//! falls behind (busy, or without a core), the log call formats its own line and queues the
//! bytes instead, so a burst loses nothing and queues no backlog of unformatted records. The
//! capture goes into a record reused from the writer's pool (or, for a formatted line, the
//! thread's own scratch record): no allocation per event. A reader of
//! stdout that stops reading then stalls nobody: the queue fills, and the overflow policy drops
//! and counts. What is queued is written before the process ends normally: the guard's drop,
//! `std::process::exit` (an `atexit` handler, [`crate::atexit`]) and a panic (the hook) all
//! wait for the writer, at most `HIVELOG_SHUTDOWN_TIMEOUT`; only a SIGKILL or an abort loses
//! what is queued (normally microseconds' worth).
//!
//! In `sync` mode the calling thread formats the line into a thread-local buffer and writes it
//! with one `write(2)` under the output's lock, as before: nothing is ever queued, and a
//! stalled reader stalls the log call. After a shutdown the writer thread has stopped and
//! `async` behaves the same way, so events logged late (from another thread, or after the
//! guard's drop) are still written.

use std::cell::RefCell;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hivelog_core::record::{Fields, RecordId, Str};
use hivelog_core::{Format, PipelineConfig, Record};

use crate::file::{RollingFile, Rotation};
use crate::line_queue::{LineQueue, Pushed};
pub use crate::target::Style;
use crate::target::{Lines, Target};

/// Where local lines go (`HIVELOG_OUTPUT`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// Standard output (default).
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
    /// Nowhere (only the sinks receive events).
    None,
    /// A file, with rotation.
    File {
        /// The active file.
        path: PathBuf,
        /// When it rotates.
        rotation: Rotation,
        /// How many rotated files are kept.
        keep: usize,
    },
}

/// Who writes local lines (`HIVELOG_OUTPUT_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// A writer thread writes them, many per syscall; the log call only queues (default).
    /// A SIGKILL loses what is queued.
    #[default]
    Async,
    /// The logging thread writes each line before the log call returns; a stalled reader of
    /// stdout stalls the log call.
    Sync,
}

/// The local output: its lines and counters, and in `async` mode the queue to its writer.
pub(crate) struct Local {
    lines: Arc<Lines>,
    queue: Option<Arc<LineQueue>>,
}

/// A logging thread's reusable memory: the record it captures into, and the buffer it formats
/// lines into.
struct Scratch {
    record: Option<Box<Record>>,
    line: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            record: None,
            line: Vec::new(),
        })
    };
}

/// Beyond this, a thread's scratch buffer or record is not kept (one huge event must not pin a
/// huge buffer to the thread forever).
const SCRATCH_MAX: usize = 64 * 1024;

/// A record with no allocation yet, for a capture to fill.
fn empty_record() -> Record {
    Record {
        time: std::time::UNIX_EPOCH,
        level: tracing::Level::INFO,
        target: Str::Static(""),
        module: None,
        file: None,
        line: None,
        message: None,
        thread: None,
        thread_id: 0,
        span: None,
        seq: 0,
        id: RecordId::default(),
        fields: Fields::with_limit(0, 0),
    }
}

impl Local {
    /// Opens the output and, in `async` mode, starts its writer; `None` for `Output::None`.
    pub(crate) fn open(
        output: &Output,
        style: Style,
        format: Arc<Format>,
        mode: OutputMode,
        config: &PipelineConfig,
    ) -> io::Result<Option<Local>> {
        let (target, name, tty) = match output {
            Output::None => return Ok(None),
            Output::Stdout => (
                Target::Stdout,
                "stdout".to_owned(),
                io::stdout().is_terminal(),
            ),
            Output::Stderr => (
                Target::Stderr,
                "stderr".to_owned(),
                io::stderr().is_terminal(),
            ),
            Output::File {
                path,
                rotation,
                keep,
            } => (
                Target::File(Mutex::new(RollingFile::open(path, *rotation, *keep)?)),
                format!("file:{}", path.display()),
                false,
            ),
        };
        let lines = Lines::new(target, name, style, tty, format);
        Local::start(lines, mode, config).map(Some)
    }

    /// A caller-supplied writer (benchmarks, tests, custom destinations).
    pub(crate) fn writer(
        w: Box<dyn Write + Send>,
        style: Style,
        format: Arc<Format>,
        mode: OutputMode,
        config: &PipelineConfig,
    ) -> io::Result<Local> {
        let target = Target::Writer(Mutex::new(w));
        let lines = Lines::new(target, "writer".to_owned(), style, false, format);
        Local::start(lines, mode, config)
    }

    fn start(lines: Lines, mode: OutputMode, config: &PipelineConfig) -> io::Result<Local> {
        let lines = Arc::new(lines);
        let queue = match mode {
            OutputMode::Sync => None,
            OutputMode::Async => {
                let queue = Arc::new(LineQueue::new(config.buffer_bytes, config.overflow));
                crate::writer::spawn(queue.clone(), lines.clone())?;
                Some(queue)
            }
        };
        Ok(Local { lines, queue })
    }

    /// Captures an event (`fill` captures it into the record it is given, whose allocations
    /// are reused) and writes it: queued, formatted into the queue, or written now.
    pub(crate) fn log(&self, fill: impl FnOnce(&mut Record)) {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let Scratch { record, line } = &mut *scratch;
                let r = record.get_or_insert_with(|| Box::new(empty_record()));
                fill(r);
                match &self.queue {
                    Some(q) if !q.wants_lines() => {
                        let r = record.take().unwrap_or_else(|| Box::new(empty_record()));
                        if let Some(late) = q.push(r, record) {
                            self.format_write(&late, line);
                            *record = Some(late);
                        }
                    }
                    Some(q) => {
                        line.clear();
                        self.lines.format(r, line);
                        if let Pushed::Late = q.push_line(line, r.level) {
                            self.lines.write(line, 1);
                        }
                    }
                    None => self.format_write(r, line),
                }
                if let Some(r) = record.as_mut() {
                    crate::prefetch::for_capture(r);
                    // Release span references now; don't keep a huge event's buffers forever.
                    r.span = None;
                    if r.size() > SCRATCH_MAX {
                        *record = None;
                    }
                }
                if line.capacity() > SCRATCH_MAX {
                    *line = Vec::new();
                }
            }
            // An event logged while formatting another (a `Display` that logs): no reuse.
            Err(_) => {
                let mut r = empty_record();
                fill(&mut r);
                self.send(r);
            }
        })
    }

    /// Writes a record other destinations also read: now, or a copy through the queue (made
    /// into this thread's spare record, as a capture would be: no allocation).
    pub(crate) fn write(&self, record: &Record) {
        match &self.queue {
            Some(_) => self.log(|r| r.copy_from(record)),
            None => self.write_now(record),
        }
    }

    /// Writes a record nobody else reads: queued in `async` mode, without a copy.
    pub(crate) fn send(&self, record: Record) {
        match &self.queue {
            Some(q) => {
                if let Some(late) = q.push(Box::new(record), &mut None) {
                    self.write_now(&late);
                }
            }
            None => self.write_now(&record),
        }
    }

    /// Formats and writes one record on the calling thread.
    fn write_now(&self, record: &Record) {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.format_write(record, &mut scratch.line),
            Err(_) => self.format_write(record, &mut Vec::new()),
        })
    }

    /// Formats one record into `buf` and writes it.
    fn format_write(&self, record: &Record, buf: &mut Vec<u8>) {
        buf.clear();
        self.lines.format(record, buf);
        self.lines.write(buf, 1);
    }

    /// Waits until every line logged before the call is written (at most until `deadline`),
    /// then flushes what the target buffers.
    pub(crate) fn flush(&self, deadline: Instant) {
        if let Some(q) = &self.queue {
            q.flush(deadline);
        }
        self.lines.flush();
    }

    /// [`flush`](Self::flush) unless a shutdown already waited for the writer (the `atexit`
    /// handler after the guard's drop: a stalled reader must not delay the exit twice).
    pub(crate) fn flush_at_exit(&self, deadline: Instant) {
        if self.queue.as_ref().is_some_and(|q| !q.is_closing()) {
            self.flush(deadline);
        }
    }

    /// Lets the writer drain and stop (at most until `deadline`); later lines are written by
    /// the threads that log them.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        if let Some(q) = &self.queue {
            q.shutdown(deadline);
        }
        self.lines.flush();
    }

    pub(crate) fn report(&self) -> LocalReport {
        let (pending, dropped) = self.queue.as_ref().map_or((0, 0), |q| q.counts());
        let (written, failed) = self.lines.counts();
        LocalReport {
            output: self.lines.name().to_owned(),
            written,
            failed,
            dropped,
            pending,
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // The last handle is gone (guard and subscriber dropped): the writer drains and stops.
        if let Some(q) = &self.queue {
            q.close();
        }
    }
}

/// What the local output did: `logged = written + failed + dropped + pending`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReport {
    /// `stdout`, `stderr`, `file:PATH` or `writer`.
    pub output: String,
    /// Lines written.
    pub written: u64,
    /// Lines that could not be written (I/O errors: a closed pipe, a full disk).
    pub failed: u64,
    /// Lines dropped because the queue's budget was full (`HIVELOG_OVERFLOW`).
    pub dropped: u64,
    /// Lines queued and not yet written (`async` mode).
    pub pending: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hivelog_core::pipeline::Overflow;
    use hivelog_core::record::{SpanNode, Value};

    use super::*;
    use crate::line_queue::Batch;

    /// A writer whose bytes the test reads.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An `async` local output whose writer thread is not started yet: a writer that has no
    /// core (or is busy elsewhere) for as long as the test wants.
    fn without_writer(budget: usize, overflow: Overflow) -> (Local, Shared) {
        let out = Shared::default();
        (writing_to(Box::new(out.clone()), budget, overflow), out)
    }

    /// [`without_writer`] into `w`.
    fn writing_to(w: Box<dyn Write + Send>, budget: usize, overflow: Overflow) -> Local {
        let target = Target::Writer(Mutex::new(w));
        let format = Arc::new(Format::builder().build());
        let lines = Lines::new(target, "writer".into(), Style::Json, false, format);
        Local {
            lines: Arc::new(lines),
            queue: Some(Arc::new(LineQueue::new(budget, overflow))),
        }
    }

    fn start_writer(local: &Local) {
        let queue = local.queue.clone().unwrap();
        crate::writer::spawn(queue, local.lines.clone()).unwrap();
    }

    fn record(i: u64) -> Record {
        let mut r = Record::new(tracing::Level::INFO, Str::Static("t"), 1 << 20, 1);
        let msg = r.fields.push_str("line");
        r.message = Some(msg);
        r.fields.push("i", Value::U64(i));
        r
    }

    fn log(local: &Local, i: u64) {
        local.log(|r| *r = record(i));
    }

    fn indexes(out: &Shared) -> Vec<u64> {
        String::from_utf8(out.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["i"].as_u64().unwrap()
            })
            .collect()
    }

    #[test]
    fn a_burst_while_the_writer_has_no_core_is_formatted_by_the_callers_and_loses_no_line() {
        // 20,000 records would take about 8 MB; as lines, about 2 MB.
        let (local, out) = without_writer(4 << 20, Overflow::DropLowest);
        for i in 0..20_000 {
            log(&local, i);
        }
        let queue = local.queue.as_ref().unwrap();
        assert!(
            queue.wants_lines(),
            "the callers format once records pile up"
        );
        assert_eq!(queue.counts(), (20_000, 0), "pending, dropped");
        start_writer(&local);
        local.flush(Instant::now() + Duration::from_secs(30));
        assert_eq!(
            indexes(&out),
            (0..20_000).collect::<Vec<_>>(),
            "all, in order"
        );
        assert_eq!(local.report().written, 20_000);
        assert!(!queue.wants_lines(), "the writer caught up");
    }

    #[test]
    fn records_and_lines_queued_in_turns_are_written_in_the_order_they_were_logged() {
        let (local, out) = without_writer(4 << 20, Overflow::DropLowest);
        let queue = local.queue.clone().unwrap();
        let mut line = Vec::new();
        for i in 0..1000 {
            let r = record(i);
            if i % 3 == 0 {
                line.clear();
                local.lines.format(&r, &mut line);
                assert!(matches!(queue.push_line(&line, r.level), Pushed::Done));
            } else {
                assert!(queue.push(Box::new(r), &mut None).is_none());
            }
        }
        start_writer(&local);
        local.flush(Instant::now() + Duration::from_secs(30));
        assert_eq!(indexes(&out), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn formatted_records_come_back_to_the_log_calls_for_reuse() {
        let (local, _out) = without_writer(4 << 20, Overflow::DropLowest);
        let queue = local.queue.clone().unwrap();
        let mut batch = Batch::default();
        assert!(queue.push(Box::new(record(0)), &mut None).is_none());
        assert!(queue.next(&mut batch, &mut Vec::new(), 0, 0));
        let (n, bytes) = (batch.lines(), batch.bytes());
        let mut recycled: Vec<_> = batch.records.drain(..).map(|q| q.record).collect();
        // The writer offers the record it wrote when it takes the next batch...
        assert!(queue.push(Box::new(record(1)), &mut None).is_none());
        assert!(queue.next(&mut batch, &mut recycled, n, bytes));
        assert!(recycled.is_empty(), "the pool took it");
        // ...and the next log call gets it back for its next capture.
        let mut spare = None;
        assert!(queue.push(Box::new(record(2)), &mut spare).is_none());
        assert_eq!(spare.map(|r| r.fields.as_slice().len()), Some(1));
    }

    #[test]
    fn a_record_other_destinations_also_read_is_written_whole_and_left_as_it_was() {
        let (local, out) = without_writer(4 << 20, Overflow::DropLowest);
        start_writer(&local);
        let mut fields = Fields::with_limit(1 << 20, 1);
        let v = fields.push_str("x");
        fields.push("f", Value::Str(v));
        let node = Arc::new(SpanNode::new("s", fields, None));
        for i in 0..3 {
            let mut r = record(i);
            r.span = Some(node.clone());
            local.write(&r);
            assert_eq!(r.fields.as_slice().len(), 1, "the record is left as it was");
            assert!(r.span.is_some());
        }
        local.flush(Instant::now() + Duration::from_secs(30));
        assert_eq!(indexes(&out), vec![0, 1, 2]);
        let lines = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            lines.lines().all(|l| l.contains(r#""f":"x""#)),
            "each line has its span's field: {lines}"
        );
    }

    #[test]
    fn spare_records_keep_small_spans_alive_until_reused_and_never_large_ones() {
        let (local, out) = without_writer(4 << 20, Overflow::DropLowest);
        start_writer(&local);
        let span = |text: &str| {
            let mut fields = Fields::with_limit(1 << 20, 1);
            let v = fields.push_str(text);
            fields.push("f", Value::Str(v));
            Arc::new(SpanNode::new("s", fields, None))
        };
        let (small, large) = (span("x"), span(&"y".repeat(4096)));
        for (i, node) in [&small, &large].into_iter().enumerate() {
            local.log(|r| {
                *r = record(i as u64);
                r.span = Some(node.clone());
            });
        }
        local.flush(Instant::now() + Duration::from_secs(30));
        assert_eq!(indexes(&out), vec![0, 1]);
        assert_eq!(Arc::strong_count(&large), 1, "released by the writer");
        // The small one is released by the log call that reuses its record (this thread's
        // next captures, which take the pool's spares).
        for i in 2..5 {
            log(&local, i);
        }
        local.flush(Instant::now() + Duration::from_secs(30));
        assert_eq!(Arc::strong_count(&small), 1, "released on reuse");
    }

    /// A writer that keeps the size of every `write` call.
    #[derive(Clone, Default)]
    struct Sizes(Arc<Mutex<Vec<usize>>>, Shared);

    impl Write for Sizes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(b.len());
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn megabytes_of_lines_the_callers_formatted_are_written_a_chunk_at_a_time() {
        let sizes = Sizes::default();
        let local = writing_to(Box::new(sizes.clone()), 64 << 20, Overflow::DropLowest);
        let queue = local.queue.clone().unwrap();
        // About 12 MB of whole lines, as a burst the callers formatted would leave, plus records
        // before and between them.
        let mut line = Vec::new();
        for i in 0..30_000u64 {
            let mut r = record(i);
            if i % 10_000 == 0 {
                assert!(queue.push(Box::new(r), &mut None).is_none());
                continue;
            }
            let pad = r.fields.push_str(&"x".repeat(400));
            r.fields.push("pad", Value::Str(pad));
            line.clear();
            local.lines.format(&r, &mut line);
            assert!(matches!(queue.push_line(&line, r.level), Pushed::Done));
        }
        start_writer(&local);
        local.flush(Instant::now() + Duration::from_secs(30));
        assert_eq!(
            indexes(&sizes.1),
            (0..30_000).collect::<Vec<_>>(),
            "all, in order"
        );
        assert_eq!(local.report().written, 30_000);
        let sizes = sizes.0.lock().unwrap().clone();
        assert!(sizes.iter().sum::<usize>() > 12_000_000);
        let largest = sizes.iter().max().copied().unwrap_or(0);
        assert!(
            largest <= crate::writer::CHUNK,
            "largest write {largest} bytes, {} writes",
            sizes.len()
        );
    }

    #[test]
    fn a_stalled_output_stops_the_callers_formatting_and_the_overflow_policy_applies() {
        let (local, out) = without_writer(2 << 20, Overflow::DropOldest);
        let queue = local.queue.clone().unwrap();
        // The writer is inside a write that has not returned for a while.
        queue.writing(true);
        std::thread::sleep(Duration::from_millis(20));
        for i in 0..30_000 {
            log(&local, i);
        }
        let (_, dropped) = queue.counts();
        assert!(dropped > 0, "a 2 MB budget cannot keep 30,000 lines");
        queue.writing(false);
        start_writer(&local);
        local.flush(Instant::now() + Duration::from_secs(30));
        let kept = indexes(&out);
        assert_eq!(kept.len() as u64 + dropped, 30_000);
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(
            *kept.last().unwrap(),
            29_999,
            "drop_oldest keeps the newest"
        );
    }
}

//! The local output (stdout, stderr, `file:`): JSON lines or pretty text, a destination like
//! the sinks.
//!
//! In `async` mode (`HIVELOG_OUTPUT_MODE`, the default) the log call only captures the event
//! and queues it ([`crate::line_queue`], same byte budget, overflow policy and counters as a
//! sink); the writer thread ([`crate::writer`]) writes many lines per syscall. A reader of
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

use hivelog_core::{Format, PipelineConfig, Record};

use crate::file::{RollingFile, Rotation};
use crate::line_queue::LineQueue;
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

/// How local lines look (`HIVELOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Style {
    /// One JSON object per line (default).
    #[default]
    Json,
    /// Readable text, colored when the output is a terminal and `NO_COLOR` is unset.
    Pretty,
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

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
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

    /// Whether records go through the writer thread (they must then be owned).
    pub(crate) fn is_async(&self) -> bool {
        self.queue.is_some()
    }

    /// Writes a record other destinations also read: now, or a copy through the queue.
    pub(crate) fn write(&self, record: &Record) {
        match &self.queue {
            Some(_) => self.send(record.clone()),
            None => self.write_now(record),
        }
    }

    /// Writes a record nobody else reads: queued in `async` mode, without a copy.
    pub(crate) fn send(&self, record: Record) {
        match &self.queue {
            Some(q) => {
                if let Some(late) = q.push(record) {
                    self.write_now(&late);
                }
            }
            None => self.write_now(&record),
        }
    }

    /// Formats and writes one record on the calling thread.
    fn write_now(&self, record: &Record) {
        BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.lines.format(record, &mut buf);
                self.lines.write(&buf, 1);
                // Don't let one huge event pin a huge buffer to the thread forever.
                if buf.capacity() > 64 * 1024 {
                    *buf = Vec::with_capacity(512);
                }
            }
            Err(_) => {
                let mut buf = Vec::new();
                self.lines.format(record, &mut buf);
                self.lines.write(&buf, 1);
            }
        })
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

//! Where local lines land (stdout, stderr, a file, a caller's writer), and how a failed write
//! is counted and reported.
//!
//! Every write is one buffer of whole lines, written with as few `write(2)` calls as the
//! operating system allows (one, unless a pipe or a signal cuts it short). Lines that were not
//! completely written count as `failed`; the others as `written`, so the counters stay exact
//! even when an error stops a buffer midway.
//!
//! Why no retry: a failed write is most often permanent (the reader of a pipe is gone:
//! `EPIPE`) or not ours to fix (a full disk: `ENOSPC`). Retrying would turn one error into a
//! busy loop holding the writer, so the buffer is counted as failed and the next one is tried as
//! usual (a disk that was full may have room again). A broken pipe on stdout or stderr never
//! heals, so after one the lines are counted without a syscall. Each cause (`io::ErrorKind`) is
//! reported once on stderr for the life of the output; the exact numbers are in the report.
//! Rust ignores `SIGPIPE` in programs it builds, which is what makes `EPIPE` an error here
//! rather than a silent death of the process.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hivelog_core::{Format, Record};

use crate::file::RollingFile;
use crate::pretty;

/// How local lines look (`HIVELOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Style {
    /// One JSON object per line (default).
    #[default]
    Json,
    /// Readable text, colored when the output is a terminal and `NO_COLOR` is unset.
    Pretty,
}

/// The file or stream local lines are written to.
pub(crate) enum Target {
    Stdout,
    Stderr,
    File(Mutex<RollingFile>),
    Writer(Mutex<Box<dyn Write + Send>>),
}

/// Formats records as lines and writes buffers of them to the target, with counters.
pub(crate) struct Lines {
    target: Target,
    name: String,
    style: Style,
    color: bool,
    format: Arc<Format>,
    written: AtomicU64,
    failed: AtomicU64,
    /// stdout/stderr returned `EPIPE`: nobody will ever read them again.
    broken: AtomicBool,
    reported: Mutex<Vec<io::ErrorKind>>,
}

impl Lines {
    pub(crate) fn new(
        target: Target,
        name: String,
        style: Style,
        tty: bool,
        format: Arc<Format>,
    ) -> Lines {
        let color = tty && std::env::var_os("NO_COLOR").is_none();
        Lines {
            target,
            name,
            style,
            color,
            format,
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            reported: Mutex::new(Vec::new()),
        }
    }

    /// `stdout`, `stderr`, `file:PATH` or `writer`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Lines written and lines that could not be written.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Whether writing is pointless (a broken pipe): lines can be counted without formatting.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Counts `lines` that will never be written.
    pub(crate) fn count_failed(&self, lines: u64) {
        self.failed.fetch_add(lines, Ordering::Relaxed);
    }

    /// Appends `record` as one line, `\n` included.
    pub(crate) fn format(&self, record: &Record, buf: &mut Vec<u8>) {
        match self.style {
            Style::Json => self.format.write_json(record, buf),
            Style::Pretty => pretty::write(&self.format, record, self.color, buf),
        }
        buf.push(b'\n');
    }

    /// Writes `buf`, which holds `lines` whole lines, and counts them.
    pub(crate) fn write(&self, buf: &[u8], lines: u64) {
        if self.is_broken() {
            self.count_failed(lines);
            return;
        }
        let mut done = 0;
        let res = match &self.target {
            Target::Stdout => write_counted(&mut io::stdout().lock(), buf, &mut done),
            Target::Stderr => write_counted(&mut io::stderr().lock(), buf, &mut done),
            Target::File(f) => f
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_lines(buf, &mut done),
            Target::Writer(w) => write_counted(
                &mut *w.lock().unwrap_or_else(PoisonError::into_inner),
                buf,
                &mut done,
            ),
        };
        match res {
            Ok(()) => {
                self.written.fetch_add(lines, Ordering::Relaxed);
            }
            Err(e) => {
                let whole = (buf[..done].iter().filter(|&&b| b == b'\n').count() as u64).min(lines);
                self.written.fetch_add(whole, Ordering::Relaxed);
                self.failed.fetch_add(lines - whole, Ordering::Relaxed);
                self.report(&e);
            }
        }
    }

    fn report(&self, e: &io::Error) {
        let stream = matches!(self.target, Target::Stdout | Target::Stderr);
        if stream && e.kind() == io::ErrorKind::BrokenPipe {
            self.broken.store(true, Ordering::Relaxed);
        }
        let mut seen = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&e.kind()) {
            return;
        }
        seen.push(e.kind());
        drop(seen);
        hivelog_core::diag::warn(
            &self.name,
            &format!("write-{:?}", e.kind()),
            format_args!(
                "cannot write log lines: {e}; lines that cannot be written are counted as failed in the report (reported once)"
            ),
        );
    }

    /// Flushes what the target buffers (files and custom writers; stdout/stderr hold none).
    pub(crate) fn flush(&self) {
        let _ = match &self.target {
            Target::Stdout => io::stdout().lock().flush(),
            Target::Stderr => io::stderr().lock().flush(),
            Target::File(f) => f.lock().unwrap_or_else(PoisonError::into_inner).flush(),
            Target::Writer(w) => w.lock().unwrap_or_else(PoisonError::into_inner).flush(),
        };
    }
}

/// `write_all` that counts the bytes written before an error.
fn write_counted(w: &mut impl Write, mut buf: &[u8], done: &mut usize) -> io::Result<()> {
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *done += n;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

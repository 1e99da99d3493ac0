//! The local output: JSON lines (or pretty text) written synchronously by the logging thread.
//!
//! Each event is formatted into a thread-local buffer and written with one `write_all` of a
//! whole line while the output is locked, so lines from different threads never interleave.
//! stdout is line-buffered by std: each line reaches the container runtime's log driver
//! (awslogs, fluentd) as soon as it is logged, and nothing is pending at exit.

use std::cell::RefCell;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hivelog_core::{Format, Record};

use crate::file::{RollingFile, Rotation};
use crate::pretty;

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

enum Target {
    Stdout,
    Stderr,
    File(Mutex<RollingFile>),
    Writer(Mutex<Box<dyn Write + Send>>),
}

/// The local output with its counters.
pub(crate) struct Local {
    target: Target,
    name: String,
    style: Style,
    color: bool,
    format: Arc<Format>,
    written: AtomicU64,
    failed: AtomicU64,
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl Local {
    /// Opens the output; `None` for `Output::None`.
    pub(crate) fn open(
        output: &Output,
        style: Style,
        format: Arc<Format>,
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
        Ok(Some(Local::new(target, name, style, tty, format)))
    }

    /// A caller-supplied writer (benchmarks, tests, custom destinations).
    pub(crate) fn writer(w: Box<dyn Write + Send>, style: Style, format: Arc<Format>) -> Local {
        Local::new(
            Target::Writer(Mutex::new(w)),
            "writer".to_owned(),
            style,
            false,
            format,
        )
    }

    fn new(target: Target, name: String, style: Style, tty: bool, format: Arc<Format>) -> Local {
        let color = tty && std::env::var_os("NO_COLOR").is_none();
        Local {
            target,
            name,
            style,
            color,
            format,
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Formats and writes one record.
    pub(crate) fn write(&self, record: &Record) {
        BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.write_with(record, &mut buf);
                // Don't let one huge event pin a huge buffer to the thread forever.
                if buf.capacity() > 64 * 1024 {
                    *buf = Vec::with_capacity(512);
                }
            }
            Err(_) => self.write_with(record, &mut Vec::new()),
        })
    }

    fn write_with(&self, record: &Record, buf: &mut Vec<u8>) {
        match self.style {
            Style::Json => self.format.write_json(record, buf),
            Style::Pretty => pretty::write(&self.format, record, self.color, buf),
        }
        buf.push(b'\n');
        let res = match &self.target {
            Target::Stdout => io::stdout().lock().write_all(buf),
            Target::Stderr => io::stderr().lock().write_all(buf),
            Target::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_line(buf),
            Target::Writer(w) => w.lock().unwrap_or_else(|p| p.into_inner()).write_all(buf),
        };
        match res {
            Ok(()) => self.written.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                hivelog_core::diag::warn(
                    &self.name,
                    "write",
                    format!("cannot write a log line: {e}"),
                );
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Flushes buffered bytes (files and custom writers; stdout/stderr hold none).
    pub(crate) fn flush(&self) {
        let _ = match &self.target {
            Target::Stdout => io::stdout().lock().flush(),
            Target::Stderr => io::stderr().lock().flush(),
            Target::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).flush(),
            Target::Writer(w) => w.lock().unwrap_or_else(|p| p.into_inner()).flush(),
        };
    }

    pub(crate) fn report(&self) -> LocalReport {
        LocalReport {
            output: self.name.clone(),
            written: self.written.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// What the local output did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReport {
    /// `stdout`, `stderr`, `file:PATH` or `writer`.
    pub output: String,
    /// Lines written.
    pub written: u64,
    /// Lines that could not be written (I/O errors).
    pub failed: u64,
}

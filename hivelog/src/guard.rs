//! The guard `init` returns: it keeps the outputs running and flushes them (see [`Report`]).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hivelog_core::{ConfigError, Format, Pipeline, Stats};

/// How errors and notices name the level API.
const SET_LEVEL: &str = "hivelog::set_level";

use crate::heartbeat::Heartbeat;
use crate::level::LevelControl;
use crate::output::Local;
use crate::ratelimit::Limiter;
use crate::report::Report;
use crate::request_buffer::Buffers;

/// Everything hivelog writes to: the local output and each sink's pipeline.
#[derive(Clone, Default)]
pub(crate) struct Outputs {
    pub(crate) local: Option<Arc<Local>>,
    pub(crate) sinks: Vec<Pipeline>,
    pub(crate) shutdown_timeout: Duration,
    /// `HIVELOG_HEARTBEAT`, started by [`Outputs::start_heartbeat`] once the dispatch exists.
    pub(crate) heartbeat_every: Option<Duration>,
    /// Shared by every copy, since the layer starts it when it joins a subscriber.
    pub(crate) heartbeat: Arc<OnceLock<Arc<Heartbeat>>>,
    /// The main level's control (absent only in the inert guard of a failed `init`).
    pub(crate) level: Option<Arc<LevelControl>>,
    /// `HIVELOG_RATE_LIMIT`'s limiter, whose open counts are emitted at shutdown.
    pub(crate) limiter: Option<Arc<Limiter>>,
    /// `HIVELOG_REQUEST_BUFFER_LEVEL`'s buffers, for their counters.
    pub(crate) requests: Option<Arc<Buffers>>,
    /// The format (its metrics counter, and whether the heartbeat is an EMF document).
    pub(crate) format: Option<Arc<Format>>,
}

impl Outputs {
    /// Starts the heartbeat, if configured and not started yet, emitting through `dispatch`.
    pub(crate) fn start_heartbeat(&self, dispatch: tracing::Dispatch) {
        let Some(every) = self.heartbeat_every else {
            return;
        };
        if self.heartbeat.get().is_some() {
            return;
        }
        let me = self.clone();
        let emf = self.format.as_ref().is_some_and(|f| f.metrics_enabled());
        match Heartbeat::start(every, dispatch, emf, move || me.report()) {
            Ok(hb) => {
                if let Err(second) = self.heartbeat.set(hb) {
                    second.stop();
                }
            }
            Err(e) => {
                hivelog_core::diag::warn(
                    "heartbeat",
                    "spawn",
                    format!("cannot start the heartbeat thread: {e}"),
                );
            }
        }
    }

    /// Tells the level control which dispatch the layer is in (once it exists).
    pub(crate) fn bind_level(&self, dispatch: &tracing::Dispatch) {
        if let Some(level) = &self.level {
            level.bind(dispatch);
        }
    }

    /// Validates and applies a new main level, with one stderr line saying so.
    pub(crate) fn set_level(&self, directives: &str) -> Result<(), ConfigError> {
        let Some(level) = &self.level else {
            return Err(ConfigError::conflict(
                SET_LEVEL,
                "hivelog is not initialized; call hivelog::init() or hivelog::layer() first",
            ));
        };
        level.set(directives, SET_LEVEL, || {
            eprintln!(
                "hivelog: level changed to '{}' (from {SET_LEVEL})",
                directives.trim()
            );
        })
    }

    pub(crate) fn report(&self) -> Report {
        Report {
            local: self.local.as_ref().map(|l| l.report()),
            sinks: self.sinks.iter().map(Pipeline::stats).collect(),
            request_buffer: self.requests.as_ref().map(|r| r.report()),
            metrics_skipped: self.metrics_skipped(),
        }
    }

    /// `metric.*` fields that could not be metrics (`HIVELOG_METRICS=emf`).
    fn metrics_skipped(&self) -> u64 {
        self.format.as_ref().map_or(0, |f| f.metrics_skipped())
    }

    /// Runs `local` on the local output and `f` on every pipeline, all at once against the
    /// same deadline, then reports.
    ///
    /// Why at once: each output waits for its own thread's work, and a stalled reader of
    /// stdout can hold the local output until the deadline (its last flush, longer still);
    /// waiting for it first would leave the sinks a deadline that has passed. The local output
    /// gets a thread of its own and is waited for until the deadline plus [`LOCAL_GRACE`]; a
    /// write still blocked then is left running and the report says what is pending.
    fn each(
        &self,
        deadline: Instant,
        local: impl FnOnce(&Local) + Send + 'static,
        f: impl Fn(&Pipeline) -> Stats + Sync,
    ) -> Report {
        let local_done = self.local.clone().map(|l| run_local(l, local));
        let sinks = match self.sinks.as_slice() {
            [] => Vec::new(),
            [one] => vec![f(one)],
            many => std::thread::scope(|s| {
                let handles: Vec<_> = many.iter().map(|p| s.spawn(|| f(p))).collect();
                handles
                    .into_iter()
                    .zip(many)
                    .map(|(h, p)| h.join().unwrap_or_else(|_| p.stats()))
                    .collect()
            }),
        };
        if let Some(done) = local_done {
            let wait = (deadline + LOCAL_GRACE).saturating_duration_since(Instant::now());
            let _ = done.recv_timeout(wait);
        }
        Report {
            local: self.local.as_ref().map(|l| l.report()),
            sinks,
            request_buffer: self.requests.as_ref().map(|r| r.report()),
            metrics_skipped: self.metrics_skipped(),
        }
    }

    pub(crate) fn flush(&self, timeout: Duration) -> Report {
        let deadline = Instant::now() + timeout;
        self.each(deadline, move |l| l.flush(deadline), |p| p.flush(deadline))
    }

    /// Waits for the local writer only (the `atexit` handler).
    pub(crate) fn flush_local(&self, timeout: Duration) {
        if let Some(l) = &self.local {
            l.flush_at_exit(Instant::now() + timeout);
        }
    }

    pub(crate) fn shutdown(&self, timeout: Duration) -> Report {
        if let Some(hb) = self.heartbeat.get() {
            hb.stop();
        }
        if let Some(level) = &self.level {
            level.stop();
        }
        if let Some(limiter) = &self.limiter {
            limiter.finish();
        }
        let deadline = Instant::now() + timeout;
        self.each(
            deadline,
            move |l| l.shutdown(deadline),
            |p| p.shutdown(deadline),
        )
    }
}

/// How long past the deadline a flush or shutdown still waits for the local output's last
/// step (flushing a file's buffer once its writer stopped); a write blocked on an unread pipe
/// is not waited for.
const LOCAL_GRACE: Duration = Duration::from_millis(100);

/// Runs `step` on the local output on a thread of its own (inline if none can be started);
/// the receiver gets a message when it is done.
fn run_local(
    l: Arc<Local>,
    step: impl FnOnce(&Local) + Send + 'static,
) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let step = Arc::new(std::sync::Mutex::new(Some((step, tx))));
    let run = {
        let step = step.clone();
        let l = l.clone();
        move || {
            let taken = step.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((step, tx)) = taken {
                step(&l);
                let _ = tx.send(());
            }
        }
    };
    let spawned = std::thread::Builder::new()
        .name("hivelog-local-flush".into())
        .spawn(run);
    if spawned.is_err() {
        // No thread: the step runs here, before the sinks' (the old order, still bounded).
        let taken = step.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((step, tx)) = taken {
            step(&l);
            let _ = tx.send(());
        }
    }
    rx
}

/// Keeps hivelog's outputs running; dropping it flushes and stops the sinks.
///
/// Bind it to a named variable for the whole of `main` (`let _logs = hivelog::init();`):
/// `let _ = hivelog::init();` drops it at once, which shuts the sinks down immediately (and
/// stops the local writer thread: later lines are written by the threads that log them).
///
/// On drop, it calls [`Guard::shutdown`] with `HIVELOG_SHUTDOWN_TIMEOUT` (default 5 s) and,
/// when something could not be delivered, prints the report to stderr. `std::process::exit`
/// skips destructors: the lines queued for the local output are still written (an `atexit`
/// handler waits for its writer, at most `HIVELOG_SHUTDOWN_TIMEOUT`), but events still queued
/// for the sinks are lost unless [`crate::flush`] is called before it. A SIGKILL loses what is
/// queued anywhere.
#[must_use = "dropping the guard shuts hivelog's sinks down: bind it with `let _logs = ...`"]
pub struct Guard {
    pub(crate) outputs: Outputs,
    pub(crate) done: bool,
}

impl Guard {
    /// Sends everything queued so far, waiting at most `timeout`; returns the report.
    ///
    /// ```
    /// let (dispatch, guard) = hivelog::builder().output(hivelog::Output::None).try_build().unwrap();
    /// tracing::dispatcher::with_default(&dispatch, || tracing::info!("hello"));
    /// let report = guard.flush(std::time::Duration::from_secs(1));
    /// assert!(report.is_complete());
    /// ```
    pub fn flush(&self, timeout: Duration) -> Report {
        self.outputs.flush(timeout)
    }

    /// Stops the sinks' intake, sends what is pending (retrying while `timeout` allows), and
    /// returns what happened; events still pending at the deadline are in the report.
    pub fn shutdown(mut self, timeout: Duration) -> Report {
        self.done = true;
        self.outputs.shutdown(timeout)
    }

    /// The counters now.
    pub fn report(&self) -> Report {
        self.outputs.report()
    }

    /// Sets the main level (what `HIVELOG_LEVEL` set) of the outputs this guard owns; see
    /// [`crate::set_level`], which does this for the installed subscriber.
    ///
    /// ```
    /// let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// # struct W(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    /// # impl std::io::Write for W {
    /// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().write(b) }
    /// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// let (dispatch, guard) = hivelog::builder().writer(W(buf.clone())).try_build().unwrap();
    /// tracing::dispatcher::with_default(&dispatch, || {
    ///     tracing::debug!("hidden");
    ///     guard.set_level("debug").unwrap();
    ///     tracing::debug!("shown");
    /// });
    /// assert!(guard.set_level("debug,=nonsense[").is_err());
    /// assert_eq!(guard.level().as_deref(), Some("debug"));
    /// guard.flush(std::time::Duration::from_secs(5)); // the writer thread writes the lines
    /// let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    /// assert!(text.contains("shown") && !text.contains("hidden"));
    /// ```
    pub fn set_level(&self, directives: &str) -> Result<(), ConfigError> {
        self.outputs.set_level(directives)
    }

    /// The main level's directives now (`None` for the inert guard of a failed `init`).
    pub fn level(&self) -> Option<String> {
        self.outputs.level.as_ref().map(|l| l.current())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let report = self.outputs.shutdown(self.outputs.shutdown_timeout);
        if !report.is_complete() {
            eprintln!("hivelog: shutdown: {report}");
        }
    }
}

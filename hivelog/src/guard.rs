//! The guard `init` returns, and the report of what was delivered.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivelog_core::{Pipeline, Stats};

use crate::heartbeat::Heartbeat;
use crate::output::{Local, LocalReport};

/// Everything hivelog writes to: the local output and each sink's pipeline.
#[derive(Clone, Default)]
pub(crate) struct Outputs {
    pub(crate) local: Option<Arc<Local>>,
    pub(crate) sinks: Vec<Pipeline>,
    pub(crate) shutdown_timeout: Duration,
    /// `HIVELOG_HEARTBEAT`, started by [`Outputs::start_heartbeat`] once the dispatch exists.
    pub(crate) heartbeat_every: Option<Duration>,
    pub(crate) heartbeat: Option<Arc<Heartbeat>>,
}

impl Outputs {
    /// Starts the heartbeat, if configured, emitting through `dispatch`.
    pub(crate) fn start_heartbeat(&mut self, dispatch: tracing::Dispatch) {
        let Some(every) = self.heartbeat_every else {
            return;
        };
        let me = self.clone();
        match Heartbeat::start(every, dispatch, move || me.report()) {
            Ok(hb) => self.heartbeat = Some(hb),
            Err(e) => {
                hivelog_core::diag::warn(
                    "heartbeat",
                    "spawn",
                    format!("cannot start the heartbeat thread: {e}"),
                );
            }
        }
    }

    pub(crate) fn report(&self) -> Report {
        Report {
            local: self.local.as_ref().map(|l| l.report()),
            sinks: self.sinks.iter().map(Pipeline::stats).collect(),
        }
    }

    /// Runs `f` on every pipeline at once (each waits on its own thread's work), then reports.
    fn each(&self, f: impl Fn(&Pipeline) -> Stats + Sync) -> Report {
        if let Some(l) = &self.local {
            l.flush();
        }
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
        Report {
            local: self.local.as_ref().map(|l| l.report()),
            sinks,
        }
    }

    pub(crate) fn flush(&self, timeout: Duration) -> Report {
        let deadline = Instant::now() + timeout;
        self.each(|p| p.flush(deadline))
    }

    pub(crate) fn shutdown(&self, timeout: Duration) -> Report {
        if let Some(hb) = &self.heartbeat {
            hb.stop();
        }
        let deadline = Instant::now() + timeout;
        self.each(|p| p.shutdown(deadline))
    }
}

/// What each output did: the local output's lines, and each sink's counters.
///
/// For each sink, `enqueued = delivered + rejected + dropped + failed + pending`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The local output (absent with `HIVELOG_OUTPUT=none`).
    pub local: Option<LocalReport>,
    /// One entry per enabled sink.
    pub sinks: Vec<Stats>,
}

impl Report {
    /// Whether every event reached its destinations: nothing pending, dropped, rejected or failed.
    pub fn is_complete(&self) -> bool {
        self.local.as_ref().is_none_or(|l| l.failed == 0)
            && self
                .sinks
                .iter()
                .all(|s| s.pending == 0 && s.dropped() == 0 && s.failed == 0 && s.rejected == 0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(l) = &self.local {
            write!(
                f,
                "{}: written {}, failed {}",
                l.output, l.written, l.failed
            )?;
            sep = "; ";
        }
        for s in &self.sinks {
            write!(
                f,
                "{sep}{}: delivered {}, pending {}, dropped {}, rejected {}, failed {}",
                s.sink,
                s.delivered,
                s.pending,
                s.dropped(),
                s.rejected,
                s.failed
            )?;
            match (&s.last_error, s.last_failure) {
                (Some(e), Some(kind)) => write!(f, " (last error, {kind}: {e})")?,
                (Some(e), None) => write!(f, " (last error: {e})")?,
                _ => {}
            }
            write_endpoints(f, &s.endpoints)?;
            sep = "; ";
        }
        Ok(())
    }
}

/// Writes a sink's per-endpoint figures as ` [tcp://a up, delivered 5, resent 0, …]`.
pub(crate) fn write_endpoints(
    f: &mut impl fmt::Write,
    endpoints: &[hivelog_core::endpoints::EndpointStats],
) -> fmt::Result {
    for (i, e) in endpoints.iter().enumerate() {
        f.write_str(if i == 0 { " [" } else { ", " })?;
        write!(f, "{e}")?;
    }
    if !endpoints.is_empty() {
        f.write_str("]")?;
    }
    Ok(())
}

/// Keeps hivelog's outputs running; dropping it flushes and stops the sinks.
///
/// Bind it to a named variable for the whole of `main` (`let _logs = hivelog::init();`):
/// `let _ = hivelog::init();` drops it at once, which shuts the sinks down immediately.
///
/// On drop, it calls [`Guard::shutdown`] with `HIVELOG_SHUTDOWN_TIMEOUT` (default 5 s) and,
/// when something could not be delivered, prints the report to stderr. `std::process::exit`
/// skips destructors: call [`crate::flush`] before it, or events still queued for the sinks are
/// lost (the local stdout output writes synchronously and loses nothing).
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

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::endpoints::{EndpointState, EndpointStats};

    #[test]
    fn the_report_shows_each_endpoint_of_a_sink_that_has_several() {
        let endpoint = |name: &str, state, delivered, resent| EndpointStats {
            endpoint: name.into(),
            state,
            delivered,
            resent,
        };
        let report = Report {
            local: None,
            sinks: vec![Stats {
                sink: "fluent",
                delivered: 5,
                endpoints: vec![
                    endpoint("tcp://a:1", EndpointState::Up, 4, 1),
                    endpoint("tcp://b:2", EndpointState::Down, 1, 0),
                ],
                ..Stats::default()
            }],
        };
        assert_eq!(
            report.to_string(),
            "fluent: delivered 5, pending 0, dropped 0, rejected 0, failed 0 \
             [tcp://a:1 up, delivered 4, resent 1, tcp://b:2 down, delivered 1, resent 0]"
        );
    }
}

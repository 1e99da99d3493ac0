//! `HIVELOG_HEARTBEAT=30m`: a periodic INFO event `hivelog.heartbeat` carrying the counters,
//! so a monitor expecting one per service every N minutes can tell a silent (broken) service
//! from a quiet one. It goes through the normal filters and sinks like any event. Drops are
//! also given per level (`dropped_error` … `dropped_trace`): losing INFO under a burst is
//! expected, losing ERROR is worth an alert.
//!
//! With `HIVELOG_METRICS=emf` the heartbeat is instead one CloudWatch embedded-metric-format
//! line per output (the local output, then each sink), with the dimension `destination` and
//! the metrics `delivered`, `dropped`, `pending`, `retried`, `failed`, `spilled` (and
//! `rejected` for sinks): what happened since the previous heartbeat (`pending` is the queue
//! now). An alarm on "logs dropped" per destination then needs no code. Deltas rather than
//! totals because a CloudWatch metric is summed per period: totals would grow forever and
//! restart at zero with the process.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::Dispatch;

use crate::report::Report;

/// The running heartbeat; [`Heartbeat::stop`] ends it at once.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Heartbeat {
    /// Starts the heartbeat thread; `report` reads the counters each time.
    pub(crate) fn start(
        every: Duration,
        dispatch: Dispatch,
        emf: bool,
        report: impl Fn() -> Report + Send + 'static,
    ) -> std::io::Result<Arc<Heartbeat>> {
        let hb = Arc::new(Heartbeat::default());
        let me = hb.clone();
        let started = Instant::now();
        std::thread::Builder::new()
            .name("hivelog-heartbeat".into())
            .spawn(move || {
                let mut stopped = me.stopped.lock().unwrap_or_else(|p| p.into_inner());
                let mut previous = Report::default();
                loop {
                    let (guard, timeout) = me
                        .wake
                        .wait_timeout_while(stopped, every, |s| !*s)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if *stopped || !timeout.timed_out() {
                        return;
                    }
                    let r = report();
                    if emf {
                        let uptime_s = started.elapsed().as_secs();
                        tracing::dispatcher::with_default(&dispatch, || {
                            emit_emf(&r, &previous, uptime_s)
                        });
                        previous = r;
                        continue;
                    }
                    let sum =
                        |f: fn(&hivelog_core::Stats) -> u64| r.sinks.iter().map(f).sum::<u64>();
                    // Per-endpoint figures of the sinks that publish them (a Fluentd tier).
                    let mut endpoints = String::new();
                    for s in r.sinks.iter().filter(|s| !s.endpoints.is_empty()) {
                        endpoints.push_str(if endpoints.is_empty() { "" } else { "; " });
                        endpoints.push_str(s.sink);
                        let _ = crate::report::write_endpoints(&mut endpoints, &s.endpoints);
                    }
                    // The request buffer's counters, when it is on.
                    let rb = r.request_buffer;
                    tracing::dispatcher::with_default(&dispatch, || {
                        tracing::info!(
                            target: "hivelog",
                            uptime_s = started.elapsed().as_secs(),
                            endpoints = (!endpoints.is_empty()).then_some(endpoints.as_str()),
                            written = r.local.as_ref().map_or(0, |l| l.written),
                            write_failed = r.local.as_ref().map_or(0, |l| l.failed),
                            local_dropped = r.local.as_ref().map_or(0, |l| l.dropped),
                            local_pending = r.local.as_ref().map_or(0, |l| l.pending),
                            delivered = sum(|s| s.delivered),
                            dropped = sum(|s| s.dropped()),
                            dropped_error = sum(|s| s.dropped_by_level.error),
                            dropped_warn = sum(|s| s.dropped_by_level.warn),
                            dropped_info = sum(|s| s.dropped_by_level.info),
                            dropped_debug = sum(|s| s.dropped_by_level.debug),
                            dropped_trace = sum(|s| s.dropped_by_level.trace),
                            rejected = sum(|s| s.rejected),
                            failed = sum(|s| s.failed),
                            pending = sum(|s| s.pending),
                            pending_bytes = sum(|s| s.pending_bytes),
                            spilled = sum(|s| s.spilled),
                            replayed = sum(|s| s.replayed),
                            corrupt_skipped = sum(|s| s.corrupt_skipped),
                            spill_bytes = sum(|s| s.spill_bytes),
                            buffer_held = rb.map(|b| b.held),
                            buffer_flushed = rb.map(|b| b.flushed),
                            buffer_discarded = rb.map(|b| b.discarded),
                            buffer_evicted = rb.map(|b| b.evicted),
                            "hivelog.heartbeat"
                        )
                    });
                }
            })?;
        Ok(hb)
    }

    /// Stops the heartbeat thread.
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// One EMF heartbeat line per output: its counters since `before` (see the module docs).
fn emit_emf(now: &Report, before: &Report, uptime_s: u64) {
    if let Some(l) = &now.local {
        let was = before.local.as_ref().filter(|b| b.output == l.output);
        let delta =
            |f: fn(&crate::output::LocalReport) -> u64| f(l).saturating_sub(was.map_or(0, f));
        tracing::info!(
            target: "hivelog",
            destination = l.output.as_str(),
            uptime_s,
            metric.delivered = delta(|l| l.written),
            metric.dropped = delta(|l| l.dropped),
            metric.pending = l.pending,
            metric.retried = 0u64,
            metric.failed = delta(|l| l.failed),
            metric.spilled = 0u64,
            "hivelog.heartbeat"
        );
    }
    for (i, s) in now.sinks.iter().enumerate() {
        let was = before.sinks.get(i).filter(|b| b.sink == s.sink);
        let delta = |f: fn(&hivelog_core::Stats) -> u64| f(s).saturating_sub(was.map_or(0, f));
        tracing::info!(
            target: "hivelog",
            destination = s.sink,
            uptime_s,
            metric.delivered = delta(|s| s.delivered),
            metric.dropped = delta(|s| s.dropped()),
            metric.pending = s.pending,
            metric.retried = delta(|s| s.retried),
            metric.failed = delta(|s| s.failed),
            metric.spilled = delta(|s| s.spilled),
            metric.rejected = delta(|s| s.rejected),
            "hivelog.heartbeat"
        );
    }
}

/// Parses `HIVELOG_HEARTBEAT` (a duration of at least 1s; `0`/`off` disables).
pub(crate) fn parse(v: &str) -> Result<Option<Duration>, String> {
    const FORM: &str = "off, or a duration of at least 1s (30s, 30m, 1h)";
    if v.eq_ignore_ascii_case("off") || v == "0" {
        return Ok(None);
    }
    match hivelog_core::env::parse_duration(v) {
        Some(d) if d >= Duration::from_secs(1) => Ok(Some(d)),
        _ => Err(FORM.to_owned()),
    }
}

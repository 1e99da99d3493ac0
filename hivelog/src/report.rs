//! The report of what each output did, as the guard's `flush`/`shutdown`, the heartbeat and
//! the panic hook give it. Its own module so that the guard and the heartbeat both read it
//! without importing each other.

use std::fmt;

use hivelog_core::Stats;

use crate::output::LocalReport;
use crate::request_buffer::RequestBufferReport;

/// What each output did: the local output's lines, and each sink's counters.
///
/// For each sink, `enqueued = delivered + rejected + dropped + failed + pending`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The local output (absent with `HIVELOG_OUTPUT=none`).
    pub local: Option<LocalReport>,
    /// One entry per enabled sink.
    pub sinks: Vec<Stats>,
    /// The request buffer's counters (absent when `HIVELOG_REQUEST_BUFFER_LEVEL` is off).
    /// Discarded lines are the buffer working as meant: they do not make a report incomplete.
    pub request_buffer: Option<RequestBufferReport>,
    /// With `HIVELOG_METRICS=emf`: `metric.*` fields left out of the metrics because their
    /// value was not a finite number (NaN, ±inf, a string, a bool) or was redacted; each stays
    /// on its line as a plain field.
    pub metrics_skipped: u64,
}

impl Report {
    /// Whether every event reached its destinations: nothing pending, dropped, rejected or failed.
    pub fn is_complete(&self) -> bool {
        self.local
            .as_ref()
            .is_none_or(|l| l.failed == 0 && l.dropped == 0 && l.pending == 0)
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
            if l.dropped > 0 || l.pending > 0 {
                write!(f, ", dropped {}, pending {}", l.dropped, l.pending)?;
            }
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
            if s.dropped() > 0 {
                write_levels(f, &s.dropped_by_level)?;
            }
            if s.spilled + s.replayed + s.corrupt_skipped + s.spill_bytes > 0 {
                write!(
                    f,
                    ", spilled {}, replayed {}, corrupt skipped {}, spill bytes {}",
                    s.spilled, s.replayed, s.corrupt_skipped, s.spill_bytes
                )?;
            }
            if s.spill_set_aside > 0 {
                write!(f, ", spill segments set aside {}", s.spill_set_aside)?;
            }
            if s.spill_sync_failed > 0 {
                write!(f, ", spill syncs failed {}", s.spill_sync_failed)?;
            }
            match (&s.last_error, s.last_failure) {
                (Some(e), Some(kind)) => write!(f, " (last error, {kind}: {e})")?,
                (Some(e), None) => write!(f, " (last error: {e})")?,
                _ => {}
            }
            write_endpoints(f, &s.endpoints)?;
            sep = "; ";
        }
        if let Some(r) = &self.request_buffer {
            write!(
                f,
                "{sep}request buffer: held {}, flushed {}, discarded {}, evicted {}, holding {}",
                r.held, r.flushed, r.discarded, r.evicted, r.holding
            )?;
            sep = "; ";
        }
        if self.metrics_skipped > 0 {
            write!(f, "{sep}metrics skipped {}", self.metrics_skipped)?;
        }
        Ok(())
    }
}

/// ` (dropped ERROR 1, INFO 20)`: the levels that lost events, most important first.
fn write_levels(
    f: &mut fmt::Formatter<'_>,
    c: &hivelog_core::pipeline::LevelCounts,
) -> fmt::Result {
    let mut sep = " (dropped ";
    for (name, n) in [
        ("ERROR", c.error),
        ("WARN", c.warn),
        ("INFO", c.info),
        ("DEBUG", c.debug),
        ("TRACE", c.trace),
    ] {
        if n > 0 {
            write!(f, "{sep}{name} {n}")?;
            sep = ", ";
        }
    }
    f.write_str(")")
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
            request_buffer: None,
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
            metrics_skipped: 0,
        };
        assert_eq!(
            report.to_string(),
            "fluent: delivered 5, pending 0, dropped 0, rejected 0, failed 0 \
             [tcp://a:1 up, delivered 4, resent 1, tcp://b:2 down, delivered 1, resent 0]"
        );
    }
}

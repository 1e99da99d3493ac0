//! Sending one test event to each destination.
//!
//! Each configured destination probes itself ([`Configured::probe`]): its sink is built as the
//! service would build it, then `start` (connect, handshake, create the stream) and `send` run
//! once, directly, with no pipeline around them: the pipeline would retry and back off, and
//! this tool wants the first answer. All destinations are probed at once on one
//! current-thread runtime, each under its own deadline, so the whole check takes at most about
//! one `--timeout`. What the answers mean (reachable, authenticated) is read from the kind of
//! failure each sink reports, never from its text ([`hivelog_core::destination::classify`]).

use std::sync::Arc;
use std::time::Duration;

use hivelog_core::destination::{Configured, Probe};
use hivelog_core::record::{Str, Value};
use hivelog_core::{Format, Record};

/// Tests every destination at once, each within `timeout`; results in the order given.
pub fn probe_all(
    destinations: Vec<Box<dyn Configured>>,
    format: &Arc<Format>,
    check_id: &str,
    timeout: Duration,
) -> std::io::Result<Vec<Probe>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The sinks are built inside the runtime: a client may register with it when created.
    let results = rt.block_on(async {
        let probes: Vec<_> = destinations
            .into_iter()
            .map(|d| d.probe(format.clone(), test_record(format, check_id), timeout))
            .collect();
        let handles: Vec<_> = probes.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            if let Ok(p) = h.await {
                out.push(p);
            }
        }
        out
    });
    Ok(results)
}

/// An id for this run's test events: host, process and time, so two checks never share one.
pub fn check_id(format: &Format) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{}-{nanos}", format.hostname(), std::process::id())
}

/// The test event: INFO, target `hivelog::check`, `"hivelog check from <host>"`, and a
/// `check_id` field to find it at the destination.
pub fn test_record(format: &Format, check_id: &str) -> Record {
    let mut r = Record::new(
        tracing::Level::INFO,
        Str::Static("hivelog::check"),
        format.max_event_bytes(),
        1,
    );
    r.module = Some(Str::Static("hivelog::check"));
    let msg = r
        .fields
        .push_fmt(format_args!("hivelog check from {}", format.hostname()));
    r.message = Some(msg);
    let id = r.fields.push_str(check_id);
    r.fields.push("check_id", Value::Str(id));
    r
}

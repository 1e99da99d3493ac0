//! Sending one test event to each destination.
//!
//! Each configured destination probes itself ([`Configured::probe`]): its sink is built as the
//! service would build it, then `start` (connect, handshake, create the stream) and `send` run
//! once, directly, with no pipeline around them: the pipeline would retry and back off, and
//! this tool wants the first answer. All destinations are probed at once on one
//! current-thread runtime, each under its own deadline, so the whole check takes at most about
//! one `--timeout`. What the answers mean (reachable, authenticated) is read from the kind of
//! failure each sink reports, never from its text ([`hivelog_core::destination::classify`]).
//!
//! Why every probe runs in a task of its own, sink construction included: a destination whose
//! code panics must still be in the report (as a failure of kind `internal`, so the exit code
//! says something failed), never silently missing from it.

use std::sync::Arc;
use std::time::Duration;

use hivelog_core::destination::{classify, Configured, Probe};
use hivelog_core::record::{Str, Value};
use hivelog_core::{FailureKind, Format, Outcomes, Record};

/// Tests every destination (its name and configuration) at once, each within `timeout`;
/// one result per destination, in the order given.
pub fn probe_all(
    destinations: Vec<(&'static str, Box<dyn Configured>)>,
    format: &Arc<Format>,
    check_id: &str,
    timeout: Duration,
) -> std::io::Result<Vec<Probe>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The sinks are built inside the runtime: a client may register with it when created.
    let results = rt.block_on(async {
        let handles: Vec<_> = destinations
            .into_iter()
            .map(|(name, d)| {
                let target = d.target();
                let (format, record) = (format.clone(), test_record(format, check_id));
                // Building the sink happens inside the task too: a panic there is caught.
                let task = tokio::spawn(async move { d.probe(format, record, timeout).await });
                (name, target, task)
            })
            .collect();
        let mut out = Vec::new();
        for (name, target, task) in handles {
            out.push(match task.await {
                Ok(p) => p,
                Err(e) => panicked(name, target, e),
            });
        }
        out
    });
    Ok(results)
}

/// The report of a probe whose task did not finish (it panicked): a failure of kind
/// `internal`, reachability and authentication unknown.
fn panicked(name: &'static str, target: String, e: tokio::task::JoinError) -> Probe {
    let why = match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(e) => e.to_string(),
    };
    let mut p = classify(
        name,
        target,
        &Outcomes::fail_all(1, FailureKind::Internal, "probe panicked"),
    );
    p.reachable = None;
    p.authenticated = None;
    p.detail = Some(format!("the probe panicked: {why}"));
    p
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

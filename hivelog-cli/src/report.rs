//! Printing the check: aligned text for people, one JSON object (`--json`) for machines.
//! Every string goes through the [`Scrubber`] on its way out.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::exit::{EXIT_CONFIG, EXIT_DESTINATION, EXIT_OK};
use crate::scrub::Scrubber;
use crate::settings::Section;
use hivelog_core::destination::Probe;

/// Everything `hivelog check` found.
#[derive(Debug)]
pub struct Report {
    /// The configuration table.
    pub sections: Vec<Section>,
    /// The validation error, exactly as `try_init` words it.
    pub config_error: Option<String>,
    /// One entry per configured destination (empty when the configuration is invalid).
    pub destinations: Vec<Probe>,
    /// The deadline each destination had.
    pub timeout: Duration,
    /// The `check_id` field of the test events, to find them at the destinations.
    pub check_id: Option<String>,
}

impl Report {
    /// 0 when all is well, 1 when a destination failed, 2 when the configuration is invalid.
    pub fn exit_code(&self) -> u8 {
        if self.config_error.is_some() {
            EXIT_CONFIG
        } else if self.destinations.iter().any(|p| !p.accepted) {
            EXIT_DESTINATION
        } else {
            EXIT_OK
        }
    }
}

/// The configuration part of the text report.
pub fn config_text(r: &Report, s: &Scrubber) -> String {
    let mut out = String::new();
    let width = r
        .sections
        .iter()
        .flat_map(|sec| &sec.settings)
        .map(|v| v.name.len())
        .max()
        .unwrap_or(0);
    let vwidth = r
        .sections
        .iter()
        .flat_map(|sec| &sec.settings)
        .map(|v| v.value.chars().count())
        .filter(|n| *n <= 40)
        .max()
        .unwrap_or(0);
    out.push_str("hivelog check\n\nConfiguration (value, then where it came from):\n");
    for sec in &r.sections {
        let state = match sec.name {
            "general" | "delivery" => "",
            "unknown" => " (set, but not hivelog variables: ignored; typo?)",
            _ if sec.enabled => " (on)",
            _ => " (off)",
        };
        let _ = writeln!(out, "\n  {}{state}", sec.name);
        for v in &sec.settings {
            let _ = writeln!(
                out,
                "    {:width$}  {:vwidth$}  {}",
                v.name,
                v.value,
                v.source.as_str()
            );
        }
    }
    out.push('\n');
    match &r.config_error {
        Some(e) => {
            let _ = writeln!(out, "Configuration: INVALID\n  {e}");
        }
        None => out.push_str("Configuration: valid\n"),
    }
    s.clean(&out)
}

/// The destinations part of the text report, with the verdict.
pub fn destinations_text(r: &Report, s: &Scrubber) -> String {
    let mut out = String::new();
    if r.config_error.is_some() {
        out.push_str("\nDestinations: not tested (fix the configuration first)\n");
    } else if r.destinations.is_empty() {
        out.push_str("\nDestinations: none configured (HIVELOG_FLUENT_ADDR, HIVELOG_ES_URL or HIVELOG_CLOUDWATCH_GROUP enables one)\n");
    } else {
        let _ = writeln!(
            out,
            "\nDestinations (one test event each, check_id={}, {:?} deadline):",
            r.check_id.as_deref().unwrap_or("-"),
            r.timeout
        );
        for p in &r.destinations {
            let _ = writeln!(out, "\n  {}  {}", p.sink, p.target);
            let _ = writeln!(
                out,
                "    reachable: {}  authenticated: {}  event accepted: {}  round trip: {}",
                yes_no(p.reachable),
                yes_no(p.authenticated),
                yes_no(Some(p.accepted)),
                p.round_trip.map_or("-".to_owned(), ms)
            );
            if let Some(kind) = p.failure {
                let _ = writeln!(out, "    failure: {kind}");
            }
            for e in &p.endpoints {
                let _ = writeln!(out, "    server {e}");
            }
            for d in p.detail.iter().chain(&p.note) {
                for line in d.lines() {
                    let _ = writeln!(out, "    {}", line.trim_start());
                }
            }
        }
    }
    let verdict = match r.exit_code() {
        EXIT_OK => "OK".to_owned(),
        EXIT_CONFIG => "FAILED: invalid configuration".to_owned(),
        _ => {
            let failed: Vec<&str> = r
                .destinations
                .iter()
                .filter(|p| !p.accepted)
                .map(|p| p.sink)
                .collect();
            format!("FAILED: {}", failed.join(", "))
        }
    };
    let _ = writeln!(out, "\nResult: {verdict}");
    s.clean(&out)
}

/// The whole report as one JSON object.
pub fn json(r: &Report, s: &Scrubber) -> String {
    let sections: Vec<Value> = r
        .sections
        .iter()
        .map(|sec| {
            json!({
                "name": sec.name,
                "enabled": sec.enabled,
                "settings": sec.settings.iter().map(|v| json!({
                    "name": v.name,
                    "value": v.value,
                    "source": v.source.as_str(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let destinations: Vec<Value> = r
        .destinations
        .iter()
        .map(|p| {
            json!({
                "sink": p.sink,
                "target": p.target,
                "reachable": p.reachable,
                "authenticated": p.authenticated,
                "accepted": p.accepted,
                "round_trip_ms": p.round_trip.map(millis),
                "start_ms": p.start.map(millis),
                "error": p.detail,
                "failure": p.failure.map(|k| k.as_str()),
                "servers": p.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "note": p.note,
            })
        })
        .collect();
    let mut v = json!({
        "ok": r.exit_code() == EXIT_OK,
        "exit_code": r.exit_code(),
        "config": {
            "valid": r.config_error.is_none(),
            "error": r.config_error,
            "sections": sections,
        },
        "timeout_ms": r.timeout.as_millis() as u64,
        "check_id": r.check_id,
        "destinations": destinations,
    });
    scrub_json(&mut v, s);
    v.to_string()
}

fn scrub_json(v: &mut Value, s: &Scrubber) {
    match v {
        Value::String(t) => *t = s.clean(t),
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_json(x, s)),
        Value::Object(o) => o.values_mut().for_each(|x| scrub_json(x, s)),
        _ => {}
    }
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

/// Milliseconds to the microsecond.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

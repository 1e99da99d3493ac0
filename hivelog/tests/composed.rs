//! hivelog as one layer of a caller's `tracing_subscriber` stack (`hivelog::layer()`), beside a
//! layer that counts every event it receives and a `fmt` layer filtered at WARN: hivelog's
//! filters (level, `set_level`, rate limit) decide what hivelog writes and never what the other
//! layers get; trace ids, the `log` bridge, the panic hook and the guard's flush at exit work;
//! with hivelog added first or last. Each case runs in a child process (this test binary
//! re-executed with `HL_TEST_CHILD=<case>`), since a global subscriber is once per process.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{debug, info, info_span, warn, Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const BULK: usize = 2000;

fn run_child(case: &str, vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1"]);
    cmd.env_clear().env("HL_TEST_CHILD", case);
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// hivelog's lines: every stdout line holding a JSON object.
fn json(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        // The test harness prints `test child_main ... ` before the first line.
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What the counting layer received: message → count (the child prints it on stderr).
fn counted(stderr: &str) -> BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("COUNTED "))
        .unwrap_or_else(|| panic!("no COUNTED line in {stderr}"));
    serde_json::from_str(line).unwrap()
}

fn messages(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["message"].as_str().unwrap_or(""))
        .collect()
}

/// Counts every event it is given, by message: a layer that wants everything.
struct Counting;

static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Counting {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        *COUNTS.lock().unwrap().entry(m.0).or_default() += 1;
    }
}

fn print_counts() {
    let counts = COUNTS.lock().unwrap().clone();
    eprintln!("COUNTED {}", serde_json::to_string(&counts).unwrap());
}

/// `fmt`'s human-readable lines on stderr, for WARN and above only.
fn fmt_warn<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(LevelFilter::WARN)
}

/// What the service logs in the `first`/`last` cases.
fn service() {
    let request = info_span!("request", id = 7);
    let incoming = hivelog::trace::TraceParent::from_w3c([TRACEPARENT], []);
    hivelog::trace::start(&request, incoming.as_ref());
    request.in_scope(|| {
        debug!("d1");
        info!("i1");
        warn!("w1");
        log::debug!("log d");
        log::info!("log i");
    });
    for i in 0..BULK {
        info!(i, "bulk");
    }
    std::thread::Builder::new()
        .name("worker-1".into())
        .spawn(|| panic!("boom {}", 7))
        .unwrap()
        .join()
        .ok();
    print_counts();
}

/// The child side: does what `HL_TEST_CHILD` says.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_TEST_CHILD") else {
        return;
    };
    match case.as_str() {
        "first" => {
            let (hivelog, _logs) = hivelog::layer();
            tracing_subscriber::registry()
                .with(hivelog)
                .with(Counting)
                .with(fmt_warn())
                .init();
            service();
        }
        "last" => {
            let (hivelog, _logs) = hivelog::layer();
            tracing_subscriber::registry()
                .with(Counting)
                .with(fmt_warn())
                .with(hivelog)
                .init();
            service();
        }
        "volume" => {
            let (hivelog, _logs) = hivelog::layer();
            tracing_subscriber::registry()
                .with(Counting)
                .with(hivelog)
                .init();
            for _ in 0..10 {
                info!("limited");
            }
            hivelog::set_level("warn").unwrap();
            info!("info after set_level warn");
            // Target directives: hivelog reads its filters instead of one bare level.
            hivelog::set_level("warn,somewhere_else=debug").unwrap();
            info!("info under target directives");
            hivelog::set_level("debug").unwrap();
            debug!("debug after set_level debug");
            print_counts();
        }
        other => panic!("unknown case {other}"),
    }
}

fn composed_stack(case: &str) {
    let out = run_child(case, &[("HIVELOG_LEVEL", "info")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines = json(&out.stdout);

    // hivelog writes exactly its lines: INFO and up, its own `log` records, every bulk line
    // (flushed by the guard at exit), the panic.
    let msgs = messages(&lines);
    let mut expected = vec!["i1", "w1", "log i"];
    expected.extend(std::iter::repeat_n("bulk", BULK));
    expected.push("panicked: boom 7");
    assert_eq!(msgs, expected, "{stderr}");
    let bulk: Vec<u64> = lines.iter().filter_map(|l| l["i"].as_u64()).collect();
    assert_eq!(bulk, (0..BULK as u64).collect::<Vec<_>>());

    // Trace ids from the incoming traceparent, on the lines inside the request span only.
    for l in &lines[..3] {
        assert_eq!(l["trace_id"], "0af7651916cd43dd8448eb211c80319c", "{l}");
        assert_eq!(l["span_id"].as_str().map(str::len), Some(16), "{l}");
    }
    assert!(lines[3].get("trace_id").is_none(), "{}", lines[3]);
    let panic = lines.last().unwrap();
    assert_eq!(panic["level"], "ERROR");
    assert_eq!(panic["thread"], "worker-1");

    // The counting layer received every event, the DEBUG ones hivelog dropped included.
    let counts = counted(&stderr);
    for m in ["d1", "i1", "w1", "log d", "log i", "panicked: boom 7"] {
        assert_eq!(counts.get(m), Some(&1), "{m}: {counts:?}");
    }
    assert_eq!(counts.get("bulk"), Some(&(BULK as u64)));

    // The fmt layer printed its WARN line (and the panic), nothing below WARN.
    let fmt_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" INFO ") || l.contains(" DEBUG "))
        .collect();
    assert_eq!(fmt_lines.len(), 1, "{stderr}");
    assert!(fmt_lines[0].contains("w1"), "{stderr}");
    assert!(stderr.contains(" ERROR "), "{stderr}");
}

#[test]
fn hivelog_first_writes_its_lines_while_the_other_layers_get_every_event() {
    composed_stack("first");
}

#[test]
fn hivelog_last_writes_its_lines_while_the_other_layers_get_every_event() {
    composed_stack("last");
}

#[test]
fn set_level_and_rate_limit_decide_only_what_hivelog_writes() {
    let out = run_child(
        "volume",
        &[("HIVELOG_LEVEL", "info"), ("HIVELOG_RATE_LIMIT", "3/m")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines = json(&out.stdout);
    assert_eq!(
        messages(&lines),
        [
            "limited",
            "limited",
            "limited",
            "debug after set_level debug",
            "7 events from this callsite were suppressed (HIVELOG_RATE_LIMIT=3/m)",
        ],
        "{stderr}"
    );
    let counts = counted(&stderr);
    assert_eq!(counts.get("limited"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("info after set_level warn"), Some(&1));
    assert_eq!(counts.get("info under target directives"), Some(&1));
    assert_eq!(counts.get("debug after set_level debug"), Some(&1));
}

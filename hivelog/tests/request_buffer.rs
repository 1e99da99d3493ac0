//! The per-request log buffer (`HIVELOG_REQUEST_BUFFER_*`): a failing request's DEBUG lines
//! are written before its error, and only those.
//!
//! The whole-process cases run in child processes (this test binary re-executed with
//! `HL_TEST_CHILD=<case>`), since `init` and the panic hook are once per process; the others
//! build a subscriber of their own.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hivelog::core::{BatchLimits, Outcomes, Record, Sink};
use serde_json::Value;
use tracing::Instrument;

const THREADS: u64 = 4;
const REQUESTS: u64 = 250;
const DEBUG_LINES: u64 = 10;

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

/// The child's stdout lines that are events (the harness prints a few words before the first).
fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The child's `REPORT k=v …` line on stderr, as numbers.
fn report(out: &Output) -> BTreeMap<String, u64> {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .unwrap_or_else(|| panic!("no REPORT line in stderr: {err}"));
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn print_report(guard: &hivelog::Guard) {
    let Some(r) = guard.flush(Duration::from_secs(10)).request_buffer else {
        return;
    };
    eprintln!(
        "REPORT held={} flushed={} discarded={} evicted={} holding={}",
        r.held, r.flushed, r.discarded, r.evicted, r.holding
    );
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key} in {v}"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// One request: ten DEBUG lines, then an ERROR when it fails (one in ten).
fn request(id: u64) {
    let span = tracing::info_span!("request", req = id);
    let _in = span.enter();
    for n in 0..DEBUG_LINES {
        tracing::debug!(req = id, n, "step");
    }
    if id % 10 == 0 {
        tracing::error!(req = id, "request failed");
    }
}

/// The child side: does what `HL_TEST_CHILD` says.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_TEST_CHILD") else {
        return;
    };
    if case == "composed" {
        return composed();
    }
    let guard = hivelog::init();
    match case.as_str() {
        "requests" => {
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    std::thread::spawn(move || {
                        for i in 0..REQUESTS {
                            request(t * REQUESTS + i);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            tracing::debug!("outside any request");
        }
        "long-request" => {
            let span = tracing::info_span!("request", req = 1);
            let _in = span.enter();
            for n in 0..5_000u64 {
                tracing::debug!(n, "step");
            }
            tracing::error!("request failed");
        }
        "panic" => {
            std::thread::spawn(|| {
                let span = tracing::info_span!("request", req = 7);
                let _in = span.enter();
                for n in 0..3u64 {
                    tracing::debug!(n, "step");
                }
                panic!("boom");
            })
            .join()
            .unwrap_err();
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .build()
                .unwrap();
            rt.block_on(async {
                let tasks: Vec<_> = (0..200u64)
                    .map(|id| {
                        tokio::spawn(
                            async move {
                                for n in 0..DEBUG_LINES {
                                    tracing::debug!(req = id, n, "step");
                                    tokio::task::yield_now().await;
                                }
                                if id % 10 == 0 {
                                    tracing::error!(req = id, "request failed");
                                }
                            }
                            .instrument(tracing::info_span!("request", req = id)),
                        )
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
        }
        "rate-limit" => {
            // Twenty held (then discarded) lines of one callsite must not use up its budget.
            for i in 0..4 {
                let span = tracing::info_span!("request", req = i);
                let _in = span.enter();
                for _ in 0..5 {
                    step();
                }
            }
            let span = tracing::info_span!("request", req = 9);
            let _in = span.enter();
            for _ in 0..3 {
                step();
            }
            tracing::error!("request failed");
        }
        "log" => {
            // After a level change too, `log`'s max level keeps the buffer's level.
            hivelog::set_level("warn").unwrap();
            hivelog::set_level("info").unwrap();
            let span = tracing::info_span!("request", req = 3);
            let _in = span.enter();
            log::debug!(target: "some_dependency", "from the log crate");
            tracing::error!("request failed");
        }
        "composed" => unreachable!("handled before init"),
        other => panic!("unknown case {other}"),
    }
    print_report(&guard);
}

fn step() {
    tracing::debug!("step");
}

const BUFFERED: &[(&str, &str)] = &[
    ("HIVELOG_LEVEL", "info"),
    ("HIVELOG_REQUEST_BUFFER_LEVEL", "debug"),
    (
        "HIVELOG_FIELDS",
        "timestamp,level,message,thread_id,trace_id",
    ),
];

/// Checks that every failing request's lines are its debug lines in order, then its error,
/// with nothing between them; returns the failing requests seen.
fn check_flushed_blocks(lines: &[Value]) -> usize {
    let mut failed = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        assert_ne!(s(line, "level"), "INFO", "no INFO line is logged: {line}");
        if s(line, "level") == "ERROR" {
            panic!("an error without its debug lines before it: {line}");
        }
        let id = u(line, "req");
        assert_eq!(id % 10, 0, "a succeeding request wrote a line: {line}");
        let block = &lines[i..i + DEBUG_LINES as usize + 1];
        for (n, l) in block[..DEBUG_LINES as usize].iter().enumerate() {
            assert_eq!(
                (s(l, "level"), u(l, "req"), u(l, "n")),
                ("DEBUG", id, n as u64),
                "line {n} of request {id}'s flush: {l}"
            );
        }
        let error = &block[DEBUG_LINES as usize];
        assert_eq!((s(error, "level"), u(error, "req")), ("ERROR", id));
        i += DEBUG_LINES as usize + 1;
        failed += 1;
    }
    failed
}

#[test]
fn failing_requests_write_their_debug_lines_before_their_error_and_the_others_none() {
    let out = run_child("requests", BUFFERED);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    let failed = check_flushed_blocks(&lines);
    let requests = (THREADS * REQUESTS) as usize;
    assert_eq!(failed, requests / 10);
    assert_eq!(lines.len(), failed * (DEBUG_LINES as usize + 1));
    // Flushed lines keep the time they were logged at: not after their error's.
    for block in lines.chunks(DEBUG_LINES as usize + 1) {
        let times: Vec<&str> = block.iter().map(|l| s(l, "timestamp")).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }
    let r = report(&out);
    let held = (requests as u64) * DEBUG_LINES;
    assert_eq!(r["held"], held);
    assert_eq!(r["flushed"], (failed as u64) * DEBUG_LINES);
    assert_eq!(r["discarded"], held - r["flushed"]);
    assert_eq!((r["evicted"], r["holding"]), (0, 0));
}

#[test]
fn without_the_buffer_no_debug_line_is_written() {
    let out = run_child("requests", &BUFFERED[..1]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    assert_eq!(lines.len(), (THREADS * REQUESTS / 10) as usize);
    assert!(lines.iter().all(|l| s(l, "level") == "ERROR"));
}

#[test]
fn a_request_over_its_budget_keeps_its_newest_lines_and_says_how_many_it_lost() {
    let mut vars = BUFFERED.to_vec();
    vars.push(("HIVELOG_REQUEST_BUFFER_BYTES", "16KiB"));
    let out = run_child("long-request", &vars);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    let (warn, rest) = lines.split_first().expect("lines");
    assert_eq!(s(warn, "level"), "WARN", "{warn}");
    let evicted = u(warn, "evicted");
    let (error, kept) = rest.split_last().unwrap();
    assert_eq!(s(error, "level"), "ERROR");
    assert!(!kept.is_empty() && kept.len() < 5_000);
    assert_eq!(evicted as usize + kept.len(), 5_000);
    let numbers: Vec<u64> = kept.iter().map(|l| u(l, "n")).collect();
    let newest: Vec<u64> = (5_000 - kept.len() as u64..5_000).collect();
    assert_eq!(numbers, newest, "the newest lines, in order");
    assert_eq!(
        lines.iter().filter(|l| l.get("evicted").is_some()).count(),
        1
    );
    let r = report(&out);
    assert_eq!((r["held"], r["evicted"]), (5_000, evicted));
    assert_eq!(r["flushed"], kept.len() as u64);
}

#[test]
fn a_panic_inside_a_request_writes_its_held_lines() {
    let out = run_child("panic", BUFFERED);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    let summary: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (s(l, "level"), s(l, "message")))
        .collect();
    assert_eq!(
        summary,
        [
            ("DEBUG", "step"),
            ("DEBUG", "step"),
            ("DEBUG", "step"),
            ("ERROR", "panicked: boom")
        ]
    );
    assert_eq!(report(&out)["flushed"], 3);
}

#[test]
fn tokio_tasks_keep_their_request_buffer_on_every_worker_thread() {
    let out = run_child("tokio", BUFFERED);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    assert_eq!(check_flushed_blocks(&lines), 20);
    let r = report(&out);
    assert_eq!(
        (r["held"], r["flushed"], r["discarded"]),
        (2_000, 200, 1_800)
    );
    // How many failing tasks were polled on more than one thread (informative: the deterministic
    // proof is `a_future_moved_to_another_thread_keeps_its_buffer`).
    let moved = lines
        .chunks(DEBUG_LINES as usize + 1)
        .filter(|b| b.iter().any(|l| u(l, "thread_id") != u(&b[0], "thread_id")))
        .count();
    eprintln!("{moved} of 20 failing tasks ran on several threads");
}

#[test]
fn held_lines_do_not_count_against_the_rate_limit_until_written() {
    let mut vars = BUFFERED.to_vec();
    vars.push(("HIVELOG_RATE_LIMIT", "5/m"));
    let out = run_child("rate-limit", &vars);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    let debug = lines.iter().filter(|l| s(l, "level") == "DEBUG").count();
    assert_eq!(debug, 3, "{lines:#?}");
}

/// A sink that counts what it is sent.
struct Counting(Arc<AtomicUsize>);

impl Sink for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: 1000,
            max_bytes: 1 << 20,
        }
    }
    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        self.0.fetch_add(batch.len(), Ordering::SeqCst);
        Outcomes::delivered(batch.len())
    }
}

#[test]
fn a_flush_reaches_every_destination_that_takes_the_error_with_the_lines_trace_ids() {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let builder = hivelog::builder().sink(move |_| Counting(counter));
    let lines = support::json_lines_with(builder, BUFFERED, || {
        let span = tracing::info_span!("request");
        hivelog::trace::start(&span, None);
        let _in = span.enter();
        tracing::debug!("held");
        tracing::error!("failed");
    });
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(s(&lines[0], "message"), "held");
    let trace = s(&lines[1], "trace_id");
    assert_eq!(trace.len(), 32);
    assert_eq!(s(&lines[0], "trace_id"), trace);
    assert_eq!(sent.load(Ordering::SeqCst), 2);
}

#[test]
fn lines_outside_a_request_are_never_held_and_lines_of_a_closed_request_never_return() {
    let lines = support::json_lines(BUFFERED, || {
        tracing::debug!("outside");
        {
            let _done = tracing::info_span!("request", req = 1).entered();
            tracing::debug!("of a request that succeeded");
        }
        let _next = tracing::info_span!("request", req = 2).entered();
        tracing::error!("failed");
    });
    let messages: Vec<&str> = lines.iter().map(|l| s(l, "message")).collect();
    assert_eq!(messages, ["failed"]);
}

#[test]
fn flush_and_discard_on_demand_for_handled_errors() {
    let lines = support::json_lines(BUFFERED, || {
        {
            let _request = tracing::info_span!("request", req = 1).entered();
            tracing::debug!("kept");
            assert_eq!(hivelog::request_buffer::flush(), 1);
            tracing::debug!("dropped");
            assert_eq!(hivelog::request_buffer::discard(), 1);
            tracing::warn!("handled");
        }
        assert_eq!(hivelog::request_buffer::flush(), 0, "outside a request");
    });
    let messages: Vec<&str> = lines.iter().map(|l| s(l, "message")).collect();
    assert_eq!(messages, ["kept", "handled"]);
}

#[test]
fn warn_can_be_the_flush_level_and_inner_spans_share_their_request_buffer() {
    let mut vars = BUFFERED.to_vec();
    vars.push(("HIVELOG_REQUEST_BUFFER_FLUSH_ON", "warn"));
    let lines = support::json_lines(&vars, || {
        let _request = tracing::info_span!("request", req = 1).entered();
        tracing::debug!("in the request");
        let _db = tracing::info_span!("db").entered();
        tracing::debug!("in a child span");
        tracing::warn!("slow");
    });
    let messages: Vec<&str> = lines.iter().map(|l| s(l, "message")).collect();
    assert_eq!(messages, ["in the request", "in a child span", "slow"]);
}

#[test]
fn a_future_moved_to_another_thread_keeps_its_buffer() {
    let buf = support::Buf::default();
    let env = hivelog::Env::from_pairs(BUFFERED.iter().copied());
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(buf.clone())
        .try_build()
        .unwrap();
    // Polled once on this thread (one line held), finished on another.
    let mut yielded = false;
    let mut fut = Box::pin(
        async move {
            tracing::debug!(n = 0u64, "step");
            std::future::poll_fn(|_| {
                if std::mem::replace(&mut yielded, true) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
            tracing::debug!(n = 1u64, "step");
            tracing::error!("failed");
        }
        .instrument(tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("request")
        })),
    );
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let first = std::thread::current().id();
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(fut.as_mut().poll(&mut cx).is_pending())
    });
    let d = dispatch.clone();
    let other = std::thread::spawn(move || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        tracing::dispatcher::with_default(&d, || assert!(fut.as_mut().poll(&mut cx).is_ready()));
        std::thread::current().id()
    })
    .join()
    .unwrap();
    assert_ne!(first, other);
    drop(guard);
    let lines = support::parse(&buf.text());
    let summary: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| (s(l, "level"), l["n"].as_u64().unwrap_or(9)))
        .collect();
    assert_eq!(summary, [("DEBUG", 0), ("DEBUG", 1), ("ERROR", 9)]);
}

#[test]
fn log_records_of_a_request_are_held_too_after_a_level_change() {
    let out = run_child("log", BUFFERED);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    let messages: Vec<&str> = lines.iter().map(|l| s(l, "message")).collect();
    assert_eq!(messages, ["from the log crate", "request failed"]);
}

#[test]
fn a_level_that_takes_the_lines_writes_them_at_once_and_holds_nothing() {
    let buf = support::Buf::default();
    let env = hivelog::Env::from_pairs(BUFFERED.iter().copied());
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let _request = tracing::info_span!("request").entered();
        guard.set_level("debug").unwrap();
        tracing::debug!("written");
        guard.set_level("info").unwrap();
        tracing::debug!("held");
    });
    let r = guard.report().request_buffer.unwrap();
    assert_eq!((r.held, r.discarded), (1, 1));
    drop(guard);
    let lines = support::parse(&buf.text());
    let messages: Vec<&str> = lines.iter().map(|l| s(l, "message")).collect();
    assert_eq!(messages, ["written"]);
}

#[test]
fn the_heartbeat_and_the_report_carry_the_buffer_counters() {
    let buf = support::Buf::default();
    let mut vars = BUFFERED.to_vec();
    vars.push(("HIVELOG_HEARTBEAT", "1s"));
    let (dispatch, guard) = hivelog::builder()
        .env(hivelog::Env::from_pairs(vars))
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, request_with(2));
    tracing::dispatcher::with_default(&dispatch, || {
        let _request = tracing::info_span!("request").entered();
        tracing::debug!("kept");
        tracing::error!("failed");
    });
    std::thread::sleep(Duration::from_millis(1300));
    let report = guard.report();
    assert!(
        report
            .to_string()
            .ends_with("request buffer: held 3, flushed 1, discarded 2, evicted 0, holding 0"),
        "{report}"
    );
    drop(guard);
    let lines = support::parse(&buf.text());
    let beat = lines
        .iter()
        .find(|l| l["message"] == "hivelog.heartbeat")
        .expect("a heartbeat");
    let counters: Vec<u64> = ["held", "flushed", "discarded", "evicted"]
        .iter()
        .map(|c| u(beat, &format!("buffer_{c}")))
        .collect();
    assert_eq!(counters, [3, 1, 2, 0]);
}

/// A request that logs `n` DEBUG lines and succeeds.
fn request_with(n: usize) -> impl FnOnce() {
    move || {
        let _request = tracing::info_span!("request").entered();
        for _ in 0..n {
            tracing::debug!("step");
        }
    }
}

static DEBUG_SEEN: AtomicUsize = AtomicUsize::new(0);

/// A layer beside hivelog's that wants every event and counts the DEBUG ones.
struct CountDebug;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountDebug {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::DEBUG {
            DEBUG_SEEN.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// hivelog as one layer of a composed stack, beside a layer that takes every event.
fn composed() {
    use tracing_subscriber::prelude::*;
    let (layer, guard) = hivelog::builder().layer().unwrap();
    tracing_subscriber::registry()
        .with(CountDebug)
        .with(layer)
        .init();
    request(1);
    request(10);
    // The outermost span is one hivelog's level disables (the other layer takes it): the
    // request is hivelog's outermost span, and the API finds its buffer all the same.
    let outer = tracing::debug_span!("connection");
    let _outer = outer.enter();
    let inner = tracing::info_span!("request", req = 20);
    let _inner = inner.enter();
    tracing::debug!(req = 20, n = 0u64, "step");
    eprintln!("FLUSHED {}", hivelog::request_buffer::flush());
    eprintln!("DEBUG_SEEN {}", DEBUG_SEEN.load(Ordering::SeqCst));
    print_report(&guard);
}

#[test]
fn as_one_layer_of_a_stack_it_holds_only_what_it_would_not_write_and_others_see_everything() {
    let out = run_child("composed", BUFFERED);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = events(&out);
    let summary: Vec<(&str, u64)> = lines.iter().map(|l| (s(l, "level"), u(l, "req"))).collect();
    let mut expected = vec![("DEBUG", 10); 10];
    expected.push(("ERROR", 10));
    expected.push(("DEBUG", 20));
    assert_eq!(summary, expected);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FLUSHED 1"), "{err}");
    assert!(
        err.contains("DEBUG_SEEN 21"),
        "the other layer gets every debug line: {err}"
    );
    let r = report(&out);
    assert_eq!((r["held"], r["flushed"], r["discarded"]), (21, 11, 10));
}

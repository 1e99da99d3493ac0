//! Process faults: each case runs in a child process (this test binary re-executed with
//! `HL_REL_CHILD=<case>`), because `hivelog::init` installs a global subscriber once per process
//! and because what we test is how the process ends.
//!
//! - a panic in a request handler thread is logged as one ERROR event and reaches the sink;
//! - `std::process::exit` skips the guard's destructor: events still queued for a sink are lost,
//!   unless `hivelog::flush(timeout)` is called first (both measured);
//! - a SIGTERM-style shutdown during a backend outage returns within
//!   `HIVELOG_SHUTDOWN_TIMEOUT` and prints the report (what was not delivered) on stderr.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::to_json;
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::http::{HttpServer, Response};

fn child(case: &str, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1"]);
    cmd.env_clear().env("HL_REL_CHILD", case);
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn run_child(case: &str, vars: &[(&str, &str)]) -> Output {
    child(case, vars).output().unwrap()
}

/// Starts the `sigterm-outage` child, waits for its `READY`, lets it run for `settle`, sends
/// SIGTERM, and returns its output and how long it took to exit after the signal.
fn sigterm_after_ready(vars: &[(&str, &str)], settle: Duration, what: &str) -> (Output, Duration) {
    let mut proc = child("sigterm-outage", vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(proc.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "{what}child ended early"
        );
    }
    std::thread::sleep(settle);
    let t = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(proc.id() as i32, libc::SIGTERM) }, 0);
    let out = proc.wait_with_output().unwrap();
    (out, t.elapsed())
}

/// The child side: does what `HL_REL_CHILD` says.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_REL_CHILD") else {
        return;
    };
    match case.as_str() {
        "handler-panic" => {
            let _logs = hivelog::init();
            let handler = std::thread::Builder::new()
                .name("request-handler-3".into())
                .spawn(|| {
                    tracing::info!(path = "/articles/7", "handling request");
                    let v: Vec<u32> = Vec::new();
                    #[allow(clippy::unnecessary_operation)]
                    let _ = v[3]; // index out of bounds, as a real handler bug would
                })
                .unwrap();
            assert!(handler.join().is_err());
            tracing::info!("server still running");
        }
        "exit" | "flush-then-exit" => {
            let _logs = hivelog::init();
            for seq in 0..100u64 {
                tracing::info!(seq, "queued before exit");
            }
            if case == "flush-then-exit" {
                let report = hivelog::flush(Duration::from_secs(5));
                eprintln!("flush report: {report}");
            }
            std::process::exit(0);
        }
        "sigterm-outage" => {
            let logs = hivelog::init();
            for seq in 0..50u64 {
                tracing::info!(seq, "during the outage");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .unwrap();
                println!("READY");
                term.recv().await;
            });
            // What a service does on SIGTERM: return from main, dropping the guard.
            drop(logs);
        }
        "stdout-unread-slow-sink" => {
            hivelog::register_destination(&hivelog_tests::webhook::DESTINATION);
            let logs = hivelog::init();
            // Far more than a pipe holds: the writer blocks on the unread stdout.
            for i in 0..20_000u64 {
                tracing::info!(
                    i,
                    pad = "a line long enough to fill a pipe soon",
                    "to stdout"
                );
            }
            tracing::warn!("for the sink");
            // What a service does at the end of main: the guard's drop prints the report.
            drop(logs);
            eprintln!("SHUTDOWN RETURNED");
        }
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn a_panic_in_a_request_handler_is_logged_and_delivered_to_the_sink() {
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let out = run_child(
        "handler-panic",
        &[
            ("HIVELOG_FLUENT_ADDR", &receiver.url()),
            ("HIVELOG_FLUSH_INTERVAL", "50ms"),
            ("HIVELOG_SERVICE", "svc"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<_> = receiver
        .events()
        .iter()
        .map(|e| to_json(&e.record))
        .collect();
    let panics: Vec<_> = events.iter().filter(|e| e["target"] == "panic").collect();
    assert_eq!(panics.len(), 1, "{events:#?}");
    let p = panics[0];
    assert_eq!(p["level"], "ERROR");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("index out of bounds"),
        "{p}"
    );
    assert_eq!(p["thread"], "request-handler-3", "{p}");
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "server still running"),
        "the service keeps logging after the handler's panic: {events:#?}"
    );
}

/// `std::process::exit` runs no destructors: with a 10 s flush interval every event is still
/// queued, and all of it is lost. `hivelog::flush` before `exit` delivers all of it.
#[test]
fn process_exit_loses_queued_sink_events_unless_flushed_first() {
    let vars = |r: &ForwardReceiver| {
        vec![
            ("HIVELOG_FLUENT_ADDR".to_owned(), r.url()),
            ("HIVELOG_FLUSH_INTERVAL".to_owned(), "10s".to_owned()),
            ("HIVELOG_OUTPUT".to_owned(), "none".to_owned()),
        ]
    };
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let v = vars(&receiver);
    let v: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let out = run_child("exit", &v);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    let lost = 100 - receiver.count();
    assert_eq!(receiver.count(), 0, "exit without flush");

    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let v = vars(&receiver);
    let v: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let t = Instant::now();
    let out = run_child("flush-then-exit", &v);
    let took = t.elapsed();
    assert!(out.status.success());
    assert_eq!(
        receiver.count(),
        100,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "FIGURE process exit: without flush {lost}/100 queued events lost; with hivelog::flush \
         0/100 lost (child ran {took:?})"
    );
}

/// SIGTERM while the backend is down: the guard's shutdown gives up at
/// `HIVELOG_SHUTDOWN_TIMEOUT` (here 1 s) and prints what it could not deliver.
#[test]
fn sigterm_during_an_outage_honours_the_shutdown_timeout_and_prints_the_report() {
    let down = ForwardReceiver::down(ReceiverConfig::default());
    let (out, took) = sigterm_after_ready(
        &[
            ("HIVELOG_FLUENT_ADDR", &down.url()),
            ("HIVELOG_FLUSH_INTERVAL", "50ms"),
            ("HIVELOG_RETRY_BASE", "10ms"),
            ("HIVELOG_RETRY_CAP", "100ms"),
            ("HIVELOG_SHUTDOWN_TIMEOUT", "1s"),
            ("HIVELOG_OUTPUT", "none"),
        ],
        Duration::from_millis(300),
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        took < Duration::from_millis(2500),
        "shutdown took {took:?} with a 1 s deadline"
    );
    let report = stderr
        .lines()
        .find(|l| l.contains("hivelog: shutdown:"))
        .unwrap_or_else(|| panic!("no report on stderr: {stderr}"));
    assert!(report.contains("fluent"), "{report}");
    assert!(
        report.contains("delivered 0") && report.contains("pending 50"),
        "{report}"
    );
    eprintln!(
        "FIGURE process sigterm: exit {took:?} after SIGTERM with a 1s deadline; stderr: {report}"
    );
}

/// SIGTERM while every destination hangs (accepts and never answers) with the sinks' default
/// timeouts (30 s): the shutdown deadline still bounds the exit, for each sink.
#[test]
fn sigterm_while_destinations_hang_exits_at_the_shutdown_deadline() {
    use hivelog_tests::forward::Fault;
    use hivelog_tests::http::{HttpServer, Response};
    let stalled = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::Stall));
    let hanging = HttpServer::start(|_| Response::new(200).hang());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("fluent", vec![("HIVELOG_FLUENT_ADDR", stalled.url())]),
        ("elasticsearch", vec![("HIVELOG_ES_URL", hanging.url())]),
        (
            "cloudwatch",
            vec![
                ("HIVELOG_CLOUDWATCH_GROUP", "hang".to_owned()),
                ("AWS_ENDPOINT_URL", hanging.url()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "test".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
                ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ],
        ),
    ];
    for (sink, vars) in cases {
        let mut all: Vec<(&str, &str)> = vec![
            ("HIVELOG_FLUSH_INTERVAL", "50ms"),
            ("HIVELOG_SHUTDOWN_TIMEOUT", "1s"),
            ("HIVELOG_OUTPUT", "none"),
        ];
        all.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
        // Let a batch go out and hang.
        let (out, took) =
            sigterm_after_ready(&all, Duration::from_millis(500), &format!("{sink}: "));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{sink}: {stderr}");
        let report = stderr
            .lines()
            .find(|l| l.contains("hivelog: shutdown:"))
            .unwrap_or_else(|| panic!("{sink}: no report on stderr: {stderr}"));
        eprintln!("FIGURE process sigterm hang {sink}: exit {took:?} after SIGTERM with a 1s deadline; {report}");
        assert!(
            took < Duration::from_millis(2500),
            "{sink}: shutdown took {took:?} with a 1 s deadline"
        );
        assert!(report.contains(sink), "{report}");
    }
}

#[test]
fn shutdown_gives_a_slow_sink_its_time_while_stdout_is_unread() {
    // Every request is answered after 1.5 s: the sink needs half the 3 s deadline.
    let server = HttpServer::start(|_| Response::new(200).delay(Duration::from_millis(1500)));
    let url = server.url();
    let mut proc = child(
        "stdout-unread-slow-sink",
        &[
            ("HIVELOG_WEBHOOK_URL", &url),
            ("HIVELOG_WEBHOOK_LEVEL", "warn"),
            // Nothing is sent before the shutdown starts.
            ("HIVELOG_FLUSH_INTERVAL", "60s"),
            ("HIVELOG_SHUTDOWN_TIMEOUT", "3s"),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = BufReader::new(proc.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Nobody reads the child's stdout until its guard has returned.
    let mut seen = Vec::new();
    let returned = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line == "SHUTDOWN RETURNED" => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    if !returned {
        let _ = proc.kill();
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut proc.stdout.take().unwrap(), &mut out).unwrap();
    let _ = proc.wait();
    let seen = seen.join("\n");
    assert!(
        returned,
        "the guard's drop never returned while stdout was unread: {seen}"
    );
    let report = seen
        .lines()
        .find(|l| l.starts_with("hivelog: shutdown:"))
        .unwrap_or_else(|| panic!("no shutdown report: {seen}"));
    assert!(
        report.contains("webhook: delivered 1, pending 0"),
        "the sink got its time: {report}"
    );
    let sent: Vec<_> = server
        .requests()
        .iter()
        .flat_map(|r| r.ndjson())
        .map(|l| l["message"].clone())
        .collect();
    assert_eq!(sent, ["for the sink"]);
}

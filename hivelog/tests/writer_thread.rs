//! The local output's writer thread (`HIVELOG_OUTPUT_MODE=async`, the default): a stalled
//! reader of stdout stalls no log call, lines stay whole and in order, nothing queued is lost
//! on `std::process::exit` or a panic, and write errors are counted, not fatal.
//!
//! Each process case runs in a child (this test binary re-executed with `HL_WRITER_CHILD=<case>`),
//! because `init` is once per process and because what is tested is the process's stdout.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

const LINES: u64 = 20_000;

fn child(case: &str, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1"]);
    cmd.env_clear().env("HL_WRITER_CHILD", case);
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Every line that holds a JSON object (the harness prints `test child_main ... ` first).
fn json(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
        })
        .collect()
}

/// The `i` field of each line logged by [`log_lines`], in output order.
fn indexes(lines: &[Value]) -> Vec<u64> {
    lines.iter().filter_map(|l| l["i"].as_u64()).collect()
}

fn log_lines(n: u64) {
    for i in 0..n {
        tracing::info!(
            i,
            pad = "a line long enough to fill a pipe buffer soon",
            "line"
        );
    }
}

/// The child side: does what `HL_WRITER_CHILD` says.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_WRITER_CHILD") else {
        return;
    };
    match case.as_str() {
        "stalled" => {
            let _g = hivelog::init();
            log_lines(LINES);
            let local = hivelog::stats().local.unwrap();
            eprintln!("LOGGED dropped={}", local.dropped);
        }
        "exit" => {
            let _g = hivelog::init();
            log_lines(LINES);
            std::process::exit(0);
        }
        "panic" => {
            // The previous hook aborts: `atexit` handlers and destructors never run, so only
            // hivelog's hook can have written the queued lines.
            std::panic::set_hook(Box::new(|_| std::process::abort()));
            let _g = hivelog::init();
            log_lines(LINES);
            panic!("boom");
        }
        "closed-stdout" => {
            let _g = hivelog::init();
            // The harness has printed its header; wait until the parent has closed its end
            // of our stdout.
            eprintln!("READY");
            std::io::stdin().read_line(&mut String::new()).unwrap();
            log_lines(1000);
            let r = hivelog::flush(Duration::from_secs(10)).local.unwrap();
            eprintln!("REPORT written={} failed={}", r.written, r.failed);
            log_lines(10);
            eprintln!("STILL RUNNING");
            // Before the harness prints its result to the closed stdout.
            std::process::exit(0);
        }
        other => panic!("unknown case {other}"),
    }
}

/// Kills `child` if the marker has not been seen after a minute: a child whose log calls
/// wait for the unread stdout never writes it, and the test must then fail, not hang.
fn watchdog(child: &Child, seen: Arc<AtomicBool>) {
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !seen.load(Ordering::SeqCst) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
}

/// Runs the `stalled` child with stdout unread until the child says on stderr that it has
/// logged everything; returns the stdout lines, the dropped count it printed, and its stderr.
fn stalled_child(vars: &[(&str, &str)]) -> (Vec<Value>, u64, String) {
    let mut proc = child("stalled", vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(AtomicBool::new(false));
    watchdog(&proc, seen.clone());
    let mut stderr = BufReader::new(proc.stderr.take().unwrap());
    let (mut line, mut all) = (String::new(), String::new());
    let dropped = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the child never said it had logged everything while its stdout was unread"
        );
        all.push_str(&line);
        if let Some(n) = line.trim().strip_prefix("LOGGED dropped=") {
            seen.store(true, Ordering::SeqCst);
            break n.parse::<u64>().unwrap();
        }
    };
    // Only now does anyone read the child's stdout.
    let mut out = Vec::new();
    proc.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    stderr.read_to_string(&mut all).unwrap();
    assert!(proc.wait().unwrap().success(), "{all}");
    (json(&out), dropped, all)
}

#[test]
fn log_calls_do_not_wait_for_a_stalled_reader_and_every_line_follows_in_order() {
    let (lines, dropped, _) = stalled_child(&[("HIVELOG_SHUTDOWN_TIMEOUT", "60s")]);
    assert_eq!(dropped, 0);
    assert_eq!(indexes(&lines), (0..LINES).collect::<Vec<_>>());
    assert!(lines.iter().all(|l| l["message"] == "line"));
}

#[test]
fn a_full_budget_drops_and_counts_and_the_kept_lines_stay_in_order() {
    let (lines, dropped, stderr) = stalled_child(&[
        ("HIVELOG_SHUTDOWN_TIMEOUT", "60s"),
        ("HIVELOG_BUFFER_BYTES", "256KB"),
    ]);
    let kept = indexes(&lines);
    assert!(dropped > 0, "a 256 KB budget cannot hold {LINES} lines");
    assert_eq!(kept.len() as u64 + dropped, LINES);
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order");
    // drop_lowest, the default, is drop_newest among lines of one level.
    assert_eq!(kept[0], 0, "drop_lowest keeps the first lines of one level");
    assert!(
        stderr.contains("lines dropped so far (HIVELOG_OVERFLOW=drop_lowest"),
        "a warning says lines are being dropped: {stderr}"
    );
    assert!(
        stderr.contains(&format!("dropped {dropped}, pending 0")),
        "the shutdown report says how many lines were dropped: {stderr}"
    );
}

#[test]
fn process_exit_without_a_flush_writes_every_queued_line() {
    for mode in ["async", "sync"] {
        let out = child("exit", &[("HIVELOG_OUTPUT_MODE", mode)])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}");
        assert_eq!(
            indexes(&json(&out.stdout)),
            (0..LINES).collect::<Vec<_>>(),
            "{mode}"
        );
    }
}

#[test]
fn a_panic_writes_every_queued_line_then_the_panic() {
    let out = child("panic", &[]).output().unwrap();
    assert!(!out.status.success());
    let lines = json(&out.stdout);
    assert_eq!(indexes(&lines), (0..LINES).collect::<Vec<_>>());
    let last = lines.last().unwrap();
    assert_eq!(
        (last["level"].as_str(), last["message"].as_str()),
        (Some("ERROR"), Some("panicked: boom"))
    );
}

#[test]
fn a_closed_stdout_is_counted_reported_once_and_the_process_keeps_running() {
    for mode in ["async", "sync"] {
        let mut proc = child("closed-stdout", &[("HIVELOG_OUTPUT_MODE", mode)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(proc.stderr.take().unwrap());
        let mut stderr = String::new();
        while !stderr.contains("READY") {
            assert!(err.read_line(&mut stderr).unwrap() > 0, "{stderr}");
        }
        drop(proc.stdout.take());
        proc.stdin.take().unwrap().write_all(b"go\n").unwrap();
        err.read_to_string(&mut stderr).unwrap();
        let status = proc.wait().unwrap();
        assert!(status.success(), "{mode}: {stderr}");
        assert!(
            stderr.contains("REPORT written=0 failed=1000"),
            "{mode}: {stderr}"
        );
        assert!(stderr.contains("STILL RUNNING"), "{mode}: {stderr}");
        assert_eq!(
            stderr.matches("cannot write log lines").count(),
            1,
            "{mode}: reported once: {stderr}"
        );
    }
}

/// A writer that accepts nothing until opened: a reader that stopped reading.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<(Mutex<bool>, Condvar)>,
    /// The writer is inside `write`, waiting for the gate.
    entered: Arc<AtomicBool>,
    out: support::Buf,
}

impl Gate {
    fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }
}

impl Write for Gate {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let (lock, cv) = &*self.open;
        self.entered.store(true, Ordering::SeqCst);
        drop(cv.wait_while(lock.lock().unwrap(), |open| !*open).unwrap());
        self.out.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn drop_oldest_keeps_the_newest_lines_while_the_reader_is_stalled() {
    let gate = Gate::default();
    let env = hivelog::Env::from_pairs([
        ("HIVELOG_BUFFER_BYTES", "64KB"),
        ("HIVELOG_OVERFLOW", "drop_oldest"),
    ]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(gate.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!("first");
        // The writer holds the first line only, then the reader stalls.
        while !gate.entered.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        log_lines(5000)
    });
    gate.open();
    let report = guard.shutdown(Duration::from_secs(10));
    let local = report.local.unwrap();
    let kept = indexes(&support::parse(&gate.out.text()));
    assert!(local.dropped > 0);
    assert_eq!(
        (local.written, local.pending, local.failed),
        (kept.len() as u64 + 1, 0, 0)
    );
    assert_eq!(local.written + local.dropped, 5001);
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(*kept.last().unwrap(), 4999, "the newest line is kept");
}

#[test]
fn lines_logged_after_shutdown_are_still_written_by_the_caller() {
    let buf = support::Buf::default();
    let (dispatch, guard) = hivelog::builder()
        .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || log_lines(3));
    let report = guard.shutdown(Duration::from_secs(10));
    assert_eq!(report.local.unwrap().written, 3);
    tracing::dispatcher::with_default(&dispatch, || tracing::info!(i = 3, "late"));
    assert_eq!(indexes(&support::parse(&buf.text())), [0, 1, 2, 3]);
}

/// `/dev/full` answers every write with `ENOSPC`, as a full disk does.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_counted_as_failed_lines_and_logging_goes_on() {
    for mode in [hivelog::OutputMode::Async, hivelog::OutputMode::Sync] {
        let (dispatch, guard) = hivelog::builder()
            .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
            .output_mode(mode)
            .output(hivelog::Output::File {
                path: "/dev/full".into(),
                rotation: hivelog::Rotation::Never,
                keep: 1,
            })
            .try_build()
            .unwrap();
        tracing::dispatcher::with_default(&dispatch, || log_lines(100));
        let first = guard.flush(Duration::from_secs(10)).local.unwrap();
        assert_eq!((first.written, first.failed), (0, 100), "{mode:?}");
        tracing::dispatcher::with_default(&dispatch, || log_lines(5));
        let report = guard.shutdown(Duration::from_secs(10));
        let local = report.local.clone().unwrap();
        assert_eq!(
            (local.written, local.failed, local.dropped, local.pending),
            (0, 105, 0, 0),
            "{mode:?}: every later write is tried and counted"
        );
        assert!(!report.is_complete());
    }
}

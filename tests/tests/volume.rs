//! Overflow keeps what matters: a destination stalls while the service floods it with INFO and
//! an ERROR every 1,000 lines. With the default policy (`drop_lowest`) every ERROR is delivered
//! once the destination recovers, and the drops are INFO only, counted per level; with
//! `drop_newest` the same run loses ERRORs (which shows the run does overflow where it matters).
//!
//! The child process (this test binary re-executed with `HL_VOL_CHILD=flood`) ships to the
//! Forward receiver through the fault proxy, which blackholes until the flood is over; the test
//! heals it and then tells the child (on stdin) to shut down. Sequenced by the child's
//! `FLOODED` line and the test's `GO`, never by time.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::to_json;
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::proxy::{FaultProxy, Mode};

const EVENTS: u64 = 20_000;
const ERROR_EVERY: u64 = 1_000;

/// The child side.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_VOL_CHILD") else {
        return;
    };
    assert_eq!(case, "flood");
    let logs = hivelog::init();
    for i in 0..EVENTS {
        if i % ERROR_EVERY == ERROR_EVERY - 1 {
            tracing::error!(i, "payment failed");
        } else {
            tracing::info!(i, pad = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "flood");
        }
    }
    println!("FLOODED");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let report = logs.shutdown(Duration::from_secs(30));
    let s = &report.sinks[0];
    println!(
        "REPORT {} {} {} {} {}",
        s.dropped_by_level.error,
        s.dropped_by_level.info,
        s.dropped(),
        s.pending,
        s.enqueued
    );
}

/// Runs the flood with `overflow` against a stalled destination that then recovers; returns
/// the report's `[dropped ERROR, dropped INFO, dropped, pending, enqueued]` and the distinct
/// `i` of the ERROR events the receiver got.
fn flood(overflow: Option<&str>) -> ([u64; 5], BTreeSet<u64>) {
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let proxy = FaultProxy::start(receiver.addr());
    proxy.set(Mode::Blackhole);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env("HL_VOL_CHILD", "flood")
        .env("HIVELOG_FLUENT_ADDR", proxy.tcp_url())
        .env("HIVELOG_OUTPUT", "none")
        .env("HIVELOG_BUFFER_BYTES", "256KiB")
        .env("HIVELOG_FLUSH_INTERVAL", "50ms")
        .env("HIVELOG_RETRY_BASE", "10ms")
        .env("HIVELOG_RETRY_CAP", "200ms")
        .env("HIVELOG_FLUENT_ACK_TIMEOUT", "2s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(o) = overflow {
        cmd.env("HIVELOG_OVERFLOW", o);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || stdout.next().expect("the child ended early").unwrap();
    while !next().contains("FLOODED") {}
    proxy.heal();
    writeln!(child.stdin.take().unwrap(), "GO").unwrap();
    let report = loop {
        let line = next();
        if let Some(at) = line.find("REPORT ") {
            break line[at + 7..].to_owned();
        }
    };
    assert!(child.wait().unwrap().success());
    let n: Vec<u64> = report.split(' ').map(|v| v.parse().unwrap()).collect();
    let errors = receiver
        .events()
        .iter()
        .map(|e| to_json(&e.record))
        .filter(|r| r["level"] == "ERROR")
        .map(|r| r["i"].as_u64().unwrap())
        .collect();
    (n.try_into().unwrap(), errors)
}

#[test]
fn a_stalled_destination_under_a_flood_gets_every_error_after_it_recovers() {
    let ([dropped_error, dropped_info, dropped, pending, enqueued], errors) = flood(None);
    let all: BTreeSet<u64> = (0..EVENTS)
        .filter(|i| i % ERROR_EVERY == ERROR_EVERY - 1)
        .collect();
    assert_eq!(enqueued, EVENTS);
    assert!(
        dropped_info > EVENTS / 2,
        "the flood overflowed: {dropped_info}"
    );
    assert_eq!((dropped_error, dropped, pending), (0, dropped_info, 0));
    assert_eq!(errors, all, "every ERROR is delivered");
}

#[test]
fn the_same_flood_with_drop_newest_loses_errors() {
    let ([dropped_error, dropped_info, ..], errors) = flood(Some("drop_newest"));
    assert!(dropped_error > 0 && dropped_info > 0);
    assert_eq!(errors.len() as u64, EVENTS / ERROR_EVERY - dropped_error);
}

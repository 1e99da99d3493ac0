//! The disk buffer across process lifetimes (`HIVELOG_SPILL_DIR`), each run a child process
//! (this test binary re-executed with `HL_SPILL_CHILD=<case>`):
//!
//! - the destination is down while a service logs more than its memory budget and exits; it
//!   comes back; the next run sends everything, and the destination holds every event once
//!   (Elasticsearch through noida-db, Fluentd through the in-repo Forward receiver);
//! - `HIVELOG_SPILL_MODE=always` and SIGKILL mid-stream, once the segment files hold the last
//!   event logged (the sync task writes them within one `HIVELOG_SPILL_FSYNC` interval; the
//!   test waits for that, not for the interval), then a restart: nothing logged before the
//!   kill is missing, and Elasticsearch holds no duplicate although the replay resends events
//!   that had landed (a proxy forwards the first run's requests and cuts every answer, so
//!   nothing is ever acknowledged).
//!
//! Run with the servers: `scripts/test.sh -p hivelog-tests --test spill`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{es_documents, to_json, unique};
use hivelog_core::record::Value;
use hivelog_core::spill::codec;
use hivelog_core::spill::segment::{self, Frame};
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::peers::es_url;
use hivelog_tests::proxy::{FaultProxy, Mode};
use hivelog_tests::wait_until;

/// Settings of every child: a 64 KiB memory budget (a few hundred events), quick batches.
const BASE: &[(&str, &str)] = &[
    ("HIVELOG_OUTPUT", "none"),
    ("HIVELOG_SERVICE", "svc"),
    ("HIVELOG_BUFFER_BYTES", "64KiB"),
    ("HIVELOG_FLUSH_INTERVAL", "50ms"),
    ("HIVELOG_RETRY_BASE", "10ms"),
    ("HIVELOG_RETRY_CAP", "200ms"),
    ("HIVELOG_RETRY_MAX_ELAPSED", "60s"),
    ("HIVELOG_ES_TIMEOUT", "2s"),
];

fn child(case: &str, vars: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1"]);
    cmd.env_clear().env("HL_SPILL_CHILD", case);
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    for (k, v) in BASE {
        cmd.env(k, v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn run(case: &str, vars: &[(&str, String)]) -> Output {
    let out = child(case, vars).output().unwrap();
    assert!(
        out.status.success(),
        "child {case} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The child side: does what `HL_SPILL_CHILD` says.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_SPILL_CHILD") else {
        return;
    };
    let run = std::env::var("HL_RUN").unwrap();
    let n: u64 = std::env::var("HL_N").unwrap().parse().unwrap();
    if case == "disk-full" {
        // SAFETY: plain libc calls on this process, before any other thread writes files.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 10_000,
                rlim_max: 10_000,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
        let logs = hivelog::init();
        for seq in 0..n {
            tracing::info!(run = run.as_str(), seq, "event {seq}");
        }
        let report = logs.shutdown(Duration::from_millis(300));
        eprintln!("REPORT: {report}");
        return;
    }
    let logs = hivelog::init();
    match case.as_str() {
        // Logs `n` events, then shuts down within `HL_SHUTDOWN_MS` and prints the report.
        "log-and-exit" => {
            for seq in 0..n {
                tracing::info!(run = run.as_str(), seq, "event {seq}");
            }
            let ms: u64 = std::env::var("HL_SHUTDOWN_MS").unwrap().parse().unwrap();
            let report = logs.shutdown(Duration::from_millis(ms));
            eprintln!("REPORT: {report}");
        }
        // Logs `n` events at about 2 500/s, saying how far it got every 100, then waits to
        // be killed.
        "log-until-killed" => {
            use std::io::Write as _;
            for seq in 0..n {
                tracing::info!(run = run.as_str(), seq, "event {seq}");
                if seq % 100 == 99 {
                    println!("LOGGED {seq}");
                    std::io::stdout().flush().unwrap();
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
            std::thread::sleep(Duration::from_secs(600));
        }
        // Logs `n` events with files limited to 10 kB (a full disk: writes fail with EFBIG).
        "disk-full" => unreachable!("handled before init"),
        other => panic!("unknown case {other}"),
    }
}

/// `seq` → copies, for the events of `run`.
fn copies(records: &[serde_json::Value], run: &str) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r["run"] == run) {
        *out.entry(r["seq"].as_u64().unwrap()).or_insert(0) += 1;
    }
    out
}

fn segments(dir: &Path) -> Vec<(u64, u64)> {
    hivelog_core::spill::list(&dir.join("svc.elasticsearch"))
        .or_else(|_| hivelog_core::spill::list(&dir.join("svc.fluent")))
        .unwrap_or_default()
}

/// The `seq` of every event the segment files of `dir` hold, read as a restart would.
fn spilled_seqs(dir: &Path) -> BTreeSet<u64> {
    let folder = dir.join("svc.elasticsearch");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        if entry.path().extension() != Some("seg".as_ref()) {
            continue;
        }
        let Ok(data) = std::fs::read(entry.path()) else {
            continue; // deleted between the listing and the read
        };
        for frame in segment::frames(&data) {
            let Frame::Record(bytes) = frame else {
                continue;
            };
            let Ok(record) = codec::decode(bytes) else {
                continue;
            };
            for f in record.fields.iter().filter(|f| f.name == "seq") {
                if let Value::U64(seq) = f.value {
                    out.insert(seq);
                }
            }
        }
    }
    out
}

fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// A figure (`spilled`, `replayed`) of the report a child printed on stderr.
fn figure(out: &Output, name: &str) -> u64 {
    let err = String::from_utf8_lossy(&out.stderr);
    let report = err
        .lines()
        .find(|l| l.starts_with("REPORT: "))
        .unwrap_or_else(|| panic!("no report in: {err}"));
    let at = report
        .find(&format!(" {name} "))
        .unwrap_or_else(|| panic!("no {name} figure in: {report}"));
    report[at + name.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Down for the first run (3 000 events, about 10× the memory budget), back for the second.
fn outage_then_replay(first: Vec<(&str, String)>, second: Vec<(&str, String)>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let spill = ("HIVELOG_SPILL_DIR", dir.path().display().to_string());
    let mut first = first;
    first.extend([
        spill.clone(),
        ("HL_N", "3000".into()),
        ("HL_SHUTDOWN_MS", "500".into()),
    ]);
    let out = run("log-and-exit", &first);
    assert_eq!(
        figure(&out, "spilled"),
        3000,
        "every event went to disk, none dropped"
    );
    assert!(!segments(dir.path()).is_empty());

    let mut second = second;
    second.extend([
        spill,
        ("HL_N", "0".into()),
        ("HL_SHUTDOWN_MS", "30000".into()),
    ]);
    let out = run("log-and-exit", &second);
    assert_eq!(figure(&out, "replayed"), 3000);
    assert!(
        segments(dir.path()).is_empty(),
        "delivered segments are deleted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn elasticsearch_down_longer_than_memory_then_back_holds_every_event_once() {
    let index = unique("hl-spill");
    let run_id = unique("run");
    let common = |url: String| {
        vec![
            ("HIVELOG_ES_URL", url),
            ("HIVELOG_ES_INDEX", index.clone()),
            ("HL_RUN", run_id.clone()),
        ]
    };
    outage_then_replay(common(dead_url()), common(es_url()));
    let got = copies(&es_documents(&es_url(), &index), &run_id);
    assert_eq!(got.len(), 3000, "every event arrived");
    assert!(got.keys().copied().eq(0..3000));
    assert!(got.values().all(|c| *c == 1), "no duplicates");
}

#[test]
fn fluentd_down_longer_than_memory_then_back_receives_every_event() {
    let mut receiver = ForwardReceiver::down(ReceiverConfig::default());
    let run_id = unique("run");
    let common = || {
        vec![
            ("HIVELOG_FLUENT_ADDR", receiver.url()),
            ("HIVELOG_FLUENT_CONNECT_TIMEOUT", "500ms".to_owned()),
            ("HL_RUN", run_id.clone()),
        ]
    };
    let (first, second) = (common(), common());
    let dir = tempfile::tempdir().unwrap();
    let spill = ("HIVELOG_SPILL_DIR", dir.path().display().to_string());
    let mut vars = first;
    vars.extend([
        spill.clone(),
        ("HL_N", "3000".into()),
        ("HL_SHUTDOWN_MS", "500".into()),
    ]);
    let out = run("log-and-exit", &vars);
    assert_eq!(figure(&out, "spilled"), 3000);
    receiver.start_again();
    let mut vars = second;
    vars.extend([
        spill,
        ("HL_N", "0".into()),
        ("HL_SHUTDOWN_MS", "30000".into()),
    ]);
    let out = run("log-and-exit", &vars);
    assert_eq!(figure(&out, "replayed"), 3000);
    let records: Vec<_> = receiver
        .events()
        .iter()
        .map(|e| to_json(&e.record))
        .collect();
    let got = copies(&records, &run_id);
    assert!(got.keys().copied().eq(0..3000), "every event arrived");
    assert!(got.values().all(|c| *c == 1), "and once");
    assert!(segments(dir.path()).is_empty());
}

#[test]
fn a_full_disk_is_one_line_naming_the_folder_then_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        "disk-full",
        &[
            ("HIVELOG_ES_URL", dead_url()),
            ("HIVELOG_SPILL_DIR", dir.path().display().to_string()),
            ("HL_RUN", "full".into()),
            ("HL_N", "5000".into()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let folder = dir.path().join("svc.elasticsearch").display().to_string();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cannot write to the spill folder"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(&folder), "{}", lines[0]);
    assert!(figure(&out, "spilled") > 0);
    assert!(
        figure(&out, "dropped") > 0,
        "then memory only, overflow drops"
    );
}

#[test]
fn sigkill_in_always_mode_loses_nothing_the_segment_files_hold_and_stores_nothing_twice() {
    let index = unique("hl-kill");
    let run_id = unique("run");
    let dir = tempfile::tempdir().unwrap();
    // Requests reach Elasticsearch; answers never reach the child.
    let proxy = FaultProxy::start(common::addr_of(&es_url()));
    proxy.set(Mode::ResetOnAnswer);
    let mut vars = vec![
        ("HIVELOG_ES_URL", proxy.http_url()),
        ("HIVELOG_ES_INDEX", index.clone()),
        ("HIVELOG_SPILL_DIR", dir.path().display().to_string()),
        ("HIVELOG_SPILL_MODE", "always".into()),
        ("HIVELOG_SPILL_FSYNC", "1s".into()),
        ("HL_RUN", run_id.clone()),
        ("HL_N", "9000".into()),
    ];
    let mut proc = child("log-until-killed", &vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(proc.stdout.take().unwrap());
    let mut line = String::new();
    let logged = loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "child ended early"
        );
        let Some(seq) = line.trim().strip_prefix("LOGGED ") else {
            continue; // the test harness's own lines
        };
        let seq: u64 = seq.parse().unwrap();
        if seq >= 2000 {
            break seq;
        }
    };
    // The sync task hands what was logged to the files within one HIVELOG_SPILL_FSYNC
    // interval: wait until the segment files hold the last event logged, then kill.
    let written = wait_until(Duration::from_secs(30), || {
        spilled_seqs(dir.path()).contains(&logged)
    });
    assert!(written, "event {logged} never reached the segment files");
    proc.kill().unwrap();
    proc.wait().unwrap();
    let landed = copies(&es_documents(&es_url(), &index), &run_id).len();
    assert!(landed > 0, "some events landed before the kill");

    vars.retain(|(k, _)| *k != "HL_N" && *k != "HIVELOG_ES_URL");
    vars.push(("HIVELOG_ES_URL", es_url()));
    vars.extend([("HL_N", "0".into()), ("HL_SHUTDOWN_MS", "30000".into())]);
    let out = run("log-and-exit", &vars);
    assert!(
        figure(&out, "replayed") > 0,
        "what was not acknowledged is resent"
    );
    let got = copies(&es_documents(&es_url(), &index), &run_id);
    let missing: Vec<u64> = (0..=logged).filter(|s| !got.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "logged before the kill, lost: {missing:?}"
    );
    let doubled: Vec<_> = got.iter().filter(|(_, c)| **c > 1).collect();
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    assert!(segments(dir.path()).is_empty());
}

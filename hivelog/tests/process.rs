//! Behaviour of the installed global subscriber: each case runs in a child process (this test
//! binary re-executed with `HL_TEST_CHILD=<case>`), because `init` is once per process.

use std::process::{Command, Output};

use serde_json::Value;

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

fn json(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        // The test harness prints `test child_main ... ` before the first line.
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The child side: does what `HL_TEST_CHILD` says.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_TEST_CHILD") else {
        return;
    };
    match case.as_str() {
        "twice" => {
            let _g = hivelog::try_init().expect("first init works");
            let second = hivelog::try_init().err().expect("second init is an error");
            tracing::info!(second = %second, "after second init");
        }
        "log" => {
            let _g = hivelog::init();
            log::info!(target: "some_dependency::pool", "from the log crate {}", 42);
            log::debug!("filtered");
        }
        "panic" => {
            let _g = hivelog::init();
            std::thread::Builder::new()
                .name("worker-1".into())
                .spawn(|| panic!("boom {}", 7))
                .unwrap()
                .join()
                .ok();
            tracing::info!("still running");
        }
        "reentrant" => {
            struct Chatty;
            impl std::fmt::Debug for Chatty {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    tracing::info!(depth = 1, "logged from Debug");
                    f.write_str("Chatty")
                }
            }
            let _g = hivelog::init();
            tracing::info!(v = ?Chatty, "outer");
        }
        "bad-config" => {
            let _g = hivelog::init();
            tracing::info!("logged with defaults");
        }
        "file" => {
            let _g = hivelog::init();
            for i in 0..200 {
                tracing::info!(i, pad = %"x".repeat(100), "to file");
            }
        }
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn try_init_twice_is_an_error_not_a_second_subscriber() {
    let out = run_child("twice", &[]);
    let lines = json(&out.stdout);
    assert_eq!(lines.len(), 1, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(lines[0]["second"]
        .as_str()
        .unwrap()
        .contains("already initialized"));
}

#[test]
fn log_records_become_json_lines_with_their_logger_as_target() {
    let out = run_child(
        "log",
        &[(
            "HIVELOG_FIELDS",
            "level,loggerName=target,message,module,line",
        )],
    );
    let lines = json(&out.stdout);
    assert_eq!(lines.len(), 1, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines[0]["loggerName"], "some_dependency::pool");
    assert_eq!(lines[0]["message"], "from the log crate 42");
    assert_eq!(lines[0]["module"], "process");
    assert!(lines[0]["line"].as_u64().unwrap() > 0);
    assert!(lines[0].get("log.target").is_none());
}

#[test]
fn a_panic_is_one_error_event_and_the_previous_hook_still_runs() {
    let out = run_child("panic", &[("HIVELOG_FIELDS", "level,target,message")]);
    let lines = json(&out.stdout);
    assert_eq!(lines.len(), 2, "{}", String::from_utf8_lossy(&out.stdout));
    let p = &lines[0];
    assert_eq!(p["level"], "ERROR");
    assert_eq!(p["target"], "panic");
    assert_eq!(p["message"], "panicked: boom 7");
    assert_eq!(p["thread"], "worker-1");
    assert!(p["location"]
        .as_str()
        .unwrap()
        .starts_with("hivelog/tests/process.rs:"));
    assert!(p.get("backtrace").is_none());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "default hook ran"
    );
    let out = run_child("panic", &[("RUST_BACKTRACE", "1")]);
    assert!(json(&out.stdout)[0]["backtrace"]
        .as_str()
        .unwrap()
        .contains("process"));
}

#[test]
fn init_reports_a_bad_value_and_falls_back_to_defaults() {
    let out = run_child(
        "bad-config",
        &[("HIVELOG_TIMESTAMP", "rfc3339micro"), ("HIVELOG_LEVL", "x")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HIVELOG_TIMESTAMP: 'rfc3339micro' is not a timestamp format"),
        "{stderr}"
    );
    let lines = json(&out.stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "logged with defaults");
}

#[test]
fn unknown_variables_are_warned_about_once() {
    let out = run_child(
        "bad-config",
        &[
            ("HIVELOG_LEVL", "debug"),
            ("HIVELOG_FLUENT_ADR", "x"),
            ("HIVELOG_ES_LEVEL", "warn"),
            ("HIVELOG_ES_INDEX", "x"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("HIVELOG_LEVL is not a hivelog variable")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("HIVELOG_FLUENT_ADR"), "{stderr}");
    let es_level = if cfg!(feature = "elk") {
        "HIVELOG_ES_LEVEL is set but that sink is not enabled"
    } else {
        "HIVELOG_ES_LEVEL is set but this program was built without hivelog's `elk` feature"
    };
    assert!(stderr.contains(es_level), "{stderr}");
    if cfg!(feature = "elk") {
        assert!(
            stderr.contains("HIVELOG_ES_INDEX is set but that sink is not enabled"),
            "{stderr}"
        );
    }
}

#[test]
fn file_output_rotates_by_size_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.log");
    let spec = format!("file:{}", path.display());
    let out = run_child(
        "file",
        &[
            ("HIVELOG_OUTPUT", &spec),
            ("HIVELOG_FILE_ROTATION", "4KB"),
            ("HIVELOG_FILE_KEEP", "2"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.iter().all(|&b| b != b'{'), "nothing on stdout");
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "active + 2 kept: {files:?}");
    let mut total = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() <= 4000, "{f:?} is {} bytes", text.len());
        total += json(text.as_bytes()).len();
    }
    let active = json(std::fs::read_to_string(&path).unwrap().as_bytes());
    assert_eq!(
        active.last().unwrap()["i"],
        199,
        "the newest line is in the active file"
    );
    assert!(total < 200, "older files were pruned");
}

/// A value whose `Debug` logs: the event inside is captured while the outer one is being
/// captured, on the same thread, through the global dispatcher (a scoped one, as in
/// `with_default`, makes tracing drop such nested events before any subscriber sees them).
/// Both are written, each as one valid line, without a panic or a deadlock.
#[test]
fn an_event_logged_while_a_field_is_being_captured_is_written_too() {
    let out = run_child("reentrant", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json(&out.stdout);
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["logged from Debug", "outer"], "{lines:?}");
    assert_eq!(lines[0]["depth"], 1);
    assert_eq!(lines[1]["v"], "Chatty");
}

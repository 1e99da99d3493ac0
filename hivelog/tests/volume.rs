//! Volume control at run time, in child processes (this test binary re-executed with
//! `HL_TEST_CHILD=<case>`, since `init` is once per process): the level file and
//! `hivelog::set_level`, and the per-callsite rate limit.
//!
//! Events and hivelog's own notices both go to stderr (`HIVELOG_OUTPUT=stderr`), so one
//! stream orders them: the notice of a level change is written before the change applies,
//! and the tests sequence on it, never on time.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

use serde_json::Value;

fn spawn_child(case: &str, vars: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_main", "--nocapture", "--test-threads=1"]);
    cmd.env_clear().env("HL_TEST_CHILD", case);
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// One stderr line: an event (parsed) or hivelog's own notice.
#[derive(Debug)]
enum Line {
    Event(Value),
    Notice(String),
}

impl Line {
    fn level(&self) -> Option<&str> {
        match self {
            Line::Event(v) => v["level"].as_str(),
            Line::Notice(_) => None,
        }
    }
}

struct Stream {
    lines: Lines<BufReader<ChildStderr>>,
}

impl Stream {
    fn of(child: &mut Child) -> Stream {
        Stream {
            lines: BufReader::new(child.stderr.take().unwrap()).lines(),
        }
    }

    /// Reads lines until `stop` holds for one (returned last), failing after `max` lines.
    fn until(&mut self, max: usize, stop: impl Fn(&Line) -> bool) -> Vec<Line> {
        self.read(max, stop, true)
    }

    /// Reads exactly `n` lines.
    fn take(&mut self, n: usize) -> Vec<Line> {
        self.read(n, |_| false, false)
    }

    fn read(&mut self, max: usize, stop: impl Fn(&Line) -> bool, must_stop: bool) -> Vec<Line> {
        let mut seen = Vec::new();
        for _ in 0..max {
            let Some(Ok(text)) = self.lines.next() else {
                panic!("the child's stderr ended; read: {seen:#?}");
            };
            let line = match text.find('{') {
                Some(0) => Line::Event(
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
                ),
                _ => Line::Notice(text),
            };
            let done = stop(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
        assert!(
            !must_stop,
            "no matching line in {max} lines; the last: {:#?}",
            seen.last()
        );
        seen
    }
}

fn notice(line: &Line, part: &str) -> bool {
    matches!(line, Line::Notice(t) if t.contains(part))
}

/// Replaces the file's contents at once (a reader never sees it half written).
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The child side: does what `HL_TEST_CHILD` says.
#[test]
fn child_main() {
    let Ok(case) = std::env::var("HL_TEST_CHILD") else {
        return;
    };
    match case.as_str() {
        // Logs a DEBUG and an INFO event per iteration until killed.
        "level-loop" => {
            let _g = hivelog::init();
            for i in 0..1_000_000u64 {
                tracing::debug!(i, "d");
                tracing::info!(i, "i");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        "set-level-log" => {
            let _g = hivelog::init();
            log::debug!("log debug before");
            tracing::debug!("tracing debug before");
            let bad = hivelog::set_level("debug,my_crate=loud").unwrap_err();
            tracing::info!(error = %bad, "rejected");
            log::debug!("log debug still hidden");
            hivelog::set_level("debug").unwrap();
            log::debug!("log debug after");
            tracing::debug!("tracing debug after");
            tracing::info!(current = hivelog::level().unwrap(), "now");
        }
        // Four threads storm one callsite while another logs a little.
        "storm" => {
            let _g = hivelog::init();
            let storm: Vec<_> = (0..4)
                .map(|t| {
                    std::thread::spawn(move || {
                        for i in 0..5000 {
                            storm_callsite(t, i);
                        }
                    })
                })
                .collect();
            for i in 0..20 {
                tracing::info!(i, "quiet");
            }
            for t in storm {
                t.join().unwrap();
            }
        }
        "max-level" => {
            use tracing::level_filters::LevelFilter;
            let _g = hivelog::init();
            let both = || format!("{}/{}", LevelFilter::current(), log::max_level());
            let at_start = both();
            hivelog::set_level("debug").unwrap();
            let raised = both();
            hivelog::set_level("info").unwrap();
            tracing::info!(
                at_start,
                raised,
                tracing = %LevelFilter::current(),
                log = %log::max_level(),
                "back"
            );
        }
        // Built, not installed: the level is set from a thread outside the dispatch's scope.
        "scoped" => {
            let (dispatch, guard) = hivelog::builder()
                .output(hivelog::Output::Stderr)
                .try_build()
                .unwrap();
            std::thread::scope(|s| {
                s.spawn(|| guard.set_level("debug").unwrap());
            });
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::debug!("debug after");
                tracing::info!(max = %tracing::level_filters::LevelFilter::current(), "info after");
            });
        }
        // The `log` crate: one noisy call site in a dependency, one quiet one.
        "log-storm" => {
            let _g = hivelog::init();
            for i in 0..3000 {
                log::warn!(target: "dep::pool", "retry {i}");
                if i % 100 == 0 {
                    log::warn!(target: "dep::pool", "checked {i}");
                }
            }
        }
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn a_level_file_change_applies_while_the_child_logs_and_a_bad_file_keeps_the_level() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("level");
    let file_str = file.to_str().unwrap();
    let mut child = spawn_child(
        "level-loop",
        &[
            ("HIVELOG_LEVEL", "info"),
            ("HIVELOG_LEVEL_FILE", file_str),
            ("HIVELOG_OUTPUT", "stderr"),
            ("HIVELOG_FIELDS", "level,message"),
        ],
    );
    let mut out = Stream::of(&mut child);

    // No file: HIVELOG_LEVEL (info) applies.
    let before = out.until(1000, |l| matches!(l, Line::Event(v) if v["i"] == 20));
    assert!(
        before.iter().all(|l| l.level() == Some("INFO")),
        "{before:#?}"
    );

    write_atomically(&file, "# raised for an incident\ndebug\n");
    let until_debug = out.until(20_000, |l| l.level() == Some("DEBUG"));
    let notices: Vec<_> = until_debug
        .iter()
        .filter(|l| matches!(l, Line::Notice(_)))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert!(
        notice(
            notices[0],
            &format!("level changed to 'debug' (from HIVELOG_LEVEL_FILE {file_str})")
        ),
        "{notices:#?}"
    );
    let at = until_debug
        .iter()
        .position(|l| matches!(l, Line::Notice(_)));
    assert!(
        until_debug[..at.unwrap()]
            .iter()
            .all(|l| l.level() == Some("INFO")),
        "a DEBUG line came before the change was announced"
    );

    // Invalid contents: one line naming the file and the problem; DEBUG lines go on.
    write_atomically(&file, "debug,my_crate=loud\n");
    let until_error = out.until(20_000, |l| notice(l, "is not a level filter"));
    let Some(Line::Notice(error)) = until_error.last() else {
        unreachable!()
    };
    assert!(
        error.starts_with(&format!(
            "hivelog: HIVELOG_LEVEL_FILE {file_str}: 'debug,my_crate=loud' is not a level filter"
        )),
        "{error}"
    );
    assert!(error.ends_with("the level stays 'debug'"), "{error}");
    // The same bad contents are not reported again, and the level stays: DEBUG lines go on.
    let after = out.take(2000);
    assert!(
        after.iter().all(|l| !matches!(l, Line::Notice(_))),
        "{:#?}",
        after
            .iter()
            .filter(|l| matches!(l, Line::Notice(_)))
            .collect::<Vec<_>>()
    );
    let debug = after.iter().filter(|l| l.level() == Some("DEBUG")).count();
    assert!(debug >= 900, "{debug} DEBUG lines of 2000");

    // An emptied file means HIVELOG_LEVEL again.
    write_atomically(&file, "\n");
    out.until(20_000, |l| {
        notice(
            l,
            &format!(
                "level changed to 'info' (from {file_str} is missing or empty, so HIVELOG_LEVEL)"
            ),
        )
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn set_level_checks_the_directives_and_moves_log_records_too() {
    let mut child = spawn_child(
        "set-level-log",
        &[
            ("HIVELOG_OUTPUT", "stderr"),
            // The notices are written at once; sync lines keep their place among them.
            ("HIVELOG_OUTPUT_MODE", "sync"),
            ("HIVELOG_FIELDS", "level,message"),
        ],
    );
    let mut out = Stream::of(&mut child);
    let lines = out.until(
        100,
        |l| matches!(l, Line::Event(v) if v["message"] == "now"),
    );
    child.wait().unwrap();
    let text: Vec<String> = lines
        .iter()
        .map(|l| match l {
            Line::Event(v) => format!(
                "{} {}",
                v["level"].as_str().unwrap(),
                v["message"].as_str().unwrap()
            ),
            Line::Notice(t) => t.clone(),
        })
        .collect();
    assert_eq!(
        text,
        [
            "INFO rejected",
            "hivelog: level changed to 'debug' (from hivelog::set_level)",
            "DEBUG log debug after",
            "DEBUG tracing debug after",
            "INFO now",
        ],
        "{lines:#?}"
    );
    let Line::Event(rejected) = &lines[0] else {
        unreachable!()
    };
    assert!(
        rejected["error"].as_str().unwrap().starts_with(
            "hivelog::set_level: 'debug,my_crate=loud' is not a level filter; expected"
        ),
        "{rejected}"
    );
    let Line::Event(now) = &lines[4] else {
        unreachable!()
    };
    assert_eq!(now["current"], "debug");
}

fn storm_callsite(thread: u32, i: u32) {
    tracing::warn!(thread, i, "retrying");
}

#[test]
fn a_storm_from_one_callsite_is_limited_and_counted_exactly_and_others_are_untouched() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env("HL_TEST_CHILD", "storm")
        .env("HIVELOG_RATE_LIMIT", "100/s")
        .env("HIVELOG_FIELDS", "level,target,message,file,line")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let storm: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "retrying")
        .collect();
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("suppressed").is_some())
        .collect();
    let quiet = lines.iter().filter(|l| l["message"] == "quiet").count();
    assert_eq!(quiet, 20, "{text}");
    assert!(!summaries.is_empty(), "{text}");
    assert!(
        storm.len() >= 100,
        "at least one window's worth: {}",
        storm.len()
    );
    let suppressed: u64 = summaries
        .iter()
        .map(|s| s["suppressed"].as_u64().expect("an integer"))
        .sum();
    assert_eq!(
        storm.len() as u64 + suppressed,
        20_000,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let site = storm[0];
    for s in &summaries {
        assert!(s["suppressed"].as_u64().unwrap() > 0);
        assert_eq!(
            (&s["level"], &s["target"]),
            (&site["level"], &site["target"])
        );
        assert_eq!((&s["file"], &s["line"]), (&site["file"], &site["line"]));
        assert_eq!(
            s["callsite"],
            format!("{}:{}", site["file"].as_str().unwrap(), site["line"])
        );
        assert!(s["message"].as_str().unwrap().contains("suppressed"), "{s}");
    }
    assert_eq!(lines.len(), storm.len() + summaries.len() + quiet, "{text}");
}

#[test]
fn a_level_file_present_at_start_sets_the_first_level_and_a_bad_or_empty_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("level");
    let start = |contents: Option<&str>| {
        if let Some(c) = contents {
            std::fs::write(&file, c).unwrap();
        }
        let env = hivelog::Env::from_pairs([
            ("HIVELOG_LEVEL", "info"),
            ("HIVELOG_LEVEL_FILE", file.to_str().unwrap()),
        ]);
        let (_, guard) = hivelog::builder()
            .env(env)
            .output(hivelog::Output::None)
            .try_build()
            .unwrap();
        guard.level().unwrap()
    };
    assert_eq!(start(None), "info", "no file yet");
    assert_eq!(
        start(Some("# quiet\nwarn\nmy_crate::db=debug\n")),
        "warn,my_crate::db=debug"
    );
    assert_eq!(
        start(Some("warn,my_crate=loud")),
        "info",
        "invalid: HIVELOG_LEVEL"
    );
    assert_eq!(start(Some(" \n")), "info", "empty: HIVELOG_LEVEL");
}

#[test]
fn a_bad_rate_limit_names_the_accepted_forms() {
    for v in ["100", "100/h", "0/s", "x/s", "-1/m"] {
        let env = hivelog::Env::from_pairs([("HIVELOG_RATE_LIMIT", v)]);
        let err = hivelog::builder().env(env).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("HIVELOG_RATE_LIMIT: '{v}' is not a rate limit; expected a number of events per second or minute, such as 100/s or 600/m")
        );
    }
    for v in ["100/s", " 600 / m "] {
        let env = hivelog::Env::from_pairs([("HIVELOG_RATE_LIMIT", v)]);
        hivelog::builder().env(env).validate().unwrap();
    }
}

#[test]
fn after_a_change_and_back_the_max_levels_of_tracing_and_log_are_the_static_ones_again() {
    let mut child = spawn_child(
        "max-level",
        &[("HIVELOG_OUTPUT", "stderr"), ("HIVELOG_LEVEL", "info")],
    );
    let mut out = Stream::of(&mut child);
    let lines = out.until(
        100,
        |l| matches!(l, Line::Event(v) if v["message"] == "back"),
    );
    child.wait().unwrap();
    let Some(Line::Event(back)) = lines.last() else {
        unreachable!()
    };
    assert_eq!(
        (
            &back["at_start"],
            &back["raised"],
            &back["tracing"],
            &back["log"]
        ),
        (
            &"info/INFO".into(),
            &"debug/DEBUG".into(),
            &"info".into(),
            &"INFO".into()
        ),
        "{back}"
    );
}

#[test]
fn set_level_from_another_thread_works_for_a_subscriber_that_is_not_installed() {
    let mut child = spawn_child(
        "scoped",
        &[
            ("HIVELOG_LEVEL", "info"),
            ("HIVELOG_FIELDS", "level,message"),
        ],
    );
    let mut out = Stream::of(&mut child);
    let lines = out.until(
        100,
        |l| matches!(l, Line::Event(v) if v["message"] == "info after"),
    );
    child.wait().unwrap();
    let events: Vec<&Value> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Event(v) => Some(v),
            Line::Notice(_) => None,
        })
        .collect();
    assert_eq!(events.len(), 2, "{lines:#?}");
    assert_eq!(events[0]["message"], "debug after");
    assert_eq!(events[1]["max"], "debug");
}

#[test]
fn the_report_names_the_levels_that_lost_events() {
    let mut stats = hivelog::Stats {
        sink: "fluent",
        enqueued: 10,
        delivered: 7,
        dropped_overflow: 3,
        ..Default::default()
    };
    stats.dropped_by_level.add(tracing::Level::INFO, 2);
    stats.dropped_by_level.add(tracing::Level::ERROR, 1);
    let report = hivelog::Report {
        local: None,
        sinks: vec![stats],
        ..Default::default()
    };
    assert_eq!(
        report.to_string(),
        "fluent: delivered 7, pending 0, dropped 3, rejected 0, failed 0 (dropped ERROR 1, INFO 2)"
    );
}

#[test]
fn log_records_are_limited_per_call_site() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env("HL_TEST_CHILD", "log-storm")
        .env("HIVELOG_RATE_LIMIT", "50/m")
        .env("HIVELOG_FIELDS", "level,target,message,file,line")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let retries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"].as_str().unwrap().starts_with("retry "))
        .collect();
    let checks = lines
        .iter()
        .filter(|l| l["message"].as_str().unwrap().starts_with("checked "))
        .count();
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("suppressed").is_some())
        .collect();
    // One window (a minute): the first 50 retries, one summary with the rest at shutdown.
    assert_eq!(
        (retries.len(), checks, summaries.len()),
        (50, 30, 1),
        "{text}"
    );
    let s = summaries[0];
    assert_eq!(s["suppressed"], 2950);
    assert_eq!(
        (&s["level"], &s["target"]),
        (&"WARN".into(), &"dep::pool".into())
    );
    assert_eq!(
        (&s["file"], &s["line"]),
        (&retries[0]["file"], &retries[0]["line"])
    );
    assert_eq!(
        s["callsite"],
        format!(
            "{}:{}",
            retries[0]["file"].as_str().unwrap(),
            retries[0]["line"]
        )
    );
}

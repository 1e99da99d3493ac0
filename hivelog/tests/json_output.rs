//! What a service's log lines look like: parsed back from the output, never string-matched.

mod support;

use std::error::Error;
use std::fmt;

use serde_json::{json, Value};
use support::{json_lines, json_lines_with, keys, raw};
use tracing::{info, info_span, warn};

const FIRST_USERS: &str =
    "timestamp=timestamp,loggerName=target,level=level,message=message,function=span,module=module,line=line";

#[test]
fn default_lines_have_the_basic_fields_then_the_event_fields_with_their_types() {
    let lines = json_lines(&[], || {
        info!(user = "a@b.c", count = 3, ratio = 0.5, ok = true, neg = -7, shown = %"disp", dbg = ?vec![1, 2], "article hit");
    });
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(
        keys(l),
        [
            "timestamp",
            "level",
            "target",
            "message",
            "user",
            "count",
            "ratio",
            "ok",
            "neg",
            "shown",
            "dbg"
        ]
    );
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["target"], "json_output");
    assert_eq!(l["message"], "article hit");
    assert_eq!(l["user"], "a@b.c");
    assert_eq!(l["count"], 3);
    assert_eq!(l["ratio"], 0.5);
    assert_eq!(l["ok"], true);
    assert_eq!(l["neg"], -7);
    assert_eq!(l["shown"], "disp");
    assert_eq!(l["dbg"], "[1, 2]");
    let ts = l["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2025-03-31T15:45:10.621Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T');
}

#[tracing::instrument]
fn handle_hit(id: u32) {
    info!("in handler");
}

#[test]
fn first_users_mapping_produces_exactly_their_keys() {
    let lines = json_lines(&[("HIVELOG_FIELDS", FIRST_USERS)], || handle_hit(7));
    let l = &lines[0];
    assert_eq!(
        keys(l),
        [
            "timestamp",
            "loggerName",
            "level",
            "message",
            "function",
            "module",
            "line",
            "id"
        ]
    );
    assert_eq!(l["function"], "handle_hit");
    assert_eq!(l["module"], "json_output");
    assert!(l["line"].as_u64().unwrap() > 0);
    assert_eq!(l["id"], 7);
}

#[test]
fn all_attrs_resolve() {
    let fields = "ts=timestamp,lvl=level,t=target,m=message,mod=module,f=file,l=line,s=span,ss=spans,th=thread,tid=thread_id,p=pid,h=hostname,svc=service";
    let lines = json_lines(
        &[("HIVELOG_FIELDS", fields), ("HIVELOG_SERVICE", "checkout")],
        || {
            info_span!("outer").in_scope(|| info_span!("inner").in_scope(|| info!("x")));
        },
    );
    let l = &lines[0];
    assert_eq!(l["f"], "hivelog/tests/json_output.rs");
    assert_eq!(l["s"], "inner");
    assert_eq!(l["ss"], json!(["outer", "inner"]));
    assert!(l["th"].as_str().unwrap().contains("all_attrs_resolve"));
    assert!(l["tid"].as_u64().unwrap() > 0);
    assert_eq!(l["p"], std::process::id());
    assert!(!l["h"].as_str().unwrap().is_empty());
    assert_eq!(l["svc"], "checkout");
}

#[test]
fn extras_from_pairs_json_and_code_with_env_overriding_code() {
    let lines = json_lines_with(
        hivelog::builder().extra("env", "dev").extra("team", "blue"),
        &[("HIVELOG_EXTRA", "env=prod,region=eu-west-1")],
        || info!("x"),
    );
    assert_eq!(lines[0]["env"], "prod");
    assert_eq!(lines[0]["team"], "blue");
    assert_eq!(lines[0]["region"], "eu-west-1");
    let lines = json_lines(
        &[(
            "HIVELOG_EXTRA",
            r#"{"build": 42, "canary": false, "tags": ["a"]}"#,
        )],
        || info!("x"),
    );
    assert_eq!(lines[0]["build"], 42);
    assert_eq!(lines[0]["canary"], false);
    assert_eq!(lines[0]["tags"], json!(["a"]));
}

#[test]
fn span_fields_are_flattened_inner_over_outer_and_event_over_span() {
    let lines = json_lines(&[], || {
        let outer = info_span!("request", request_id = "r1", user = "outer", depth = 1);
        let _o = outer.enter();
        let inner = info_span!("db", depth = 2, table = "articles");
        let _i = inner.enter();
        info!(user = "event", "query");
    });
    let l = &lines[0];
    assert_eq!(l["user"], "event");
    assert_eq!(l["depth"], 2);
    assert_eq!(l["table"], "articles");
    assert_eq!(l["request_id"], "r1");
    assert_eq!(keys(l).iter().filter(|k| *k == "user").count(), 1);
}

#[test]
fn fields_recorded_on_a_span_later_show_up() {
    let lines = json_lines(&[], || {
        let span = info_span!("request", user_id = tracing::field::Empty);
        let _e = span.enter();
        span.record("user_id", 99);
        info!("after record");
    });
    assert_eq!(lines[0]["user_id"], 99);
}

#[test]
fn colliding_event_fields_are_kept_under_fields_prefix() {
    let lines = json_lines(&[("HIVELOG_EXTRA", "service=svc")], || {
        info!(
            level = "custom",
            target = 5,
            service = "mine",
            "real message"
        );
    });
    let l = &lines[0];
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["target"], "json_output");
    assert_eq!(l["service"], "svc");
    assert_eq!(l["message"], "real message");
    assert_eq!(l["fields.level"], "custom");
    assert_eq!(l["fields.target"], 5);
    assert_eq!(l["fields.service"], "mine");
}

#[derive(Debug)]
struct Inner;
impl fmt::Display for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection refused")
    }
}
impl Error for Inner {}

#[derive(Debug)]
struct Middle(Inner);
impl fmt::Display for Middle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pool exhausted")
    }
}
impl Error for Middle {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[derive(Debug)]
struct Outer(Middle);
impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot save article")
    }
}
impl Error for Outer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn errors_carry_their_whole_source_chain() {
    let e = Outer(Middle(Inner));
    let lines = json_lines(&[], || {
        warn!(error = &e as &dyn Error, after = 1, "save failed")
    });
    let l = &lines[0];
    assert_eq!(
        l["error"],
        json!({"message": "cannot save article", "type": "Outer", "sources": ["pool exhausted", "connection refused"]})
    );
    assert_eq!(l["after"], 1);
}

#[test]
fn ecs_schema_has_the_required_keys_first_in_order_and_ecs_errors() {
    let e = Outer(Middle(Inner));
    let lines = json_lines(
        &[("HIVELOG_SCHEMA", "ecs"), ("HIVELOG_SERVICE", "webapp")],
        || warn!(error = &e as &dyn Error, "save failed"),
    );
    let l = &lines[0];
    // ecs-logging spec: @timestamp, log.level, message first; ecs.version required.
    assert_eq!(
        &keys(l)[..4],
        ["@timestamp", "log.level", "message", "ecs.version"]
    );
    assert_eq!(l["log.level"], "WARN");
    assert_eq!(l["log.logger"], "json_output");
    assert_eq!(l["log.origin.file.name"], "hivelog/tests/json_output.rs");
    assert!(l["log.origin.file.line"].is_u64());
    assert_eq!(l["service.name"], "webapp");
    assert_eq!(l["error.type"], "Outer");
    assert_eq!(l["error.message"], "cannot save article");
    assert_eq!(
        l["error.stack_trace"],
        "cannot save article\nCaused by: pool exhausted\nCaused by: connection refused"
    );
    assert!(l["@timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn timestamp_formats() {
    let get = |fmt: &str| {
        json_lines(&[("HIVELOG_TIMESTAMP", fmt)], || info!("x"))[0]["timestamp"].clone()
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ms = get("epoch_ms").as_u64().unwrap();
    assert!(ms.abs_diff(now_ms) < 60_000);
    let ns = get("epoch_ns").as_u64().unwrap();
    assert!((ns / 1_000_000).abs_diff(now_ms) < 60_000);
    let rfc_ns = get("rfc3339ns");
    assert_eq!(
        rfc_ns.as_str().unwrap().len(),
        "2025-03-31T15:45:10.621734512Z".len()
    );
}

#[test]
fn redacted_fields_print_as_redacted_in_events_spans_and_errors() {
    let lines = json_lines(&[("HIVELOG_REDACT", "password,token")], || {
        let s = info_span!("login", token = "span-secret");
        let _e = s.enter();
        info!(password = "hunter2", user = "a", "login");
    });
    let l = &lines[0];
    assert_eq!(l["password"], "[redacted]");
    assert_eq!(l["token"], "[redacted]");
    assert_eq!(l["user"], "a");
    assert!(!l.to_string().contains("hunter2") && !l.to_string().contains("span-secret"));
}

#[test]
fn hostile_values_never_break_a_line() {
    let nasty =
        "quote\" backslash\\ newline\n tab\t nul\0 bell\x07 esc\x1b del\x7f unicode é 🦀 \u{2028}";
    let lines = json_lines(&[], || {
        info!(
            nasty,
            nan = f64::NAN,
            inf = f64::INFINITY,
            ninf = f64::NEG_INFINITY,
            big = u64::MAX,
            small = i64::MIN,
            huge = 1u128 << 100,
            "{nasty}"
        );
        info!(dbg = ?"\u{d7ff}\u{fffd}", "debug of odd strings");
    });
    assert_eq!(lines.len(), 2);
    let l = &lines[0];
    assert_eq!(l["nasty"], nasty);
    assert_eq!(l["message"], nasty);
    assert_eq!(l["nan"], Value::Null);
    assert_eq!(l["inf"], Value::Null);
    assert_eq!(l["ninf"], Value::Null);
    assert_eq!(l["big"], u64::MAX);
    assert_eq!(l["small"], i64::MIN);
    assert_eq!(l["huge"], (1u128 << 100).to_string());
}

#[test]
fn a_ten_megabyte_value_is_cut_at_the_limit_and_marked() {
    let big = "é".repeat(5 * 1024 * 1024); // 10 MiB of 2-byte chars
    let text = raw(hivelog::builder(), &[], || info!(big = %big, "big"));
    assert!(
        text.len() < 1024 * 1024 + 4096,
        "line is {} bytes",
        text.len()
    );
    let l = &support::parse(&text)[0];
    assert_eq!(l["truncated"], true);
    let cut = l["big"].as_str().unwrap();
    assert!(cut.len() > 1000 && cut.chars().all(|c| c == 'é'));

    let lines = json_lines(
        &[("HIVELOG_MAX_EVENT_BYTES", "4KiB")],
        || info!(big = %big, "big"),
    );
    assert!(lines[0]["big"].as_str().unwrap().len() <= 4096);
    let lines = json_lines(&[], || info!(small = "x", "small"));
    assert!(lines[0].get("truncated").is_none());
}

#[test]
fn deeply_nested_spans_are_fine() {
    fn nest(n: usize) {
        if n == 0 {
            info!("deep");
        } else {
            info_span!("level", n).in_scope(|| nest(n - 1));
        }
    }
    let lines = json_lines(&[("HIVELOG_FIELDS", "message,spans")], || nest(500));
    assert_eq!(lines[0]["spans"].as_array().unwrap().len(), 500);
    assert_eq!(lines[0]["n"], 1);
}

#[test]
fn lines_from_many_threads_never_interleave() {
    let text = raw(hivelog::builder(), &[], || {
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::scope(|s| {
            for t in 0..8 {
                let d = dispatch.clone();
                s.spawn(move || {
                    tracing::dispatcher::with_default(&d, || {
                        for i in 0..500 {
                            info!(t, i, pad = %"x".repeat(300), "line");
                        }
                    })
                });
            }
        });
    });
    let lines = support::parse(&text);
    assert_eq!(lines.len(), 8 * 500);
}

#[test]
fn level_filters_apply_with_hivelog_level_over_rust_log() {
    let lines = json_lines(&[("HIVELOG_LEVEL", "warn"), ("RUST_LOG", "trace")], || {
        info!("no");
        warn!("yes");
    });
    assert_eq!(lines.len(), 1);
    let lines = json_lines(&[("RUST_LOG", "debug")], || tracing::debug!("yes"));
    assert_eq!(lines.len(), 1);
    let lines = json_lines(
        &[("HIVELOG_LEVEL", "warn,json_output::inner=debug")],
        || {
            tracing::debug!(target: "json_output::inner", "yes");
            tracing::debug!("no");
        },
    );
    assert_eq!(lines.len(), 1);
}

#[test]
fn pretty_format_is_one_readable_line_per_event() {
    let text = raw(
        hivelog::builder(),
        &[("HIVELOG_FORMAT", "pretty"), ("HIVELOG_REDACT", "pw")],
        || {
            let s = info_span!("req", id = 3);
            let _e = s.enter();
            info!(user = "a@b.c", pw = "secret", "hello\nforged line");
        },
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(
            " INFO json_output: hello\\nforged line user=\"a@b.c\" pw=[redacted] in req{id=3}"
        ),
        "{text}"
    );
    assert!(!text.contains("secret") && !text.contains('\x1b'));
}

#[test]
fn the_heartbeat_reports_the_counters_periodically_until_shutdown() {
    let buf = support::Buf::default();
    let env = hivelog::Env::from_pairs([("HIVELOG_HEARTBEAT", "1s")]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || info!("work"));
    std::thread::sleep(std::time::Duration::from_millis(2300));
    drop(guard);
    let beats: Vec<_> = support::parse(&buf.text())
        .into_iter()
        .filter(|l| l["message"] == "hivelog.heartbeat")
        .collect();
    assert_eq!(beats.len(), 2, "{}", buf.text());
    assert_eq!(beats[0]["target"], "hivelog");
    assert_eq!(beats[0]["written"], 1);
    assert_eq!(beats[1]["written"], 2);
    assert!(beats[0]["dropped"].is_u64() && beats[0]["pending"].is_u64());
    // The local output's own figures: nothing dropped, failed or still queued.
    assert_eq!(
        (
            &beats[0]["local_dropped"],
            &beats[0]["write_failed"],
            &beats[0]["local_pending"]
        ),
        (&Value::from(0), &Value::from(0), &Value::from(0))
    );
    for level in ["error", "warn", "info", "debug", "trace"] {
        assert_eq!(beats[0][format!("dropped_{level}")], 0, "{}", beats[0]);
    }
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let after = support::parse(&buf.text())
        .iter()
        .filter(|l| l["message"] == "hivelog.heartbeat")
        .count();
    assert_eq!(after, 2, "no heartbeat after shutdown");
}

#[test]
fn a_renamed_field_never_lands_on_a_key_that_is_already_written() {
    let text = raw(hivelog::builder(), &[], || {
        info!(fields.target = true, target = 5, "m");
        info!(truncated = "mine", big = %"x".repeat(2 << 20), "cut");
    });
    // A JSON map parser keeps one of two equal keys; count them in the raw lines instead.
    let (first, second) = text.split_once('\n').unwrap();
    assert_eq!(first.matches("\"fields.target\":").count(), 1, "{first}");
    assert_eq!(
        first.matches("\"fields.fields.target\":").count(),
        1,
        "{first}"
    );
    assert_eq!(second.matches("\"truncated\":").count(), 1, "{second}");
    let lines = support::parse(&text);
    assert_eq!(lines[0]["fields.target"], true);
    assert_eq!(lines[0]["fields.fields.target"], 5);
    assert_eq!(lines[1]["truncated"], true);
    assert_eq!(lines[1]["fields.truncated"], "mine");
}

/// `Span::record` on a parent after a child span exists: the child's later events carry the
/// new value (as tracing-subscriber's do), events logged before keep the old one, and a
/// grandchild sees a second record on the root.
#[test]
fn a_span_recorded_after_its_children_were_created_shows_the_new_value_in_them() {
    let lines = json_lines(&[], || {
        let request = info_span!("request", status = tracing::field::Empty, user = "a");
        let _r = request.enter();
        let db = info_span!("db", query = "select");
        db.in_scope(|| info!("before"));
        request.record("status", 200);
        db.in_scope(|| info!("after"));
        let row = db.in_scope(|| info_span!("row", n = 1));
        request.record("user", "b");
        row.in_scope(|| info!("deep"));
        db.in_scope(|| info!("db again"));
        info!("in request");
    });
    let by_message = |m: &str| {
        lines
            .iter()
            .find(|l| l["message"] == m)
            .unwrap_or_else(|| panic!("no {m:?} in {lines:?}"))
    };
    let before = by_message("before");
    assert!(before.get("status").is_none(), "{before}");
    assert_eq!(
        (&before["user"], &before["query"]),
        (&json!("a"), &json!("select"))
    );
    let after = by_message("after");
    assert_eq!(
        (&after["status"], &after["user"]),
        (&json!(200), &json!("a")),
        "{after}"
    );
    let deep = by_message("deep");
    assert_eq!(
        (&deep["status"], &deep["user"], &deep["query"], &deep["n"]),
        (&json!(200), &json!("b"), &json!("select"), &json!(1)),
        "{deep}"
    );
    for m in ["db again", "in request"] {
        let l = by_message(m);
        assert_eq!(
            (&l["status"], &l["user"]),
            (&json!(200), &json!("b")),
            "{l}"
        );
    }
}

/// The capture remembers the last event's span per thread (to skip the registry on the next
/// event in it): every event must still carry its own span's fields, span after span.
#[test]
fn each_event_carries_its_own_span_when_spans_come_and_go_on_a_thread() {
    let lines = json_lines(&[], || {
        for i in 0..1000 {
            let span = info_span!("request", i);
            let _e = span.enter();
            info!("hit");
            let inner = info_span!("db", j = i);
            inner.in_scope(|| info!("query"));
            info!("done");
        }
        info!("outside");
    });
    assert_eq!(lines.len(), 3001);
    for (n, l) in lines[..3000].iter().enumerate() {
        let i = (n / 3) as u64;
        assert_eq!(l["i"], i, "{l}");
        let in_db = l["message"] == "query";
        assert_eq!(l.get("j").is_some(), in_db, "{l}");
        if in_db {
            assert_eq!(l["j"], i, "{l}");
        }
    }
    assert!(lines[3000].get("i").is_none(), "{}", lines[3000]);
}

/// Two subscribers on one thread (say, a test harness's and the service's): their registries
/// give the same ids to different spans, and each event keeps its own subscriber's span.
#[test]
fn two_subscribers_on_one_thread_never_mix_their_spans() {
    let (a, b) = (support::Buf::default(), support::Buf::default());
    let build = |buf: &support::Buf| {
        hivelog::builder()
            .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
            .writer(buf.clone())
            .try_build()
            .expect("valid configuration")
    };
    let ((da, ga), (db, gb)) = (build(&a), build(&b));
    let span_a = tracing::dispatcher::with_default(&da, || info_span!("a", side = "a"));
    let span_b = tracing::dispatcher::with_default(&db, || info_span!("b", side = "b"));
    for _ in 0..100 {
        tracing::dispatcher::with_default(&da, || span_a.in_scope(|| info!("in a")));
        tracing::dispatcher::with_default(&db, || span_b.in_scope(|| info!("in b")));
    }
    drop((span_a, span_b, ga, gb));
    for (buf, side) in [(a, "a"), (b, "b")] {
        let lines = support::parse(&buf.text());
        assert_eq!(lines.len(), 100);
        assert!(lines.iter().all(|l| l["side"] == side), "{lines:?}");
    }
}

/// With hivelog at INFO, a DEBUG span it did not take is skipped: the event carries the
/// enclosing INFO span, whether or not the DEBUG span is entered, event after event.
#[test]
fn a_span_hivelog_filtered_out_is_skipped_for_the_one_around_it() {
    let lines = json_lines(&[("HIVELOG_LEVEL", "info")], || {
        let outer = info_span!("request", outer = 1);
        let _o = outer.enter();
        for _ in 0..3 {
            tracing::debug_span!("detail", inner = 1).in_scope(|| info!("inside"));
            info!("beside");
        }
    });
    assert_eq!(lines.len(), 6);
    for l in &lines {
        assert_eq!(l["outer"], 1, "{l}");
        assert!(l.get("inner").is_none(), "{l}");
    }
}

//! `hivelog check` as an operator runs it: the built binary, an explicit environment, and real
//! or scripted destinations on 127.0.0.1.
//!
//! Elasticsearch and CloudWatch tests need the peers `scripts/test.sh` starts (noida-db, moto);
//! the Fluentd tests use the Forward receiver of `hivelog-tests`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::http::{HttpServer, Response};
use hivelog_tests::peers;
use hivelog_tests::peers::unique;
use serde_json::Value;

/// Runs `hivelog check ARGS` with exactly `vars` (and PATH) in its environment.
fn check(vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hivelog"))
        .arg("check")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .expect("run the hivelog binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

/// `hivelog check --json` on `vars`: the exit code and the report.
fn check_json(vars: &[(&str, &str)], args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend(args);
    let o = check(vars, &all);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    (code(&o), v)
}

/// The only destination of a JSON report.
fn only_destination(v: &Value) -> &Value {
    let d = v["destinations"].as_array().expect("destinations array");
    assert_eq!(d.len(), 1, "{v:#}");
    &d[0]
}

/// reachable, authenticated, accepted (JSON `null` as `None`).
fn verdict(d: &Value) -> (Option<bool>, Option<bool>, bool) {
    (
        d["reachable"].as_bool(),
        d["authenticated"].as_bool(),
        d["accepted"].as_bool().unwrap(),
    )
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn aws_env(moto: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn an_invalid_variable_exits_2_with_the_message_try_init_gives() {
    let o = check(&[("HIVELOG_TIMESTAMP", "rfc3339micro")], &[]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("HIVELOG_TIMESTAMP: 'rfc3339micro' is not a timestamp format; expected one of rfc3339ms, rfc3339ns, epoch_ms, epoch_ns"),
        "{}",
        stdout(&o)
    );
    let (code, v) = check_json(&[("HIVELOG_FLUENT_ADDR", "udp://fluentd:24224")], &[]);
    assert_eq!(code, 2);
    assert_eq!(v["config"]["valid"], false);
    assert_eq!(
        v["config"]["error"],
        "HIVELOG_FLUENT_ADDR: 'udp://fluentd:24224' is not a Forward address; expected tcp://host:port, tls://host:port, unix:///path or host:port, each with optional ?weight=N (1 to 10000) and ?standby, comma-separated"
    );
    assert_eq!(v["destinations"], serde_json::json!([]));
}

#[test]
fn the_messages_are_the_ones_try_init_returns_for_facade_variables_too() {
    // HIVELOG_LEVEL is parsed by the facade alone: the check must still reject it.
    let o = check(&[("HIVELOG_LEVEL", "info,[")], &[]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("HIVELOG_LEVEL: 'info,[' is not a level filter"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn without_destinations_it_prints_the_configuration_and_exits_0() {
    let vars = [
        ("HIVELOG_SERVICE", "checkout"),
        ("HIVELOG_TIMESTAMP", "epoch_ms"),
        ("HIVELOG_LEVLE", "debug"),
    ];
    let o = check(&vars, &[]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}\n{}", stderr(&o));
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("HIVELOG_TIMESTAMP"),
        ["HIVELOG_TIMESTAMP", "epoch_ms", "env"]
    );
    assert_eq!(
        line("HIVELOG_SCHEMA"),
        ["HIVELOG_SCHEMA", "default", "default"]
    );
    assert_eq!(
        line("HIVELOG_SERVICE"),
        ["HIVELOG_SERVICE", "checkout", "env"]
    );
    assert_eq!(line("HIVELOG_FLUENT_ADDR").last(), Some(&"default"));
    assert_eq!(line("HIVELOG_LEVLE").last(), Some(&"unknown"));
    assert!(out.contains("Destinations: none configured"), "{out}");
    assert!(out.contains("Result: OK"), "{out}");

    let (code, v) = check_json(&vars, &[]);
    assert_eq!(code, 0);
    assert_eq!(v["ok"], true);
    assert_eq!(v["config"]["valid"], true);
    assert_eq!(v["destinations"], serde_json::json!([]));
    let general = &v["config"]["sections"][0];
    assert_eq!(general["name"], "general");
    assert!(general["settings"].as_array().unwrap().contains(
        &serde_json::json!({"name": "HIVELOG_TIMESTAMP", "value": "epoch_ms", "source": "env"})
    ));
}

#[test]
fn service_stands_for_the_name_set_in_code_and_the_env_still_wins() {
    let service_row = |v: &Value| {
        v["config"]["sections"][0]["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "HIVELOG_SERVICE")
            .cloned()
            .unwrap()
    };
    let (_, v) = check_json(&[], &["--service", "checkout"]);
    assert_eq!(
        service_row(&v),
        serde_json::json!({"name": "HIVELOG_SERVICE", "value": "checkout", "source": "default"})
    );
    let (_, v) = check_json(
        &[("HIVELOG_SERVICE", "billing")],
        &["--service", "checkout"],
    );
    assert_eq!(service_row(&v)["value"], "billing");
}

#[test]
fn elasticsearch_accepts_the_test_event() {
    let es = peers::es_url();
    let service = unique("hivelog-check");
    let vars = [
        ("HIVELOG_ES_URL", es.as_str()),
        ("HIVELOG_SERVICE", service.as_str()),
    ];
    let o = check(&vars, &[]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}\n{}", stderr(&o));
    assert!(
        out.contains("reachable: yes  authenticated: yes  event accepted: yes"),
        "{out}"
    );
    // Values as written or as documented, never a configuration's `Debug` dump.
    assert!(!out.contains("EsConfig"), "{out}");
    assert!(out.contains("HIVELOG_ES_TIMEOUT"), "{out}");

    let (code, v) = check_json(&vars, &[]);
    assert_eq!(code, 0, "{v:#}");
    let d = only_destination(&v);
    assert_eq!(d["sink"], "elasticsearch");
    assert_eq!(verdict(d), (Some(true), Some(true), true));
    assert!(d["round_trip_ms"].as_f64().unwrap() > 0.0, "{d}");
    assert!(d["error"].is_null());

    // The event is in the index, with the id the report gives.
    let index = format!("{es}/logs-{service}");
    curl(&["-XPOST", &format!("{index}/_refresh")]);
    let hits: Value = serde_json::from_str(&curl(&[&format!("{index}/_search?size=100")])).unwrap();
    let ids: Vec<&str> = hits["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["_source"]["check_id"].as_str())
        .collect();
    assert!(
        ids.contains(&v["check_id"].as_str().unwrap()),
        "{ids:?} {hits}"
    );
}

fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .arg("-fsS")
        .args(args)
        .output()
        .expect("curl");
    assert!(o.status.success(), "curl {args:?}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn elasticsearch_answering_401_is_reachable_but_not_authenticated() {
    let server = HttpServer::start(|_| {
        Response::json(
            401,
            r#"{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user [elastic]"}],"type":"security_exception","reason":"unable to authenticate user [elastic]"},"status":401}"#,
        )
        .header("WWW-Authenticate", "Basic realm=\"security\"")
    });
    let url = server.url();
    let vars = [
        ("HIVELOG_ES_URL", url.as_str()),
        ("HIVELOG_ES_USERNAME", "elastic"),
        ("HIVELOG_ES_PASSWORD", "wrong-password-1234"),
    ];
    let o = check(&vars, &[]);
    let out = stdout(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains("reachable: yes  authenticated: no  event accepted: no"),
        "{out}"
    );
    assert!(out.contains("401"), "{out}");
    assert!(out.contains("Result: FAILED: elasticsearch"), "{out}");

    let (code, v) = check_json(&vars, &[]);
    assert_eq!(code, 1);
    assert_eq!(v["ok"], false);
    assert_eq!(
        verdict(only_destination(&v)),
        (Some(true), Some(false), false)
    );
}

#[test]
fn a_closed_port_is_not_reachable_and_fails_fast() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let (code, v) = check_json(&[("HIVELOG_ES_URL", url.as_str())], &["--timeout", "5s"]);
    assert_eq!(code, 1, "{v:#}");
    let d = only_destination(&v);
    assert_eq!(verdict(d), (Some(false), None, false), "{d}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_destination_that_never_answers_fails_at_the_timeout() {
    let server = HttpServer::start(|_| Response::new(200).hang());
    let url = server.url();
    let started = Instant::now();
    let (code, v) = check_json(&[("HIVELOG_ES_URL", url.as_str())], &["--timeout", "1s"]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{v:#}");
    let d = only_destination(&v);
    assert_eq!(d["accepted"], false);
    assert!(d["error"].as_str().unwrap().contains("within 1s"), "{d}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[test]
fn cloudwatch_against_moto_accepts_the_test_event() {
    let moto = peers::moto_url();
    let group = unique("hivelog-check");
    let mut vars = aws_env(&moto);
    vars.push(("HIVELOG_CLOUDWATCH_GROUP", group.clone()));
    let o = check(&refs(&vars), &[]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}\n{}", stderr(&o));
    assert!(
        out.contains("reachable: yes  authenticated: yes  event accepted: yes"),
        "{out}"
    );
    assert!(
        out.contains(&format!("log group {group} at {moto}")),
        "{out}"
    );
    let aws_region = out
        .lines()
        .find(|l| l.trim_start().starts_with("AWS_REGION "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(aws_region.contains("us-east-1") && aws_region.ends_with("env"));
}

#[test]
fn cloudwatch_with_nothing_listening_is_not_reachable() {
    let mut vars = aws_env(&format!("http://127.0.0.1:{}", closed_port()));
    vars.push(("HIVELOG_CLOUDWATCH_GROUP", unique("hivelog-check")));
    let (code, v) = check_json(&refs(&vars), &["--timeout", "5s"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(verdict(only_destination(&v)).0, Some(false), "{v:#}");
}

#[test]
fn fluentd_acks_the_test_event() {
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let addr = receiver.url();
    let (code, v) = check_json(
        &[
            ("HIVELOG_FLUENT_ADDR", addr.as_str()),
            ("HIVELOG_SERVICE", "web"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{v:#}");
    let d = only_destination(&v);
    assert_eq!(d["sink"], "fluent");
    assert_eq!(d["target"], addr.as_str());
    assert_eq!(verdict(d), (Some(true), Some(true), true));
    let events = receiver.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].tag, "web");
    assert!(events[0].chunk.is_some(), "sent with an ack request");
    assert!(events[0]
        .str("message")
        .unwrap()
        .starts_with("hivelog check from "));
    assert_eq!(events[0].str("target"), Some("hivelog::check"));
    assert_eq!(events[0].str("check_id"), v["check_id"].as_str());
}

#[test]
fn fluentd_without_acks_is_accepted_with_a_caveat() {
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let addr = receiver.url();
    let (code, v) = check_json(
        &[
            ("HIVELOG_FLUENT_ADDR", addr.as_str()),
            ("HIVELOG_FLUENT_ACK", "false"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{v:#}");
    let d = only_destination(&v);
    assert_eq!(d["accepted"], true);
    assert!(
        d["note"]
            .as_str()
            .unwrap()
            .contains("HIVELOG_FLUENT_ACK=false"),
        "{d}"
    );
    assert_eq!(receiver.wait_for(1, Duration::from_secs(5)), 1);
}

#[test]
fn fluentd_with_a_wrong_shared_key_is_not_authenticated() {
    let receiver = ForwardReceiver::start(ReceiverConfig::default().shared_key("the-right-key"));
    let addr = receiver.url();
    let vars = [
        ("HIVELOG_FLUENT_ADDR", addr.as_str()),
        ("HIVELOG_FLUENT_SHARED_KEY", "a-wrong-key-5678"),
    ];
    let o = check(&vars, &["--timeout", "5s"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains("reachable: yes  authenticated: no  event accepted: no"),
        "{out}"
    );
    assert!(out.contains("HIVELOG_FLUENT_SHARED_KEY"), "{out}");
    assert_eq!(receiver.count(), 0);
}

#[test]
fn secrets_never_appear_in_stdout_or_stderr() {
    let es_401 = HttpServer::start(|_| Response::json(401, r#"{"error":"no","status":401}"#));
    let receiver = ForwardReceiver::start(ReceiverConfig::default().shared_key("receiver-key"));
    let es_url = es_401
        .url()
        .replace("http://", "http://elastic:url-secret-1111@");
    let fluent = receiver.url();
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let secrets = [
        "es-password-2222",
        "fluent-key-3333",
        "aws-secret-4444",
        "url-secret-1111",
        "api-key-secret-5555",
        "typo-secret-6666",
        "fluent-password-7777",
    ];
    let runs: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("HIVELOG_ES_URL", &es_url),
            ("HIVELOG_ES_USERNAME", "elastic"),
            ("HIVELOG_ES_PASSWORD", "es-password-2222"),
            ("HIVELOG_FLUENT_ADDR", &fluent),
            ("HIVELOG_FLUENT_SHARED_KEY", "fluent-key-3333"),
            ("HIVELOG_FLUENT_USERNAME", "me"),
            ("HIVELOG_FLUENT_PASSWORD", "fluent-password-7777"),
            ("HIVELOG_CLOUDWATCH_GROUP", "g"),
            ("AWS_ENDPOINT_URL", &closed),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-4444"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HIVELOG_ES_PASWORD", "typo-secret-6666"),
        ],
        // An API key, valid in form.
        vec![
            ("HIVELOG_ES_URL", &es_url),
            ("HIVELOG_ES_API_KEY", "key-id:api-key-secret-5555"),
        ],
        // An invalid API key: the configuration error must not quote it.
        vec![
            ("HIVELOG_ES_URL", &closed),
            ("HIVELOG_ES_API_KEY", "api-key-secret-5555"),
        ],
        // A URL without its scheme: the parser's message quotes it.
        vec![("HIVELOG_ES_URL", "elastic:url-secret-1111@es:9200")],
        // An invalid password combination.
        vec![
            ("HIVELOG_ES_URL", &closed),
            ("HIVELOG_ES_PASSWORD", "es-password-2222"),
        ],
    ];
    for vars in &runs {
        for args in [&["--timeout", "3s"][..], &["--timeout", "3s", "--json"][..]] {
            let o = check(vars, args);
            let (out, err) = (stdout(&o), stderr(&o));
            assert!(code(&o) != 0, "{out}");
            for s in secrets {
                assert!(!out.contains(s), "{s} in stdout:\n{out}");
                assert!(!err.contains(s), "{s} in stderr:\n{err}");
            }
        }
    }
}

#[test]
fn help_and_usage_errors() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hivelog"))
            .args(args)
            .env_clear()
            .output()
            .unwrap()
    };
    let o = run(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("hivelog check"));
    let o = run(&["check", "--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("--timeout DURATION"));
    assert!(stdout(&o).contains("Exit status"));
    let o = run(&["check", "--timeout", "soon"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--timeout: 'soon'"));
    assert_eq!(code(&run(&["chekc"])), 2);
}

#[test]
fn it_lists_what_waits_in_the_spill_folder_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let folder = hivelog_core::spill::folder(dir.path(), "svc", "elasticsearch");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("00000000000001048576.seg"), [0u8; 1500]).unwrap();
    std::fs::write(folder.join("00000000000002097152.seg"), [0u8; 500]).unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let spill_dir = dir.path().display().to_string();
    let out = check(
        &[
            ("HIVELOG_ES_URL", url.as_str()),
            ("HIVELOG_SERVICE", "svc"),
            ("HIVELOG_SPILL_DIR", spill_dir.as_str()),
        ],
        &["--timeout", "1s"],
    );
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("svc.elasticsearch"))
        .unwrap_or_else(|| panic!("no spill folder line in:\n{text}"));
    assert!(
        line.contains("2 segments, 2.0 kB waiting for the next start"),
        "{line}"
    );
}

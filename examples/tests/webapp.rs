//! The example service end to end: the built `webapp` binary on a free 127.0.0.1 port, with
//! our first users' field mapping, driven over HTTP, stopped with SIGTERM the way ECS stops a
//! task; its stdout must be JSON lines carrying what the handlers logged, and it must exit 0.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hivelog_examples::http::Connection;
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use serde_json::Value;

const FIELDS: &str =
    "timestamp=timestamp,loggerName=target,level=level,message=message,function=span,module=module,line=line";
const EXTRA: &str = "environment=test,team=news";

/// A running `webapp` and the JSON lines it has printed.
struct Service {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<String>>,
}

impl Service {
    /// Starts the binary with only the variables given here and `env` (PORT=0: the OS picks the port,
    /// and the `listening` event says which).
    fn start(env: &[(&str, &str)]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_webapp"))
            .env_clear()
            .env("BIND", "127.0.0.1")
            .env("PORT", "0")
            .env("HIVELOG_FIELDS", FIELDS)
            .env("HIVELOG_EXTRA", EXTRA)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start webapp");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut bad = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v.is_object() => {
                        let _ = tx.send(v);
                    }
                    _ => bad.push(line),
                }
            }
            bad
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut service = Service {
            child,
            addr: String::new(),
            lines,
            seen: Vec::new(),
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        let listening = service.wait_for("listening", Duration::from_secs(20));
        service.addr = listening["addr"].as_str().expect("addr").to_owned();
        assert!(service.addr.starts_with("127.0.0.1:"), "{listening}");
        service
    }

    /// Waits for the line whose message is `message`.
    fn wait_for(&mut self, message: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.seen.iter().find(|v| v["message"] == message) {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no {message:?} line within {timeout:?}; lines: {:#?}\nstderr: {}",
                        self.seen,
                        self.stderr.take().unwrap().join().unwrap()
                    );
                }
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the status, every JSON line, stderr.
    fn terminate(self, timeout: Duration) -> (ExitStatus, Vec<Value>, String) {
        self.stop(libc::SIGTERM, timeout)
    }

    /// Sends `signal` and waits for the exit; returns the status, every JSON line, stderr.
    fn stop(mut self, signal: i32, timeout: Duration) -> (ExitStatus, Vec<Value>, String) {
        let pid = i32::try_from(self.child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let mut status = None;
        let exited = hivelog_tests::wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        if !exited {
            let _ = self.child.kill();
            panic!("webapp still running {timeout:?} after signal {signal}");
        }
        let status = status.expect("exited");
        let bad = self.stdout.take().unwrap().join().unwrap();
        assert!(
            bad.is_empty(),
            "stdout lines that are not JSON objects: {bad:?}"
        );
        self.seen.extend(self.lines.try_iter());
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, std::mem::take(&mut self.seen), stderr)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn one<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|v| v["message"] == message).collect();
    assert_eq!(found.len(), 1, "one {message:?} line in {lines:#?}");
    found[0]
}

#[test]
fn handlers_log_users_articles_and_errors_and_sigterm_flushes_and_exits_0() {
    let mut service = Service::start(&[]);
    let mut conn = Connection::open(service.addr.as_str()).unwrap();

    let res = conn.get("/", Some("theme=dark; email=a@b.c")).unwrap();
    assert_eq!(res.status, 200);
    let res = conn.get("/", None).unwrap();
    assert_eq!(res.status, 200);
    let res = conn.get("/hit/7", Some("email=a@b.c")).unwrap();
    assert_eq!(res.status, 303);
    assert_eq!(
        res.header("location"),
        Some("https://example.com/articles/7")
    );
    let res = conn.get("/article/7", None).unwrap();
    assert_eq!(res.status, 502);
    service.wait_for("could not serve the article", Duration::from_secs(10));
    // An idle keep-alive connection must not hold the shutdown up.

    let started = Instant::now();
    let (status, lines, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}; stderr: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );

    // Our first users' mapping, in its order, then the extras, on every line.
    let order = [
        "timestamp",
        "loggerName",
        "level",
        "message",
        "function",
        "module",
        "line",
        "environment",
        "team",
    ];
    for line in &lines {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys[..order.len()], order[..], "{line}");
        // The trace layer logs each request's completion from its own module.
        let logger = if line["message"] == "request completed" {
            "hivelog::tower"
        } else {
            "webapp"
        };
        assert_eq!(line["loggerName"], logger, "{line}");
        assert_eq!(line["module"], logger, "{line}");
        assert!(line["line"].is_u64(), "{line}");
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert_eq!(line["environment"], "test");
    }

    let completed = lines
        .iter()
        .filter(|v| v["message"] == "request completed")
        .count();
    assert_eq!(completed, 4, "one completion line per request");

    let visits: Vec<&Value> = lines.iter().filter(|v| v["message"] == "visit").collect();
    assert_eq!(visits.len(), 2, "{lines:#?}");
    assert_eq!(visits[0]["function"], "index");
    assert_eq!(visits[0]["level"], "INFO");
    assert_eq!(visits[0]["user"], "a@b.c");
    assert_eq!(visits[1]["user"], "anonymous");

    let hit = one(&lines, "article hit");
    assert_eq!(hit["function"], "hit");
    assert_eq!(hit["user"], "a@b.c");
    assert_eq!(hit["article"], "https://example.com/articles/7");
    assert_eq!(hit["id"], 7, "the span's field is on the event");

    let failed = one(&lines, "could not serve the article");
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["function"], "article");
    assert_eq!(failed["error"]["message"], "could not load article 7");
    assert_eq!(failed["error"]["type"], "ArticleError");
    assert_eq!(
        failed["error"]["sources"],
        serde_json::json!(["the CMS did not answer", "no answer within 2s"])
    );

    let listening = one(&lines, "listening");
    assert_eq!(listening["function"], Value::Null, "outside any span");

    let stopping = one(&lines, "shutdown requested; finishing in-flight requests");
    assert_eq!(stopping["signal"], "SIGTERM");
    let last = lines.last().unwrap();
    assert_eq!(
        last["message"], "stopped",
        "the last line says the service stopped"
    );
    assert_eq!(last["level"], "INFO");
}

#[test]
fn loadgen_drives_the_service_and_every_request_is_one_logged_hit() {
    let service = Service::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--target",
            &service.addr,
            "--rate",
            "200",
            "--seconds",
            "1",
            "--connections",
            "2",
        ])
        .output()
        .expect("run loadgen");
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{summary}");
    assert!(
        summary.contains("events/s") && summary.contains("errors 0"),
        "{summary}"
    );
    // "loadgen: http ADDR: N events in ..."
    let sent: usize = summary
        .split_whitespace()
        .skip_while(|w| !w.ends_with(&format!("{}:", service.addr)))
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in {summary}"));
    assert!(
        (50..=210).contains(&sent),
        "200/s for 1 s sent {sent}: {summary}"
    );

    let (status, lines, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let hits = lines
        .iter()
        .filter(|v| v["message"] == "article hit")
        .count();
    assert_eq!(hits, sent);
}

#[test]
fn sigterm_flushes_what_is_still_queued_for_fluentd() {
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    // A batch is only sent after a minute: what arrives, arrives through the shutdown flush.
    let mut service = Service::start(&[
        ("HIVELOG_FLUENT_ADDR", &receiver.url()),
        ("HIVELOG_FLUSH_INTERVAL", "60s"),
    ]);
    let mut conn = Connection::open(service.addr.as_str()).unwrap();
    for id in 0..20 {
        let res = conn
            .get(&format!("/hit/{id}"), Some("email=a@b.c"))
            .unwrap();
        assert_eq!(res.status, 303);
    }
    service.wait_for("article hit", Duration::from_secs(10));

    let (status, lines, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.is_empty(),
        "a complete flush prints no report: {stderr}"
    );
    let events = receiver.events();
    assert_eq!(
        events.len(),
        lines.len(),
        "every stdout line also reached Fluentd"
    );
    let hits: Vec<_> = events
        .iter()
        .filter(|e| e.str("message") == Some("article hit"))
        .collect();
    assert_eq!(hits.len(), 20);
    assert!(hits
        .iter()
        .all(|e| e.tag == "webapp" && e.str("user") == Some("a@b.c")));
    assert!(hits.iter().all(|e| e.str("function") == Some("hit")));
    assert_eq!(
        events.last().and_then(|e| e.str("message")),
        Some("stopped"),
        "the last event, logged after the server stopped, was flushed too"
    );
}

#[test]
fn with_otel_logs_exporter_otlp_every_line_reaches_the_collector_with_its_trace() {
    // The test receiver's own tenant: what arrives there was sent by this service only.
    let tenant = format!(
        "{}/{}",
        hivelog_tests::peers::otlp_receiver_url(),
        hivelog_tests::peers::unique("webapp")
    );
    let endpoint = format!("{tenant}/v1/logs");
    let mut service = Service::start(&[
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint),
        ("HIVELOG_FLUSH_INTERVAL", "60s"),
    ]);
    let mut conn = Connection::open(service.addr.as_str()).unwrap();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let res = conn
        .get_with("/hit/7", &[("cookie", "email=a@b.c"), ("traceparent", tp)])
        .unwrap();
    assert_eq!(res.status, 303);
    service.wait_for("article hit", Duration::from_secs(10));
    let (status, lines, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let (code, reqs) = hivelog_tests::peers::http("GET", &format!("{tenant}/requests"), None);
    assert_eq!(code, 200);
    let records: Vec<Value> = reqs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| q["records"].as_array().unwrap().clone())
        .collect();
    assert_eq!(
        records.len(),
        lines.len(),
        "every stdout line also reached the collector"
    );
    let hit = records
        .iter()
        .find(|r| r["body"]["string"] == "article hit")
        .expect("the hit");
    assert_eq!(hit["resource"]["service.name"]["string"], "webapp");
    assert_eq!(hit["resource"]["team"]["string"], "news", "HIVELOG_EXTRA");
    assert_eq!(hit["attributes"]["user"]["string"], "a@b.c");
    assert_eq!(hit["severity_text"], "INFO");
    assert_eq!(hit["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hit["span_id"].as_str().unwrap().len(), 16);
}

#[test]
fn ctrl_c_stops_it_the_same_way() {
    let service = Service::start(&[]);
    let (status, lines, stderr) = service.stop(libc::SIGINT, Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let stopping = one(&lines, "shutdown requested; finishing in-flight requests");
    assert_eq!(stopping["signal"], "SIGINT");
    assert_eq!(lines.last().unwrap()["message"], "stopped");
}

/// The trace id in a `traceparent` value.
fn trace_id_of(traceparent: &str) -> String {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert!(
        parts[1].len() == 32
            && parts[1]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && parts[1] != "0".repeat(32),
        "{traceparent}"
    );
    parts[1].to_owned()
}

/// Headers sent, and the trace id the request must continue (`None`: a new trace).
type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>);

#[test]
fn every_line_of_a_request_carries_its_trace_whatever_the_caller_sent() {
    const W3C: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const XRAY: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let huge = format!("00-{}-b7ad6b7169203331-01", "a".repeat(10 * 1024));
    let cases: Vec<Case> = vec![
        (
            vec![("traceparent", W3C)],
            Some("0af7651916cd43dd8448eb211c80319c"),
        ),
        (
            vec![("TraceParent", W3C), ("tracestate", "congo=t61rcWkgMzE")],
            Some("0af7651916cd43dd8448eb211c80319c"),
        ),
        (
            vec![("X-Amzn-Trace-Id", XRAY)],
            Some("5759e988bd862e3fe1be46a994272793"),
        ),
        (vec![], None),
        (
            vec![(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            )],
            None,
        ),
        (
            vec![(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c8031xx-b7ad6b7169203331-01",
            )],
            None,
        ),
        (
            vec![(
                "traceparent",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
            None,
        ),
        (
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            )],
            None,
        ),
        (
            vec![(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            )],
            None,
        ),
        (vec![("traceparent", huge.as_str())], None),
        (
            vec![(
                "X-Amzn-Trace-Id",
                "Root=1-5759e988-bd862e3fe1be46a99427279;Sampled=1",
            )],
            None,
        ),
    ];
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let mut service = Service::start(&[
        ("HIVELOG_FLUENT_ADDR", &receiver.url()),
        ("HIVELOG_METRICS", "emf"),
        ("HIVELOG_METRICS_DIMENSIONS", "route,method"),
    ]);
    let mut conn = Connection::open(service.addr.as_str()).unwrap();
    let mut answered = Vec::new();
    for (headers, expected) in &cases {
        let res = conn.get_with("/article/7", headers).unwrap();
        assert_eq!(
            res.status, 502,
            "{headers:?}: never a failed request of ours"
        );
        let traceparent = res.header("traceparent").expect("traceparent answered");
        let trace_id = trace_id_of(traceparent);
        match expected {
            Some(t) => assert_eq!(trace_id, *t, "{headers:?}"),
            None => assert!(
                !headers.iter().any(|(_, v)| v.contains(&trace_id)),
                "{headers:?}: a new trace, not the malformed one"
            ),
        }
        answered.push(trace_id);
    }
    let res = conn.get_with("/hit/7", &[("traceparent", W3C)]).unwrap();
    assert_eq!(res.status, 303);
    service.wait_for("article hit", Duration::from_secs(10));
    let (status, lines, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");

    for trace_id in &answered {
        let of_request: Vec<&Value> = lines
            .iter()
            .filter(|l| l["trace_id"] == trace_id.as_str())
            .collect();
        let error = of_request
            .iter()
            .find(|l| l["message"] == "could not serve the article")
            .unwrap_or_else(|| panic!("no error line with trace {trace_id}: {lines:#?}"));
        assert_eq!(error["level"], "ERROR");
        assert_eq!(error["function"], "article");
        let done = of_request
            .iter()
            .find(|l| l["message"] == "request completed")
            .unwrap_or_else(|| panic!("no completion line with trace {trace_id}"));
        assert_eq!(done["status"], 502);
        assert_eq!(done["method"], "GET");
        assert_eq!(done["route"], "/article/{id}");
        assert!(
            done["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{done}"
        );
        // The latency is a CloudWatch metric of that line (embedded metric format).
        let metric = hivelog_tests::emf::validate(done).unwrap_or_else(|e| panic!("{e}: {done}"));
        assert_eq!(metric.metrics, ["latency_ms"]);
        assert_eq!(metric.units, [Some("Milliseconds".to_owned())]);
        assert_eq!(metric.dimensions, [["route", "method"]]);
        assert_eq!(done["level"], "WARN", "a 5xx is logged as a warning");
        assert_ne!(
            error["span_id"], done["span_id"],
            "handler span inside the request span"
        );
        let shipped = receiver.events();
        let to_fluentd = shipped
            .iter()
            .find(|e| {
                e.str("trace_id") == Some(trace_id.as_str())
                    && e.str("message") == error["message"].as_str()
            })
            .unwrap_or_else(|| {
                panic!("the error line with trace {trace_id} did not reach Fluentd")
            });
        assert_eq!(to_fluentd.str("span_id"), error["span_id"].as_str());
    }
    let mut unique = answered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        answered.len() - 1,
        "only the two W3C requests share a trace"
    );
    let hit = one(&lines, "article hit");
    assert_eq!(hit["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    for outside in ["listening", "stopped"] {
        assert!(one(&lines, outside).get("trace_id").is_none());
    }
}

/// One request with `Connection: close` over a fresh socket; returns the status and the body.
fn admin_request(addr: &str, method: &str, body: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} /level HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[test]
fn the_admin_listener_sets_the_level_at_run_time_and_refuses_a_bad_one() {
    let mut service = Service::start(&[("ADMIN_BIND", "127.0.0.1:0"), ("HIVELOG_LEVEL", "info")]);
    let admin = service.wait_for("admin listening", Duration::from_secs(10))["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(admin, service.addr);
    assert_eq!(admin_request(&admin, "GET", ""), (200, "info\n".to_owned()));
    assert_eq!(
        admin_request(&admin, "PUT", "info,webapp=debug"),
        (200, "info,webapp=debug\n".to_owned())
    );
    let (status, body) = admin_request(&admin, "PUT", "debug,webapp=loud");
    assert_eq!(status, 400);
    assert!(
        body.starts_with("hivelog::set_level: 'debug,webapp=loud' is not a level filter"),
        "{body}"
    );
    assert_eq!(
        admin_request(&admin, "GET", ""),
        (200, "info,webapp=debug\n".to_owned())
    );
    let (status, lines, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let changed = one(&lines, "level changed by the admin endpoint");
    assert_eq!(changed["directives"], "info,webapp=debug");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("hivelog: level changed to"))
            .collect::<Vec<_>>(),
        ["hivelog: level changed to 'info,webapp=debug' (from hivelog::set_level)"]
    );
}

#[test]
fn without_admin_bind_there_is_no_admin_listener() {
    let service = Service::start(&[]);
    let (status, lines, _) = service.terminate(Duration::from_secs(10));
    assert!(status.success());
    assert!(lines.iter().all(|l| l["message"] != "admin listening"));
}

#[test]
fn at_level_warn_the_error_line_still_carries_the_callers_trace() {
    // `hivelog::tower` (the request span's target) at warn: an INFO request span would be off.
    let mut service = Service::start(&[("HIVELOG_LEVEL", "warn,webapp=info")]);
    let mut conn = Connection::open(service.addr.as_str()).unwrap();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let res = conn.get_with("/article/7", &[("traceparent", tp)]).unwrap();
    assert_eq!(res.status, 502);
    let answered = res.header("traceparent").expect("traceparent answered");
    assert_eq!(trace_id_of(answered), "0af7651916cd43dd8448eb211c80319c");
    let error = service.wait_for("could not serve the article", Duration::from_secs(10));
    assert_eq!(error["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_ne!(
        error["span_id"],
        answered.split('-').nth(2).unwrap(),
        "the handler's own span, inside the request's"
    );
    let (status, _, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_failing_request_writes_its_debug_lines_before_its_error_and_a_good_one_none() {
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let mut service = Service::start(&[
        ("HIVELOG_LEVEL", "info"),
        ("HIVELOG_FLUENT_ADDR", &receiver.url()),
    ]);
    let mut conn = Connection::open(service.addr.as_str()).unwrap();
    assert_eq!(conn.get("/hit/7", None).unwrap().status, 303);
    assert_eq!(conn.get("/article/7", None).unwrap().status, 502);
    service.wait_for("could not serve the article", Duration::from_secs(10));
    let (status, lines, stderr) = service.terminate(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");

    let messages: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["message"] != "listening" && l["message"] != "stopped")
        .map(|l| (l["level"].as_str().unwrap(), l["message"].as_str().unwrap()))
        .collect();
    let error = messages
        .iter()
        .position(|m| m.1 == "could not serve the article")
        .unwrap();
    assert_eq!(
        messages[error - 2..=error],
        [
            ("DEBUG", "asking the CMS for the article"),
            ("DEBUG", "the CMS did not answer; no retry left"),
            ("ERROR", "could not serve the article"),
        ],
        "{lines:#?}"
    );
    assert!(
        !messages
            .iter()
            .any(|m| m.1 == "looking up the article's address"),
        "the successful /hit request's DEBUG line is never written: {lines:#?}"
    );
    let asked = one(&lines, "asking the CMS for the article");
    assert_eq!(asked["function"], "article");
    let failed = one(&lines, "could not serve the article");
    assert_eq!(asked["trace_id"], failed["trace_id"]);
    let shipped: Vec<String> = receiver
        .events()
        .iter()
        .filter_map(|e| e.str("message").map(str::to_owned))
        .collect();
    let at = shipped
        .iter()
        .position(|m| m == "could not serve the article")
        .expect("the error reached Fluentd");
    assert_eq!(
        shipped[at - 2..at],
        [
            "asking the CMS for the article",
            "the CMS did not answer; no retry left"
        ]
    );
    assert!(!shipped
        .iter()
        .any(|m| m == "looking up the article's address"));
}

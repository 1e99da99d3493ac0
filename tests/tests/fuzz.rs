//! Property tests over every parser that reads outside data, and over the formatter.
//!
//! CI runs a short version (256 cases for pure functions, 64 for the ones that go through a
//! sink and a scripted server). For a long run by hand:
//! `PROPTEST_CASES=100000 cargo test -p hivelog-tests --test fuzz <target> -- --test-threads=1`
//! (`PROPTEST_CASES` sets the pure targets' cases; the sink targets run a quarter of it).
//!
//! - env configuration (`Env::from_pairs` of random `HIVELOG_*` values through `try_build`):
//!   never panics, and every error names a variable that was set;
//! - Elastic Cloud ID decoding;
//! - `_bulk` responses, through `EsSink::send` against the scripted HTTP server;
//! - Forward acks (`ack_of`) on arbitrary msgpack, and arbitrary bytes as HELO/PONG/ack frames
//!   through `FluentSink::send` against a raw TCP server;
//! - CloudWatch error bodies, through `CloudWatchSink::send` against the scripted HTTP server;
//! - the formatter with arbitrary field names and values, in events and nested spans: the output
//!   is always exactly one line of valid JSON.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use hivelog::Env;
use hivelog_core::record::{SpanNode, Str, Value};
use hivelog_core::{Format, Outcome, Record, Sink};
use hivelog_tests::http::{HttpServer, Response};
use proptest::prelude::*;
use tracing_core::Level;

fn cases(full: bool) -> u32 {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    if full {
        n
    } else {
        (n / 4).max(16)
    }
}

/// No test may reach a real AWS endpoint or the instance metadata service.
fn aws_offline() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_ENDPOINT_URL", "http://127.0.0.1:1");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    });
}

// ---------------------------------------------------------------- env configuration

/// Every variable a value may be fuzzed for. `HIVELOG_ES_DEAD_LETTER` and file outputs are
/// left out: a random value would create files in the working directory.
fn env_vars() -> Vec<&'static str> {
    // The one table of variables, minus the dead-letter file and the spill
    // folder (the fuzzer would create files).
    hivelog::variables()
        .into_iter()
        .flat_map(|(_, vars)| vars)
        .map(|v| v.name)
        .filter(|n| {
            n.starts_with("HIVELOG_")
                && !matches!(*n, "HIVELOG_ES_DEAD_LETTER" | "HIVELOG_SPILL_DIR")
        })
        .collect()
}

fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[a-z0-9_:=,./{}%-]{0,24}",
        Just("tcp://127.0.0.1:1".to_owned()),
        Just("http://127.0.0.1:1".to_owned()),
        Just("unix:///nonexistent/x.sock".to_owned()),
        Just("true".to_owned()),
        Just("0".to_owned()),
        Just("1ms".to_owned()),
        Just("64MB".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("block:1ms".to_owned()),
        Just("info,a::b=debug".to_owned()),
        Just("{service}-{date:%Y}".to_owned()),
        Just("ecs".to_owned()),
        Just("group-a".to_owned()),
        Just("timestamp=timestamp,x=nope".to_owned()),
        Just(r#"{"a":[1,{"b":null}]}"#.to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(true), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn env_configuration_never_panics_and_errors_name_a_variable(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), env_value()), 1..5)
    ) {
        aws_offline();
        let names = env_vars();
        let pairs: Vec<(String, String)> = picks
            .into_iter()
            .map(|(i, v)| {
                let name = names[i.index(names.len())];
                // A file output would write where the test runs.
                let v = if name == "HIVELOG_OUTPUT" && v.starts_with("file:") { "none".to_owned() } else { v };
                (name.to_owned(), v)
            })
            .collect();
        let built = hivelog::builder()
            .env(Env::from_pairs(pairs.clone()))
            .writer(std::io::sink())
            .try_build();
        match built {
            Ok((_, guard)) => {
                let _ = guard.shutdown(Duration::ZERO);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    pairs.iter().any(|(k, _)| msg.contains(k.as_str())),
                    "error names none of the variables set: {msg} (set: {pairs:?})"
                );
            }
        }
    }

    #[test]
    fn cloud_id_decoding_never_panics(s in ".{0,80}") {
        let _ = hivelog_elk::decode_cloud_id(&s);
    }

    #[test]
    fn structured_cloud_ids_decode_to_https_urls_or_an_error(
        name in "[a-z:]{0,8}",
        host in ".{0,30}",
        es in ".{0,12}",
        kb in ".{0,12}",
        sep in prop_oneof![Just("$"), Just("$$"), Just(""), Just(":")],
    ) {
        use base64::Engine;
        let raw = format!("{host}{sep}{es}{sep}{kb}");
        let id = format!("{name}:{}", base64::engine::general_purpose::STANDARD.encode(raw));
        if let Ok(url) = hivelog_elk::decode_cloud_id(&id) {
            prop_assert!(url.starts_with("https://"), "{id} → {url}");
        }
        let _ = hivelog_elk::EsConfig::from_cloud_id(&id);
    }

    #[test]
    fn ack_of_never_panics_on_arbitrary_msgpack(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(v) = rmpv::decode::read_value(&mut &bytes[..]) {
            let _ = hivelog_fluent::ack::ack_of(&v);
        }
    }

    #[test]
    fn ack_of_reads_only_string_or_bin_acks(v in msgpack_value()) {
        let got = hivelog_fluent::ack::ack_of(&v).map(<[u8]>::to_vec);
        let want = v.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("ack"))).and_then(|(_, c)| match c {
            rmpv::Value::String(s) => Some(s.as_bytes().to_vec()),
            rmpv::Value::Binary(b) => Some(b.clone()),
            _ => None,
        });
        prop_assert_eq!(got, want);
    }
}

fn msgpack_value() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value as M;
    let leaf = prop_oneof![
        Just(M::Nil),
        any::<bool>().prop_map(M::Boolean),
        any::<i64>().prop_map(M::from),
        ".{0,8}".prop_map(M::from),
        Just(M::from("ack")),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(M::Binary),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(M::Array),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(M::Map),
        ]
    })
}

// ---------------------------------------------------------------- the formatter

#[derive(Clone, Debug)]
enum FieldValue {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Error(String, String, Vec<String>),
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        any::<f64>().prop_map(FieldValue::F64),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)].prop_map(FieldValue::F64),
        "(?s).{0,40}".prop_map(FieldValue::Str),
        (
            "(?s).{0,20}",
            ".{0,12}",
            proptest::collection::vec("(?s).{0,10}", 0..3)
        )
            .prop_map(|(m, k, s)| FieldValue::Error(m, k, s)),
    ]
}

fn field_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        "(?s).{0,16}",
        Just("message".to_owned()),
        Just("level".to_owned()),
        Just("fields.message".to_owned()),
        Just("password".to_owned()),
        Just("\"}\n{".to_owned()),
    ]
    .prop_map(|s| &*Box::leak(s.into_boxed_str()))
}

fn push_fields(f: &mut hivelog_core::record::Fields, fields: &[(&'static str, FieldValue)]) {
    for (name, v) in fields {
        let value = match v {
            FieldValue::Bool(b) => Value::Bool(*b),
            FieldValue::I64(i) => Value::I64(*i),
            FieldValue::U64(u) => Value::U64(*u),
            FieldValue::F64(x) => Value::F64(*x),
            FieldValue::Str(s) => Value::Str(f.push_str(s)),
            FieldValue::Error(m, k, sources) => {
                let message = f.push_str(m);
                let kind = f.push_str(k);
                f.push(name, Value::Error { message, kind });
                for s in sources {
                    let t = f.push_str(s);
                    f.push(name, Value::Source(t));
                }
                continue;
            }
        };
        f.push(name, value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(true), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_formatter_always_writes_one_valid_json_line(
        message in "(?s).{0,40}",
        target in ".{0,12}",
        fields in proptest::collection::vec((field_name(), field_value()), 0..8),
        spans in proptest::collection::vec(proptest::collection::vec((field_name(), field_value()), 0..4), 0..3),
        schema in prop_oneof![Just("default"), Just("ecs")],
        timestamp in prop_oneof![Just("rfc3339ms"), Just("rfc3339ns"), Just("epoch_ms"), Just("epoch_ns")],
        max_event in prop_oneof![Just(64usize), Just(1 << 20)],
        redact in proptest::collection::vec(field_name(), 0..3),
        extra in proptest::option::of(("[a-z.]{1,8}", "(?s).{0,10}")),
    ) {
        let mut pairs = vec![
            ("HIVELOG_SCHEMA".to_owned(), schema.to_owned()),
            ("HIVELOG_TIMESTAMP".to_owned(), timestamp.to_owned()),
        ];
        if schema == "default" {
            // ECS fixes its own basic fields.
            pairs.push(("HIVELOG_FIELDS".to_owned(), "timestamp,level,target,message,module,file,line,span,spans,thread,service".to_owned()));
        }
        if let Some((k, v)) = &extra {
            pairs.push(("HIVELOG_EXTRA".to_owned(), serde_json::json!({ k: v }).to_string()));
        }
        let format = match Format::builder()
            .service("svc")
            .redact(redact.iter().copied())
            .max_event_bytes(max_event)
            .apply_env(&Env::from_pairs(pairs))
        {
            Ok(f) => f.build(),
            // Conflicting presets (ECS with epoch timestamps) are refused by design.
            Err(e) if schema == "ecs" && timestamp.starts_with("epoch") => { let _ = e; return Ok(()) }
            Err(e) => return Err(TestCaseError::fail(format!("valid settings refused: {e}"))),
        };
        let target: &'static str = Box::leak(target.into_boxed_str());
        let mut r = Record::new(Level::WARN, Str::Static(target), max_event, 0);
        r.message = Some(r.fields.push_str(&message));
        push_fields(&mut r.fields, &fields);
        let mut parent: Option<Arc<SpanNode>> = None;
        for (i, s) in spans.iter().enumerate() {
            let mut node_fields = hivelog_core::record::Fields::with_limit(max_event, 8);
            // The layer keeps one value per name on a span (`repeated_span_field_names_are_written_once`).
            let mut seen = std::collections::HashSet::new();
            let s: Vec<_> = s.iter().filter(|(n, _)| seen.insert(*n)).cloned().collect();
            push_fields(&mut node_fields, &s);
            parent = Some(Arc::new(SpanNode::new(if i % 2 == 0 { "outer" } else { "in\"ner" }, node_fields, parent)));
        }
        r.span = parent;
        let mut out = Vec::new();
        format.write_json(&r, &mut out);
        // `write_json` writes the object; the outputs append the one newline.
        prop_assert!(!out.contains(&b'\n'), "raw newline in {}", String::from_utf8_lossy(&out));
        let v: serde_json::Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
        prop_assert!(v.is_object());
        // No key twice: Elasticsearch refuses such documents and JSON readers keep one value.
        let dups = duplicate_keys(&out);
        prop_assert!(dups.is_empty(), "duplicate keys {:?} in {}", dups, String::from_utf8_lossy(&out));
        {
        for name in &redact {
            for (k, val) in v.as_object().unwrap() {
                if k == name && fields.iter().chain(spans.iter().flatten()).any(|(n, _)| n == name) && !format.basic().any(|(b, _)| b == *name) {
                    prop_assert_eq!(val, &serde_json::json!("[redacted]"), "{} in {}", name, v);
                }
            }
        }
        }
    }
}

/// Top-level keys that occur more than once in a JSON object.
fn duplicate_keys(json: &[u8]) -> Vec<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys(Vec<String>);
    impl<'de> Visitor<'de> for &mut Keys {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            while let Some(k) = m.next_key::<String>()? {
                m.next_value::<IgnoredAny>()?;
                self.0.push(k);
            }
            Ok(())
        }
    }
    let mut keys = Keys(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(json);
    if de.deserialize_map(&mut keys).is_err() {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    keys.0
        .into_iter()
        .filter(|k| !seen.insert(k.clone()))
        .collect()
}

/// Found by `the_formatter_always_writes_one_valid_json_line`: a user field named
/// `fields.message` next to one named `message` (renamed to `fields.message` because `message`
/// is a basic field) gave an object with the key `fields.message` twice. RFC 8259 only says
/// names SHOULD be unique, but Elasticsearch refuses such a document (`Duplicate field`), and
/// JSON readers keep one of the two values: one field was silently lost. Fixed in d232d31.
#[test]
fn a_user_field_named_fields_dot_x_duplicates_a_key() {
    let format = Format::builder().service("svc").build();
    let mut r = Record::new(Level::INFO, Str::Static("t"), 1 << 20, 0);
    r.message = Some(r.fields.push_str("m"));
    r.fields.push("fields.message", Value::Bool(true));
    r.fields.push("message", Value::Bool(false));
    let mut out = Vec::new();
    format.write_json(&r, &mut out);
    let dups = duplicate_keys(&out);
    assert!(
        dups.is_empty(),
        "BUG: duplicate keys {dups:?} in {}",
        String::from_utf8_lossy(&out)
    );
}

// ---------------------------------------------------------------- parsers behind the sinks

fn one_record() -> Vec<Record> {
    let mut r = Record::new(Level::INFO, Str::Static("fuzz"), 1 << 20, 0);
    r.message = Some(r.fields.push_str("fuzzed answer"));
    vec![r.clone(), {
        let mut r2 = r;
        r2.seq = 1;
        r2
    }]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bulk_body() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just(200u16),
        Just(201),
        Just(409),
        Just(429),
        Just(400),
        Just(404),
        Just(500),
        Just(503),
        any::<u16>()
    ];
    let item = (
        prop_oneof![Just("create"), Just("index"), Just("delete"), Just("")],
        status,
        proptest::option::of((".{0,12}", "(?s).{0,20}")),
    )
        .prop_map(|(action, status, error)| {
            let mut inner = serde_json::json!({ "status": status });
            if let Some((t, r)) = error {
                inner["error"] = serde_json::json!({"type": t, "reason": r});
            }
            serde_json::json!({ action: inner })
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "(?s).{0,64}".prop_map(String::into_bytes),
        (any::<bool>(), proptest::collection::vec(item, 0..4)).prop_map(|(errors, items)| {
            serde_json::json!({"errors": errors, "items": items})
                .to_string()
                .into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(false), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn bulk_responses_never_panic_and_each_document_gets_one_outcome(
        status in prop_oneof![Just(200u16), Just(201), Just(400), Just(401), Just(413), Just(429), Just(500), any::<u16>().prop_map(|s| 100 + s % 500)],
        body in bulk_body(),
    ) {
        let answer = Arc::new(Mutex::new((status, body.clone())));
        let a = answer.clone();
        let server = HttpServer::start(move |_| {
            let (s, b) = a.lock().unwrap().clone();
            Response::json(s, b)
        });
        let config = hivelog_elk::EsConfig::new(&server.url()).unwrap().timeout(Duration::from_secs(2));
        let mut sink = hivelog_elk::EsSink::new(config, Arc::new(Format::builder().service("svc").build()));
        let batch = one_record();
        let outcomes = runtime().block_on(async {
            sink.start().await;
            let o = sink.send(&batch).await;
            sink.close().await;
            o
        });
        prop_assert_eq!(outcomes.as_slice().len(), batch.len());
        if !(200..300).contains(&status) {
            prop_assert!(outcomes.as_slice().iter().all(|o| *o != Outcome::Delivered), "status {status}: {:?}", outcomes.as_slice());
        }
    }

    #[test]
    fn cloudwatch_error_bodies_never_panic_and_are_never_deliveries(
        status in prop_oneof![Just(400u16), Just(500), Just(503), Just(413), Just(403)],
        ty in prop_oneof![
            Just("ThrottlingException".to_owned()),
            Just("ServiceUnavailableException".to_owned()),
            Just("ResourceNotFoundException".to_owned()),
            Just("InvalidParameterException".to_owned()),
            Just("DataAlreadyAcceptedException".to_owned()),
            Just("AccessDeniedException".to_owned()),
            Just("com.amazonaws#ThrottlingException:http://x".to_owned()),
            ".{0,16}",
        ],
        message in "(?s).{0,40}",
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
    ) {
        aws_offline();
        let body = raw.unwrap_or_else(|| serde_json::json!({"__type": ty, "message": message}).to_string().into_bytes());
        let server = HttpServer::start(move |_| {
            Response::json(status, body.clone()).header("content-type", "application/x-amz-json-1.1")
        });
        let config = common::cloudwatch_config(&server.url(), "fuzz");
        let mut sink = hivelog_cloudwatch::CloudWatchSink::new(config, Arc::new(Format::builder().service("svc").build()));
        let batch = one_record();
        let outcomes = runtime().block_on(async {
            sink.start().await;
            let o = tokio::time::timeout(Duration::from_secs(20), sink.send(&batch)).await.expect("send ends");
            sink.close().await;
            o
        });
        prop_assert_eq!(outcomes.as_slice().len(), batch.len());
        prop_assert!(outcomes.as_slice().iter().all(|o| *o != Outcome::Delivered), "{:?}", outcomes.as_slice());
    }

    #[test]
    fn forward_answers_never_panic_and_only_a_real_ack_delivers(
        answer in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..48),
            msgpack_value().prop_map(|v| { let mut b = Vec::new(); rmpv::encode::write_value(&mut b, &v).unwrap(); b }),
        ],
        shared_key in any::<bool>(),
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let a = answer.clone();
        std::thread::spawn(move || {
            // One connection per attempt: say `answer` first (as a HELO would be), then after
            // every read; close after a while.
            for conn in listener.incoming().take(4) {
                let Ok(mut s) = conn else { return };
                let a = a.clone();
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_millis(800))).ok();
                    let _ = s.write_all(&a);
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&a).is_err() { break }
                    }
                });
            }
        });
        let mut pairs = vec![
            ("HIVELOG_FLUENT_ADDR", format!("tcp://{addr}")),
            ("HIVELOG_FLUENT_ACK_TIMEOUT", "300ms".to_owned()),
            ("HIVELOG_FLUENT_CONNECT_TIMEOUT", "300ms".to_owned()),
            ("HIVELOG_FLUENT_WRITE_TIMEOUT", "300ms".to_owned()),
        ];
        if shared_key {
            pairs.push(("HIVELOG_FLUENT_SHARED_KEY", "k".to_owned()));
        }
        let config = hivelog_fluent::FluentConfig::from_env(&Env::from_pairs(pairs)).unwrap().unwrap();
        let mut sink = hivelog_fluent::FluentSink::new(config, Arc::new(Format::builder().service("svc").build()));
        let batch = one_record();
        let outcomes = runtime().block_on(async {
            sink.start().await;
            let o = tokio::time::timeout(Duration::from_secs(10), sink.send(&batch)).await.expect("send ends");
            sink.close().await;
            o
        });
        prop_assert_eq!(outcomes.as_slice().len(), batch.len());
        prop_assert!(outcomes.as_slice().iter().all(|o| *o != Outcome::Delivered), "answer {answer:02x?}: {:?}", outcomes.as_slice());
    }
}

#[derive(Debug)]
struct Outer(std::io::Error);
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("request failed")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The lines the real facade writes while `f` runs, each checked for duplicate keys.
fn lines_logged(f: impl FnOnce()) -> Vec<String> {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Arc::new(Mutex::new(Vec::new()));
    let (dispatch, guard) = hivelog::builder()
        .env(Env::from_pairs([("HIVELOG_SERVICE", "svc")]))
        .writer(Buf(out.clone()))
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, f);
    // The writer thread writes the lines: wait for it.
    guard.flush(std::time::Duration::from_secs(5));
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for line in &lines {
        let dups = duplicate_keys(line.as_bytes());
        assert!(dups.is_empty(), "duplicate keys {dups:?} in {line}");
    }
    lines
}

/// An error with a source chain recorded on a span, through the real facade, is the same
/// object `{"message","type","sources"}` as on an event; `Span::record` of a plain value over it
/// leaves no stale sources behind, and no key is ever written twice.
#[test]
fn an_error_on_a_span_keeps_its_type_and_sources() {
    let err = Outer(std::io::Error::other("disk full"));
    let lines = lines_logged(|| {
        let span = tracing::info_span!("job", cause = &err as &(dyn std::error::Error + 'static));
        let _e = span.enter();
        tracing::info!(error = &err as &(dyn std::error::Error + 'static), "event");
        span.record("cause", "retrying");
        tracing::info!("after record");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let expected = serde_json::json!({
        "message": "request failed",
        "type": "Outer",
        "sources": ["disk full"],
    });
    assert_eq!(v["error"], expected, "{}", lines[0]);
    assert_eq!(v["cause"], expected, "{}", lines[0]);
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["cause"], "retrying", "{}", lines[1]);
}

/// A span or event with the same field name twice (tracing's macros accept
/// `info_span!("s", a = 1, a = 2)`) writes the key once.
#[test]
fn repeated_span_field_names_are_written_once() {
    let lines = lines_logged(|| {
        let span = tracing::info_span!("s", attempt = 1, attempt = 2);
        let _e = span.enter();
        tracing::info!(tries = 1, tries = 2, "event");
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
}

//! Helpers shared by the integration tests: records, formats, a runtime for `Sink::send`,
//! and a bulk-answering handler for the scripted server.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hivelog_core::pipeline::RetryPolicy;
use hivelog_core::record::{Str, Value};
use hivelog_core::{Format, Outcome, Outcomes, Pipeline, PipelineConfig, Record, Sink};
use hivelog_elk::{EsConfig, EsSink};
use hivelog_tests::http::{Request, Response};
use tracing_core::Level;

/// A format for service `svc` with the default fields.
pub fn format(svc: &str) -> Arc<Format> {
    Arc::new(Format::builder().service(svc).build())
}

/// A record with `message` and one field `n`.
pub fn record(seq: u64, message: &str, n: Value) -> Record {
    let mut r = Record::new(Level::INFO, Str::Static("app::web"), 1 << 20, 2);
    r.message = Some(r.fields.push_str(message));
    r.fields.push("n", n);
    r.seq = seq;
    r
}

/// `count` records numbered from 1 (`n` = seq).
pub fn records(count: u64) -> Vec<Record> {
    (1..=count)
        .map(|i| record(i, &format!("event {i}"), Value::I64(i as i64)))
        .collect()
}

/// A record whose `n` is a string (a mapping conflict against a `long` field).
pub fn bad_record(seq: u64) -> Record {
    let mut r = record(seq, "bad", Value::Bool(false));
    let t = r.fields.push_str("not a number");
    r.fields.set("n", Value::Str(t));
    r
}

/// Runs one `Sink::send` on a fresh current-thread runtime (as the pipeline does).
pub fn send(sink: &mut EsSink, batch: &[Record]) -> Outcomes {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(sink.send(batch))
}

/// A sink on `url` with `index`, for service `test`.
pub fn sink(config: EsConfig) -> EsSink {
    EsSink::new(config, format("test"))
}

/// A pipeline config with fast retries and flushes, for tests.
pub fn fast_pipeline() -> PipelineConfig {
    PipelineConfig {
        flush_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(20),
        },
        ..PipelineConfig::default()
    }
}

/// Pushes `batch` through a pipeline and waits for it to settle.
pub fn through_pipeline(sink: EsSink, batch: Vec<Record>) -> hivelog_core::Stats {
    let p = Pipeline::spawn(sink, fast_pipeline()).unwrap();
    for r in batch {
        p.push(r);
    }
    p.shutdown(Instant::now() + Duration::from_secs(20))
}

/// The bulk lines of a request: (action line, document) pairs.
pub fn pairs(req: &Request) -> Vec<(serde_json::Value, serde_json::Value)> {
    let lines = req.ndjson();
    lines
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// The `_id` of each document of a bulk request.
pub fn ids(req: &Request) -> Vec<String> {
    pairs(req)
        .iter()
        .map(|(a, _)| {
            let (_, v) = a.as_object().unwrap().iter().next().unwrap();
            v["_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A bulk answer with, for each document `i` of the request, the status `status(i, doc)`
/// returns (with an error object for non-2xx ones), as Elasticsearch 8 writes it.
pub fn bulk_answer(req: &Request, status: impl Fn(usize, &serde_json::Value) -> u16) -> Response {
    let mut errors = false;
    let items: Vec<serde_json::Value> = pairs(req)
        .iter()
        .enumerate()
        .map(|(i, (action, doc))| {
            let (name, meta) = action.as_object().unwrap().iter().next().unwrap();
            let s = status(i, doc);
            let mut item =
                serde_json::json!({"_index": meta["_index"], "_id": meta["_id"], "status": s});
            if s >= 300 {
                errors = true;
                let (t, r) = match s {
                    400 => (
                        "document_parsing_exception",
                        "[1:42] failed to parse field [n] of type [long]",
                    ),
                    409 => (
                        "version_conflict_engine_exception",
                        "version conflict, document already exists",
                    ),
                    429 => (
                        "es_rejected_execution_exception",
                        "rejected execution of coordinating operation",
                    ),
                    _ => (
                        "unavailable_shards_exception",
                        "primary shard is not active",
                    ),
                };
                item["error"] = serde_json::json!({"type": t, "reason": r});
            }
            serde_json::json!({ name.clone(): item })
        })
        .collect();
    Response::json(
        200,
        serde_json::json!({"errors": errors, "took": 1, "items": items}).to_string(),
    )
}

/// Counts of each outcome kind.
pub fn tally(o: &Outcomes) -> (usize, usize, usize, usize, usize) {
    let s = o.as_slice();
    let c = |f: fn(&Outcome) -> bool| s.iter().filter(|x| f(x)).count();
    (
        c(|x| *x == Outcome::Delivered),
        c(|x| *x == Outcome::Retry),
        c(|x| matches!(x, Outcome::Rejected(_))),
        c(|x| *x == Outcome::Failed),
        c(|x| *x == Outcome::Deferred),
    )
}

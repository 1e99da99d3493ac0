//! The sink against noida-db, an Elasticsearch 8 API server (see `../shared/PEERS.md`):
//! documents land, a mapping conflict rejects only the bad documents, a duplicate `create`
//! counts as delivered, and a base URL with a path prefix works behind a reverse proxy.
//!
//! Run through `scripts/test.sh`, which starts noida-db and sets `HIVELOG_TEST_ES`.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use common::*;
use hivelog_core::Outcome;
use hivelog_elk::{Compression, EsConfig};
use hivelog_tests::http::{HttpServer, Request, Response};
use hivelog_tests::peers::{es_url, http, unique};
use serde_json::{json, Value};

/// A direct call to the server, outside the sink.
fn call(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    http(method, &format!("{}{path}", es_url()), body)
}

fn count(index: &str) -> u64 {
    call("POST", &format!("/{index}/_refresh"), None);
    let (status, v) = call("GET", &format!("/{index}/_count"), None);
    assert_eq!(status, 200, "{v}");
    v["count"].as_u64().unwrap()
}

#[test]
fn documents_land_and_are_countable_and_searchable() {
    let index = unique("hl-land");
    let config = EsConfig::new(&es_url())
        .unwrap()
        .index(&format!("{index}-{{service}}"))
        .unwrap()
        .compression(Compression::Gzip);
    let stats = through_pipeline(sink(config), records(200));
    assert_eq!(
        (stats.delivered, stats.rejected, stats.failed, stats.pending),
        (200, 0, 0, 0),
        "{stats:?}"
    );
    let index = format!("{index}-test");
    assert_eq!(count(&index), 200);
    let (_, v) = call(
        "POST",
        &format!("/{index}/_search"),
        Some(json!({"query": {"match": {"message": "event 42"}}, "size": 200})),
    );
    let hits = v["hits"]["hits"].as_array().unwrap();
    assert!(
        hits.iter()
            .any(|h| h["_source"]["n"] == 42 && h["_source"]["level"] == "INFO"),
        "{v}"
    );
}

#[test]
fn index_names_follow_the_events_utc_date() {
    let index = unique("hl-date");
    let config = EsConfig::new(&es_url())
        .unwrap()
        .index(&format!("{index}-{{date:%Y.%m.%d}}"))
        .unwrap();
    let mut batch = records(3);
    // 2025-03-31T23:59:59Z, then 2025-04-01T00:00:00Z.
    batch[0].time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_743_465_599);
    batch[1].time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_743_465_600);
    batch[2].time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_743_465_601);
    let out = send(&mut sink(config), &batch);
    assert_eq!(tally(&out), (3, 0, 0, 0, 0), "{:?}", out.error());
    assert_eq!(count(&format!("{index}-2025.03.31")), 1);
    assert_eq!(count(&format!("{index}-2025.04.01")), 2);
}

#[test]
fn a_mapping_conflict_rejects_only_the_bad_documents() {
    let index = unique("hl-conflict");
    let (status, v) = call(
        "PUT",
        &format!("/{index}"),
        Some(json!({"mappings": {"properties": {"n": {"type": "long"}}}})),
    );
    assert_eq!(status, 200, "{v}");
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.ndjson");
    let config = EsConfig::new(&es_url())
        .unwrap()
        .index(&index)
        .unwrap()
        .dead_letter(&dead);
    let mut batch = records(6);
    batch[2] = bad_record(3);
    batch[4] = bad_record(5);
    let out = send(&mut sink(config.clone()), &batch);
    assert_eq!(tally(&out), (4, 0, 2, 0, 0), "{:?}", out.error());
    let Outcome::Rejected(r) = out.as_slice()[2] else {
        panic!("{:?}", out.as_slice())
    };
    assert!(
        out.reason(r).starts_with("document_parsing_exception: ")
            && out.reason(r).contains("[n] of type [long]"),
        "{}",
        out.reason(r)
    );
    assert_eq!(count(&index), 4);
    let lines = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(lines.lines().count(), 2);
    assert!(lines.contains("not a number"));

    // Through the pipeline, the counters say the same.
    let stats = through_pipeline(sink(config), batch);
    assert_eq!(
        (stats.delivered, stats.rejected, stats.retried),
        (4, 2, 0),
        "{stats:?}"
    );
}

#[test]
fn a_duplicate_create_id_counts_as_delivered_and_is_stored_once() {
    let index = unique("hl-dup");
    let mut s = sink(EsConfig::new(&es_url()).unwrap().index(&index).unwrap());
    let batch = records(5);
    let out = send(&mut s, &batch);
    assert_eq!(tally(&out), (5, 0, 0, 0, 0));
    // A retry of a batch whose first attempt landed (the answer was lost).
    let out = send(&mut s, &batch);
    assert_eq!(tally(&out), (5, 0, 0, 0, 0), "{:?}", out.error());
    assert_eq!(count(&index), 5);
}

#[test]
fn a_path_prefix_base_url_works_behind_a_reverse_proxy() {
    let index = unique("hl-prefix");
    let upstream = es_url();
    let proxy = HttpServer::start(
        move |req| match req.target.strip_prefix("/api/v1/_elastic") {
            Some(rest) => forward(&upstream, rest, req),
            None => Response::json(404, r#"{"error":"no such route"}"#),
        },
    );
    let url = format!("{}/api/v1/_elastic", proxy.url());
    let config = EsConfig::new(&url)
        .unwrap()
        .index(&index)
        .unwrap()
        .setup(true);
    let stats = through_pipeline(sink(config), records(10));
    assert_eq!(stats.delivered, 10, "{stats:?}");
    assert_eq!(count(&index), 10);
    let reqs = proxy.requests();
    assert!(reqs
        .iter()
        .all(|r| r.path().starts_with("/api/v1/_elastic/")));
    assert!(reqs.iter().any(|r| r.path() == "/api/v1/_elastic/_bulk"));
    assert!(reqs
        .iter()
        .any(|r| r.path().starts_with("/api/v1/_elastic/_index_template/")));

    // Without the prefix the proxy answers 404: a configuration error, not retried.
    let config = EsConfig::new(&proxy.url()).unwrap().index(&index).unwrap();
    let out = send(&mut sink(config), &records(1));
    assert_eq!(tally(&out), (0, 0, 0, 1, 0));
    assert!(
        out.error().unwrap().contains("path prefix"),
        "{:?}",
        out.error()
    );
}

/// Sends `req` to `upstream` + `target` over a fresh connection and relays the answer.
fn forward(upstream: &str, target: &str, req: &Request) -> Response {
    let addr = upstream.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        req.method,
        req.body.len()
    );
    for (k, v) in &req.headers {
        if matches!(
            k.as_str(),
            "content-type" | "content-encoding" | "authorization" | "accept"
        ) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&req.body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Response::json(status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..line]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[line + 2..line + 2 + n]);
        b = &b[line + 4 + n..];
    }
}

#[test]
fn setup_installs_a_template_that_maps_the_basic_fields() {
    let index = unique("hl-setup");
    let config = EsConfig::new(&es_url())
        .unwrap()
        .index(&format!("{index}-{{date:%Y.%m}}"))
        .unwrap()
        .setup(true);
    let stats = through_pipeline(sink(config), records(3));
    assert_eq!(stats.delivered, 3, "{stats:?}");
    let (status, v) = call("GET", &format!("/_index_template/hivelog-{index}"), None);
    assert_eq!(status, 200, "{v}");
    let (_, v) = call("GET", &format!("/{index}-*/_mapping"), None);
    let (_, m) = v.as_object().unwrap().iter().next().expect("one index");
    let p = &m["mappings"]["properties"];
    assert_eq!(p["level"]["type"], "keyword", "{v}");
    assert_eq!(p["message"]["type"], "text", "{v}");
    assert_eq!(p["timestamp"]["type"], "date", "{v}");
}

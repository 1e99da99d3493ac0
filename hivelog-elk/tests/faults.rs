//! The sink against a scripted server: what Elasticsearch requires of a request, and every
//! failure a real cluster (or the proxy in front of it) can produce.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hivelog_core::Outcome;
use hivelog_elk::{Action, Compression, EsConfig};
use hivelog_tests::http::{HttpServer, Response};

fn ok_server() -> HttpServer {
    HttpServer::start(|req| {
        if req.method == "PUT" {
            return Response::json(200, r#"{"acknowledged":true}"#);
        }
        bulk_answer(req, |_, _| 201)
    })
}

#[test]
fn bulk_bodies_are_ndjson_with_a_final_newline_and_the_ndjson_content_type() {
    let server = ok_server();
    let mut sink = sink(
        EsConfig::new(&server.url())
            .unwrap()
            .index("logs-{service}")
            .unwrap(),
    );
    let out = send(&mut sink, &records(3));
    assert_eq!(tally(&out), (3, 0, 0, 0, 0));
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), "/_bulk");
    assert!(req
        .query_param("filter_path")
        .unwrap()
        .contains("items.*.error.reason"));
    assert_eq!(req.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(req.header("content-encoding"), None);
    assert!(
        req.body.ends_with(b"\n"),
        "the last line must end with a newline"
    );
    assert_eq!(req.body.iter().filter(|b| **b == b'\n').count(), 6);
    let p = pairs(req);
    assert_eq!(p[0].0["create"]["_index"], "logs-test");
    assert_eq!(p[2].1["message"], "event 3");
    assert_eq!(p[2].1["n"], 3);
    let ids = ids(req);
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id[..16] == ids[0][..16]), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    assert!(out.bytes_sent() as usize == req.body.len());
}

#[test]
fn gzip_bodies_decode_to_the_same_ndjson() {
    let server = ok_server();
    let config = EsConfig::new(&server.url())
        .unwrap()
        .compression(Compression::Gzip);
    let out = send(&mut sink(config), &records(50));
    assert_eq!(tally(&out), (50, 0, 0, 0, 0));
    let req = &server.requests()[0];
    assert_eq!(req.header("content-encoding"), Some("gzip"));
    assert_eq!(&req.body[..2], &[0x1f, 0x8b], "gzip magic");
    let plain = req.decoded_body();
    assert!(plain.ends_with(b"\n"));
    assert!(req.body.len() < plain.len() / 3);
    assert_eq!(pairs(req).len(), 50);
}

#[test]
fn index_action_is_sent_when_configured() {
    let server = ok_server();
    let config = EsConfig::new(&server.url()).unwrap().action(Action::Index);
    send(&mut sink(config), &records(1));
    assert!(pairs(&server.requests()[0])[0].0["index"]["_id"].is_string());
}

#[test]
fn retried_429_items_are_resent_alone_and_400_items_are_reported() {
    // First request: document 2 is throttled, document 4 does not fit the mapping.
    let server = HttpServer::start(|req| {
        bulk_answer(req, |i, _| match (req.index, i) {
            (0, 1) => 429,
            (0, 3) => 400,
            _ => 201,
        })
    });
    let mut s = sink(EsConfig::new(&server.url()).unwrap());
    let out = send(&mut s, &records(5));
    let o = out.as_slice();
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[1], Outcome::Retry);
    let Outcome::Rejected(r) = o[3] else {
        panic!("{o:?}")
    };
    assert_eq!(
        out.reason(r),
        "document_parsing_exception: [1:42] failed to parse field [n] of type [long]"
    );
    assert_eq!(tally(&out), (3, 1, 1, 0, 0));
    assert!(
        out.error()
            .unwrap()
            .contains("es_rejected_execution_exception"),
        "{:?}",
        out.error()
    );

    // Through the pipeline: only the throttled document is sent again, with the same _id.
    let server2 = HttpServer::start(|req| {
        bulk_answer(req, |i, _| match (req.index, i) {
            (0, 1) => 429,
            (0, 3) => 400,
            _ => 201,
        })
    });
    let stats = through_pipeline(sink(EsConfig::new(&server2.url()).unwrap()), records(5));
    assert_eq!(
        (
            stats.delivered,
            stats.rejected,
            stats.retried,
            stats.pending
        ),
        (4, 1, 1, 0),
        "{stats:?}"
    );
    let reqs = server2.requests();
    assert_eq!(reqs.len(), 2);
    let first = ids(&reqs[0]);
    assert_eq!(ids(&reqs[1]), vec![first[1].clone()]);
}

#[test]
fn a_413_splits_the_batch_until_each_part_fits() {
    let limit = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&limit);
    let server = HttpServer::start(move |req| {
        if req.body.len() > l.load(Ordering::Relaxed) {
            Response::json(413, "")
                .header("connection", "close")
                .close()
        } else {
            bulk_answer(req, |_, _| 201)
        }
    });
    let batch = records(40);
    let mut s = sink(EsConfig::new(&server.url()).unwrap());
    // Find the full size, then allow a bit more than a quarter of it.
    let full = {
        let probe = ok_server();
        send(&mut sink(EsConfig::new(&probe.url()).unwrap()), &batch);
        probe.requests()[0].body.len()
    };
    limit.store(full / 4 + 50, Ordering::Relaxed);
    let out = send(&mut s, &batch);
    assert_eq!(tally(&out), (40, 0, 0, 0, 0));
    let reqs = server.requests();
    let accepted: Vec<_> = reqs
        .iter()
        .filter(|r| r.body.len() <= full / 4 + 50)
        .collect();
    let docs: usize = accepted.iter().map(|r| pairs(r).len()).sum();
    assert_eq!(docs, 40, "every document sent once in an accepted request");
    assert!(
        reqs.len() >= 5 && reqs.len() <= 8,
        "{} requests",
        reqs.len()
    );
    // The sink remembers: the next batch is cut to fit at once, the rest deferred.
    let before = server.request_count();
    let out = send(&mut s, &batch);
    let (delivered, _, _, _, deferred) = tally(&out);
    assert_eq!(delivered + deferred, 40);
    assert!(delivered > 0 && deferred > 0);
    assert_eq!(server.request_count(), before + 1, "no 413 the second time");
}

#[test]
fn a_document_too_large_for_the_server_is_rejected_not_resent() {
    let server = HttpServer::start(|req| {
        if req.body.len() > 300 {
            Response::json(413, "")
        } else {
            bulk_answer(req, |_, _| 201)
        }
    });
    let mut batch = records(2);
    batch.push(record(
        3,
        &"x".repeat(1000),
        hivelog_core::record::Value::I64(3),
    ));
    let out = send(&mut sink(EsConfig::new(&server.url()).unwrap()), &batch);
    assert_eq!(tally(&out), (2, 0, 1, 0, 0));
    let Outcome::Rejected(r) = out.as_slice()[2] else {
        panic!()
    };
    assert!(
        out.reason(r).starts_with("request_entity_too_large"),
        "{}",
        out.reason(r)
    );
}

#[test]
fn a_500_is_retried_after_a_backoff_then_delivered() {
    let server = HttpServer::start(|req| {
        if req.index == 0 {
            Response::json(
                500,
                r#"{"error":{"type":"node_not_connected_exception","reason":"boom"},"status":500}"#,
            )
        } else {
            bulk_answer(req, |_, _| 201)
        }
    });
    let stats = through_pipeline(sink(EsConfig::new(&server.url()).unwrap()), records(10));
    assert_eq!(
        (stats.delivered, stats.retried, stats.failed),
        (10, 10, 0),
        "{stats:?}"
    );
    assert!(stats
        .last_error
        .unwrap()
        .contains("500 (node_not_connected_exception: boom)"));
    let reqs = server.requests();
    assert_eq!(
        ids(&reqs[0]),
        ids(&reqs[1]),
        "the same documents, the same ids"
    );
}

#[test]
fn a_whole_request_429_honours_retry_after() {
    let server = HttpServer::start(|_| Response::json(429, "{}").header("retry-after", "3"));
    let out = send(
        &mut sink(EsConfig::new(&server.url()).unwrap()),
        &records(2),
    );
    assert_eq!(tally(&out), (0, 2, 0, 0, 0));
    assert_eq!(out.retry_after(), Some(Duration::from_secs(3)));
}

#[test]
fn a_401_fails_the_batch_without_retrying_and_says_why() {
    let server = HttpServer::start(|_| {
        Response::json(
            401,
            r#"{"error":{"type":"security_exception","reason":"unable to authenticate user [elastic] for REST request [/_bulk]"},"status":401}"#,
        )
        .header("www-authenticate", "Basic realm=\"security\"")
    });
    let config = EsConfig::new(&server.url())
        .unwrap()
        .basic_auth("elastic", "wrong");
    let stats = through_pipeline(sink(config), records(10));
    assert_eq!(
        (stats.failed, stats.retried, stats.delivered),
        (10, 0, 0),
        "{stats:?}"
    );
    let err = stats.last_error.unwrap();
    assert!(
        err.contains("401 Unauthorized") && err.contains("HIVELOG_ES_USERNAME"),
        "{err}"
    );
    assert!(
        err.contains("unable to authenticate user [elastic]"),
        "{err}"
    );
    assert_eq!(server.request_count(), 1, "never loops on bad credentials");
}

#[test]
fn a_403_fails_the_batch_and_names_the_privilege() {
    let server = HttpServer::start(|_| {
        Response::json(
            403,
            r#"{"error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized"},"status":403}"#,
        )
    });
    let out = send(
        &mut sink(EsConfig::new(&server.url()).unwrap()),
        &records(3),
    );
    assert_eq!(tally(&out), (0, 0, 0, 3, 0));
    assert!(
        out.error().unwrap().contains("create_doc"),
        "{:?}",
        out.error()
    );
}

#[test]
fn slow_answers_beyond_the_timeout_are_retried() {
    let server = HttpServer::start(|req| {
        let r = bulk_answer(req, |_, _| 201);
        if req.index == 0 {
            r.delay(Duration::from_secs(3))
        } else {
            r
        }
    });
    let config = EsConfig::new(&server.url())
        .unwrap()
        .timeout(Duration::from_millis(300));
    let mut s = sink(config);
    let t = std::time::Instant::now();
    let out = send(&mut s, &records(4));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(tally(&out), (0, 4, 0, 0, 0));
    assert!(
        out.error().unwrap().contains("timed out"),
        "{:?}",
        out.error()
    );
    let out = send(&mut s, &records(4));
    assert_eq!(tally(&out), (4, 0, 0, 0, 0));
}

#[test]
fn connection_resets_are_retried() {
    let server = HttpServer::start(|req| match req.index {
        0 => bulk_answer(req, |_, _| 201).reset_mid_body(),
        1 => Response::new(200).reset(),
        _ => bulk_answer(req, |_, _| 201),
    });
    let mut s = sink(EsConfig::new(&server.url()).unwrap());
    let out = send(&mut s, &records(3));
    assert_eq!(tally(&out), (0, 3, 0, 0, 0), "{:?}", out.error());
    let out = send(&mut s, &records(3));
    assert_eq!(tally(&out), (0, 3, 0, 0, 0), "{:?}", out.error());
    let out = send(&mut s, &records(3));
    assert_eq!(tally(&out), (3, 0, 0, 0, 0));
}

#[test]
fn a_huge_answer_is_not_read_past_the_cap() {
    let server = HttpServer::start(|_| Response::json(200, vec![b' '; 20 << 20]));
    let out = send(
        &mut sink(EsConfig::new(&server.url()).unwrap()),
        &records(2),
    );
    assert_eq!(tally(&out), (0, 2, 0, 0, 0));
    assert!(
        out.error().unwrap().contains("larger than"),
        "{:?}",
        out.error()
    );
}

#[test]
fn unreadable_or_short_answers_resend_what_is_unaccounted_for() {
    let server = HttpServer::start(|req| match req.index {
        0 => Response::json(200, "<html>proxy</html>"),
        _ => Response::json(
            200,
            r#"{"errors":true,"items":[{"create":{"status":201}}]}"#,
        ),
    });
    let mut s = sink(EsConfig::new(&server.url()).unwrap());
    let out = send(&mut s, &records(2));
    assert_eq!(tally(&out), (0, 2, 0, 0, 0));
    let out = send(&mut s, &records(2));
    assert_eq!(out.as_slice(), &[Outcome::Delivered, Outcome::Retry]);
}

#[test]
fn a_409_on_create_counts_as_delivered() {
    let server = HttpServer::start(|req| bulk_answer(req, |i, _| if i == 0 { 409 } else { 201 }));
    let out = send(
        &mut sink(EsConfig::new(&server.url()).unwrap()),
        &records(2),
    );
    assert_eq!(tally(&out), (2, 0, 0, 0, 0));
}

#[test]
fn auth_headers_are_sent_as_elasticsearch_expects() {
    let server = ok_server();
    send(
        &mut sink(
            EsConfig::new(&server.url())
                .unwrap()
                .basic_auth("elastic", "changeme"),
        ),
        &records(1),
    );
    send(
        &mut sink(
            EsConfig::new(&server.url())
                .unwrap()
                .api_key("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")
                .unwrap(),
        ),
        &records(1),
    );
    send(
        &mut sink(EsConfig::new(&server.url()).unwrap()),
        &records(1),
    );
    let reqs = server.requests();
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==")
    );
    assert_eq!(
        reqs[1].header("authorization"),
        Some("ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==")
    );
    assert_eq!(reqs[2].header("authorization"), None);
}

#[test]
fn a_path_prefix_is_kept_in_request_urls() {
    let server = ok_server();
    let url = format!("{}/api/v1/_elastic/", server.url());
    send(&mut sink(EsConfig::new(&url).unwrap()), &records(1));
    assert_eq!(server.requests()[0].path(), "/api/v1/_elastic/_bulk");
}

#[test]
fn nodes_take_turns_and_a_dead_node_fails_over_to_the_next() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let a = ok_server();
    let b = ok_server();
    let config = EsConfig::new(&format!("{dead},{},{}", a.url(), b.url())).unwrap();
    let mut s = sink(config);
    for _ in 0..3 {
        let out = send(&mut s, &records(1));
        assert_eq!(tally(&out), (1, 0, 0, 0, 0), "{:?}", out.error());
    }
    // dead → a; a; b.
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
}

#[test]
fn rejected_documents_go_to_the_dead_letter_file_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rejected.ndjson");
    let server = HttpServer::start(|req| bulk_answer(req, |i, _| if i == 1 { 400 } else { 201 }));
    let config = EsConfig::new(&server.url()).unwrap().dead_letter(&path);
    let mut s = sink(config);
    send(&mut s, &records(3));
    send(&mut s, &records(2));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], 400);
    assert!(lines[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("document_parsing_exception: "));
    assert_eq!(lines[0]["document"]["message"], "event 2");
    assert_eq!(lines[0]["action"]["create"]["_index"], "logs-test");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn setup_installs_an_index_template_before_the_first_batch() {
    let server = ok_server();
    let config = EsConfig::new(&server.url())
        .unwrap()
        .index("logs-{service}-{date:%Y.%m.%d}")
        .unwrap()
        .setup(true);
    let stats = through_pipeline(sink(config), records(2));
    assert_eq!(stats.delivered, 2);
    let reqs = server.requests();
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].path(), "/_index_template/hivelog-logs-test");
    let t = reqs[0].json();
    assert_eq!(t["index_patterns"][0], "logs-test-*");
    assert_eq!(
        t["template"]["mappings"]["properties"]["timestamp"]["type"],
        "date"
    );
    assert_eq!(
        t["template"]["mappings"]["properties"]["level"]["type"],
        "keyword"
    );
    assert_eq!(reqs[1].path(), "/_bulk");
}

#[test]
fn debug_output_never_shows_credentials() {
    let config = EsConfig::new("https://bob:hunter2@127.0.0.1:9200")
        .unwrap()
        .api_key("myid:topsecretkey")
        .unwrap();
    let s = sink(config.clone());
    for text in [format!("{config:?}"), format!("{s:?}")] {
        assert!(
            !text.contains("hunter2") && !text.contains("topsecretkey"),
            "{text}"
        );
        // base64("myid:topsecretkey") must not leak either.
        assert!(!text.contains("bXlpZDp0b3BzZWNyZXRrZXk"), "{text}");
    }
}

#[test]
fn a_custom_ca_certificate_is_trusted_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = hivelog_tests::forward::tls_material(dir.path());
    let server = HttpServer::start_tls(&chain, &key, |req| bulk_answer(req, |_, _| 201));
    let env = hivelog_core::Env::from_pairs([
        ("HIVELOG_ES_URL", server.https_url()),
        ("HIVELOG_ES_CA_CERT", ca.display().to_string()),
    ]);
    let config = EsConfig::from_env(&env).unwrap().unwrap();
    let out = send(&mut sink(config), &records(2));
    assert_eq!(tally(&out), (2, 0, 0, 0, 0), "{:?}", out.error());
    // Without the CA the server's certificate is not trusted: retried, with the reason.
    let out = send(
        &mut sink(EsConfig::new(&server.https_url()).unwrap()),
        &records(2),
    );
    assert_eq!(tally(&out), (0, 2, 0, 0, 0));
    assert!(
        out.error().unwrap().to_lowercase().contains("certificate"),
        "{:?}",
        out.error()
    );
    assert_eq!(server.request_count(), 1);
}

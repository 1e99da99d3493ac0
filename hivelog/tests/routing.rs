//! Per-destination level filters: one logger to one sink, another to another, all to stdout,
//! each event captured once. (Requires the `fluent` and `elk` features: `--all-features`.)
#![cfg(all(feature = "fluent", feature = "elk"))]

mod support;

use std::time::Duration;

use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::http::{HttpServer, Response};
use serde_json::json;

/// Answers `_bulk` like Elasticsearch: one `201 created` item per action line.
fn bulk_ok() -> HttpServer {
    HttpServer::start(|req| {
        if !req.path().ends_with("/_bulk") {
            return Response::json(200, "{}");
        }
        let docs = req.ndjson().len() / 2;
        let items: Vec<_> = (0..docs)
            .map(|_| json!({"create": {"status": 201}}))
            .collect();
        Response::json(200, json!({"errors": false, "items": items}).to_string())
    })
}

#[test]
fn each_sink_gets_only_what_its_level_lets_through_and_stdout_gets_everything() {
    let receiver = ForwardReceiver::start(ReceiverConfig::default());
    let es = bulk_ok();
    let vars = [
        ("HIVELOG_LEVEL", "info".to_owned()),
        ("HIVELOG_FLUENT_ADDR", receiver.url()),
        ("HIVELOG_FLUENT_LEVEL", "off,audit=info".to_owned()),
        ("HIVELOG_ES_URL", es.url()),
        ("HIVELOG_ES_LEVEL", "warn".to_owned()),
        ("HIVELOG_FLUSH_INTERVAL", "50ms".to_owned()),
        ("HIVELOG_SERVICE", "routing".to_owned()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let buf = support::Buf::default();
    let env = hivelog::Env::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!(target: "audit", user = "a@b.c", "login");
        tracing::warn!(target: "app", "disk almost full");
        tracing::info!(target: "app", "request served");
        tracing::debug!(target: "audit", "not even local");
    });
    let report = guard.shutdown(Duration::from_secs(10));
    assert!(report.is_complete(), "{report}");

    let local: Vec<_> = support::parse(&buf.text())
        .iter()
        .map(|l| l["message"].clone())
        .collect();
    assert_eq!(local, ["login", "disk almost full", "request served"]);

    let fluent: Vec<_> = receiver
        .events()
        .iter()
        .map(|e| e.str("message").unwrap().to_owned())
        .collect();
    assert_eq!(fluent, ["login"]);
    assert_eq!(receiver.events()[0].str("user"), Some("a@b.c"));
    assert_eq!(receiver.events()[0].tag, "routing");

    let docs: Vec<_> = es
        .requests()
        .iter()
        .filter(|r| r.path().ends_with("/_bulk"))
        .flat_map(|r| r.ndjson().into_iter().skip(1).step_by(2))
        .map(|d| d["message"].clone())
        .collect();
    assert_eq!(docs, ["disk almost full"]);

    let by_sink: Vec<_> = report
        .sinks
        .iter()
        .map(|s| (s.sink, s.enqueued, s.delivered))
        .collect();
    assert_eq!(by_sink, [("fluent", 1, 1), ("elasticsearch", 1, 1)]);
}

#[test]
fn env_variables_override_parts_of_a_sink_configured_in_code() {
    let es = bulk_ok();
    let code = hivelog::elk::EsConfig::new(&es.url())
        .unwrap()
        .index("code-index")
        .unwrap();
    let env = hivelog::Env::from_pairs([
        ("HIVELOG_ES_INDEX", "env-index"),
        ("HIVELOG_FLUSH_INTERVAL", "50ms"),
    ]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .output(hivelog::Output::None)
        .destination(code)
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("to es"));
    let report = guard.shutdown(Duration::from_secs(10));
    assert_eq!(report.sinks[0].delivered, 1, "{report}");
    let bulk = es
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with("/_bulk"))
        .unwrap();
    let action = &bulk.ndjson()[0];
    assert_eq!(action["create"]["_index"], "env-index", "{action}");
}

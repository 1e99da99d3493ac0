//! Destinations are plug-ins: a fourth one (`hivelog_tests::webhook`, an HTTP endpoint of the
//! test servers) is registered with one line and then configured by its variables, filtered
//! by its level variable, warned about, and shown and probed by `hivelog check`, with no change
//! to the facade or the CLI.

use std::process::{Command, Output};
use std::time::Duration;

use hivelog::Env;
use hivelog_tests::http::{HttpServer, Response};

fn register() {
    hivelog::register_destination(&hivelog_tests::webhook::DESTINATION);
}

#[test]
fn a_registered_destination_is_configured_by_its_variables_and_ships_events() {
    register();
    let server = HttpServer::start(|_| Response::new(200));
    let env = Env::from_pairs([
        ("HIVELOG_WEBHOOK_URL", server.url() + "/logs"),
        ("HIVELOG_WEBHOOK_LEVEL", "warn".to_owned()),
    ]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .output(hivelog::Output::None)
        .panic_hook(false)
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!("below the webhook's level");
        tracing::warn!(user = "a@b.c", "first");
        tracing::error!("second");
    });
    let report = guard.shutdown(Duration::from_secs(5));
    let sink = report.sinks.iter().find(|s| s.sink == "webhook").unwrap();
    assert_eq!((sink.enqueued, sink.delivered), (2, 2), "{report}");
    let lines: Vec<_> = server.requests().iter().flat_map(|r| r.ndjson()).collect();
    let messages: Vec<_> = lines.iter().map(|l| l["message"].clone()).collect();
    assert_eq!(messages, ["first", "second"]);
    assert_eq!(lines[0]["user"], "a@b.c");
    assert_eq!(server.requests()[0].path(), "/logs");
}

#[test]
fn a_webhook_url_set_in_code_keeps_the_token_from_the_environment() {
    register();
    let server = HttpServer::start(|_| Response::new(200));
    let env = Env::from_pairs([("HIVELOG_WEBHOOK_TOKEN", "s3cret")]);
    let url = server.url() + "/logs";
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .destination(hivelog_tests::webhook::WebhookConfig::new(&url).unwrap())
        .output(hivelog::Output::None)
        .panic_hook(false)
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::warn!("with a token"));
    let report = guard.shutdown(Duration::from_secs(5));
    let sink = report.sinks.iter().find(|s| s.sink == "webhook").unwrap();
    assert_eq!(sink.delivered, 1, "{report}");
    let requests = server.requests();
    assert_eq!(requests[0].path(), "/logs");
    assert_eq!(requests[0].header("authorization"), Some("Bearer s3cret"));
}

#[test]
fn a_registered_destination_reports_typed_failures() {
    register();
    let server = HttpServer::start(|_| Response::new(401));
    let env = Env::from_pairs([("HIVELOG_WEBHOOK_URL", server.url())]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .output(hivelog::Output::None)
        .panic_hook(false)
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::error!("refused"));
    let report = guard.shutdown(Duration::from_secs(5));
    let sink = report.sinks.iter().find(|s| s.sink == "webhook").unwrap();
    assert_eq!(sink.failed, 1, "{report}");
    assert_eq!(
        sink.last_failure,
        Some(hivelog::core::FailureKind::Credentials)
    );
}

#[test]
fn a_bad_value_of_a_registered_destination_names_its_variable() {
    register();
    let env = Env::from_pairs([("HIVELOG_WEBHOOK_URL", "ftp://x")]);
    let err = hivelog::builder().env(env).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "HIVELOG_WEBHOOK_URL: 'ftp://x' is not a webhook URL; expected http://host:port/path or https://…"
    );
}

/// `hivelog check` of the binary that registers the webhook, with exactly `vars`.
fn check(vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hivelog-with-webhook"))
        .args(["check", "--timeout", "5s"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn hivelog_check_shows_and_probes_a_registered_destination() {
    let server = HttpServer::start(|_| Response::new(204));
    let url = server.url();
    let o = check(&[
        ("HIVELOG_WEBHOOK_URL", &url),
        ("HIVELOG_WEBHOOK_TOKEN", "s3cret-token"),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("  webhook (on)"), "{out}");
    assert!(out.contains("HIVELOG_WEBHOOK_LEVEL"), "{out}");
    assert!(
        out.contains("reachable: yes  authenticated: yes  event accepted: yes"),
        "{out}"
    );
    assert!(!out.contains("s3cret-token"), "{out}");
    let req = &server.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer s3cret-token"));
    assert!(req.ndjson()[0]["check_id"].is_string());
}

#[test]
fn hivelog_check_reads_a_registered_destinations_failures_by_kind() {
    let refusing = HttpServer::start(|_| Response::new(403));
    let o = check(&[("HIVELOG_WEBHOOK_URL", &refusing.url())]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("reachable: yes  authenticated: no"), "{out}");
    assert!(out.contains("failure: credentials_refused"), "{out}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let o = check(&[("HIVELOG_WEBHOOK_URL", &url)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("reachable: no"), "{out}");
    assert!(out.contains("failure: unreachable"), "{out}");
}

#[test]
fn a_registered_destination_without_a_level_of_its_own_follows_run_time_level_changes() {
    hivelog::register_destination(&hivelog_tests::collect::DESTINATION);
    let key = "follows-set-level";
    let env = Env::from_pairs([("HIVELOG_COLLECT", key), ("HIVELOG_LEVEL", "info")]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .output(hivelog::Output::None)
        .panic_hook(false)
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::debug!("debug before");
        tracing::info!("info before");
        guard.set_level("debug").unwrap();
        tracing::debug!("debug after");
        guard.set_level("warn").unwrap();
        tracing::info!("info after warn");
        tracing::warn!("warn after warn");
    });
    let report = guard.shutdown(Duration::from_secs(5));
    assert!(report.is_complete(), "{report}");
    assert_eq!(
        hivelog_tests::collect::messages(key),
        ["info before", "debug after", "warn after warn"]
    );
}

#[test]
fn hivelog_check_reports_a_probe_that_panics_as_an_internal_failure() {
    let o = Command::new(env!("CARGO_BIN_EXE_hivelog-with-collect"))
        .args(["check", "--json", "--timeout", "5s"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("HIVELOG_COLLECT", "probe"),
            ("HIVELOG_COLLECT_PANIC", "true"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(o.status.code(), Some(1), "{v:#}");
    let dests = v["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 1, "{v:#}");
    let d = &dests[0];
    assert_eq!(d["sink"], "collect", "{d:#}");
    assert_eq!(d["accepted"], false, "{d:#}");
    assert_eq!(d["failure"], "internal", "{d:#}");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("HIVELOG_COLLECT_PANIC"),
        "{d:#}"
    );
}

//! The sink against moto (`scripts/test.sh` starts it; `HIVELOG_TEST_MOTO` is its URL):
//! what CloudWatch Logs stores is read back with GetLogEvents and compared exactly.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use hivelog_cloudwatch::{limits, CloudWatchSink, MessageFormat};
use hivelog_core::{Format, Outcome, Sink};

fn moto() -> String {
    hivelog_tests::peers::moto_url()
}

#[test]
fn group_stream_and_retention_are_created_and_events_read_back_in_order_exactly() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("create");
        let mut sink = sink(
            config(&url, &group)
                .retention_days(Some(7))
                .format(MessageFormat::Text),
        );
        sink.start().await;
        let now = SystemTime::now();
        let messages = [
            "article hit",
            "héllo wörld €😀",
            "line\nbreak",
            "  spaces  ",
        ];
        let batch: Vec<_> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| record("app", m, now + Duration::from_millis(i as u64)))
            .collect();
        let outcomes = sink.send(&batch).await;
        assert_eq!(tally(&outcomes), (4, 0, 0, 0, 0), "{outcomes:?}");
        let second = [record(
            "app",
            "second batch",
            now + Duration::from_millis(10),
        )];
        assert_eq!(tally(&sink.send(&second).await), (1, 0, 0, 0, 0));

        let c = client(&url).await;
        let groups = c
            .describe_log_groups()
            .log_group_name_prefix(&group)
            .send()
            .await
            .unwrap();
        let g = &groups.log_groups()[0];
        assert_eq!(g.log_group_name(), Some(group.as_str()));
        assert_eq!(g.retention_in_days(), Some(7));
        let stream = format!("test-instance/svc/{}", std::process::id());
        assert_eq!(streams(&c, &group).await, std::slice::from_ref(&stream));
        let got: Vec<String> = events(&c, &group, &stream)
            .await
            .into_iter()
            .map(|e| e.1)
            .collect();
        let mut want: Vec<String> = messages.iter().map(|m| text(m)).collect();
        want.push(text("second batch"));
        assert_eq!(got, want);
    });
}

#[test]
fn json_messages_are_the_formatters_lines_with_the_events_timestamps() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("json");
        let mut sink = sink(config(&url, &group));
        let t = SystemTime::now() - Duration::from_secs(3600);
        let r = record("app::db", "query done", t);
        assert_eq!(
            tally(&sink.send(std::slice::from_ref(&r)).await),
            (1, 0, 0, 0, 0)
        );
        let c = client(&url).await;
        let stream = sink.stream_name(&r);
        let got = events(&c, &group, &stream).await;
        let mut line = Vec::new();
        format().write_json(&r, &mut line);
        assert_eq!(got, [(limits_ms(t), String::from_utf8(line).unwrap())]);
    });
}

fn limits_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn an_existing_group_and_stream_are_reused() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("existing");
        let c = client(&url).await;
        c.create_log_group()
            .log_group_name(&group)
            .send()
            .await
            .unwrap();
        c.create_log_stream()
            .log_group_name(&group)
            .log_stream_name("fixed")
            .send()
            .await
            .unwrap();
        let mut sink = sink(
            config(&url, &group)
                .stream("fixed")
                .unwrap()
                .format(MessageFormat::Text),
        );
        sink.start().await;
        let outcomes = sink
            .send(&[record("app", "into an existing stream", SystemTime::now())])
            .await;
        assert_eq!(tally(&outcomes), (1, 0, 0, 0, 0), "{outcomes:?}");
        assert_eq!(
            events(&c, &group, "fixed").await[0].1,
            text("into an existing stream")
        );
    });
}

#[test]
fn a_deleted_stream_is_recreated_and_its_records_resent() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("recreate");
        let mut sink = sink(
            config(&url, &group)
                .stream("s")
                .unwrap()
                .format(MessageFormat::Text),
        );
        let now = SystemTime::now();
        assert_eq!(
            tally(&sink.send(&[record("app", "before", now)]).await),
            (1, 0, 0, 0, 0)
        );
        let c = client(&url).await;
        c.delete_log_stream()
            .log_group_name(&group)
            .log_stream_name("s")
            .send()
            .await
            .unwrap();

        let batch = [record("app", "after 1", now), record("app", "after 2", now)];
        let first = sink.send(&batch).await;
        assert_eq!(tally(&first), (0, 0, 2, 0, 0), "{first:?}");
        assert!(
            first.error().unwrap().contains("ResourceNotFoundException"),
            "{first:?}"
        );
        // The stream is back already; the pipeline's retry delivers.
        assert_eq!(streams(&c, &group).await, ["s"]);
        assert_eq!(tally(&sink.send(&batch).await), (2, 0, 0, 0, 0));
        let got: Vec<String> = events(&c, &group, "s")
            .await
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(got, [text("after 1"), text("after 2")]);
    });
}

#[test]
fn a_batch_logged_out_of_order_is_sent_in_chronological_order() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("order");
        let mut sink = sink(
            config(&url, &group)
                .stream("s")
                .unwrap()
                .format(MessageFormat::Text),
        );
        let t = SystemTime::now() - Duration::from_secs(60);
        let at = |s: u64| t + Duration::from_secs(s);
        // A retried record (older) ahead of newer ones, and same-millisecond records.
        let batch = [
            record("app", "c", at(3)),
            record("app", "a", at(1)),
            record("app", "d1", at(4)),
            record("app", "d2", at(4)),
            record("app", "b", at(2)),
        ];
        let outcomes = sink.send(&batch).await;
        assert_eq!(tally(&outcomes), (5, 0, 0, 0, 0), "{outcomes:?}");
        let got = events(&client(&url).await, &group, "s").await;
        let msgs: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(msgs, ["INFO a", "INFO b", "INFO c", "INFO d1", "INFO d2"]);
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
    });
}

#[test]
fn events_outside_the_time_windows_are_rejected_and_counted_while_the_rest_land() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("window");
        let mut sink = sink(
            config(&url, &group)
                .stream("s")
                .unwrap()
                .format(MessageFormat::Text),
        );
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let batch = [
            record("app", "15 days old", now - 15 * day),
            record("app", "13 days old", now - 13 * day),
            record("app", "now", now),
            record("app", "1 hour ahead", now + Duration::from_secs(3600)),
            record("app", "3 hours ahead", now + Duration::from_secs(3 * 3600)),
        ];
        let outcomes = sink.send(&batch).await;
        assert_eq!(tally(&outcomes), (3, 0, 0, 2, 0), "{outcomes:?}");
        let reason = |i: usize| match outcomes.as_slice()[i] {
            Outcome::Rejected(r) => outcomes.reason(r).to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(0), limits::reason::TOO_OLD);
        assert_eq!(reason(4), limits::reason::TOO_NEW);
        let got: Vec<String> = events(&client(&url).await, &group, "s")
            .await
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(
            got,
            [text("13 days old"), text("now"), text("1 hour ahead")]
        );
    });
}

#[test]
fn one_stream_per_logger_with_the_target_placeholder() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("target");
        let mut sink = sink(
            config(&url, &group)
                .stream("{instance}/{target}/{pid}")
                .unwrap()
                .format(MessageFormat::Text),
        );
        let now = SystemTime::now();
        let batch = [
            record("django.request", "r1", now),
            record("my_svc::db", "d1", now),
            record("django.request", "r2", now),
        ];
        assert_eq!(tally(&sink.send(&batch).await), (3, 0, 0, 0, 0));
        let c = client(&url).await;
        let pid = std::process::id();
        let names = streams(&c, &group).await;
        assert_eq!(
            names,
            [
                format!("test-instance/django.request/{pid}"),
                format!("test-instance/my_svc__db/{pid}")
            ]
        );
        let r: Vec<String> = events(&c, &group, &names[0])
            .await
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(r, [text("r1"), text("r2")]);
    });
}

#[test]
fn a_large_batch_is_split_into_parallel_requests_and_all_of_it_lands() {
    runtime().block_on(async {
        let url = moto();
        let group = unique("large");
        let mut sink = sink(
            config(&url, &group)
                .stream("s")
                .unwrap()
                .format(MessageFormat::Text),
        );
        let now = SystemTime::now();
        let n = 2 * limits::MAX_BATCH_EVENTS + 500;
        let batch: Vec<_> = (0..n)
            .map(|i| {
                record(
                    "app",
                    &format!("event {i:06}"),
                    now + Duration::from_micros(i as u64 * 10),
                )
            })
            .collect();
        // The partial third request is deferred once (batch fill), then sent.
        let first = sink.send(&batch).await;
        assert_eq!(tally(&first), (2 * limits::MAX_BATCH_EVENTS, 500, 0, 0, 0));
        let rest: Vec<_> = batch
            .iter()
            .zip(first.as_slice())
            .filter(|(_, o)| **o == Outcome::Deferred)
            .map(|(r, _)| r.clone())
            .collect();
        assert_eq!(send_until_done(&mut sink, &rest).await, (500, 0, 0, 0, 0));
        let got = events(&client(&url).await, &group, "s").await;
        assert_eq!(got.len(), n);
        let mut msgs: Vec<String> = got.into_iter().map(|e| e.1).collect();
        msgs.sort();
        assert!(msgs
            .iter()
            .enumerate()
            .all(|(i, m)| *m == text(&format!("event {i:06}"))));
    });
}

#[test]
fn through_the_pipeline_every_record_lands_once_in_log_order() {
    use hivelog_core::{Pipeline, PipelineConfig};
    use std::time::Instant;

    let url = moto();
    let group = unique("pipeline");
    let _rt = runtime(); // sets AWS_EC2_METADATA_DISABLED
    let sink = sink(
        config(&url, &group)
            .stream("{target}")
            .unwrap()
            .format(MessageFormat::Text),
    );
    let config = PipelineConfig {
        flush_interval: Duration::from_millis(50),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::spawn(sink, config).unwrap();
    let n = 5_000;
    for i in 0..n {
        let target = if i % 2 == 0 { "even" } else { "odd" };
        pipeline.push(record(target, &format!("n{i:05}"), SystemTime::now()));
    }
    let stats = pipeline.shutdown(Instant::now() + Duration::from_secs(30));
    assert_eq!(
        (stats.delivered, stats.failed, stats.rejected, stats.pending),
        (n, 0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.bytes_sent > 0);
    runtime().block_on(async {
        let c = client(&url).await;
        assert_eq!(streams(&c, &group).await, ["even", "odd"]);
        for (stream, parity) in [("even", 0), ("odd", 1)] {
            let got: Vec<String> = events(&c, &group, stream)
                .await
                .into_iter()
                .map(|e| e.1)
                .collect();
            let want: Vec<String> = (0..n)
                .filter(|i| i % 2 == parity)
                .map(|i| text(&format!("n{i:05}")))
                .collect();
            assert_eq!(got, want);
        }
    });
}

#[test]
fn batches_with_emf_lines_carry_the_json_emf_header_on_put_log_events() {
    use hivelog_core::format::MetricsConfig;
    use hivelog_core::record::Value;
    runtime().block_on(async {
        let url = moto();
        let upstream = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("moto's address");
        let proxy = hivelog_tests::proxy::FaultProxy::start(upstream);
        proxy.record();
        let group = unique("emf");
        let format = Arc::new(
            Format::builder()
                .service("svc")
                .metrics(MetricsConfig {
                    dimensions: vec!["route".into()],
                    ..MetricsConfig::default()
                })
                .unwrap()
                .build(),
        );
        let mut sink = CloudWatchSink::new(config(&proxy.http_url(), &group), format.clone());
        let t = SystemTime::now() - Duration::from_secs(60);
        let mut metric = record("app", "served", t);
        let route = metric.fields.push_str("/cart");
        metric.fields.push("route", Value::Str(route));
        metric.fields.push("metric.latency_ms", Value::F64(12.5));
        let plain = record("app", "plain", t + Duration::from_millis(1));
        for batch in [&metric, &plain] {
            let outcomes = sink.send(std::slice::from_ref(batch)).await;
            assert_eq!(tally(&outcomes), (1, 0, 0, 0, 0));
        }
        let puts: Vec<_> = proxy
            .recorded_requests()
            .into_iter()
            .filter(|r| r.header("x-amz-target") == Some("Logs_20140328.PutLogEvents"))
            .collect();
        assert_eq!(puts.len(), 2, "{puts:?}");
        let messages = |r: &hivelog_tests::proxy::RecordedRequest| -> Vec<String> {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body["logEvents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_owned())
                .collect()
        };
        let (with, without) = if messages(&puts[0])[0].contains("served") {
            (&puts[0], &puts[1])
        } else {
            (&puts[1], &puts[0])
        };
        assert_eq!(with.header("x-amzn-logs-format"), Some("json/emf"));
        assert_eq!(without.header("x-amzn-logs-format"), None);
        // What moto stored is the formatter's line, a valid EMF document.
        let c = client(&url).await;
        let got = events(&c, &group, &sink.stream_name(&metric)).await;
        let line: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
        let doc = hivelog_tests::emf::validate(&line).unwrap();
        assert_eq!(doc.metrics, ["latency_ms"]);
        assert_eq!(doc.dimensions, [["route"]]);
        assert_eq!(doc.timestamp as i64, got[0].0);
        assert!(hivelog_tests::emf::validate(
            &serde_json::from_str::<serde_json::Value>(&got[1].1).unwrap()
        )
        .is_err());
    });
}

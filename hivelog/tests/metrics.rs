//! `HIVELOG_METRICS=emf`: metric fields become CloudWatch embedded-metric-format members of
//! their line. Every line is parsed back and checked against the specification's rules
//! (`hivelog_tests::emf::validate`), never string-matched.

mod support;

use std::sync::OnceLock;

use hivelog_tests::emf::{self, Doc};
use serde_json::Value;
use support::{config_error, json_lines, raw};
use tracing::{info, info_span};

const EMF: (&str, &str) = ("HIVELOG_METRICS", "emf");

fn doc(line: &Value) -> Doc {
    emf::validate(line).unwrap_or_else(|e| panic!("not a valid EMF document ({e}): {line}"))
}

#[test]
fn a_line_without_metric_fields_is_byte_identical_with_metrics_on_and_off() {
    let log = || {
        let span = info_span!("req", route = "/a", _aws = 1);
        let _g = span.enter();
        info!(user = "a@b.c", count = 3, ratio = 0.5, ok = true, "plain");
        info!(metrics = "not a metric", metric = 5, "also plain");
        info!("bare");
    };
    let vars = |on: bool| {
        let mut v = vec![("HIVELOG_FIELDS", "level,target,message")];
        if on {
            v.extend([EMF, ("HIVELOG_METRICS_DIMENSIONS", "route")]);
        }
        v
    };
    let off = raw(hivelog::builder(), &vars(false), log);
    let on = raw(hivelog::builder(), &vars(true), log);
    assert_eq!(off.lines().count(), 3, "{off}");
    assert_eq!(on, off);
    assert!(!on.contains("_aws\":{"), "{on}");
}

#[test]
fn metric_fields_are_written_at_the_root_with_an_aws_block_and_units_from_their_suffixes() {
    let lines = json_lines(
        &[
            EMF,
            ("HIVELOG_SERVICE", "web"),
            ("HIVELOG_TIMESTAMP", "epoch_ms"),
        ],
        || {
            info!(
                metric.latency_ms = 12.5,
                metric.wait_us = 3u64,
                metric.uptime_s = 9i64,
                metric.body_bytes = 2048u64,
                metric.cpu_pct = 55.5,
                metric.retries_count = 2,
                metric.requests = 1,
                user = "a@b.c",
                "served"
            );
        },
    );
    let l = &lines[0];
    let d = doc(l);
    assert_eq!(d.namespace, "web");
    assert_eq!(d.dimensions, [Vec::<String>::new()], "no dimension: [[]]");
    assert_eq!(
        d.metrics,
        [
            "latency_ms",
            "wait_us",
            "uptime_s",
            "body_bytes",
            "cpu_pct",
            "retries_count",
            "requests"
        ]
    );
    let units: Vec<_> = d.units.iter().map(|u| u.as_deref().unwrap()).collect();
    assert_eq!(
        units,
        [
            "Milliseconds",
            "Microseconds",
            "Seconds",
            "Bytes",
            "Percent",
            "Count",
            "None"
        ]
    );
    assert_eq!(d.resolutions, vec![None; 7], "60 s resolution is left out");
    assert_eq!(l["latency_ms"], 12.5);
    assert_eq!(l["body_bytes"], 2048);
    assert_eq!(l["user"], "a@b.c");
    assert_eq!(l["message"], "served");
    assert!(l.get("metric.latency_ms").is_none(), "{l}");
    // The metric's timestamp is the event's, in integer milliseconds.
    assert_eq!(Value::from(d.timestamp), l["timestamp"]);
    assert_eq!(l.as_object().unwrap().keys().next_back().unwrap(), "_aws");
}

#[test]
fn dimensions_are_the_configured_fields_present_as_strings_from_the_event_or_its_spans() {
    let lines = json_lines(
        &[
            EMF,
            ("HIVELOG_METRICS_DIMENSIONS", "route, status,region,level"),
            ("HIVELOG_EXTRA", "region=eu-west-1"),
            ("HIVELOG_METRICS_NAMESPACE", "Shop/Web"),
        ],
        || {
            let span = info_span!("req", route = "/cart");
            let _g = span.enter();
            info!(status = "200", metric.latency_ms = 3, "a");
            // A number is no dimension value: CloudWatch wants strings.
            info!(status = 200, metric.latency_ms = 4, "b");
        },
    );
    let (a, b) = (doc(&lines[0]), doc(&lines[1]));
    assert_eq!(a.namespace, "Shop/Web");
    assert_eq!(a.dimensions, [["route", "status", "region", "level"]]);
    assert_eq!(b.dimensions, [["route", "region", "level"]]);
    assert_eq!(lines[0]["route"], "/cart");
}

#[test]
fn non_finite_and_non_numeric_values_stay_plain_fields_and_are_counted() {
    let buf = support::Buf::default();
    let env = hivelog::Env::from_pairs([("HIVELOG_METRICS", "emf")]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        info!(
            metric.nan_ms = f64::NAN,
            metric.inf = f64::INFINITY,
            metric.word = "fast",
            metric.flag = true,
            metric.ok_ms = 1.5,
            "mixed"
        );
        info!(metric.neg = f64::NEG_INFINITY, "only bad");
    });
    let report = guard.flush(std::time::Duration::from_secs(5));
    assert_eq!(report.metrics_skipped, 5, "{report}");
    assert!(report.to_string().contains("metrics skipped 5"), "{report}");
    drop(guard);
    let lines = support::parse(&buf.text());
    let d = doc(&lines[0]);
    assert_eq!(d.metrics, ["ok_ms"]);
    let l = &lines[0];
    assert_eq!(l["metric.nan_ms"], Value::Null);
    assert_eq!(l["metric.inf"], Value::Null);
    assert_eq!(l["metric.word"], "fast");
    assert_eq!(l["metric.flag"], true);
    assert!(l.get("nan_ms").is_none());
    // No valid metric at all: no `_aws` block.
    assert!(lines[1].get("_aws").is_none(), "{}", lines[1]);
    assert_eq!(lines[1]["metric.neg"], Value::Null);
}

#[test]
fn unit_overrides_and_high_resolution() {
    let lines = json_lines(
        &[
            EMF,
            (
                "HIVELOG_METRICS_UNITS",
                "latency_ms=Seconds,metric.rate=Count/Second",
            ),
            ("HIVELOG_METRICS_RESOLUTION", "1s"),
        ],
        || info!(metric.latency_ms = 0.5, metric.rate = 7, "u"),
    );
    let d = doc(&lines[0]);
    assert_eq!(
        d.units,
        [Some("Seconds".to_owned()), Some("Count/Second".to_owned())]
    );
    assert_eq!(d.resolutions, [Some(1), Some(1)]);
}

#[test]
fn a_metric_whose_name_is_already_a_key_keeps_its_full_name() {
    let lines = json_lines(&[EMF, ("HIVELOG_EXTRA", "env=prod")], || {
        info!(
            metric.message = 1,
            metric.env = 2,
            latency = "plain",
            metric.latency = 3,
            "collide"
        )
    });
    let l = &lines[0];
    let d = doc(l);
    assert_eq!(
        d.metrics,
        ["metric.message", "metric.env", "metric.latency"]
    );
    assert_eq!(l["message"], "collide");
    assert_eq!(l["env"], "prod");
    assert_eq!(l["latency"], "plain");
    assert_eq!(l["metric.latency"], 3);
}

#[test]
fn a_user_field_named_aws_is_renamed_on_metric_lines() {
    let text = raw(hivelog::builder(), &[EMF], || {
        info!(_aws = "mine", metric.n = 1, "m")
    });
    assert_eq!(text.matches("\"_aws\":").count(), 1, "{text}");
    let l: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(l["fields._aws"], "mine");
    doc(&l);
}

#[test]
fn every_schema_preset_and_field_mapping_keeps_aws_and_the_metrics_at_the_root() {
    let presets: [&[(&str, &str)]; 3] = [
        &[],
        &[("HIVELOG_SCHEMA", "ecs")],
        &[(
            "HIVELOG_FIELDS",
            "ts=timestamp,loggerName=target,severity=level,msg=message,svc=service",
        )],
    ];
    for preset in presets {
        let mut vars = vec![
            EMF,
            ("HIVELOG_SERVICE", "shop"),
            ("HIVELOG_METRICS_DIMENSIONS", "service.name,svc,route"),
        ];
        vars.extend_from_slice(preset);
        let lines = json_lines(&vars, || {
            info!(route = "/x", metric.latency_ms = 8, "p");
        });
        let l = &lines[0];
        let d = doc(l);
        assert_eq!(d.metrics, ["latency_ms"], "{preset:?}");
        assert_eq!(l["latency_ms"], 8);
        let dims = &d.dimensions[0];
        assert!(dims.contains(&"route".to_owned()), "{preset:?}: {dims:?}");
        match preset.first().map(|p| p.0) {
            Some("HIVELOG_SCHEMA") => {
                assert_eq!(dims, &["service.name", "route"]);
                assert!(l.get("@timestamp").is_some());
            }
            Some("HIVELOG_FIELDS") => assert_eq!(dims, &["svc", "route"]),
            _ => assert_eq!(dims, &["route"]),
        }
    }
}

#[test]
fn metrics_configuration_errors_name_the_variable() {
    let keys: Vec<String> = (0..31).map(|i| format!("d{i}")).collect();
    let keys = keys.join(",");
    let err = config_error(&[EMF, ("HIVELOG_METRICS_DIMENSIONS", &keys)]);
    assert!(
        err.starts_with("HIVELOG_METRICS_DIMENSIONS: ") && err.contains("at most 30"),
        "{err}"
    );
    let thirty: Vec<String> = (0..30).map(|i| format!("d{i}")).collect();
    json_lines(
        &[EMF, ("HIVELOG_METRICS_DIMENSIONS", &thirty.join(","))],
        || {},
    );
    let long = "n".repeat(256);
    let err = config_error(&[EMF, ("HIVELOG_METRICS_NAMESPACE", &long)]);
    assert!(
        err.starts_with("HIVELOG_METRICS_NAMESPACE: ") && err.contains("255"),
        "{err}"
    );
    let err = config_error(&[EMF, ("HIVELOG_SERVICE", &long)]);
    assert!(err.starts_with("HIVELOG_SERVICE: "), "{err}");
    json_lines(&[EMF, ("HIVELOG_METRICS_NAMESPACE", &long[..255])], || {});
    let err = config_error(&[EMF, ("HIVELOG_METRICS_UNITS", "latency=Millis")]);
    assert!(
        err.starts_with("HIVELOG_METRICS_UNITS: 'latency=Millis' is not")
            && err.contains("Milliseconds"),
        "{err}"
    );
    let err = config_error(&[EMF, ("HIVELOG_METRICS_RESOLUTION", "5s")]);
    assert!(err.starts_with("HIVELOG_METRICS_RESOLUTION: '5s'"), "{err}");
    let err = config_error(&[EMF, ("HIVELOG_EXTRA", "metric.x=1")]);
    assert!(
        err.starts_with("HIVELOG_EXTRA: ") && err.contains("'metric.x'"),
        "{err}"
    );
    let err = config_error(&[EMF, ("HIVELOG_FIELDS", "metric.level=level")]);
    assert!(err.starts_with("HIVELOG_FIELDS: "), "{err}");
    let err = config_error(&[("HIVELOG_METRICS", "prometheus")]);
    assert!(err.starts_with("HIVELOG_METRICS: 'prometheus'"), "{err}");
}

/// Dispatches one INFO event with `n` numeric fields `metric.m0` … and a few plain ones:
/// more fields than `tracing`'s macros take, as a program building events itself can.
fn event_with_metrics<const N: usize>() {
    struct Site(OnceLock<&'static tracing::Metadata<'static>>);
    impl tracing::callsite::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            self.0.get().unwrap()
        }
    }
    let site: &'static Site = Box::leak(Box::new(Site(OnceLock::new())));
    let mut names: Vec<&'static str> = vec!["message", "user", "metric.bad"];
    names.extend((0..N - 3).map(|i| &*Box::leak(format!("metric.m{i}").into_boxed_str())));
    let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    let meta: &'static tracing::Metadata<'static> = Box::leak(Box::new(tracing::Metadata::new(
        "many",
        "metrics",
        tracing::Level::INFO,
        None,
        None,
        None,
        tracing::field::FieldSet::new(names, tracing::callsite::Identifier(site)),
        tracing::metadata::Kind::EVENT,
    )));
    site.0.set(meta).unwrap();
    tracing::callsite::register(site);
    let fields: Vec<tracing::field::Field> = meta.fields().iter().collect();
    let message = format_args!("many metrics");
    let values: Vec<u64> = (0..N as u64).collect();
    let nan = f64::NAN;
    let arr: [(&tracing::field::Field, Option<&dyn tracing::Value>); N] =
        std::array::from_fn(|i| {
            let v: &dyn tracing::Value = match i {
                0 => &message,
                1 => &"a@b.c",
                2 => &nan,
                _ => &values[i],
            };
            (&fields[i], Some(v))
        });
    tracing::Event::dispatch(meta, &meta.fields().value_set(&arr));
}

/// The metric documents of `lines`, checked, with their lines.
fn docs(lines: &[Value]) -> Vec<(Doc, &Value)> {
    lines.iter().map(|l| (doc(l), l)).collect()
}

#[test]
fn exactly_100_metrics_are_one_document() {
    // 3 plain fields (message, user, a NaN metric) + 100 metrics.
    let lines = json_lines(&[EMF], event_with_metrics::<103>);
    assert_eq!(lines.len(), 1);
    let d = doc(&lines[0]);
    assert_eq!(d.metrics.len(), 100);
    assert_eq!(lines[0]["m99"], 102);
}

#[test]
fn metrics_beyond_100_become_several_complete_lines_none_dropped() {
    for (total, lines_expected) in [(101usize, 2usize), (250, 3)] {
        let lines = match total {
            101 => json_lines(
                &[EMF, ("HIVELOG_OUTPUT_MODE", "sync")],
                event_with_metrics::<104>,
            ),
            _ => json_lines(&[EMF], event_with_metrics::<253>),
        };
        assert_eq!(lines.len(), lines_expected, "{total}");
        let mut seen = Vec::new();
        for (d, l) in docs(&lines) {
            assert!(d.metrics.len() <= 100);
            // Each line carries the event's other fields.
            assert_eq!(l["message"], "many metrics");
            assert_eq!(l["user"], "a@b.c");
            assert_eq!(l["metric.bad"], Value::Null);
            assert_eq!(d.timestamp, doc(&lines[0]).timestamp);
            for m in &d.metrics {
                assert!(l.get(m).is_some_and(Value::is_number), "{m}");
            }
            // Only its own metrics are on a line.
            let members = l.as_object().unwrap().keys();
            let metric_members =
                members.filter(|k| k.starts_with('m') && k[1..].parse::<u32>().is_ok());
            assert_eq!(metric_members.count(), d.metrics.len());
            seen.extend(d.metrics);
        }
        let want: Vec<String> = (0..total).map(|i| format!("m{i}")).collect();
        assert_eq!(seen, want, "every metric once, in order");
        assert_eq!(doc(&lines[0]).metrics.len(), 100);
    }
}

#[test]
fn with_metrics_on_the_heartbeat_is_an_emf_document_per_destination() {
    let buf = support::Buf::default();
    let env = hivelog::Env::from_pairs([("HIVELOG_HEARTBEAT", "1s"), EMF]);
    let (dispatch, guard) = hivelog::builder()
        .env(env)
        .writer(buf.clone())
        .try_build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        info!("one");
        info!("two");
    });
    std::thread::sleep(std::time::Duration::from_millis(2300));
    drop(guard);
    let beats: Vec<_> = support::parse(&buf.text())
        .into_iter()
        .filter(|l| l["message"] == "hivelog.heartbeat")
        .collect();
    assert_eq!(beats.len(), 2, "{}", buf.text());
    for b in &beats {
        let d = doc(b);
        assert_eq!(d.dimensions, [["destination"]]);
        assert_eq!(b["destination"], "writer");
        assert_eq!(
            d.metrics,
            [
                "delivered",
                "dropped",
                "pending",
                "retried",
                "failed",
                "spilled"
            ]
        );
        assert_eq!(b["dropped"], 0);
        assert_eq!(b["failed"], 0);
    }
    // Counts since the previous heartbeat: the two events, then the first heartbeat line.
    assert_eq!(beats[0]["delivered"], 2);
    assert_eq!(beats[1]["delivered"], 1);
}

//! Every default a variable table documents is the default the code uses.
//!
//! The tables (`Var { name, default, .. }`) are what `hivelog check`, the README and the
//! warnings show; the code's defaults are `DEFAULT_*` constants and `Default` impls. Nothing
//! ties the two when one changes, so this test does: each documented value is parsed as the
//! variable would be and compared with the constant, and a configuration built with every
//! documented default set is the same as one built with none set.

use std::fmt::Debug;
use std::time::Duration;

use hivelog_core::env::{parse_bytes, parse_duration};
use hivelog_core::pipeline::{self, PIPELINE_VARS};
use hivelog_core::{Env, Var};

/// The default `table` documents for `name`.
fn documented(table: &[Var], name: &str) -> &'static str {
    table
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the table"))
        .default
}

fn bytes(table: &[Var], name: &str) -> u64 {
    let v = documented(table, name);
    parse_bytes(v).unwrap_or_else(|| panic!("{name}: documented default {v:?} is not a size"))
}

fn duration(table: &[Var], name: &str) -> Duration {
    let v = documented(table, name);
    parse_duration(v)
        .unwrap_or_else(|| panic!("{name}: documented default {v:?} is not a duration"))
}

/// Whether a documented default is a value the variable takes, not a description of what
/// happens when it is unset (`off`, `none`, `(HIVELOG_LEVEL)`).
fn is_value(default: &str) -> bool {
    !(default.starts_with('(') || ["off", "none", "unset", "unchanged"].contains(&default))
}

/// `switches` plus every variable of `table` set to its documented default.
fn with_defaults(table: &[Var], switches: &[(&str, &str)]) -> Env {
    let mut pairs: Vec<(String, String)> = table
        .iter()
        .filter(|v| is_value(v.default))
        .map(|v| (v.name.to_owned(), v.default.to_owned()))
        .collect();
    pairs.extend(switches.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Env::from_pairs(pairs)
}

/// The configuration `build` makes from `switches` alone and with every documented default
/// set: the same, or the table and the code disagree.
fn same_with_and_without_defaults<C: Debug>(
    table: &[Var],
    switches: &[(&str, &str)],
    build: impl Fn(&Env) -> C,
) {
    let plain = format!("{:#?}", build(&Env::from_pairs(switches.iter().copied())));
    let documented = format!("{:#?}", build(&with_defaults(table, switches)));
    assert_eq!(
        plain, documented,
        "setting every variable to the table's default changed the configuration"
    );
}

#[test]
fn the_delivery_table_documents_the_pipeline_defaults() {
    let t = PIPELINE_VARS;
    assert_eq!(
        bytes(t, "HIVELOG_BUFFER_BYTES"),
        pipeline::DEFAULT_BUFFER_BYTES as u64
    );
    assert_eq!(
        duration(t, "HIVELOG_FLUSH_INTERVAL"),
        pipeline::DEFAULT_FLUSH_INTERVAL
    );
    assert_eq!(
        duration(t, "HIVELOG_SHUTDOWN_TIMEOUT"),
        pipeline::DEFAULT_SHUTDOWN_TIMEOUT
    );
    assert_eq!(
        duration(t, "HIVELOG_RETRY_BASE"),
        pipeline::DEFAULT_RETRY_BASE
    );
    assert_eq!(
        duration(t, "HIVELOG_RETRY_CAP"),
        pipeline::DEFAULT_RETRY_CAP
    );
    assert_eq!(
        duration(t, "HIVELOG_RETRY_MAX_ELAPSED"),
        pipeline::DEFAULT_RETRY_MAX_ELAPSED
    );
    assert_eq!(
        bytes(t, "HIVELOG_SPILL_BYTES"),
        pipeline::DEFAULT_SPILL_BYTES
    );
    assert_eq!(
        duration(t, "HIVELOG_SPILL_FSYNC"),
        pipeline::DEFAULT_SPILL_FSYNC
    );
    // The spill settings only apply with a folder.
    same_with_and_without_defaults(t, &[("HIVELOG_SPILL_DIR", "/tmp/unused")], |env| {
        hivelog_core::PipelineConfig::default()
            .apply_env(env)
            .unwrap()
    });
}

#[test]
fn the_general_table_documents_the_format_defaults() {
    let t = hivelog_core::format::FORMAT_VARS;
    assert_eq!(
        bytes(t, "HIVELOG_MAX_EVENT_BYTES"),
        hivelog_core::format::DEFAULT_MAX_EVENT_BYTES as u64
    );
    same_with_and_without_defaults(t, &[("HIVELOG_SERVICE", "svc")], |env| {
        hivelog_core::Format::builder()
            .apply_env(env)
            .unwrap()
            .build()
    });
}

#[test]
fn the_fluent_table_documents_the_fluent_defaults() {
    use hivelog_fluent::config as c;
    let t = hivelog_fluent::VARS;
    assert_eq!(documented(t, "HIVELOG_FLUENT_TAG"), c::DEFAULT_TAG);
    assert_eq!(
        bytes(t, "HIVELOG_FLUENT_MAX_MESSAGE_BYTES"),
        c::DEFAULT_MAX_MESSAGE_BYTES as u64
    );
    assert_eq!(
        duration(t, "HIVELOG_FLUENT_ACK_TIMEOUT"),
        c::DEFAULT_ACK_TIMEOUT
    );
    assert_eq!(
        duration(t, "HIVELOG_FLUENT_CONNECT_TIMEOUT"),
        c::DEFAULT_CONNECT_TIMEOUT
    );
    assert_eq!(
        duration(t, "HIVELOG_FLUENT_WRITE_TIMEOUT"),
        c::DEFAULT_WRITE_TIMEOUT
    );
    assert_eq!(
        duration(t, "HIVELOG_FLUENT_HEARTBEAT_INTERVAL"),
        c::DEFAULT_HEARTBEAT_INTERVAL
    );
    same_with_and_without_defaults(
        t,
        &[("HIVELOG_FLUENT_ADDR", "tcp://127.0.0.1:24224")],
        |env| hivelog_fluent::FluentConfig::from_env(env).unwrap(),
    );
}

#[test]
fn the_elasticsearch_table_documents_the_elasticsearch_defaults() {
    use hivelog_elk::config as c;
    let t = hivelog_elk::VARS;
    assert_eq!(documented(t, "HIVELOG_ES_INDEX"), c::DEFAULT_INDEX);
    assert_eq!(
        bytes(t, "HIVELOG_ES_MAX_BATCH_BYTES"),
        c::DEFAULT_MAX_BATCH_BYTES as u64
    );
    assert_eq!(duration(t, "HIVELOG_ES_TIMEOUT"), c::DEFAULT_TIMEOUT);
    same_with_and_without_defaults(t, &[("HIVELOG_ES_URL", "http://127.0.0.1:9200")], |env| {
        hivelog_elk::EsConfig::from_env(env).unwrap()
    });
}

#[test]
fn the_cloudwatch_table_documents_the_cloudwatch_defaults() {
    let t = hivelog_cloudwatch::VARS;
    assert_eq!(
        documented(t, "HIVELOG_CLOUDWATCH_STREAM"),
        hivelog_cloudwatch::DEFAULT_STREAM
    );
    assert_eq!(
        bytes(t, "HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES"),
        hivelog_cloudwatch::limits::DEFAULT_MAX_EVENT_BYTES as u64
    );
    same_with_and_without_defaults(t, &[("HIVELOG_CLOUDWATCH_GROUP", "app")], |env| {
        hivelog_cloudwatch::CloudWatchConfig::from_env(env).unwrap()
    });
}

//! Every bad value fails `try_build` with one message naming the variable, the value and what
//! is expected; secrets never appear in `Debug`.

mod support;

use support::config_error;

#[test]
fn each_bad_value_names_the_variable_the_value_and_the_expectation() {
    let cases: &[(&str, &str, &str)] = &[
        ("HIVELOG_TIMESTAMP", "rfc3339micro", "HIVELOG_TIMESTAMP: 'rfc3339micro' is not a timestamp format; expected one of rfc3339ms, rfc3339ns, epoch_ms, epoch_ns"),
        ("HIVELOG_FORMAT", "xml", "HIVELOG_FORMAT: 'xml' is not an output format; expected one of json, pretty"),
        ("HIVELOG_SCHEMA", "gelf", "HIVELOG_SCHEMA: 'gelf' is not a schema; expected one of default, ecs"),
        ("HIVELOG_OUTPUT", "syslog", "HIVELOG_OUTPUT: 'syslog' is not an output; expected stdout, stderr, none, or file:PATH"),
        ("HIVELOG_OUTPUT_MODE", "later", "HIVELOG_OUTPUT_MODE: 'later' is not an output mode; expected one of async, sync"),
        ("HIVELOG_FILE_ROTATION", "weekly", "HIVELOG_FILE_ROTATION: 'weekly' is not a rotation; expected never, hourly, daily, or a size of at least 1KB (100MB)"),
        ("HIVELOG_FILE_KEEP", "-1", "HIVELOG_FILE_KEEP: '-1' is not a number in range; expected an integer from 1 to 100000"),
        ("HIVELOG_MAX_EVENT_BYTES", "10", "HIVELOG_MAX_EVENT_BYTES: '10' is not an event size; expected a size from 1KiB to 64MiB (1MiB)"),
        ("HIVELOG_HEARTBEAT", "10ms", "HIVELOG_HEARTBEAT: '10ms' is not a heartbeat interval; expected off, or a duration of at least 1s (30s, 30m, 1h)"),
        ("HIVELOG_EXTRA", "novalue", "HIVELOG_EXTRA: 'novalue' is not valid extra fields; expected 'k=v,k2=v2' or a JSON object ('novalue' has no key=value)"),
    ];
    for (var, value, expected) in cases {
        assert_eq!(config_error(&[(var, value)]), *expected, "{var}={value}");
    }
}

#[test]
fn bad_field_mappings_say_which_attr_is_unknown_or_repeated() {
    let e = config_error(&[("HIVELOG_FIELDS", "ts=timestamp,fn=function")]);
    assert!(e.starts_with("HIVELOG_FIELDS: 'ts=timestamp,fn=function' is not a field mapping; expected comma-separated 'out=attr' pairs"), "{e}");
    assert!(e.ends_with("('function' is not an attr)"), "{e}");
    let e = config_error(&[("HIVELOG_FIELDS", "a=level,a=message")]);
    assert!(e.ends_with("('a' repeats)"), "{e}");
    let e = config_error(&[("HIVELOG_EXTRA", "{not json")]);
    assert!(e.starts_with("HIVELOG_EXTRA: '{not json' is not valid extra fields; expected 'k=v,k2=v2' or a JSON object ("), "{e}");
}

#[test]
fn level_errors_name_the_variable_they_came_from() {
    let e = config_error(&[("HIVELOG_LEVEL", "info,=[")]);
    assert!(
        e.starts_with("HIVELOG_LEVEL: 'info,=[' is not a level filter; expected filter directives"),
        "{e}"
    );
    let e = config_error(&[("RUST_LOG", "verbose=loud")]);
    assert!(
        e.starts_with("RUST_LOG: 'verbose=loud' is not a level filter"),
        "{e}"
    );
}

#[test]
fn conflicting_settings_are_refused() {
    let e = config_error(&[("HIVELOG_SCHEMA", "ecs"), ("HIVELOG_FIELDS", "timestamp")]);
    assert!(
        e.starts_with("HIVELOG_FIELDS: cannot be combined with HIVELOG_SCHEMA=ecs"),
        "{e}"
    );
    let e = config_error(&[("HIVELOG_SCHEMA", "ecs"), ("HIVELOG_TIMESTAMP", "epoch_ms")]);
    assert!(
        e.starts_with("HIVELOG_TIMESTAMP: ECS's @timestamp is an RFC 3339 date"),
        "{e}"
    );
}

#[test]
fn empty_values_count_as_unset() {
    let lines = support::json_lines(
        &[("HIVELOG_TIMESTAMP", ""), ("HIVELOG_FIELDS", " ")],
        || tracing::info!("x"),
    );
    assert_eq!(
        support::keys(&lines[0]),
        ["timestamp", "level", "target", "message"]
    );
}

#[test]
fn secrets_are_masked_in_debug() {
    let s = hivelog::Env::from_pairs([("HIVELOG_FLUENT_SHARED_KEY", "s3cr3t-key")]);
    let key = s.secret("HIVELOG_FLUENT_SHARED_KEY").unwrap();
    assert_eq!(key.expose(), "s3cr3t-key");
    assert!(!format!("{key:?} {key}").contains("s3cr3t"));
}

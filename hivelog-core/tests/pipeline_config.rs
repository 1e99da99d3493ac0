//! `HIVELOG_*` variables of the delivery pipeline.

use std::time::Duration;

use hivelog_core::pipeline::{Overflow, RetryPolicy};
use hivelog_core::{Env, PipelineConfig};

#[test]
fn defaults_match_the_documented_table() {
    let c = PipelineConfig::default()
        .apply_env(&Env::default())
        .unwrap();
    assert_eq!(c.buffer_bytes, 64_000_000);
    assert_eq!(c.overflow, Overflow::DropLowest);
    assert_eq!(c.flush_interval, Duration::from_secs(1));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(c.retry, RetryPolicy::default());
}

#[test]
fn every_variable_overrides_its_setting() {
    let env = Env::from_pairs([
        ("HIVELOG_BUFFER_BYTES", "8MiB"),
        ("HIVELOG_OVERFLOW", "block:250ms"),
        ("HIVELOG_FLUSH_INTERVAL", "200ms"),
        ("HIVELOG_SHUTDOWN_TIMEOUT", "10s"),
        ("HIVELOG_RETRY_BASE", "50ms"),
        ("HIVELOG_RETRY_CAP", "1m"),
        ("HIVELOG_RETRY_MAX_ELAPSED", "1h"),
    ]);
    let c = PipelineConfig::default().apply_env(&env).unwrap();
    assert_eq!(c.buffer_bytes, 8 * 1024 * 1024);
    assert_eq!(c.overflow, Overflow::Block(Duration::from_millis(250)));
    assert_eq!(c.flush_interval, Duration::from_millis(200));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(
        c.retry,
        RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(3600),
        }
    );
    assert!(env.unused().is_empty());
}

#[test]
fn overflow_policies_parse() {
    for (v, want) in [
        ("drop_lowest", Overflow::DropLowest),
        ("drop_newest", Overflow::DropNewest),
        ("DROP_OLDEST", Overflow::DropOldest),
        ("block:1s", Overflow::Block(Duration::from_secs(1))),
    ] {
        let env = Env::from_pairs([("HIVELOG_OVERFLOW", v)]);
        assert_eq!(
            PipelineConfig::default().apply_env(&env).unwrap().overflow,
            want
        );
    }
}

#[test]
fn a_bad_overflow_policy_names_the_accepted_forms() {
    for v in ["x", "block", "block:soon", "drop"] {
        let env = Env::from_pairs([("HIVELOG_OVERFLOW", v)]);
        let err = PipelineConfig::default().apply_env(&env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("HIVELOG_OVERFLOW: '{v}' is not an overflow policy; expected one of drop_lowest, drop_newest, drop_oldest, block:<duration>")
        );
    }
}

#[test]
fn bad_sizes_and_durations_name_the_variable() {
    let env = Env::from_pairs([("HIVELOG_BUFFER_BYTES", "lots")]);
    let err = PipelineConfig::default().apply_env(&env).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("HIVELOG_BUFFER_BYTES: 'lots' is not a size"),
        "{err}"
    );

    let env = Env::from_pairs([("HIVELOG_BUFFER_BYTES", "0")]);
    let err = PipelineConfig::default().apply_env(&env).unwrap_err();
    assert!(
        err.to_string().starts_with("HIVELOG_BUFFER_BYTES: '0'"),
        "{err}"
    );

    let env = Env::from_pairs([("HIVELOG_RETRY_CAP", "forever")]);
    let err = PipelineConfig::default().apply_env(&env).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("HIVELOG_RETRY_CAP: 'forever' is not a duration"),
        "{err}"
    );
}

#[test]
fn a_base_above_the_cap_is_refused() {
    let env = Env::from_pairs([("HIVELOG_RETRY_BASE", "1m"), ("HIVELOG_RETRY_CAP", "1s")]);
    let err = PipelineConfig::default().apply_env(&env).unwrap_err();
    assert!(err.to_string().starts_with("HIVELOG_RETRY_BASE: "), "{err}");
}

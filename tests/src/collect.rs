//! A destination that keeps what it is sent in memory, for tests of the destination contract
//! itself rather than of a protocol.
//!
//! It has no `_LEVEL` variable of its own on purpose: such a destination follows the main
//! level, changes at run time included. `HIVELOG_COLLECT=<key>` switches it on; the messages it
//! receives are read back with [`messages`]`(key)`. `HIVELOG_COLLECT_PANIC=true` makes its
//! `send` panic, as a buggy destination would (for `hivelog check` and the pipeline's guard).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use hivelog_core::destination::{SinkConfig, SinkDestination};
use hivelog_core::{BatchLimits, ConfigError, Env, Format, Outcomes, Record, Sink, Var};

/// The collecting destination's variables (no `_LEVEL`: see the module docs).
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_COLLECT",
        "off",
        "key under which the messages are kept in memory; switches the sink on",
    ),
    Var::new(
        "HIVELOG_COLLECT_PANIC",
        "false",
        "`true`: every send panics",
    ),
];

/// The value to register: `hivelog::register_destination(&DESTINATION)`.
pub static DESTINATION: SinkDestination<CollectConfig> =
    SinkDestination::new("collect", VARS, &["HIVELOG_COLLECT"]);

static KEPT: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

/// The messages delivered so far under `key`, in order.
pub fn messages(key: &str) -> Vec<String> {
    KEPT.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(key).cloned())
        .unwrap_or_default()
}

/// The collecting destination's configuration.
pub struct CollectConfig {
    key: String,
    panic: bool,
}

impl SinkConfig for CollectConfig {
    type Sink = CollectSink;

    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let panic = env.bool("HIVELOG_COLLECT_PANIC")?.unwrap_or(false);
        Ok(env.get("HIVELOG_COLLECT").map(|key| CollectConfig {
            key: key.to_owned(),
            panic,
        }))
    }

    fn apply_env(self, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::from_env(env)?.unwrap_or(self))
    }

    fn target(&self) -> String {
        format!("memory:{}", self.key)
    }

    fn into_sink(self, _format: Arc<Format>) -> CollectSink {
        CollectSink { config: self }
    }
}

/// Keeps each record's message under its key.
pub struct CollectSink {
    config: CollectConfig,
}

impl Sink for CollectSink {
    fn name(&self) -> &'static str {
        "collect"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: 1000,
            max_bytes: 1 << 20,
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        assert!(
            !self.config.panic,
            "the collect sink panics (HIVELOG_COLLECT_PANIC)"
        );
        let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        let list = kept
            .get_or_insert_with(HashMap::new)
            .entry(self.config.key.clone())
            .or_default();
        list.extend(batch.iter().map(|r| r.message().to_owned()));
        Outcomes::delivered(batch.len())
    }
}

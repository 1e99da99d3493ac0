//! The Elasticsearch destination as the facade registers it: its variables, and how a
//! configuration starts its sink or probes it for `hivelog check`.

use std::sync::Arc;

use hivelog_core::destination::{SinkConfig, SinkDestination};
use hivelog_core::{ConfigError, Env, Format, Var};

use crate::config::EsConfig;

use crate::sink::EsSink;

/// Every variable this destination reads: the one list the warnings, `hivelog check`, the
/// README test and the fuzz list use.
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_ES_URL",
        "off",
        "node URL(s), comma-separated; switches the sink on",
    ),
    Var::new(
        "HIVELOG_ES_CLOUD_ID",
        "none",
        "Elastic Cloud ID instead of HIVELOG_ES_URL",
    ),
    Var::new(
        "HIVELOG_ES_LEVEL",
        "(HIVELOG_LEVEL)",
        "filter for this destination only",
    ),
    Var::new(
        "HIVELOG_ES_INDEX",
        "logs-{service}",
        "index or data stream: {service}, {date:%Y.%m.%d}",
    ),
    Var::new("HIVELOG_ES_ACTION", "create", "create or index"),
    Var::new("HIVELOG_ES_USERNAME", "none", "basic auth user"),
    Var::new("HIVELOG_ES_PASSWORD", "none", "basic auth password").secret(),
    Var::new("HIVELOG_ES_API_KEY", "none", "API key, id:key or encoded").secret(),
    Var::new("HIVELOG_ES_CA_CERT", "none", "PEM file of trusted CAs"),
    Var::new(
        "HIVELOG_ES_COMPRESS",
        "none",
        "gzip request bodies, or none",
    ),
    Var::new("HIVELOG_ES_MAX_BATCH_BYTES", "5MB", "largest _bulk body"),
    Var::new("HIVELOG_ES_TIMEOUT", "30s", "one _bulk request"),
    Var::new(
        "HIVELOG_ES_DEAD_LETTER",
        "none",
        "file where rejected documents are appended",
    ),
    Var::new(
        "HIVELOG_ES_SETUP",
        "false",
        "install an index template at startup",
    ),
];

/// The value the facade's list of destinations holds.
pub static DESTINATION: SinkDestination<EsConfig> = SinkDestination::new(
    "elasticsearch",
    VARS,
    &["HIVELOG_ES_URL", "HIVELOG_ES_CLOUD_ID"],
);

impl SinkConfig for EsConfig {
    type Sink = EsSink;

    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        EsConfig::from_env(env)
    }

    fn apply_env(self, env: &Env) -> Result<Self, ConfigError> {
        EsConfig::apply_env(self, env)
    }

    fn target(&self) -> String {
        self.nodes().join(",")
    }

    fn into_sink(self, format: Arc<Format>) -> EsSink {
        EsSink::new(self, format)
    }
}

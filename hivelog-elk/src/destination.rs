//! The Elasticsearch destination as the facade registers it: its variables, and how a
//! configuration starts its sink or probes it for `hivelog check`.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use hivelog_core::destination::{probe_sink, BoxFuture, Configured, Destination, Probe};
use hivelog_core::{ConfigError, Env, Format, Pipeline, PipelineConfig, Record, Var};

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

/// Elasticsearch / OpenSearch `_bulk`, as the facade registers it.
pub struct EsDestination;

/// The value the facade's list of destinations holds.
pub static DESTINATION: EsDestination = EsDestination;

impl Destination for EsDestination {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn vars(&self) -> &'static [Var] {
        VARS
    }

    fn switches(&self) -> &'static [&'static str] {
        &["HIVELOG_ES_URL", "HIVELOG_ES_CLOUD_ID"]
    }

    fn config_type(&self) -> Option<TypeId> {
        Some(TypeId::of::<EsConfig>())
    }

    fn configure(
        &self,
        env: &Env,
        code: Option<Box<dyn Any + Send>>,
    ) -> Result<Option<Box<dyn Configured>>, ConfigError> {
        let config = match code.and_then(|c| c.downcast::<EsConfig>().ok()) {
            Some(code) => Some(code.apply_env(env)?),
            None => EsConfig::from_env(env)?,
        };
        Ok(config.map(|c| Box::new(c) as Box<dyn Configured>))
    }
}

impl Configured for EsConfig {
    fn target(&self) -> String {
        self.nodes().join(",")
    }

    fn start(
        self: Box<Self>,
        format: Arc<Format>,
        pipeline: PipelineConfig,
    ) -> std::io::Result<Pipeline> {
        Pipeline::spawn(EsSink::new(*self, format), pipeline)
    }

    fn probe(
        self: Box<Self>,
        format: Arc<Format>,
        record: Record,
        timeout: Duration,
    ) -> BoxFuture<Probe> {
        let target = self.target();
        Box::pin(probe_sink(
            EsSink::new(*self, format),
            target,
            record,
            timeout,
        ))
    }
}

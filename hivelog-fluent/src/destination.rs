//! The Fluentd destination as the facade registers it: its variables, and how a configuration
//! starts its sink or probes it for `hivelog check`.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use hivelog_core::destination::{probe_sink, BoxFuture, Configured, Destination, Probe};
use hivelog_core::{ConfigError, Env, Format, Pipeline, PipelineConfig, Record, Var};

use crate::config::FluentConfig;
pub use crate::config::VARS;
use crate::sink::FluentSink;

/// Fluentd / Fluent Bit over the Forward protocol, as the facade registers it.
pub struct FluentDestination;

/// The value the facade's list of destinations holds.
pub static DESTINATION: FluentDestination = FluentDestination;

impl Destination for FluentDestination {
    fn name(&self) -> &'static str {
        "fluent"
    }

    fn vars(&self) -> &'static [Var] {
        VARS
    }

    fn switches(&self) -> &'static [&'static str] {
        &["HIVELOG_FLUENT_ADDR"]
    }

    fn config_type(&self) -> Option<TypeId> {
        Some(TypeId::of::<FluentConfig>())
    }

    fn configure(
        &self,
        env: &Env,
        code: Option<Box<dyn Any + Send>>,
    ) -> Result<Option<Box<dyn Configured>>, ConfigError> {
        let config = match code.and_then(|c| c.downcast::<FluentConfig>().ok()) {
            Some(code) => Some(code.apply_env(env)?),
            None => FluentConfig::from_env(env)?,
        };
        Ok(config.map(|c| Box::new(c) as Box<dyn Configured>))
    }
}

impl Configured for FluentConfig {
    fn target(&self) -> String {
        let servers: Vec<String> = self.servers().iter().map(ToString::to_string).collect();
        servers.join(",")
    }

    fn start(
        self: Box<Self>,
        format: Arc<Format>,
        pipeline: PipelineConfig,
    ) -> std::io::Result<Pipeline> {
        Pipeline::spawn(FluentSink::new(*self, format), pipeline)
    }

    fn probe(
        self: Box<Self>,
        format: Arc<Format>,
        record: Record,
        timeout: Duration,
    ) -> BoxFuture<Probe> {
        let target = self.target();
        let unacked = !self.ack;
        let sink = FluentSink::new(*self, format);
        let endpoints = sink.endpoints();
        Box::pin(async move {
            let mut p = probe_sink(sink, target, record, timeout).await;
            p.endpoints = endpoints.map(|e| e.snapshot()).unwrap_or_default();
            if unacked && p.accepted {
                p.note = Some(
                    "written, not confirmed: HIVELOG_FLUENT_ACK=false asks the receiver for no ack"
                        .to_owned(),
                );
            }
            p
        })
    }
}

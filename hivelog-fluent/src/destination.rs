//! The Fluentd destination as the facade registers it: its variables, and how a configuration
//! starts its sink or probes it for `hivelog check`.

use std::sync::Arc;

use hivelog_core::destination::{SinkConfig, SinkDestination};
use hivelog_core::{ConfigError, Env, Format};

use crate::config::FluentConfig;
pub use crate::config::VARS;
use crate::sink::FluentSink;

/// The value the facade's list of destinations holds.
pub static DESTINATION: SinkDestination<FluentConfig> =
    SinkDestination::new("fluent", VARS, &["HIVELOG_FLUENT_ADDR"]);

impl SinkConfig for FluentConfig {
    type Sink = FluentSink;

    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        FluentConfig::from_env(env)
    }

    fn apply_env(self, env: &Env) -> Result<Self, ConfigError> {
        FluentConfig::apply_env(self, env)
    }

    fn target(&self) -> String {
        let servers: Vec<String> = self.servers().iter().map(ToString::to_string).collect();
        servers.join(",")
    }

    fn into_sink(self, format: Arc<Format>) -> FluentSink {
        FluentSink::new(self, format)
    }

    fn probe_note(&self) -> Option<String> {
        (!self.ack).then(|| {
            "written, not confirmed: HIVELOG_FLUENT_ACK=false asks the receiver for no ack"
                .to_owned()
        })
    }
}

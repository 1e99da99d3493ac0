//! The OTLP destination as the facade registers it: its variables (the OpenTelemetry
//! specification's, plus `HIVELOG_OTLP_LEVEL`), and how a configuration starts its sink or
//! probes it for `hivelog check`.

use std::sync::Arc;

use hivelog_core::destination::{SinkConfig, SinkDestination};
use hivelog_core::{ConfigError, Env, Format};

use crate::config::OtlpConfig;
use crate::sink::OtlpSink;

pub use crate::config::VARS;

/// The value the facade's list of destinations holds.
pub static DESTINATION: SinkDestination<OtlpConfig> =
    SinkDestination::new("otlp", VARS, &["OTEL_LOGS_EXPORTER"]);

impl SinkConfig for OtlpConfig {
    type Sink = OtlpSink;

    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        OtlpConfig::from_env(env)
    }

    fn apply_env(self, env: &Env) -> Result<Self, ConfigError> {
        OtlpConfig::apply_env(self, env)
    }

    fn target(&self) -> String {
        format!("{} ({})", self.endpoint(), self.protocol().as_str())
    }

    fn into_sink(self, format: Arc<Format>) -> OtlpSink {
        OtlpSink::new(self, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_variable_the_config_reads() {
        let env = Env::from_pairs([("OTEL_LOGS_EXPORTER", "otlp")]);
        OtlpConfig::from_env(&env).unwrap();
        let mut read = env.names_read();
        read.sort();
        let mut listed: Vec<String> = VARS
            .iter()
            .map(|v| v.name.to_owned())
            .filter(|n| n != "HIVELOG_OTLP_LEVEL")
            .collect();
        listed.sort();
        assert_eq!(read, listed);
        for suffix in crate::config::SUFFIXES {
            assert!(VARS
                .iter()
                .any(|v| v.name == format!("OTEL_EXPORTER_OTLP_LOGS_{suffix}")));
        }
        let secret: Vec<&str> = VARS.iter().filter(|v| v.secret).map(|v| v.name).collect();
        assert_eq!(
            secret,
            [
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS"
            ]
        );
    }
}

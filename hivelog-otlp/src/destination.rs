//! The OTLP destination as the facade registers it: its variables (the OpenTelemetry
//! specification's, plus `HIVELOG_OTLP_LEVEL`), and how a configuration starts its sink or
//! probes it for `hivelog check`.

use std::sync::Arc;

use hivelog_core::destination::{SinkConfig, SinkDestination};
use hivelog_core::{ConfigError, Env, Format, Var};

use crate::config::OtlpConfig;
use crate::sink::OtlpSink;

/// Every variable this destination reads: the one list the warnings, `hivelog check`, the
/// README test and the fuzz list use. For each `OTEL_EXPORTER_OTLP_*` setting the `LOGS_`
/// form wins over the generic one.
pub const VARS: &[Var] = &[
    Var::new(
        "OTEL_LOGS_EXPORTER",
        "off",
        "comma list of exporters; one named otlp switches the destination on",
    ),
    Var::new(
        "HIVELOG_OTLP_LEVEL",
        "(HIVELOG_LEVEL)",
        "filter for this destination only",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://localhost:4318",
        "collector base URL; /v1/logs is appended over HTTP (gRPC default :4317)",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "(OTEL_EXPORTER_OTLP_ENDPOINT + /v1/logs)",
        "logs URL, used as given",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf",
        "http/protobuf, http/json or grpc",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        "(OTEL_EXPORTER_OTLP_PROTOCOL)",
        "protocol for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "none",
        "headers on every export, k=v,k2=v2 with percent-encoded values",
    )
    .secret(),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "(OTEL_EXPORTER_OTLP_HEADERS)",
        "headers for logs",
    )
    .secret(),
    Var::new("OTEL_EXPORTER_OTLP_COMPRESSION", "none", "gzip or none"),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
        "(OTEL_EXPORTER_OTLP_COMPRESSION)",
        "compression for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "10000",
        "milliseconds per export; 0 = no limit",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
        "(OTEL_EXPORTER_OTLP_TIMEOUT)",
        "timeout for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "none",
        "PEM file of CAs trusted for the collector",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
        "(OTEL_EXPORTER_OTLP_CERTIFICATE)",
        "CAs for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "none",
        "PEM private key for mTLS",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
        "(OTEL_EXPORTER_OTLP_CLIENT_KEY)",
        "mTLS key for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "none",
        "PEM client certificate for mTLS",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
        "(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)",
        "mTLS certificate for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_INSECURE",
        "false",
        "gRPC without TLS for an endpoint without a scheme",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
        "(OTEL_EXPORTER_OTLP_INSECURE)",
        "insecure for logs",
    ),
    Var::new(
        "OTEL_SERVICE_NAME",
        "(service.name of OTEL_RESOURCE_ATTRIBUTES, else HIVELOG_SERVICE)",
        "the resource's service.name",
    ),
    Var::new(
        "OTEL_RESOURCE_ATTRIBUTES",
        "none",
        "resource attributes, k=v,k2=v2 with percent-encoded values",
    ),
];

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

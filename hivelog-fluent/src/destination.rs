//! The Fluentd destination as the facade registers it: its variables, and how a configuration
//! starts its sink or probes it for `hivelog check`.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use hivelog_core::destination::{probe_sink, BoxFuture, Configured, Destination, Probe};
use hivelog_core::{ConfigError, Env, Format, Pipeline, PipelineConfig, Record, Var};

use crate::config::FluentConfig;
use crate::sink::FluentSink;

/// Every variable this destination reads: the one list the warnings, `hivelog check`, the
/// README test and the fuzz list use.
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_FLUENT_ADDR",
        "off",
        "servers: tcp://, tls://, unix:// or host:port, each with ?weight=N or ?standby; switches the sink on",
    ),
    Var::new(
        "HIVELOG_FLUENT_LEVEL",
        "(HIVELOG_LEVEL)",
        "filter for this destination only",
    ),
    Var::new(
        "HIVELOG_FLUENT_TAG",
        "{service}",
        "tag template: {service}, {target}",
    ),
    Var::new(
        "HIVELOG_FLUENT_ACK",
        "true",
        "ask for an ack per message and resend until it comes",
    ),
    Var::new(
        "HIVELOG_FLUENT_COMPRESS",
        "none",
        "gzip (CompressedPackedForward) or none",
    ),
    Var::new(
        "HIVELOG_FLUENT_TIME",
        "eventtime",
        "eventtime or integer (Fluentd v0.12)",
    ),
    Var::new(
        "HIVELOG_FLUENT_SHARED_KEY",
        "none",
        "shared key of the HELO/PING/PONG handshake",
    )
    .secret(),
    Var::new(
        "HIVELOG_FLUENT_USERNAME",
        "none",
        "user name in that handshake",
    ),
    Var::new(
        "HIVELOG_FLUENT_PASSWORD",
        "none",
        "password in that handshake",
    )
    .secret(),
    Var::new(
        "HIVELOG_FLUENT_HOSTNAME",
        "(host name)",
        "the client host name sent in PING",
    ),
    Var::new(
        "HIVELOG_FLUENT_CA_CERT",
        "none",
        "PEM file of CAs trusted for tls://",
    ),
    Var::new(
        "HIVELOG_FLUENT_MAX_MESSAGE_BYTES",
        "4MiB",
        "largest message (64KiB-64MiB)",
    ),
    Var::new(
        "HIVELOG_FLUENT_ACK_TIMEOUT",
        "30s",
        "waiting for an ack before the message is resent",
    ),
    Var::new(
        "HIVELOG_FLUENT_CONNECT_TIMEOUT",
        "5s",
        "TCP/TLS connect and handshake",
    ),
    Var::new("HIVELOG_FLUENT_WRITE_TIMEOUT", "10s", "writing one message"),
    Var::new(
        "HIVELOG_FLUENT_HEARTBEAT_INTERVAL",
        "1s",
        "how often idle servers of a list are checked",
    ),
];

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

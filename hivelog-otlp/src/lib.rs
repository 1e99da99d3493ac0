//! hivelog destination for OpenTelemetry collectors: OTLP logs over HTTP (protobuf or JSON) or
//! gRPC.
//!
//! Switched on by `OTEL_LOGS_EXPORTER=otlp` through the `hivelog` crate's `otlp` feature and
//! configured by the OpenTelemetry specification's own variables (see [`OtlpConfig`] and
//! [`VARS`]), so a service already set up for a collector needs one more line. hivelog's
//! pipeline is the batch processor (bounded queue, retries with `Retry-After`, spill, report);
//! the sink runs on the pipeline's own thread, never on the application's runtime.
//!
//! One file per concern, in the order a record travels:
//! - `config`: variables, defaults, validation;
//! - [`limits`]: what collectors accept;
//! - `proto`: the protobuf wire format of the few OTLP messages used;
//! - `request_builder`: records → one export request (the data-model mapping);
//! - `service`: the HTTP client and the gRPC channel;
//! - `retry`: which answers are retried, failed, or partially rejected;
//! - `sink`: the [`Sink`](hivelog_core::Sink) implementation tying them together;
//! - [`destination`]: the variable table and the registration value.
#![warn(missing_docs)]

mod config;
pub mod destination;
pub mod limits;
mod proto;
mod request_builder;
mod retry;
mod service;
mod sink;

pub use config::{
    Compression, OtlpConfig, Protocol, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT,
    DEFAULT_TIMEOUT, LOGS_PATH,
};
pub use destination::{DESTINATION, VARS};
pub use sink::OtlpSink;

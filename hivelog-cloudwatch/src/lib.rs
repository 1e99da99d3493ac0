//! hivelog sink for AWS CloudWatch Logs.
//!
//! Enabled by `HIVELOG_CLOUDWATCH_GROUP` through the `hivelog` crate's `cloudwatch` feature;
//! see [`CloudWatchConfig`] for every variable. The sink runs on its pipeline's thread: the AWS
//! client, the `{instance}` lookup and the creation of groups and streams all happen there, so
//! `init()` never waits on the network.
//!
//! One file per concern, in the order a record travels:
//! - `config`: variables, defaults, validation;
//! - [`limits`]: what PutLogEvents accepts, quoted from the AWS documentation;
//! - `request_builder`: records → requests within every limit;
//! - `service`: the SDK calls, creating groups and streams;
//! - `retry`: which answers are retried, refused, or fatal;
//! - `sink`: the [`Sink`](hivelog_core::Sink) implementation tying them together;
//! - `instance`: resolving `{instance}` (ECS task id, EC2 instance id, host name).
#![warn(missing_docs)]

mod config;
pub mod destination;
mod instance;
pub mod limits;
mod request_builder;
mod response_cap;
mod retry;
mod service;
mod sink;

pub use config::{CloudWatchConfig, MessageFormat, DEFAULT_MAX_CONCURRENCY, DEFAULT_STREAM};
pub use destination::{DESTINATION, VARS};
pub use instance::LOOKUP_TIMEOUT;
pub use response_cap::MAX_RESPONSE_BYTES;
pub use service::{CALL_TIMEOUT, CONNECT_TIMEOUT};
pub use sink::CloudWatchSink;

//! hivelog sink for AWS CloudWatch Logs.
#![warn(missing_docs)]

mod config;
pub mod limits;
mod request_builder;

pub use config::{
    CloudWatchConfig, MessageFormat, DEFAULT_MAX_CONCURRENCY, DEFAULT_STREAM, ENV_VARS,
};

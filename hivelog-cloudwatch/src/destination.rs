//! The CloudWatch Logs destination as the facade registers it: its variables (the AWS chain's
//! included, for `hivelog check`), and how a configuration starts its sink or probes it.

use std::sync::Arc;

use hivelog_core::destination::{SinkConfig, SinkDestination};
use hivelog_core::{ConfigError, Env, Format, Var};

use crate::config::CloudWatchConfig;

use crate::sink::CloudWatchSink;

/// Every variable this destination reads: the one list the warnings, `hivelog check`, the
/// README test and the fuzz list use. The `AWS_*` ones are the AWS chain's, read by the SDK.
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_CLOUDWATCH_GROUP",
        "off",
        "log group; switches the sink on",
    ),
    Var::new(
        "HIVELOG_CLOUDWATCH_LEVEL",
        "(HIVELOG_LEVEL)",
        "filter for this destination only",
    ),
    Var::new(
        "HIVELOG_CLOUDWATCH_STREAM",
        crate::config::DEFAULT_STREAM,
        "stream template: {instance}, {service}, {hostname}, {pid}, {target}, {date}",
    ),
    Var::new(
        "HIVELOG_INSTANCE",
        "(ECS task id, else EC2 instance id, else host name)",
        "the {instance} value",
    ),
    Var::new(
        "HIVELOG_CLOUDWATCH_CREATE",
        "true",
        "create the group and stream when missing",
    ),
    Var::new(
        "HIVELOG_CLOUDWATCH_RETENTION_DAYS",
        "unchanged",
        "retention set on the group",
    ),
    Var::new("HIVELOG_CLOUDWATCH_FORMAT", "json", "json or text"),
    Var::new(
        "HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES",
        "256KiB",
        "longest message; longer ones are cut with a marker",
    ),
    Var::new("AWS_REGION", "(from the AWS profile or IMDS)", "AWS region"),
    Var::new(
        "AWS_DEFAULT_REGION",
        "(from the AWS profile or IMDS)",
        "AWS region",
    ),
    Var::new("AWS_PROFILE", "default", "AWS profile"),
    Var::new(
        "AWS_ENDPOINT_URL",
        "(the region's endpoint)",
        "AWS endpoint",
    ),
    Var::new(
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
        "(the region's endpoint)",
        "CloudWatch Logs endpoint",
    ),
    Var::new(
        "AWS_ACCESS_KEY_ID",
        "(AWS chain: profile, task role, instance role)",
        "access key id",
    ),
    Var::new(
        "AWS_SECRET_ACCESS_KEY",
        "(AWS chain: profile, task role, instance role)",
        "secret access key",
    )
    .secret(),
    Var::new(
        "AWS_SESSION_TOKEN",
        "(AWS chain: profile, task role, instance role)",
        "session token",
    )
    .secret(),
    Var::new(
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "(set by ECS)",
        "ECS task role credentials",
    ),
    Var::new("AWS_EC2_METADATA_DISABLED", "false", "skip IMDS"),
];

/// The value the facade's list of destinations holds.
pub static DESTINATION: SinkDestination<CloudWatchConfig> =
    SinkDestination::new("cloudwatch", VARS, &["HIVELOG_CLOUDWATCH_GROUP"]);

impl SinkConfig for CloudWatchConfig {
    type Sink = CloudWatchSink;

    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        CloudWatchConfig::from_env(env)
    }

    fn apply_env(self, env: &Env) -> Result<Self, ConfigError> {
        CloudWatchConfig::apply_env(self, env)
    }

    fn target(&self) -> String {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let endpoint = var(["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_ENDPOINT_URL"]);
        match (endpoint, var(["AWS_REGION", "AWS_DEFAULT_REGION"])) {
            (Some(e), _) => format!("log group {} at {e}", self.group_name()),
            (None, Some(r)) => format!("log group {} in {r}", self.group_name()),
            (None, None) => format!("log group {}", self.group_name()),
        }
    }

    fn into_sink(self, format: Arc<Format>) -> CloudWatchSink {
        CloudWatchSink::new(self, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_variable_the_config_reads() {
        let mut names: Vec<&str> = VARS
            .iter()
            .map(|v| v.name)
            .filter(|n| n.starts_with("HIVELOG_") && !n.ends_with("_LEVEL"))
            .collect();
        names.sort();
        let mut read = vec![
            "HIVELOG_CLOUDWATCH_CREATE",
            "HIVELOG_CLOUDWATCH_FORMAT",
            "HIVELOG_CLOUDWATCH_GROUP",
            "HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES",
            "HIVELOG_CLOUDWATCH_RETENTION_DAYS",
            "HIVELOG_CLOUDWATCH_STREAM",
            "HIVELOG_INSTANCE",
        ];
        read.sort();
        assert_eq!(names, read);
    }
}

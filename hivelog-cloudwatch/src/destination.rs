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
        match (self.endpoint(), self.region_override()) {
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
    use hivelog_core::Secret;

    #[test]
    fn the_aws_variables_come_from_the_env_it_is_given_not_the_process() {
        let env = Env::from_pairs([
            ("HIVELOG_CLOUDWATCH_GROUP", "app"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9/only-in-this-env"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "AKIDFROMENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret-from-env"),
            ("AWS_SESSION_TOKEN", "token-from-env"),
        ]);
        let config = CloudWatchConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(
            SinkConfig::target(&config),
            "log group app at http://127.0.0.1:9/only-in-this-env"
        );
        assert_eq!(config.region_override(), Some("eu-west-3"));
        let (id, secret, token) = config.credentials().unwrap();
        assert_eq!(
            (id, secret.expose(), token.map(Secret::expose)),
            ("AKIDFROMENV", "secret-from-env", Some("token-from-env"))
        );
        // The service's own endpoint wins over the general one; without one, the region shows.
        let env = Env::from_pairs([
            ("HIVELOG_CLOUDWATCH_GROUP", "app"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9/general"),
            (
                "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
                "http://127.0.0.1:9/logs",
            ),
        ]);
        let config = CloudWatchConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.endpoint(), Some("http://127.0.0.1:9/logs"));
        let env = Env::from_pairs([
            ("HIVELOG_CLOUDWATCH_GROUP", "app"),
            ("AWS_REGION", "ap-south-2"),
        ]);
        let config = CloudWatchConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(SinkConfig::target(&config), "log group app in ap-south-2");
        // Settings made in code override the AWS chain, the Env's variables included.
        let config = CloudWatchConfig::new("app")
            .region("us-west-1")
            .apply_env(&env)
            .unwrap();
        assert_eq!(SinkConfig::target(&config), "log group app in us-west-1");
    }

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

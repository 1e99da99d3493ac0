//! The sink's settings: code defaults set with builder methods, overridden by
//! `HIVELOG_CLOUDWATCH_*` variables, validated once at init so a typo fails `try_init` with a
//! message naming the variable instead of surfacing as rejected requests later.
//!
//! The AWS chain's variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, access keys) are read from the
//! same `Env` as the rest, so a configuration built from a given `Env` never depends on the
//! process's. Nothing here does I/O: the rest of the AWS chain (profile, task role, IMDS) and
//! the `{instance}` lookup run later, on the sink's thread.

use hivelog_core::{ConfigError, Env, Secret};

use crate::limits;

/// The default stream name template (`HIVELOG_CLOUDWATCH_STREAM`): one stream per process.
pub const DEFAULT_STREAM: &str = "{instance}/{service}/{pid}";

/// The default number of PutLogEvents calls in flight at once, across all streams.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// What one CloudWatch event's message holds (`HIVELOG_CLOUDWATCH_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MessageFormat {
    /// The formatter's JSON line (default), so Logs Insights discovers every field.
    #[default]
    Json,
    /// `LEVEL message`, like Python's `%(levelname)s %(message)s`.
    Text,
}

/// Settings of the CloudWatch Logs sink.
///
/// ```
/// use hivelog_cloudwatch::{CloudWatchConfig, MessageFormat};
///
/// let config = CloudWatchConfig::new("django-webapp")
///     .stream("{instance}/{target}/{pid}")?
///     .retention_days(Some(1))
///     .format(MessageFormat::Text);
/// assert!(config.validate().is_ok());
/// # Ok::<(), hivelog_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CloudWatchConfig {
    group: String,
    stream: StreamTemplate,
    retention_days: Option<u32>,
    create: bool,
    format: MessageFormat,
    max_event_bytes: usize,
    instance: Option<String>,
    max_concurrency: usize,
    endpoint_url: Option<String>,
    region: Option<String>,
    credentials: Option<Keys>,
}

/// Fixed AWS credentials: access key id, secret key, and a session token for temporary ones.
#[derive(Clone, Debug)]
struct Keys {
    id: String,
    secret: Secret,
    session_token: Option<Secret>,
}

impl CloudWatchConfig {
    /// Settings for log group `group`, every other knob at its default.
    pub fn new(group: impl Into<String>) -> Self {
        CloudWatchConfig {
            group: group.into(),
            stream: StreamTemplate::default_stream(),
            retention_days: None,
            create: true,
            format: MessageFormat::Json,
            max_event_bytes: limits::DEFAULT_MAX_EVENT_BYTES,
            instance: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            endpoint_url: None,
            region: None,
            credentials: None,
        }
    }

    /// Settings from the environment alone: `None` when `HIVELOG_CLOUDWATCH_GROUP` is unset
    /// (the sink is off), an error naming the variable when a value is bad.
    pub fn from_env(env: &Env) -> Result<Option<CloudWatchConfig>, ConfigError> {
        match env.get("HIVELOG_CLOUDWATCH_GROUP") {
            None => {
                // Still read the others so they are not reported as unknown, and still check them.
                CloudWatchConfig::new("unused").apply_env(env)?;
                Ok(None)
            }
            Some(group) => CloudWatchConfig::new(group).apply_env(env).map(Some),
        }
    }

    /// These settings with every `HIVELOG_CLOUDWATCH_*` variable that is set applied over them,
    /// then validated.
    pub fn apply_env(mut self, env: &Env) -> Result<Self, ConfigError> {
        if let Some(group) = env.get("HIVELOG_CLOUDWATCH_GROUP") {
            self.group = group.to_owned();
        }
        if let Some(stream) = env.get("HIVELOG_CLOUDWATCH_STREAM") {
            self.stream = StreamTemplate::parse(stream)?;
        }
        if let Some(days) = env.parse(
            "HIVELOG_CLOUDWATCH_RETENTION_DAYS",
            "a CloudWatch retention period",
            parse_retention,
        )? {
            self.retention_days = Some(days);
        }
        if let Some(create) = env.bool("HIVELOG_CLOUDWATCH_CREATE")? {
            self.create = create;
        }
        if let Some(format) = env.choice(
            "HIVELOG_CLOUDWATCH_FORMAT",
            "a CloudWatch message format",
            &[("json", MessageFormat::Json), ("text", MessageFormat::Text)],
        )? {
            self.format = format;
        }
        if let Some(n) = env.bytes("HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES")? {
            let v = env
                .get("HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES")
                .unwrap_or_default();
            if !(limits::MIN_EVENT_BYTES as u64..=limits::MAX_EVENT_BYTES as u64).contains(&n) {
                return Err(ConfigError::invalid(
                    "HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES",
                    v,
                    "an accepted CloudWatch event size",
                    &format!(
                        "a size from {} to {} bytes (256KiB, 1MiB)",
                        limits::MIN_EVENT_BYTES,
                        limits::MAX_EVENT_BYTES
                    ),
                ));
            }
            self.max_event_bytes = n as usize;
        }
        if let Some(instance) = env.get("HIVELOG_INSTANCE") {
            self.instance = Some(instance.to_owned());
        }
        self.apply_aws_env(env);
        self.validate()?;
        Ok(self)
    }

    /// The AWS chain's variables, read from the same `Env` as the rest (the process's, or the
    /// one a builder or a test gave), so the sink and `hivelog check` use what that `Env`
    /// says. Settings made in code win: they are documented as overriding the AWS chain.
    fn apply_aws_env(&mut self, env: &Env) {
        let first = |names: [&str; 2]| names.iter().find_map(|n| env.get(n)).map(str::to_owned);
        if self.endpoint_url.is_none() {
            self.endpoint_url = first(["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_ENDPOINT_URL"]);
        }
        if self.region.is_none() {
            self.region = first(["AWS_REGION", "AWS_DEFAULT_REGION"]);
        }
        if self.credentials.is_none() {
            if let (Some(id), Some(secret)) = (
                env.get("AWS_ACCESS_KEY_ID"),
                env.secret("AWS_SECRET_ACCESS_KEY"),
            ) {
                self.credentials = Some(Keys {
                    id: id.to_owned(),
                    secret,
                    session_token: env.secret("AWS_SESSION_TOKEN"),
                });
            }
        }
    }

    /// Checks every setting, naming the variable that sets it in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_group(&self.group)?;
        if let Some(days) = self.retention_days {
            parse_retention(&days.to_string()).map_err(|expected| {
                ConfigError::invalid(
                    "HIVELOG_CLOUDWATCH_RETENTION_DAYS",
                    &days.to_string(),
                    "a CloudWatch retention period",
                    &expected,
                )
            })?;
        }
        if !(limits::MIN_EVENT_BYTES..=limits::MAX_EVENT_BYTES).contains(&self.max_event_bytes) {
            return Err(ConfigError::invalid(
                "HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES",
                &self.max_event_bytes.to_string(),
                "an accepted CloudWatch event size",
                &format!(
                    "a size from {} to {} bytes",
                    limits::MIN_EVENT_BYTES,
                    limits::MAX_EVENT_BYTES
                ),
            ));
        }
        Ok(())
    }

    /// The log group (`HIVELOG_CLOUDWATCH_GROUP`).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// The stream name template (`HIVELOG_CLOUDWATCH_STREAM`, default [`DEFAULT_STREAM`]):
    /// `{instance}` `{service}` `{hostname}` `{pid}` `{target}` (one stream per logger) and
    /// `{date}` (the event's UTC day, `2025-03-31`). `:` and `*` in the result become `_`.
    /// Validated as the variable is; the error names the variable.
    ///
    /// ```
    /// use hivelog_cloudwatch::CloudWatchConfig;
    /// let config = CloudWatchConfig::new("webapp").stream("{service}/{date}")?;
    /// assert_eq!(config.stream_template(), "{service}/{date}");
    /// let err = CloudWatchConfig::new("webapp").stream("{logger}").unwrap_err();
    /// assert!(err.to_string().starts_with("HIVELOG_CLOUDWATCH_STREAM: '{logger}' is not"));
    /// # Ok::<(), hivelog_core::ConfigError>(())
    /// ```
    pub fn stream(mut self, template: &str) -> Result<Self, ConfigError> {
        self.stream = StreamTemplate::parse(template)?;
        Ok(self)
    }

    /// Retention to set on the group (`HIVELOG_CLOUDWATCH_RETENTION_DAYS`, default: unchanged),
    /// applied once when the sink first creates a stream (so only with `create(true)`).
    /// Events older than it are rejected before sending, as CloudWatch would refuse them.
    pub fn retention_days(mut self, days: Option<u32>) -> Self {
        self.retention_days = days;
        self
    }

    /// Whether to create the group and stream when missing (`HIVELOG_CLOUDWATCH_CREATE`,
    /// default `true`). With `false` the role needs only `logs:PutLogEvents`.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// What a message holds (`HIVELOG_CLOUDWATCH_FORMAT`, default JSON).
    pub fn format(mut self, format: MessageFormat) -> Self {
        self.format = format;
        self
    }

    /// Largest event, counted as message bytes + 26 (`HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES`,
    /// default 256 KiB, at most 1 MiB). Longer messages are cut with a visible marker.
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.max_event_bytes = n;
        self
    }

    /// The `{instance}` value (`HIVELOG_INSTANCE`); default: the ECS task id, else the EC2
    /// instance id, else the host name, looked up on the sink's thread.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Most PutLogEvents calls in flight at once (default [`DEFAULT_MAX_CONCURRENCY`]).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// An endpoint overriding the AWS chain's (`AWS_ENDPOINT_URL`), e.g. a local test server.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// A region overriding the AWS chain's (`AWS_REGION`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Fixed credentials instead of the AWS chain's (for tests and special setups; prefer a
    /// task role). The secret key never appears in `Debug`.
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> Self {
        self.credentials = Some(Keys {
            id: access_key_id.into(),
            secret: secret_access_key,
            session_token: None,
        });
        self
    }

    /// The log group.
    pub fn group_name(&self) -> &str {
        &self.group
    }

    /// The stream name template.
    pub fn stream_template(&self) -> &str {
        &self.stream.source
    }

    pub(crate) fn parsed_stream(&self) -> &StreamTemplate {
        &self.stream
    }

    /// The retention to apply, if any.
    pub fn retention(&self) -> Option<u32> {
        self.retention_days
    }

    /// Whether missing groups and streams are created.
    pub fn creates(&self) -> bool {
        self.create
    }

    /// The message format.
    pub fn message_format(&self) -> MessageFormat {
        self.format
    }

    /// The event size limit (message bytes + 26).
    pub fn event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    pub(crate) fn instance_override(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.max_concurrency
    }

    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    pub(crate) fn region_override(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The access key id, secret key and session token set in code or in the `Env`.
    pub(crate) fn credentials(&self) -> Option<(&str, &Secret, Option<&Secret>)> {
        self.credentials
            .as_ref()
            .map(|k| (k.id.as_str(), &k.secret, k.session_token.as_ref()))
    }
}

fn parse_retention(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .ok()
        .filter(|d| limits::RETENTION_DAYS.contains(d))
        .ok_or_else(|| {
            let list: Vec<String> = limits::RETENTION_DAYS.iter().map(u32::to_string).collect();
            format!("one of {}", list.join(", "))
        })
}

fn validate_group(group: &str) -> Result<(), ConfigError> {
    if group.is_empty()
        || group.len() > limits::MAX_GROUP_NAME_LEN
        || !group.chars().all(limits::is_group_name_char)
    {
        return Err(ConfigError::invalid(
            "HIVELOG_CLOUDWATCH_GROUP",
            group,
            "a log group name",
            "1 to 512 characters among A-Z a-z 0-9 . - _ / #",
        ));
    }
    Ok(())
}

/// One piece of a stream name template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(String),
    Instance,
    Service,
    Hostname,
    Pid,
    Target,
    Date,
}

/// A parsed, validated `HIVELOG_CLOUDWATCH_STREAM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamTemplate {
    /// The template as written.
    pub(crate) source: String,
    pub(crate) parts: Vec<Part>,
}

const STREAM_FORM: &str =
    "text with placeholders {instance} {service} {hostname} {pid} {target} {date}";

impl StreamTemplate {
    /// [`DEFAULT_STREAM`], parsed (built directly: it cannot fail).
    fn default_stream() -> StreamTemplate {
        StreamTemplate {
            source: DEFAULT_STREAM.to_owned(),
            parts: vec![
                Part::Instance,
                Part::Literal("/".to_owned()),
                Part::Service,
                Part::Literal("/".to_owned()),
                Part::Pid,
            ],
        }
    }

    /// Parses and validates `src`; the error names `HIVELOG_CLOUDWATCH_STREAM`.
    pub(crate) fn parse(src: &str) -> Result<StreamTemplate, ConfigError> {
        let bad = |why: &str| {
            ConfigError::invalid(
                "HIVELOG_CLOUDWATCH_STREAM",
                src,
                "a stream name template",
                &format!("{STREAM_FORM} ({why})"),
            )
        };
        if src.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| bad("a '{' is not closed"))?
                + open;
            parts.push(match &rest[open + 1..close] {
                "instance" => Part::Instance,
                "service" => Part::Service,
                "hostname" => Part::Hostname,
                "pid" => Part::Pid,
                "target" => Part::Target,
                "date" => Part::Date,
                other => return Err(bad(&format!("unknown placeholder {{{other}}}"))),
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(StreamTemplate {
            source: src.to_owned(),
            parts,
        })
    }

    /// Whether the name depends on the record (else one stream for the whole process).
    pub(crate) fn per_record(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Target | Part::Date))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_unset_means_the_sink_is_off() {
        let env = Env::from_pairs([("HIVELOG_CLOUDWATCH_FORMAT", "text")]);
        assert!(CloudWatchConfig::from_env(&env).unwrap().is_none());
        assert!(env.unused().is_empty());
    }

    #[test]
    fn every_variable_is_read_and_applied() {
        let env = Env::from_pairs([
            ("HIVELOG_CLOUDWATCH_GROUP", "django-webapp"),
            ("HIVELOG_CLOUDWATCH_STREAM", "{instance}/{target}/{pid}"),
            ("HIVELOG_CLOUDWATCH_RETENTION_DAYS", "1"),
            ("HIVELOG_CLOUDWATCH_CREATE", "false"),
            ("HIVELOG_CLOUDWATCH_FORMAT", "text"),
            ("HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES", "1MiB"),
            ("HIVELOG_INSTANCE", "i-0abc"),
        ]);
        let c = CloudWatchConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(c.group_name(), "django-webapp");
        assert_eq!(c.stream_template(), "{instance}/{target}/{pid}");
        assert_eq!(c.retention(), Some(1));
        assert!(!c.creates());
        assert_eq!(c.message_format(), MessageFormat::Text);
        assert_eq!(c.event_bytes(), 1_048_576);
        assert_eq!(c.instance_override(), Some("i-0abc"));
        assert!(env.unused().is_empty());
    }

    #[test]
    fn bad_values_name_the_variable_and_what_was_expected() {
        let cases = [
            ("HIVELOG_CLOUDWATCH_GROUP", "my group", "HIVELOG_CLOUDWATCH_GROUP: 'my group' is not a log group name; expected 1 to 512 characters among A-Z a-z 0-9 . - _ / #"),
            ("HIVELOG_CLOUDWATCH_RETENTION_DAYS", "2", "HIVELOG_CLOUDWATCH_RETENTION_DAYS: '2' is not a CloudWatch retention period; expected one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"),
            ("HIVELOG_CLOUDWATCH_STREAM", "{instance}/{logger}", "HIVELOG_CLOUDWATCH_STREAM: '{instance}/{logger}' is not a stream name template; expected text with placeholders {instance} {service} {hostname} {pid} {target} {date} (unknown placeholder {logger})"),
            ("HIVELOG_CLOUDWATCH_FORMAT", "xml", "HIVELOG_CLOUDWATCH_FORMAT: 'xml' is not a CloudWatch message format; expected one of json, text"),
            ("HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES", "2MiB", "HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES: '2MiB' is not an accepted CloudWatch event size; expected a size from 256 to 1048576 bytes (256KiB, 1MiB)"),
            ("HIVELOG_CLOUDWATCH_CREATE", "maybe", "HIVELOG_CLOUDWATCH_CREATE: 'maybe' is not a boolean; expected true or false"),
        ];
        for (var, value, message) in cases {
            let mut pairs = vec![("HIVELOG_CLOUDWATCH_GROUP", "ok")];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value));
            let err = CloudWatchConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        let long = "g".repeat(513);
        assert!(CloudWatchConfig::new(long).validate().is_err());
        assert!(CloudWatchConfig::new("a".repeat(512)).validate().is_ok());
        assert!(CloudWatchConfig::new("/ecs/app_1.prod#x")
            .validate()
            .is_ok());
    }

    #[test]
    fn debug_does_not_show_the_secret_key() {
        let c = CloudWatchConfig::new("g")
            .static_credentials("AKIDEXAMPLE", Secret::new("wJalrXUtnFEMI"));
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn stream_templates_parse_into_parts() {
        let t = StreamTemplate::parse("{instance}/{service}-x/{pid}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Instance,
                Part::Literal("/".into()),
                Part::Service,
                Part::Literal("-x/".into()),
                Part::Pid
            ]
        );
        assert!(!t.per_record());
        assert!(StreamTemplate::parse("{target}").unwrap().per_record());
        assert!(StreamTemplate::parse("a{date").is_err());
        assert!(StreamTemplate::parse("").is_err());
    }

    #[test]
    fn the_stream_setter_validates_as_the_variable_does() {
        for bad in ["{instance}/{logger}", "a{date", "{}"] {
            let env = Env::from_pairs([
                ("HIVELOG_CLOUDWATCH_GROUP", "g"),
                ("HIVELOG_CLOUDWATCH_STREAM", bad),
            ]);
            let from_env = CloudWatchConfig::from_env(&env).unwrap_err().to_string();
            let from_code = CloudWatchConfig::new("g").stream(bad).unwrap_err();
            assert_eq!(from_code.to_string(), from_env);
        }
        assert!(CloudWatchConfig::new("g").stream("").is_err());
        let c = CloudWatchConfig::new("g").stream("{target}").unwrap();
        assert_eq!(c.stream_template(), "{target}");
        assert!(c.parsed_stream().per_record());
    }

    #[test]
    fn the_default_stream_is_the_parsed_default_template() {
        let default = CloudWatchConfig::new("g");
        assert_eq!(default.stream_template(), DEFAULT_STREAM);
        assert_eq!(
            default.parsed_stream(),
            &StreamTemplate::parse(DEFAULT_STREAM).unwrap()
        );
    }
}

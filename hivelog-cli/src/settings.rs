//! The resolved configuration as a table: each variable that matters, its effective value, and
//! whether that value came from the environment or is the default.
//!
//! Effective values set in the environment are shown as given (secrets as `***`, credentials in
//! URLs as `***`); defaults are taken from the parsed configuration where it exposes them (the
//! format, the pipeline) and otherwise from the crates' documented default constants. The sink
//! configurations' own `Debug` (which masks every `Secret`) follows each sink's table, so what
//! the sink will really use is always on screen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hivelog::cloudwatch::CloudWatchConfig;
use hivelog::elk::EsConfig;
use hivelog::fluent::FluentConfig;
use hivelog_core::format::{Attr, FORMAT_VARS};
use hivelog_core::{Format, PipelineConfig};

use crate::scrub::{is_secret_var, mask_url_credentials};

/// The configuration as the service would resolve it.
#[derive(Debug)]
pub struct Resolved {
    /// The field mapping (service name, host name, …).
    pub format: Arc<Format>,
    /// Queue, batching and retry settings shared by the sinks.
    pub pipeline: PipelineConfig,
    /// The Fluentd sink, when `HIVELOG_FLUENT_ADDR` is set.
    pub fluent: Option<FluentConfig>,
    /// The Elasticsearch sink, when `HIVELOG_ES_URL` or `HIVELOG_ES_CLOUD_ID` is set.
    pub es: Option<EsConfig>,
    /// The CloudWatch sink, when `HIVELOG_CLOUDWATCH_GROUP` is set.
    pub cloudwatch: Option<CloudWatchConfig>,
}

impl Resolved {
    fn any_sink(&self) -> bool {
        self.fluent.is_some() || self.es.is_some() || self.cloudwatch.is_some()
    }
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Set in the environment.
    Env,
    /// Not set: the default applies.
    Default,
    /// Set, but nothing in hivelog reads it (a typo, or a variable of another version).
    Unknown,
}

impl Source {
    /// `env`, `default` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Env => "env",
            Source::Default => "default",
            Source::Unknown => "unknown",
        }
    }
}

/// One variable.
#[derive(Clone, Debug)]
pub struct Setting {
    /// The variable's name.
    pub name: String,
    /// Its effective value, masked if secret.
    pub value: String,
    /// Where the value came from.
    pub source: Source,
}

/// A group of variables (general, delivery, one per sink).
#[derive(Clone, Debug)]
pub struct Section {
    /// `general`, `delivery`, `fluent`, `elasticsearch`, `cloudwatch`, `unknown`.
    pub name: &'static str,
    /// Whether the sink is enabled (`true` for the non-sink sections).
    pub enabled: bool,
    /// Its variables.
    pub settings: Vec<Setting>,
    /// The sink configuration's `Debug` (secrets masked), when enabled and resolved.
    pub resolved: Option<String>,
}

/// The variables a process sees, as `Env::get` sees them: trimmed, empty meaning unset.
#[derive(Debug, Default)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    /// The process's `HIVELOG_*`, `RUST_LOG`, `HOSTNAME` and `AWS_*` variables.
    pub fn from_process() -> Vars {
        Vars::from_pairs(std::env::vars().filter(|(k, _)| {
            k.starts_with("HIVELOG_") || k.starts_with("AWS_") || k == "RUST_LOG" || k == "HOSTNAME"
        }))
    }

    /// Explicit variables (tests).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Vars {
        Vars(
            pairs
                .into_iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k, v.trim().to_owned()))
                .collect(),
        )
    }

    /// The value of a set variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every set variable.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

const GENERAL_VARS: &[&str] = &[
    "HIVELOG_LEVEL",
    "RUST_LOG",
    "HIVELOG_FORMAT",
    "HIVELOG_OUTPUT",
    "HIVELOG_FILE_ROTATION",
    "HIVELOG_FILE_KEEP",
    "HIVELOG_HEARTBEAT",
];

const PIPELINE_VARS: &[&str] = &[
    "HIVELOG_BUFFER_BYTES",
    "HIVELOG_OVERFLOW",
    "HIVELOG_FLUSH_INTERVAL",
    "HIVELOG_SHUTDOWN_TIMEOUT",
    "HIVELOG_RETRY_BASE",
    "HIVELOG_RETRY_CAP",
    "HIVELOG_RETRY_MAX_ELAPSED",
];

/// The AWS chain's variables that decide where CloudWatch calls go and as whom.
const AWS_VARS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_EC2_METADATA_DISABLED",
];

/// The configuration table. `resolved` is `None` when the configuration did not validate: the
/// table then shows the raw values and generic defaults.
pub fn sections(vars: &Vars, resolved: Option<&Resolved>) -> Vec<Section> {
    let mut known: Vec<&str> = Vec::new();
    let mut out = Vec::new();

    let general: Vec<&str> = GENERAL_VARS.iter().chain(FORMAT_VARS).copied().collect();
    known.extend(&general);
    out.push(Section {
        name: "general",
        enabled: true,
        settings: general.iter().map(|n| setting(vars, n, resolved)).collect(),
        resolved: None,
    });

    known.extend(PIPELINE_VARS);
    let any_sink = resolved.is_none_or(Resolved::any_sink);
    if any_sink || PIPELINE_VARS.iter().any(|n| vars.get(n).is_some()) {
        out.push(Section {
            name: "delivery",
            enabled: true,
            settings: PIPELINE_VARS
                .iter()
                .map(|n| setting(vars, n, resolved))
                .collect(),
            resolved: None,
        });
    }

    let sinks = [
        SinkVars {
            name: "fluent",
            env_vars: hivelog::fluent::ENV_VARS,
            switches: &["HIVELOG_FLUENT_ADDR"],
            level_var: "HIVELOG_FLUENT_LEVEL",
            on: resolved.map(|r| r.fluent.is_some()),
            debug: resolved
                .and_then(|r| r.fluent.as_ref())
                .map(|c| format!("{c:?}")),
        },
        SinkVars {
            name: "elasticsearch",
            env_vars: hivelog::elk::ENV_VARS,
            switches: &["HIVELOG_ES_URL", "HIVELOG_ES_CLOUD_ID"],
            level_var: "HIVELOG_ES_LEVEL",
            on: resolved.map(|r| r.es.is_some()),
            debug: resolved
                .and_then(|r| r.es.as_ref())
                .map(|c| format!("{c:?}")),
        },
        SinkVars {
            name: "cloudwatch",
            env_vars: hivelog::cloudwatch::ENV_VARS,
            switches: &["HIVELOG_CLOUDWATCH_GROUP"],
            level_var: "HIVELOG_CLOUDWATCH_LEVEL",
            on: resolved.map(|r| r.cloudwatch.is_some()),
            debug: resolved
                .and_then(|r| r.cloudwatch.as_ref())
                .map(|c| format!("{c:?}")),
        },
    ];
    for SinkVars {
        name,
        env_vars,
        switches,
        level_var,
        on,
        debug,
    } in sinks
    {
        // Without a resolved configuration, a sink is on when its switch is set.
        let on = on.unwrap_or_else(|| switches.iter().any(|s| vars.get(s).is_some()));
        let mut names: Vec<&str> = env_vars.to_vec();
        names.push(level_var);
        if name == "cloudwatch" {
            names.extend(AWS_VARS);
        }
        known.extend(&names);
        let settings = names
            .iter()
            // A sink that is off shows its switch and whatever of its variables is set anyway.
            .filter(|n| on || switches.contains(n) || vars.get(n).is_some())
            .filter(|n| on || !n.starts_with("AWS_"))
            .map(|n| setting(vars, n, resolved))
            .collect();
        out.push(Section {
            name,
            enabled: on,
            settings,
            resolved: debug,
        });
    }

    let unknown: Vec<Setting> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("HIVELOG_") && !known.contains(k))
        .map(|(k, _)| Setting {
            name: k.to_owned(),
            // The value of a mistyped name could be a secret (`HIVELOG_ES_PASWORD`).
            value: "(not shown)".to_owned(),
            source: Source::Unknown,
        })
        .collect();
    if !unknown.is_empty() {
        out.push(Section {
            name: "unknown",
            enabled: true,
            settings: unknown,
            resolved: None,
        });
    }
    out
}

/// One sink's variables and state, for its section.
struct SinkVars {
    name: &'static str,
    env_vars: &'static [&'static str],
    switches: &'static [&'static str],
    level_var: &'static str,
    on: Option<bool>,
    debug: Option<String>,
}

fn setting(vars: &Vars, name: &str, resolved: Option<&Resolved>) -> Setting {
    match vars.get(name) {
        Some(v) => Setting {
            name: name.to_owned(),
            value: shown(name, v),
            source: Source::Env,
        },
        None => Setting {
            name: name.to_owned(),
            value: default_value(vars, name, resolved),
            source: Source::Default,
        },
    }
}

/// A set value as it may be printed.
fn shown(name: &str, value: &str) -> String {
    if is_secret_var(name) {
        "***".to_owned()
    } else if name == "AWS_ACCESS_KEY_ID" {
        // Enough to tell which key is in use, as the AWS console shows it.
        let tail: String = value
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    } else {
        mask_url_credentials(value)
    }
}

/// What applies when `name` is unset.
fn default_value(vars: &Vars, name: &str, r: Option<&Resolved>) -> String {
    let p = r.map(|r| &r.pipeline);
    let f = r.map(|r| &r.format);
    let s = |v: &str| v.to_owned();
    match name {
        "HIVELOG_LEVEL" => match vars.get("RUST_LOG") {
            Some(_) => s("(RUST_LOG)"),
            None => s("info"),
        },
        "RUST_LOG" => s("unset"),
        "HIVELOG_FORMAT" => s("json"),
        "HIVELOG_OUTPUT" => s("stdout"),
        "HIVELOG_FILE_ROTATION" => s("never"),
        "HIVELOG_FILE_KEEP" => s("10"),
        "HIVELOG_HEARTBEAT" => s("off"),
        "HIVELOG_FIELDS" => match f {
            Some(f) => basic_fields(f),
            None => s("timestamp,level,target,message"),
        },
        "HIVELOG_EXTRA" | "HIVELOG_REDACT" => s("none"),
        "HIVELOG_SCHEMA" => s("default"),
        "HIVELOG_TIMESTAMP" => s("rfc3339ms"),
        "HIVELOG_TRACE_FORMAT" => s("w3c"),
        "HIVELOG_SERVICE" => match f {
            Some(f) => f.service().to_owned(),
            None => s("(the executable's name)"),
        },
        "HIVELOG_MAX_EVENT_BYTES" => bytes(
            f.map_or(hivelog_core::format::DEFAULT_MAX_EVENT_BYTES, |f| {
                f.max_event_bytes()
            }),
        ),
        "HIVELOG_BUFFER_BYTES" => bytes(p.map_or(64_000_000, |p| p.buffer_bytes)),
        "HIVELOG_OVERFLOW" => p.map_or(s("drop_newest"), |p| p.overflow.to_string()),
        "HIVELOG_FLUSH_INTERVAL" => dur(p.map(|p| p.flush_interval), "1s"),
        "HIVELOG_SHUTDOWN_TIMEOUT" => dur(p.map(|p| p.shutdown_timeout), "5s"),
        "HIVELOG_RETRY_BASE" => dur(p.map(|p| p.retry.base), "100ms"),
        "HIVELOG_RETRY_CAP" => dur(p.map(|p| p.retry.cap), "30s"),
        "HIVELOG_RETRY_MAX_ELAPSED" => dur(p.map(|p| p.retry.max_elapsed), "5m"),
        "HIVELOG_FLUENT_LEVEL" | "HIVELOG_ES_LEVEL" | "HIVELOG_CLOUDWATCH_LEVEL" => {
            s("(HIVELOG_LEVEL)")
        }

        "HIVELOG_FLUENT_ADDR" => s("unset"),
        "HIVELOG_FLUENT_TAG" => s(hivelog::fluent::config::DEFAULT_TAG),
        "HIVELOG_FLUENT_ACK" => s("true"),
        "HIVELOG_FLUENT_COMPRESS" => s("none"),
        "HIVELOG_FLUENT_TIME" => s("eventtime"),
        "HIVELOG_FLUENT_HOSTNAME" => f.map_or(s("(host name)"), |f| f.hostname().to_owned()),
        "HIVELOG_FLUENT_MAX_MESSAGE_BYTES" => {
            bytes(hivelog::fluent::config::DEFAULT_MAX_MESSAGE_BYTES)
        }
        "HIVELOG_FLUENT_ACK_TIMEOUT" => dur(Some(hivelog::fluent::config::DEFAULT_ACK_TIMEOUT), ""),
        "HIVELOG_FLUENT_CONNECT_TIMEOUT" => {
            dur(Some(hivelog::fluent::config::DEFAULT_CONNECT_TIMEOUT), "")
        }
        "HIVELOG_FLUENT_WRITE_TIMEOUT" => {
            dur(Some(hivelog::fluent::config::DEFAULT_WRITE_TIMEOUT), "")
        }

        "HIVELOG_ES_URL" | "HIVELOG_ES_CLOUD_ID" => s("unset"),
        "HIVELOG_ES_INDEX" => s(hivelog::elk::DEFAULT_INDEX),
        "HIVELOG_ES_ACTION" => s("create"),
        "HIVELOG_ES_COMPRESS" => s("none"),
        "HIVELOG_ES_MAX_BATCH_BYTES" => bytes(hivelog::elk::DEFAULT_MAX_BATCH_BYTES),
        "HIVELOG_ES_TIMEOUT" => dur(Some(hivelog::elk::DEFAULT_TIMEOUT), ""),
        "HIVELOG_ES_SETUP" => s("false"),

        "HIVELOG_CLOUDWATCH_GROUP" => s("unset"),
        "HIVELOG_CLOUDWATCH_STREAM" => s(hivelog::cloudwatch::DEFAULT_STREAM),
        "HIVELOG_CLOUDWATCH_RETENTION_DAYS" => s("unchanged"),
        "HIVELOG_CLOUDWATCH_CREATE" => s("true"),
        "HIVELOG_CLOUDWATCH_FORMAT" => s("json"),
        "HIVELOG_CLOUDWATCH_MAX_EVENT_BYTES" => {
            bytes(hivelog::cloudwatch::limits::DEFAULT_MAX_EVENT_BYTES)
        }
        "HIVELOG_INSTANCE" => s("(ECS task id, else EC2 instance id, else host name)"),
        "AWS_REGION" | "AWS_DEFAULT_REGION" => s("(from the AWS profile or IMDS)"),
        "AWS_PROFILE" => s("default"),
        "AWS_ENDPOINT_URL" | "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS" => s("(the region's endpoint)"),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN" => {
            s("(AWS chain: profile, task role, instance role)")
        }
        "AWS_EC2_METADATA_DISABLED" => s("false"),
        _ => s("none"),
    }
}

/// `HIVELOG_FIELDS` syntax for the resolved basic fields.
fn basic_fields(f: &Format) -> String {
    f.basic()
        .filter_map(|(out, attr)| {
            let name = Attr::NAMES.iter().find(|(_, a)| *a == attr)?.0;
            Some(if out == name {
                name.to_owned()
            } else {
                format!("{out}={name}")
            })
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn dur(d: Option<Duration>, fallback: &str) -> String {
    match d {
        Some(d) => format!("{d:?}"),
        None => fallback.to_owned(),
    }
}

/// A byte count in the unit it was most likely written with (`64MB`, `1MiB`).
fn bytes(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    match n {
        0 => "0".to_owned(),
        n if n % MIB == 0 => format!("{}MiB", n / MIB),
        n if n % 1_000_000 == 0 => format!("{}MB", n / 1_000_000),
        n if n % 1024 == 0 => format!("{}KiB", n / 1024),
        n if n % 1000 == 0 => format!("{}KB", n / 1000),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn values_say_where_they_come_from_and_secrets_are_masked() {
        let v = vars(&[
            ("HIVELOG_ES_URL", "http://elastic:pw-in-url@127.0.0.1:9200"),
            ("HIVELOG_ES_PASSWORD", "hunter22"),
            ("HIVELOG_ES_PASWORD", "typo-secret"),
            ("HIVELOG_TIMESTAMP", "epoch_ms"),
        ]);
        let all = sections(&v, None);
        let find = |n: &str| {
            all.iter()
                .flat_map(|s| &s.settings)
                .find(|s| s.name == n)
                .unwrap()
                .clone()
        };
        assert_eq!(find("HIVELOG_TIMESTAMP").source, Source::Env);
        assert_eq!(find("HIVELOG_SCHEMA").source, Source::Default);
        assert_eq!(find("HIVELOG_ES_PASSWORD").value, "***");
        assert_eq!(find("HIVELOG_ES_URL").value, "http://***@127.0.0.1:9200");
        assert_eq!(find("HIVELOG_ES_PASWORD").source, Source::Unknown);
        let text = format!("{all:?}");
        assert!(
            !text.contains("hunter22")
                && !text.contains("pw-in-url")
                && !text.contains("typo-secret")
        );
    }

    #[test]
    fn byte_counts_keep_their_unit() {
        assert_eq!(bytes(64_000_000), "64MB");
        assert_eq!(bytes(1024 * 1024), "1MiB");
        assert_eq!(bytes(256 * 1024), "256KiB");
        assert_eq!(bytes(1234), "1234");
    }
}

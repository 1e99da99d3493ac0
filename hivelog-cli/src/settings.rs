//! The resolved configuration as a table: each variable that matters, its effective value, and
//! whether that value came from the environment or is the default.
//!
//! The variables, their documented defaults and whether they are secret come from one place:
//! the tables the facade, the format, the pipeline and each registered destination publish
//! ([`hivelog::variables`]). A value set in the environment is shown as the user wrote it
//! (secrets as `***`, credentials in URLs as `***`); an unset one as its documented default.

use std::collections::BTreeMap;
use std::sync::Arc;

use hivelog_core::destination::{Configured, Destination};
use hivelog_core::{Format, Var};

use crate::scrub::{is_secret_var, mask_url_credentials};

/// The configuration as the service would resolve it.
pub struct Resolved {
    /// The field mapping (service name, host name, …).
    pub format: Arc<Format>,
    /// Queue, batching, retry and spill settings shared by the destinations.
    pub pipeline: hivelog_core::PipelineConfig,
    /// Each registered destination, and its configuration when it is on.
    pub destinations: Vec<Resolving>,
}

/// A registered destination, and its configuration when it is on.
pub type Resolving = (&'static dyn Destination, Option<Box<dyn Configured>>);

impl Resolved {
    fn any_sink(&self) -> bool {
        self.destinations.iter().any(|(_, c)| c.is_some())
    }

    fn is_on(&self, name: &str) -> Option<bool> {
        self.destinations
            .iter()
            .find(|(d, _)| d.name() == name)
            .map(|(_, c)| c.is_some())
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
}

/// The variables a process sees, as `Env::get` sees them: trimmed, empty meaning unset.
#[derive(Debug, Default)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    /// The process's `HIVELOG_*`, `RUST_LOG`, `HOSTNAME` and `AWS_*` variables, and any other
    /// variable a destination's table lists (the OTLP destination's `OTEL_*`).
    pub fn from_process() -> Vars {
        let listed: Vec<&str> = hivelog::variables()
            .into_iter()
            .flat_map(|(_, vars)| vars.into_iter().map(|v| v.name))
            .collect();
        Vars::from_pairs(std::env::vars().filter(|(k, _)| {
            k.starts_with("HIVELOG_")
                || k.starts_with("AWS_")
                || k == "RUST_LOG"
                || k == "HOSTNAME"
                || listed.contains(&k.as_str())
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

/// The configuration table. `resolved` is `None` when the configuration did not validate: the
/// table then shows the raw values and the documented defaults.
pub fn sections(vars: &Vars, resolved: Option<&Resolved>) -> Vec<Section> {
    let mut known: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    let any_sink = resolved.is_none_or(Resolved::any_sink);
    for (name, table) in hivelog::variables() {
        known.extend(table.iter().map(|v| v.name));
        let on = match name {
            "general" => true,
            "delivery" => any_sink || table.iter().any(|v| vars.get(v.name).is_some()),
            _ => resolved
                .and_then(|r| r.is_on(name))
                // Without a resolved configuration, a destination is on when a switch is set.
                .unwrap_or_else(|| switched_on(name, vars)),
        };
        if name == "delivery" && !on {
            continue;
        }
        let sink = !matches!(name, "general" | "delivery");
        let settings = table
            .iter()
            // A destination that is off shows its switch and whatever of its variables is set.
            .filter(|v| !sink || on || is_switch(name, v.name) || vars.get(v.name).is_some())
            .filter(|v| on || !v.name.starts_with("AWS_"))
            .map(|v| setting(vars, v, resolved))
            .collect();
        out.push(Section {
            name,
            enabled: on,
            settings,
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
        });
    }
    out
}

fn destination(name: &str) -> Option<&'static dyn Destination> {
    hivelog::destinations()
        .into_iter()
        .find(|d| d.name() == name)
}

fn is_switch(dest: &str, var: &str) -> bool {
    destination(dest).is_some_and(|d| d.switches().contains(&var))
}

fn switched_on(dest: &str, vars: &Vars) -> bool {
    destination(dest).is_some_and(|d| d.switches().iter().any(|s| vars.get(s).is_some()))
}

fn setting(vars: &Vars, var: &Var, resolved: Option<&Resolved>) -> Setting {
    match vars.get(var.name) {
        Some(v) => Setting {
            name: var.name.to_owned(),
            value: shown(var, v),
            source: Source::Env,
        },
        None => Setting {
            name: var.name.to_owned(),
            value: default_value(vars, var, resolved),
            source: Source::Default,
        },
    }
}

/// A set value as it may be printed.
fn shown(var: &Var, value: &str) -> String {
    if var.secret || is_secret_var(var.name) {
        "***".to_owned()
    } else if var.name == "AWS_ACCESS_KEY_ID" {
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

/// What applies when `var` is unset: its documented default, except where this run knows
/// better (`RUST_LOG` stands in for `HIVELOG_LEVEL`; `--service` names the service).
fn default_value(vars: &Vars, var: &Var, r: Option<&Resolved>) -> String {
    match var.name {
        "HIVELOG_LEVEL" if vars.get("RUST_LOG").is_some() => "(RUST_LOG)".to_owned(),
        "HIVELOG_SERVICE" => r.map_or(var.default.to_owned(), |r| r.format.service().to_owned()),
        _ => var.default.to_owned(),
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
    fn unset_values_show_the_documented_default() {
        let all = sections(&vars(&[("HIVELOG_ES_URL", "http://127.0.0.1:9200")]), None);
        let find = |n: &str| {
            all.iter()
                .flat_map(|s| &s.settings)
                .find(|s| s.name == n)
                .unwrap()
                .clone()
        };
        assert_eq!(find("HIVELOG_RETRY_MAX_ELAPSED").value, "5m");
        assert_eq!(find("HIVELOG_ES_TIMEOUT").value, "30s");
        assert_eq!(find("HIVELOG_ES_MAX_BATCH_BYTES").value, "5MB");
    }
}

//! Reading `HIVELOG_*` variables: one place that turns a bad value into a message naming the
//! variable, the value and what was expected, and that remembers which variables were read so
//! unknown ones can be warned about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A configuration error a user can act on.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable holds a value that cannot be used.
    #[error("{var}: '{value}' is not {what}; expected {expected}")]
    Invalid {
        /// The variable (`HIVELOG_TIMESTAMP`).
        var: String,
        /// The value as given (`<hidden>` for secrets).
        value: String,
        /// What it should have been (`a timestamp format`).
        what: String,
        /// The accepted values or form.
        expected: String,
    },
    /// Two settings that cannot be combined, or another rule about a variable.
    #[error("{var}: {message}")]
    Conflict {
        /// The variable at fault.
        var: String,
        /// Why.
        message: String,
    },
    /// `init` was called when a global subscriber (hivelog or another) was already installed.
    #[error("hivelog is already initialized (or another global tracing subscriber is set); call init() once, at the top of main")]
    AlreadyInitialized,
}

impl ConfigError {
    /// `VAR: 'value' is not WHAT; expected EXPECTED`.
    pub fn invalid(var: &str, value: &str, what: &str, expected: &str) -> Self {
        ConfigError::Invalid {
            var: var.to_owned(),
            value: value.to_owned(),
            what: what.to_owned(),
            expected: expected.to_owned(),
        }
    }

    /// `VAR: message`.
    pub fn conflict(var: &str, message: impl Into<String>) -> Self {
        ConfigError::Conflict {
            var: var.to_owned(),
            message: message.into(),
        }
    }
}

/// A secret value: usable, but never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A snapshot of the configuration variables, with the set of names that were read.
///
/// Clones share that set: hand a clone to [`hivelog::Builder::env`] and ask the original
/// afterwards what the parsers looked up ([`Env::names_read`]).
///
/// [`hivelog::Builder::env`]: https://docs.rs/hivelog/latest/hivelog/struct.Builder.html#method.env
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    used: Arc<Mutex<BTreeSet<String>>>,
}

impl Env {
    /// The process's `HIVELOG_*`, `AWS_*`, `OTEL_*`, `RUST_LOG` and `HOSTNAME` variables.
    ///
    /// `AWS_*` because the CloudWatch destination's table lists the AWS chain's variables
    /// (region, endpoint, keys), `OTEL_*` for the OpenTelemetry standard variables the OTLP
    /// destination reads: reading them through the same `Env` as the rest keeps what
    /// `hivelog check` shows, what the sink uses and what a test gives in one place.
    pub fn from_process() -> Self {
        Env::from_pairs(std::env::vars().filter(|(k, _)| {
            k.starts_with("HIVELOG_")
                || k.starts_with("AWS_")
                || k.starts_with("OTEL_")
                || k == "RUST_LOG"
                || k == "HOSTNAME"
        }))
    }

    /// Variables given explicitly (tests, `hivelog check`).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            used: Arc::default(),
        }
    }

    /// The value of `name`; an empty value counts as unset (task definitions often carry `""`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.used_names().insert(name.to_owned());
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A secret value.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    /// Parses `name` with `parse`, which returns what was expected on failure.
    pub fn parse<T>(
        &self,
        name: &str,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse(v)
                .map(Some)
                .map_err(|expected| ConfigError::invalid(name, v, what, &expected)),
        }
    }

    /// A duration such as `250ms`, `5s`, `2m`, `1h`.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        self.parse(name, "a duration", |v| {
            parse_duration(v).ok_or_else(|| DURATION_FORM.to_owned())
        })
    }

    /// A size such as `64MB`, `512KiB`, `1048576`.
    pub fn bytes(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        self.parse(name, "a size", |v| {
            parse_bytes(v).ok_or_else(|| BYTES_FORM.to_owned())
        })
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        self.parse(name, "a boolean", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err("true or false".to_owned()),
            }
        })
    }

    /// An integer in `range`.
    pub fn integer(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        self.parse(name, "a number in range", |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| format!("an integer from {} to {}", range.start(), range.end()))
        })
    }

    /// One of the `choices`, case-insensitively.
    pub fn choice<T: Copy>(
        &self,
        name: &str,
        what: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        self.parse(name, what, |v| {
            choices
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(v))
                .map(|(_, t)| *t)
                .ok_or_else(|| {
                    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                    format!("one of {}", names.join(", "))
                })
        })
    }

    /// Set `HIVELOG_*` variables that nothing read.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used_names();
        self.vars
            .iter()
            .filter(|(k, v)| k.starts_with("HIVELOG_") && !v.trim().is_empty())
            .map(|(k, _)| k)
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }

    /// Every name looked up so far, set or not, by this `Env` and its clones: with a sink's
    /// switch set, that is every variable its parser knows.
    pub fn names_read(&self) -> Vec<String> {
        self.used_names().iter().cloned().collect()
    }

    fn used_names(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const DURATION_FORM: &str = "a number with a unit: ms, s, m or h (250ms, 5s, 2m)";
const BYTES_FORM: &str =
    "a number of bytes with an optional unit: B, KB, MB, GB, KiB, MiB, GiB (64MB)";

/// Parses `250ms`, `1.5s`, `2m`, `1h`; `0` is zero.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => num / 1000.0,
        "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// Parses `64MB` (decimal), `64MiB` (binary), `1048576`.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let n = num * mult;
    (0.0..1e15).contains(&n).then_some(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_variable_the_value_and_the_expectation() {
        let env = Env::from_pairs([("HIVELOG_FLUSH_INTERVAL", "soon")]);
        let err = env.duration("HIVELOG_FLUSH_INTERVAL").unwrap_err();
        assert_eq!(
            err.to_string(),
            "HIVELOG_FLUSH_INTERVAL: 'soon' is not a duration; expected a number with a unit: ms, s, m or h (250ms, 5s, 2m)"
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("64MB"), Some(64_000_000));
        assert_eq!(parse_bytes("1MiB"), Some(1_048_576));
        assert_eq!(parse_bytes("12"), Some(12));
        assert_eq!(parse_bytes("12XB"), None);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn unread_variables_are_reported_and_empty_ones_are_unset() {
        let env = Env::from_pairs([
            ("HIVELOG_LEVEL", "info"),
            ("HIVELOG_LEVLE", "debug"),
            ("HIVELOG_X", " "),
        ]);
        assert_eq!(env.get("HIVELOG_LEVEL"), Some("info"));
        assert_eq!(env.get("HIVELOG_X"), None);
        assert_eq!(env.unused(), vec!["HIVELOG_LEVLE".to_owned()]);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
    }
}

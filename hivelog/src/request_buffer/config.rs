//! `HIVELOG_REQUEST_BUFFER_*`: which lines are held, what flushes them, and the byte budgets.

use hivelog_core::{ConfigError, Env, Var};
use tracing_core::Level;

/// Default per-request budget (`HIVELOG_REQUEST_BUFFER_BYTES`): 64 KiB of held records.
pub const DEFAULT_REQUEST_BYTES: usize = 64 * 1024;
/// Default process-wide budget (`HIVELOG_REQUEST_BUFFER_TOTAL`): 16 MiB of held records.
pub const DEFAULT_TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// The request buffer's variables (part of the facade's table, see [`crate::variables`]).
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_REQUEST_BUFFER_LEVEL",
        "off",
        "trace, debug or info: lines below a destination's level but at or above this one, logged inside a request, are held and written only if the request fails",
    ),
    Var::new(
        "HIVELOG_REQUEST_BUFFER_FLUSH_ON",
        "error",
        "error or warn: a line at or above this level writes its request's held lines first",
    ),
    Var::new(
        "HIVELOG_REQUEST_BUFFER_BYTES",
        "64KiB",
        "held bytes per request; past it the oldest held lines are evicted and counted",
    ),
    Var::new(
        "HIVELOG_REQUEST_BUFFER_TOTAL",
        "16MiB",
        "held bytes for the whole process; past it a request evicts its own oldest lines",
    ),
];

/// How the per-request buffer behaves; built from `HIVELOG_REQUEST_BUFFER_*` (or
/// [`crate::Builder::request_buffer`]).
///
/// ```
/// let config = hivelog::RequestBufferConfig::new(tracing::Level::DEBUG);
/// assert_eq!(config.flush_on, tracing::Level::ERROR);
/// assert_eq!(config.request_bytes, 64 * 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBufferConfig {
    /// The most verbose level held (`HIVELOG_REQUEST_BUFFER_LEVEL`).
    pub level: Level,
    /// The least severe level that flushes (`HIVELOG_REQUEST_BUFFER_FLUSH_ON`: ERROR or WARN).
    pub flush_on: Level,
    /// Held bytes per request (`HIVELOG_REQUEST_BUFFER_BYTES`, default [`DEFAULT_REQUEST_BYTES`]).
    pub request_bytes: usize,
    /// Held bytes per process (`HIVELOG_REQUEST_BUFFER_TOTAL`, default [`DEFAULT_TOTAL_BYTES`]).
    pub total_bytes: usize,
}

impl RequestBufferConfig {
    /// Holds lines down to `level`, flushes on ERROR, with the default budgets.
    pub fn new(level: Level) -> Self {
        RequestBufferConfig {
            level,
            flush_on: Level::ERROR,
            request_bytes: DEFAULT_REQUEST_BYTES,
            total_bytes: DEFAULT_TOTAL_BYTES,
        }
    }
}

/// Reads the variables over the builder's `code` settings; `None` when the buffer is off.
pub(crate) fn from_env(
    env: &Env,
    code: Option<RequestBufferConfig>,
) -> Result<Option<RequestBufferConfig>, ConfigError> {
    let level = env.choice(
        "HIVELOG_REQUEST_BUFFER_LEVEL",
        "a request buffer level",
        &[
            ("off", None),
            ("trace", Some(Level::TRACE)),
            ("debug", Some(Level::DEBUG)),
            ("info", Some(Level::INFO)),
        ],
    )?;
    let flush_on = env.choice(
        "HIVELOG_REQUEST_BUFFER_FLUSH_ON",
        "a flush level",
        &[("error", Level::ERROR), ("warn", Level::WARN)],
    )?;
    let request_bytes = positive(env, "HIVELOG_REQUEST_BUFFER_BYTES")?;
    let total_bytes = positive(env, "HIVELOG_REQUEST_BUFFER_TOTAL")?;
    let level = match (level, code) {
        (Some(level), _) => level,
        (None, Some(c)) => Some(c.level),
        (None, None) => None,
    };
    let Some(level) = level else {
        return Ok(None);
    };
    let base = code.unwrap_or(RequestBufferConfig::new(level));
    Ok(Some(RequestBufferConfig {
        level,
        flush_on: flush_on.unwrap_or(base.flush_on),
        request_bytes: request_bytes.unwrap_or(base.request_bytes),
        total_bytes: total_bytes.unwrap_or(base.total_bytes),
    }))
}

fn positive(env: &Env, var: &str) -> Result<Option<usize>, ConfigError> {
    match env.bytes(var)? {
        Some(0) => Err(ConfigError::invalid(
            var,
            env.get(var).unwrap_or_default(),
            "a buffer size",
            "a size above zero such as 64KiB or 16MiB",
        )),
        other => Ok(other.map(|n| usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_read_from_the_variables() {
        let none = Env::from_pairs(Vec::<(String, String)>::new());
        assert_eq!(from_env(&none, None).unwrap(), None);
        let env = Env::from_pairs([
            ("HIVELOG_REQUEST_BUFFER_LEVEL", "debug"),
            ("HIVELOG_REQUEST_BUFFER_FLUSH_ON", "warn"),
            ("HIVELOG_REQUEST_BUFFER_BYTES", "16KiB"),
            ("HIVELOG_REQUEST_BUFFER_TOTAL", "1MB"),
        ]);
        assert_eq!(
            from_env(&env, None).unwrap(),
            Some(RequestBufferConfig {
                level: Level::DEBUG,
                flush_on: Level::WARN,
                request_bytes: 16 * 1024,
                total_bytes: 1_000_000,
            })
        );
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_the_choices() {
        let env = Env::from_pairs([("HIVELOG_REQUEST_BUFFER_FLUSH_ON", "info")]);
        let err = from_env(&env, None).unwrap_err().to_string();
        assert!(
            err.starts_with("HIVELOG_REQUEST_BUFFER_FLUSH_ON: 'info' is not a flush level"),
            "{err}"
        );
        assert!(err.contains("error, warn"), "{err}");
        let env = Env::from_pairs([("HIVELOG_REQUEST_BUFFER_BYTES", "0")]);
        let err = from_env(&env, None).unwrap_err().to_string();
        assert!(
            err.starts_with("HIVELOG_REQUEST_BUFFER_BYTES: '0' is not a buffer size"),
            "{err}"
        );
    }

    #[test]
    fn the_variable_switches_off_what_the_code_switched_on() {
        let env = Env::from_pairs([("HIVELOG_REQUEST_BUFFER_LEVEL", "off")]);
        let code = RequestBufferConfig::new(Level::DEBUG);
        assert_eq!(from_env(&env, Some(code)).unwrap(), None);
    }
}

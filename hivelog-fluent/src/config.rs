//! The sink's options: code defaults set with [`FluentConfig`]'s builder methods, overridden
//! by `HIVELOG_FLUENT_*` variables in [`FluentConfig::from_env`], validated once at init so a
//! typo fails `try_init` with a message naming the variable instead of losing logs at runtime.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use hivelog_core::{ConfigError, Env, Secret};

/// Default tag template (`HIVELOG_FLUENT_TAG`): the service name.
pub const DEFAULT_TAG: &str = "{service}";
/// Default largest message (`HIVELOG_FLUENT_MAX_MESSAGE_BYTES`): 4 MiB, well under Fluent Bit's
/// 6 MB `buffer_max_size` and Fluentd's 8 MB memory-buffer chunk, so one message is never
/// refused for its size by either.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Smallest accepted `HIVELOG_FLUENT_MAX_MESSAGE_BYTES`: 64 KiB.
pub const MIN_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest accepted `HIVELOG_FLUENT_MAX_MESSAGE_BYTES`: 64 MiB.
pub const MAX_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Default wait for `{"ack": chunk}` (`HIVELOG_FLUENT_ACK_TIMEOUT`): 30 s. Fluentd acks once
/// the chunk is in its buffer, which under load can take seconds; Fluentd's own
/// `ack_response_timeout` defaults to 190 s, too long for a process that may be shutting down.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout, TLS and handshake included (`HIVELOG_FLUENT_CONNECT_TIMEOUT`): 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest time one write may block (`HIVELOG_FLUENT_WRITE_TIMEOUT`): 10 s. A receiver
/// that stops reading fills the socket buffer; the write timeout turns that into a retry.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the receiver listens (`HIVELOG_FLUENT_ADDR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `tcp://host:port`.
    Tcp {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// `tls://host:port`: TLS with the system roots, webpki roots and `HIVELOG_FLUENT_CA_CERT`.
    Tls {
        /// Host name or IP; also the name the certificate must carry.
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:///path/to/socket`.
    Unix(PathBuf),
}

const ADDR_FORM: &str = "tcp://host:port, tls://host:port or unix:///path";

impl Address {
    /// Parses `tcp://host:port`, `tls://host:port`, `unix:///path`.
    pub fn parse(s: &str) -> Result<Address, String> {
        let bad = || ADDR_FORM.to_owned();
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        match scheme.to_ascii_lowercase().as_str() {
            "unix" => {
                if rest.starts_with('/') && rest.len() > 1 {
                    Ok(Address::Unix(PathBuf::from(rest)))
                } else {
                    Err(bad())
                }
            }
            s @ ("tcp" | "tls") => {
                let rest = rest.trim_end_matches('/');
                let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
                if host.is_empty() || host.contains('/') {
                    return Err(bad());
                }
                let host = host.to_owned();
                Ok(if s == "tcp" {
                    Address::Tcp { host, port }
                } else {
                    Address::Tls { host, port }
                })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Tls { host, port } if host.contains(':') => write!(f, "tls://[{host}]:{port}"),
            Address::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// Payload compression (`HIVELOG_FLUENT_COMPRESS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// PackedForward (default): a local Fluentd is CPU-bound, not network-bound.
    #[default]
    None,
    /// CompressedPackedForward with `{"compressed": "gzip"}`.
    Gzip,
}

/// How event times are written (`HIVELOG_FLUENT_TIME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// EventTime, msgpack ext type 0 with nanoseconds (default; Fluentd ≥ v0.14, Fluent Bit).
    #[default]
    EventTime,
    /// Integer seconds, for Fluentd v0.12 receivers, which cannot read EventTime.
    Integer,
}

/// The Fluentd sink's options.
///
/// `Debug` shows `"***"` for the shared key and the password.
///
/// ```
/// use hivelog_fluent::FluentConfig;
/// let cfg = FluentConfig::new("tcp://127.0.0.1:24224")
///     .unwrap()
///     .tag("{service}.{target}")
///     .shared_key("s3cret");
/// assert!(format!("{cfg:?}").contains("***"));
/// ```
#[derive(Clone, Debug)]
pub struct FluentConfig {
    pub(crate) addr: Address,
    pub(crate) tag: String,
    pub(crate) ack: bool,
    pub(crate) compress: Compression,
    pub(crate) time: TimeFormat,
    pub(crate) shared_key: Option<Secret>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) hostname: Option<String>,
    pub(crate) ca_cert: Option<PathBuf>,
    pub(crate) max_message_bytes: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

impl FluentConfig {
    /// A configuration sending to `addr` (`tcp://host:port`, `tls://host:port`,
    /// `unix:///path`) with every other option at its default.
    pub fn new(addr: &str) -> Result<FluentConfig, ConfigError> {
        let addr = Address::parse(addr.trim()).map_err(|expected| {
            ConfigError::invalid("HIVELOG_FLUENT_ADDR", addr, "a Forward address", &expected)
        })?;
        Ok(FluentConfig::with_address(addr))
    }

    /// A configuration sending to an already parsed address.
    pub fn with_address(addr: Address) -> FluentConfig {
        FluentConfig {
            addr,
            tag: DEFAULT_TAG.to_owned(),
            ack: true,
            compress: Compression::None,
            time: TimeFormat::EventTime,
            shared_key: None,
            username: None,
            password: None,
            hostname: None,
            ca_cert: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }

    /// Reads `HIVELOG_FLUENT_*` over the defaults; `None` when `HIVELOG_FLUENT_ADDR` is unset.
    pub fn from_env(env: &Env) -> Result<Option<FluentConfig>, ConfigError> {
        match env.get("HIVELOG_FLUENT_ADDR") {
            None => {
                // Read the others anyway, so they are not reported as unknown variables.
                for v in crate::destination::VARS {
                    env.get(v.name);
                }
                Ok(None)
            }
            Some(addr) => FluentConfig::new(addr)?.apply_env(env).map(Some),
        }
    }

    /// Applies the `HIVELOG_FLUENT_*` variables over `self`: how a configuration set in code
    /// (`hivelog::builder().destination(…)`) lets the environment override it, `HIVELOG_FLUENT_ADDR`
    /// included.
    pub fn apply_env(mut self, env: &Env) -> Result<FluentConfig, ConfigError> {
        if let Some(addr) = env.get("HIVELOG_FLUENT_ADDR") {
            self.addr = FluentConfig::new(addr)?.addr;
        }
        if let Some(tag) = env.get("HIVELOG_FLUENT_TAG") {
            crate::sink::TagTemplate::parse(tag).map_err(|expected| {
                ConfigError::invalid("HIVELOG_FLUENT_TAG", tag, "a tag template", &expected)
            })?;
            self.tag = tag.to_owned();
        }
        if let Some(ack) = env.bool("HIVELOG_FLUENT_ACK")? {
            self.ack = ack;
        }
        if let Some(c) = env.choice(
            "HIVELOG_FLUENT_COMPRESS",
            "a compression",
            &[("none", Compression::None), ("gzip", Compression::Gzip)],
        )? {
            self.compress = c;
        }
        if let Some(t) = env.choice(
            "HIVELOG_FLUENT_TIME",
            "a time format",
            &[
                ("eventtime", TimeFormat::EventTime),
                ("integer", TimeFormat::Integer),
            ],
        )? {
            self.time = t;
        }
        if let Some(k) = env.secret("HIVELOG_FLUENT_SHARED_KEY") {
            self.shared_key = Some(k);
        }
        if let Some(u) = env.get("HIVELOG_FLUENT_USERNAME") {
            self.username = Some(u.to_owned());
        }
        if let Some(p) = env.secret("HIVELOG_FLUENT_PASSWORD") {
            self.password = Some(p);
        }
        if let Some(h) = env.get("HIVELOG_FLUENT_HOSTNAME") {
            self.hostname = Some(h.to_owned());
        }
        if let Some(ca) = env.get("HIVELOG_FLUENT_CA_CERT") {
            if !std::path::Path::new(ca).is_file() {
                return Err(ConfigError::invalid(
                    "HIVELOG_FLUENT_CA_CERT",
                    ca,
                    "a readable file",
                    "the path of a PEM file with one or more CA certificates",
                ));
            }
            self.ca_cert = Some(PathBuf::from(ca));
        }
        if let Some(n) = env.parse("HIVELOG_FLUENT_MAX_MESSAGE_BYTES", "a message size", |v| {
            hivelog_core::env::parse_bytes(v)
                .map(|n| n as usize)
                .filter(|n| (MIN_MAX_MESSAGE_BYTES..=MAX_MAX_MESSAGE_BYTES).contains(n))
                .ok_or_else(|| "a size from 64KiB to 64MiB (4MiB)".to_owned())
        })? {
            self.max_message_bytes = n;
        }
        let positive = |name: &str, d: Option<Duration>| -> Result<Option<Duration>, ConfigError> {
            match d {
                Some(d) if d.is_zero() => Err(ConfigError::invalid(
                    name,
                    "0",
                    "a usable timeout",
                    "a duration above zero (250ms, 5s)",
                )),
                d => Ok(d),
            }
        };
        if let Some(d) = positive(
            "HIVELOG_FLUENT_ACK_TIMEOUT",
            env.duration("HIVELOG_FLUENT_ACK_TIMEOUT")?,
        )? {
            self.ack_timeout = d;
        }
        if let Some(d) = positive(
            "HIVELOG_FLUENT_CONNECT_TIMEOUT",
            env.duration("HIVELOG_FLUENT_CONNECT_TIMEOUT")?,
        )? {
            self.connect_timeout = d;
        }
        if let Some(d) = positive(
            "HIVELOG_FLUENT_WRITE_TIMEOUT",
            env.duration("HIVELOG_FLUENT_WRITE_TIMEOUT")?,
        )? {
            self.write_timeout = d;
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.password.is_some() && self.username.is_none() {
            return Err(ConfigError::conflict(
                "HIVELOG_FLUENT_PASSWORD",
                "is set without HIVELOG_FLUENT_USERNAME; set both or neither",
            ));
        }
        if self.username.is_some() && self.shared_key.is_none() {
            return Err(ConfigError::conflict(
                "HIVELOG_FLUENT_USERNAME",
                "needs HIVELOG_FLUENT_SHARED_KEY: Fluentd checks users only during the shared-key handshake",
            ));
        }
        if self.ca_cert.is_some() && !matches!(self.addr, Address::Tls { .. }) {
            return Err(ConfigError::conflict(
                "HIVELOG_FLUENT_CA_CERT",
                "is only used with a tls:// HIVELOG_FLUENT_ADDR",
            ));
        }
        Ok(())
    }

    /// The tag template: literal text with `{service}` and `{target}` (module path with `::`
    /// made `.`). Default [`DEFAULT_TAG`]. Panics on an unknown placeholder.
    pub fn tag(mut self, template: &str) -> Self {
        if let Err(e) = crate::sink::TagTemplate::parse(template) {
            panic!("tag template {template:?}: expected {e}");
        }
        self.tag = template.to_owned();
        self
    }

    /// Whether to ask for `{"ack": chunk}` and resend what is not acked (default true).
    pub fn ack(mut self, on: bool) -> Self {
        self.ack = on;
        self
    }

    /// Payload compression (default none).
    pub fn compress(mut self, c: Compression) -> Self {
        self.compress = c;
        self
    }

    /// How event times are written (default EventTime).
    pub fn time(mut self, t: TimeFormat) -> Self {
        self.time = t;
        self
    }

    /// Enables the HELO/PING/PONG handshake with this shared key.
    pub fn shared_key(mut self, key: impl Into<String>) -> Self {
        self.shared_key = Some(Secret::new(key));
        self
    }

    /// Username and password for a receiver with `<user>` sections (needs a shared key).
    pub fn user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(Secret::new(password));
        self
    }

    /// The hostname sent in PING (default: the host's name).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = Some(name.into());
        self
    }

    /// A PEM file of CA certificates trusted in addition to the system's (tls:// only).
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Largest message in bytes (default [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n.clamp(MIN_MAX_MESSAGE_BYTES, MAX_MAX_MESSAGE_BYTES);
        self
    }

    /// How long to wait for an ack before resending (default [`DEFAULT_ACK_TIMEOUT`]).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }

    /// How long to wait for a connection, TLS and the handshake included
    /// (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long one write may block (default [`DEFAULT_WRITE_TIMEOUT`]).
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// The receiver's address.
    pub fn address(&self) -> &Address {
        &self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn unset_address_disables_the_sink() {
        assert!(FluentConfig::from_env(&env(&[])).unwrap().is_none());
    }

    #[test]
    fn addresses_parse_in_all_three_schemes() {
        assert_eq!(
            Address::parse("tcp://fluentd:24224"),
            Ok(Address::Tcp {
                host: "fluentd".into(),
                port: 24224
            })
        );
        assert_eq!(
            Address::parse("tls://[::1]:24224"),
            Ok(Address::Tls {
                host: "::1".into(),
                port: 24224
            })
        );
        assert_eq!(
            Address::parse("unix:///var/run/fluent.sock"),
            Ok(Address::Unix("/var/run/fluent.sock".into()))
        );
        for bad in [
            "fluentd:24224",
            "tcp://fluentd",
            "tcp://:1",
            "udp://a:1",
            "tcp://a:0",
            "unix://rel",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_the_expectation() {
        let e =
            FluentConfig::from_env(&env(&[("HIVELOG_FLUENT_ADDR", "fluentd:24224")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HIVELOG_FLUENT_ADDR: 'fluentd:24224' is not a Forward address; expected tcp://host:port, tls://host:port or unix:///path"
        );
        let e = FluentConfig::from_env(&env(&[
            ("HIVELOG_FLUENT_ADDR", "tcp://a:1"),
            ("HIVELOG_FLUENT_COMPRESS", "zstd"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HIVELOG_FLUENT_COMPRESS: 'zstd' is not a compression; expected one of none, gzip"
        );
        let e = FluentConfig::from_env(&env(&[
            ("HIVELOG_FLUENT_ADDR", "tcp://a:1"),
            ("HIVELOG_FLUENT_TAG", "{service}.{pid}"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HIVELOG_FLUENT_TAG: '{service}.{pid}' is not a tag template; expected text with the placeholders {service} and {target}"
        );
        let e = FluentConfig::from_env(&env(&[
            ("HIVELOG_FLUENT_ADDR", "tcp://a:1"),
            ("HIVELOG_FLUENT_MAX_MESSAGE_BYTES", "100MB"),
        ]))
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("HIVELOG_FLUENT_MAX_MESSAGE_BYTES: '100MB' is not a message size"));
        let e = FluentConfig::from_env(&env(&[
            ("HIVELOG_FLUENT_ADDR", "tcp://a:1"),
            ("HIVELOG_FLUENT_ACK_TIMEOUT", "0"),
        ]))
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("HIVELOG_FLUENT_ACK_TIMEOUT: '0' is not a usable timeout"));
    }

    #[test]
    fn env_overrides_code_defaults_and_secrets_never_print() {
        let e = env(&[
            ("HIVELOG_FLUENT_ADDR", "tcp://127.0.0.1:24224"),
            ("HIVELOG_FLUENT_TAG", "app.{target}"),
            ("HIVELOG_FLUENT_ACK", "false"),
            ("HIVELOG_FLUENT_COMPRESS", "gzip"),
            ("HIVELOG_FLUENT_TIME", "integer"),
            ("HIVELOG_FLUENT_SHARED_KEY", "hunter2"),
            ("HIVELOG_FLUENT_USERNAME", "me"),
            ("HIVELOG_FLUENT_PASSWORD", "pa55"),
            ("HIVELOG_FLUENT_MAX_MESSAGE_BYTES", "1MiB"),
            ("HIVELOG_FLUENT_ACK_TIMEOUT", "2s"),
            ("HIVELOG_FLUENT_CONNECT_TIMEOUT", "500ms"),
        ]);
        let c = FluentConfig::from_env(&e).unwrap().unwrap();
        assert_eq!(c.tag, "app.{target}");
        assert!(!c.ack);
        assert_eq!(c.compress, Compression::Gzip);
        assert_eq!(c.time, TimeFormat::Integer);
        assert_eq!(c.max_message_bytes, 1024 * 1024);
        assert_eq!(c.ack_timeout, Duration::from_secs(2));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("pa55"), "{dbg}");
        assert!(e.unused().is_empty());
        for v in crate::destination::VARS {
            assert!(v.name.starts_with("HIVELOG_FLUENT_"));
        }
    }

    #[test]
    fn env_overrides_a_configuration_set_in_code() {
        let code = FluentConfig::new("tcp://fluentd:24224")
            .unwrap()
            .tag("code.{service}")
            .ack(false);
        let c = code
            .clone()
            .apply_env(&env(&[
                ("HIVELOG_FLUENT_ADDR", "unix:///run/fluent.sock"),
                ("HIVELOG_FLUENT_ACK", "true"),
            ]))
            .unwrap();
        assert_eq!(c.addr, Address::Unix("/run/fluent.sock".into()));
        assert!(c.ack);
        assert_eq!(c.tag, "code.{service}");
        let c = code.apply_env(&env(&[])).unwrap();
        assert_eq!(c.addr.to_string(), "tcp://fluentd:24224");
        assert!(!c.ack);
    }

    #[test]
    fn a_password_needs_a_username_and_a_user_needs_a_shared_key() {
        let e = FluentConfig::from_env(&env(&[
            ("HIVELOG_FLUENT_ADDR", "tcp://a:1"),
            ("HIVELOG_FLUENT_PASSWORD", "p"),
        ]))
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("HIVELOG_FLUENT_PASSWORD: is set without"));
        let e = FluentConfig::from_env(&env(&[
            ("HIVELOG_FLUENT_ADDR", "tcp://a:1"),
            ("HIVELOG_FLUENT_USERNAME", "u"),
            ("HIVELOG_FLUENT_PASSWORD", "p"),
        ]))
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("HIVELOG_FLUENT_USERNAME: needs HIVELOG_FLUENT_SHARED_KEY"));
    }
}

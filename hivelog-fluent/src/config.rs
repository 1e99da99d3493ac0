//! The sink's options: code defaults set with [`FluentConfig`]'s builder methods, overridden
//! by `HIVELOG_FLUENT_*` variables in [`FluentConfig::from_env`], validated once at init so a
//! typo fails `try_init` with a message naming the variable instead of losing logs at runtime.
//!
//! `HIVELOG_FLUENT_ADDR` is a comma-separated list of servers, as Fluentd's own `out_forward`
//! takes several `<server>`s: `tcp://host:port`, `tls://host:port`, `unix:///path`, or a bare
//! `host:port` (TCP, as docker's `fluentd-address` accepts it), each with optional
//! `?weight=N` (default 60, as `out_forward`) and `?standby` (joined with `&`). What the
//! service does with them is in [`crate::service`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use hivelog_core::{ConfigError, Env, Secret, Var};

use crate::tag::TagTemplate;

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
/// Default weight of a server (`?weight=N`): 60, as Fluentd's `out_forward`.
pub const DEFAULT_WEIGHT: u32 = 60;
/// Largest accepted weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// Default interval of the idle-server check (`HIVELOG_FLUENT_HEARTBEAT_INTERVAL`): 1 s, as
/// Fluentd's `out_forward` `heartbeat_interval`. Used only with several servers.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default longest time one write may block (`HIVELOG_FLUENT_WRITE_TIMEOUT`): 10 s. A receiver
/// that stops reading fills the socket buffer; the write timeout turns that into a retry.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every variable this destination reads: the one list the warnings, `hivelog check`, the
/// README test and the fuzz list use.
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_FLUENT_ADDR",
        "off",
        "servers: tcp://, tls://, unix:// or host:port, each with ?weight=N or ?standby; switches the sink on",
    ),
    Var::new(
        "HIVELOG_FLUENT_LEVEL",
        "(HIVELOG_LEVEL)",
        "filter for this destination only",
    ),
    Var::new(
        "HIVELOG_FLUENT_TAG",
        "{service}",
        "tag template: {service}, {target}",
    ),
    Var::new(
        "HIVELOG_FLUENT_ACK",
        "true",
        "ask for an ack per message and resend until it comes",
    ),
    Var::new(
        "HIVELOG_FLUENT_COMPRESS",
        "none",
        "gzip (CompressedPackedForward) or none",
    ),
    Var::new(
        "HIVELOG_FLUENT_TIME",
        "eventtime",
        "eventtime or integer (Fluentd v0.12)",
    ),
    Var::new(
        "HIVELOG_FLUENT_SHARED_KEY",
        "none",
        "shared key of the HELO/PING/PONG handshake",
    )
    .secret(),
    Var::new(
        "HIVELOG_FLUENT_USERNAME",
        "none",
        "user name in that handshake",
    ),
    Var::new(
        "HIVELOG_FLUENT_PASSWORD",
        "none",
        "password in that handshake",
    )
    .secret(),
    Var::new(
        "HIVELOG_FLUENT_HOSTNAME",
        "(host name)",
        "the client host name sent in PING",
    ),
    Var::new(
        "HIVELOG_FLUENT_CA_CERT",
        "none",
        "PEM file of CAs trusted for tls://",
    ),
    Var::new(
        "HIVELOG_FLUENT_MAX_MESSAGE_BYTES",
        "4MiB",
        "largest message (64KiB-64MiB)",
    ),
    Var::new(
        "HIVELOG_FLUENT_ACK_TIMEOUT",
        "30s",
        "waiting for an ack before the message is resent",
    ),
    Var::new(
        "HIVELOG_FLUENT_CONNECT_TIMEOUT",
        "5s",
        "TCP/TLS connect and handshake",
    ),
    Var::new("HIVELOG_FLUENT_WRITE_TIMEOUT", "10s", "writing one message"),
    Var::new(
        "HIVELOG_FLUENT_HEARTBEAT_INTERVAL",
        "1s",
        "how often idle servers of a list are checked",
    ),
];

/// Where one receiver listens (an entry of `HIVELOG_FLUENT_ADDR`, without its options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `tcp://host:port`, or a bare `host:port`.
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

const ADDR_FORM: &str = "tcp://host:port, tls://host:port, unix:///path or host:port";
const SERVER_FORM: &str = "tcp://host:port, tls://host:port, unix:///path or host:port, each with optional ?weight=N (1 to 10000) and ?standby, comma-separated";

impl Address {
    /// Parses `tcp://host:port`, `tls://host:port`, `unix:///path`, or a bare `host:port`.
    pub fn parse(s: &str) -> Result<Address, String> {
        let bad = || ADDR_FORM.to_owned();
        let Some((scheme, rest)) = s.split_once("://") else {
            let (host, port) = host_port(s).ok_or_else(bad)?;
            return Ok(Address::Tcp { host, port });
        };
        match scheme.to_ascii_lowercase().as_str() {
            "unix" if rest.starts_with('/') && rest.len() > 1 => {
                Ok(Address::Unix(PathBuf::from(rest)))
            }
            "tcp" => {
                let (host, port) = host_port(rest.trim_end_matches('/')).ok_or_else(bad)?;
                Ok(Address::Tcp { host, port })
            }
            "tls" => {
                let (host, port) = host_port(rest.trim_end_matches('/')).ok_or_else(bad)?;
                Ok(Address::Tls { host, port })
            }
            _ => Err(bad()),
        }
    }

    /// The host name, for an address that has one.
    pub fn host(&self) -> Option<&str> {
        match self {
            Address::Tcp { host, .. } | Address::Tls { host, .. } => Some(host),
            Address::Unix(_) => None,
        }
    }
}

/// `host:port` or `[v6]:port`, with a non-empty host and a port above zero.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty() || host.contains('/') || host.contains('?') {
        return None;
    }
    Some((host.to_owned(), port))
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

/// One server of `HIVELOG_FLUENT_ADDR`: its address, weight and role.
///
/// ```
/// use hivelog_fluent::config::Server;
/// let s = Server::parse("agg-2:24224?weight=20&standby").unwrap();
/// assert_eq!((s.weight, s.standby), (20, true));
/// assert_eq!(s.to_string(), "tcp://agg-2:24224?weight=20&standby");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Where it listens.
    pub address: Address,
    /// Its share of the traffic among the healthy primaries (default [`DEFAULT_WEIGHT`]).
    pub weight: u32,
    /// Takes traffic only while no primary is healthy.
    pub standby: bool,
}

impl Server {
    /// A primary server at `address` with the default weight.
    pub fn new(address: Address) -> Server {
        Server {
            address,
            weight: DEFAULT_WEIGHT,
            standby: false,
        }
    }

    /// Parses one entry: an address, then optional `?weight=N` and `?standby` joined by `&`.
    pub fn parse(entry: &str) -> Result<Server, String> {
        let (addr, options) = match entry.split_once('?') {
            Some((a, o)) => (a, Some(o)),
            None => (entry, None),
        };
        let mut server = Server::new(Address::parse(addr.trim()).map_err(|_| SERVER_FORM)?);
        for option in options.into_iter().flat_map(|o| o.split('&')) {
            match option.trim().split_once('=') {
                None if option.trim() == "standby" => server.standby = true,
                Some(("standby", "true")) => server.standby = true,
                Some(("standby", "false")) => server.standby = false,
                Some(("weight", v)) => {
                    server.weight = v
                        .parse()
                        .ok()
                        .filter(|w| (1..=MAX_WEIGHT).contains(w))
                        .ok_or(SERVER_FORM)?
                }
                _ => return Err(SERVER_FORM.to_owned()),
            }
        }
        Ok(server)
    }

    /// Parses a comma-separated list of entries (at least one).
    pub fn parse_list(list: &str) -> Result<Vec<Server>, ConfigError> {
        let mut servers = Vec::new();
        for entry in list.split(',') {
            let server = Server::parse(entry.trim()).map_err(|expected| {
                ConfigError::invalid(
                    "HIVELOG_FLUENT_ADDR",
                    entry.trim(),
                    "a Forward address",
                    &expected,
                )
            })?;
            servers.push(server);
        }
        Ok(servers)
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        let mut sep = '?';
        if self.weight != DEFAULT_WEIGHT {
            write!(f, "{sep}weight={}", self.weight)?;
            sep = '&';
        }
        if self.standby {
            write!(f, "{sep}standby")?;
        }
        Ok(())
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
/// let cfg = FluentConfig::new("tcp://10.0.0.1:24224,10.0.0.2:24224?weight=20,10.0.0.3:24224?standby")?
///     .tag("{service}.{target}")?
///     .shared_key("s3cret");
/// assert_eq!(cfg.servers().len(), 3);
/// assert!(format!("{cfg:?}").contains("***"));
/// # Ok::<(), hivelog_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct FluentConfig {
    pub(crate) servers: Vec<Server>,
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
    pub(crate) heartbeat_interval: Duration,
}

impl FluentConfig {
    /// A configuration sending to the servers of `addr` (a `HIVELOG_FLUENT_ADDR` value: one
    /// or more comma-separated `tcp://host:port`, `tls://host:port`, `unix:///path` or
    /// `host:port`, with `?weight=N` and `?standby`) with every other option at its default.
    pub fn new(addr: &str) -> Result<FluentConfig, ConfigError> {
        Ok(FluentConfig::with_servers(Server::parse_list(addr.trim())?))
    }

    /// A configuration sending to one already parsed address.
    pub fn with_address(addr: Address) -> FluentConfig {
        FluentConfig::with_servers(vec![Server::new(addr)])
    }

    fn with_servers(servers: Vec<Server>) -> FluentConfig {
        FluentConfig {
            servers,
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
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        }
    }

    /// Reads `HIVELOG_FLUENT_*` over the defaults; `None` when `HIVELOG_FLUENT_ADDR` is unset.
    pub fn from_env(env: &Env) -> Result<Option<FluentConfig>, ConfigError> {
        match env.get("HIVELOG_FLUENT_ADDR") {
            None => {
                // Read the others anyway, so they are not reported as unknown variables.
                for v in VARS {
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
            self.servers = Server::parse_list(addr.trim())?;
        }
        if let Some(tag) = env.get("HIVELOG_FLUENT_TAG") {
            self.tag = parse_tag("HIVELOG_FLUENT_TAG", tag)?;
        }
        self.apply_wire_env(env)?;
        self.apply_auth_env(env)?;
        self.apply_limits_env(env)?;
        self.validate()?;
        Ok(self)
    }

    /// What goes on the wire: acks, compression, time format.
    fn apply_wire_env(&mut self, env: &Env) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The handshake and TLS trust.
    fn apply_auth_env(&mut self, env: &Env) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// Sizes and timeouts.
    fn apply_limits_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(n) = env.parse("HIVELOG_FLUENT_MAX_MESSAGE_BYTES", "a message size", |v| {
            hivelog_core::env::parse_bytes(v)
                .map(|n| n as usize)
                .filter(|n| (MIN_MAX_MESSAGE_BYTES..=MAX_MAX_MESSAGE_BYTES).contains(n))
                .ok_or_else(|| "a size from 64KiB to 64MiB (4MiB)".to_owned())
        })? {
            self.max_message_bytes = n;
        }
        let timeouts: [(&str, &mut Duration); 4] = [
            ("HIVELOG_FLUENT_ACK_TIMEOUT", &mut self.ack_timeout),
            ("HIVELOG_FLUENT_CONNECT_TIMEOUT", &mut self.connect_timeout),
            ("HIVELOG_FLUENT_WRITE_TIMEOUT", &mut self.write_timeout),
            (
                "HIVELOG_FLUENT_HEARTBEAT_INTERVAL",
                &mut self.heartbeat_interval,
            ),
        ];
        for (name, slot) in timeouts {
            if let Some(d) = positive_duration(env, name)? {
                *slot = d;
            }
        }
        Ok(())
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
        let any_tls = self
            .servers
            .iter()
            .any(|s| matches!(s.address, Address::Tls { .. }));
        if self.ca_cert.is_some() && !any_tls {
            return Err(ConfigError::conflict(
                "HIVELOG_FLUENT_CA_CERT",
                "is only used with a tls:// HIVELOG_FLUENT_ADDR",
            ));
        }
        Ok(())
    }

    /// The tag template: literal text with `{service}` and `{target}` (module path with `::`
    /// made `.`). Default [`DEFAULT_TAG`]. An unknown placeholder is an error naming
    /// `HIVELOG_FLUENT_TAG`, as the same template in the environment would be.
    pub fn tag(mut self, template: &str) -> Result<Self, ConfigError> {
        self.tag = parse_tag("HIVELOG_FLUENT_TAG", template)?;
        Ok(self)
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

    /// How long to wait for an ack before resending (default [`DEFAULT_ACK_TIMEOUT`]); a
    /// silent connection is given up on sooner (see [`crate::service`]).
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

    /// How often each server is checked with a plain connection, with several servers
    /// (default [`DEFAULT_HEARTBEAT_INTERVAL`]).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d.max(Duration::from_millis(10));
        self
    }

    /// The first server's address.
    pub fn address(&self) -> &Address {
        &self.servers[0].address
    }

    /// Every server, in the order given.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }
}

fn parse_tag(var: &str, template: &str) -> Result<String, ConfigError> {
    TagTemplate::parse(template)
        .map_err(|expected| ConfigError::invalid(var, template, "a tag template", &expected))?;
    Ok(template.to_owned())
}

/// A duration above zero, or an error naming the variable.
fn positive_duration(env: &Env, name: &str) -> Result<Option<Duration>, ConfigError> {
    match env.duration(name)? {
        Some(d) if d.is_zero() => Err(ConfigError::invalid(
            name,
            "0",
            "a usable timeout",
            "a duration above zero (250ms, 5s)",
        )),
        d => Ok(d),
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
        assert_eq!(
            Address::parse("fluentd:24224"),
            Ok(Address::Tcp {
                host: "fluentd".into(),
                port: 24224
            })
        );
        for bad in [
            "fluentd",
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
        let e = FluentConfig::from_env(&env(&[(
            "HIVELOG_FLUENT_ADDR",
            "tcp://a:1,udp://fluentd:24224",
        )]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HIVELOG_FLUENT_ADDR: 'udp://fluentd:24224' is not a Forward address; expected tcp://host:port, tls://host:port, unix:///path or host:port, each with optional ?weight=N (1 to 10000) and ?standby, comma-separated"
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
        for v in VARS {
            assert!(v.name.starts_with("HIVELOG_FLUENT_"));
        }
    }

    #[test]
    fn env_overrides_a_configuration_set_in_code() {
        let code = FluentConfig::new("tcp://fluentd:24224")
            .unwrap()
            .tag("code.{service}")
            .unwrap()
            .ack(false);
        let c = code
            .clone()
            .apply_env(&env(&[
                ("HIVELOG_FLUENT_ADDR", "unix:///run/fluent.sock"),
                ("HIVELOG_FLUENT_ACK", "true"),
            ]))
            .unwrap();
        assert_eq!(c.address(), &Address::Unix("/run/fluent.sock".into()));
        assert!(c.ack);
        assert_eq!(c.tag, "code.{service}");
        let c = code.apply_env(&env(&[])).unwrap();
        assert_eq!(c.address().to_string(), "tcp://fluentd:24224");
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

    #[test]
    fn a_server_list_takes_weights_standbys_and_bare_host_ports() {
        let c = FluentConfig::from_env(&env(&[
            (
                "HIVELOG_FLUENT_ADDR",
                " tcp://a:1?weight=20, b:2 ,tls://[::1]:3?standby,unix:///s?weight=5&standby=true",
            ),
            ("HIVELOG_FLUENT_HEARTBEAT_INTERVAL", "250ms"),
        ]))
        .unwrap()
        .unwrap();
        let shown: Vec<String> = c.servers().iter().map(Server::to_string).collect();
        assert_eq!(
            shown,
            [
                "tcp://a:1?weight=20",
                "tcp://b:2",
                "tls://[::1]:3?standby",
                "unix:///s?weight=5&standby"
            ]
        );
        assert_eq!(c.servers()[1].weight, DEFAULT_WEIGHT);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(250));
        for bad in [
            "a:1?weight=0",
            "a:1?weight=x",
            "a:1?stanby",
            "a:1,",
            "a:1?weight=10001",
        ] {
            let e = FluentConfig::new(bad).unwrap_err().to_string();
            assert!(e.starts_with("HIVELOG_FLUENT_ADDR: '"), "{e}");
            assert!(e.contains("?weight=N (1 to 10000) and ?standby"), "{e}");
        }
    }

    #[test]
    fn the_tag_setter_refuses_an_unknown_placeholder_with_the_variable_named() {
        let e = FluentConfig::new("a:1")
            .unwrap()
            .tag("{service}.{pid}")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "HIVELOG_FLUENT_TAG: '{service}.{pid}' is not a tag template; expected text with the placeholders {service} and {target}"
        );
    }
}

//! The destination's options, read from the OpenTelemetry specification's own variables
//! ("OTLP Exporter Configuration" and "SDK environment variables"), so that a service already
//! set up for a collector needs one more line (`OTEL_LOGS_EXPORTER=otlp`).
//!
//! Why off by default, unlike an OpenTelemetry SDK (whose `OTEL_LOGS_EXPORTER` defaults to
//! `otlp`): a service configured for traces only has `OTEL_EXPORTER_OTLP_ENDPOINT` set, and it
//! must not start shipping its logs because hivelog was upgraded.
//!
//! Why every value is checked here: a typo fails `try_init` with a message naming the variable
//! instead of a stream of refused requests at run time. Header values are secrets (they carry
//! API keys): they never appear in `Debug`, in errors or in `hivelog check`.

use std::path::PathBuf;
use std::time::Duration;

use hivelog_core::{ConfigError, Env, Secret, Var};

/// The switch: a comma list of exporters; hivelog ships when it contains `otlp`.
pub(crate) const EXPORTER_VAR: &str = "OTEL_LOGS_EXPORTER";

/// Default timeout of one export (`OTEL_EXPORTER_OTLP_TIMEOUT`): 10 s, the specification's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default endpoint over HTTP (`http/protobuf`, `http/json`), the specification's.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Default endpoint over gRPC, the specification's.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The path appended to `OTEL_EXPORTER_OTLP_ENDPOINT` over HTTP.
pub const LOGS_PATH: &str = "v1/logs";

/// The wire protocol (`OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `http/protobuf` (default): binary protobuf POSTed to `/v1/logs`.
    #[default]
    HttpProtobuf,
    /// `http/json`: the specification's JSON mapping of the same messages.
    HttpJson,
    /// `grpc`: the `LogsService/Export` unary call over HTTP/2 (`tonic`).
    Grpc,
}

impl Protocol {
    /// The name as the variable spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Request body compression (`OTEL_EXPORTER_OTLP_[LOGS_]COMPRESSION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// `none` (default, as in the specification).
    #[default]
    None,
    /// `gzip`: `Content-Encoding: gzip`.
    Gzip,
}

/// A PEM file named by a variable, read at configuration time.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PemFile {
    pub(crate) var: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// The OTLP destination's configuration.
///
/// Built from the `OTEL_*` variables with [`OtlpConfig::from_env`], or in code with
/// [`OtlpConfig::new`] (the variables still override it). Its `Debug` shows header names,
/// never their values.
///
/// ```
/// use hivelog_core::Env;
/// use hivelog_otlp::{OtlpConfig, Protocol};
/// let env = Env::from_pairs([
///     ("OTEL_LOGS_EXPORTER", "otlp"),
///     ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
///     ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcr3t"),
/// ]);
/// let config = OtlpConfig::from_env(&env)?.expect("switched on");
/// assert_eq!(config.endpoint(), "https://collector:4318/v1/logs");
/// assert_eq!(config.protocol(), Protocol::HttpProtobuf);
/// assert!(!format!("{config:?}").contains("cr3t"));
/// # Ok::<(), hivelog_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// Set from code or a `LOGS_` / generic endpoint variable; `None`: the protocol's default.
    endpoint: Option<Endpoint>,
    pub(crate) protocol: Protocol,
    pub(crate) headers: Vec<(String, Secret)>,
    pub(crate) compression: Compression,
    /// `None`: no limit (`TIMEOUT=0`).
    pub(crate) timeout: Option<Duration>,
    pub(crate) certificate: Option<PemFile>,
    pub(crate) client_key: Option<PemFile>,
    pub(crate) client_certificate: Option<PemFile>,
    pub(crate) insecure: bool,
    /// `OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`; `None`: the
    /// format's service (`HIVELOG_SERVICE`, else the binary's name).
    pub(crate) service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` other than `service.name`, in order.
    pub(crate) resource: Vec<(String, String)>,
}

/// Where an endpoint came from decides whether `/v1/logs` is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or code: used as given.
    Logs(String),
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the base, `/v1/logs` appended over HTTP.
    Base(String),
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            protocol: Protocol::HttpProtobuf,
            headers: Vec::new(),
            compression: Compression::None,
            timeout: Some(DEFAULT_TIMEOUT),
            certificate: None,
            client_key: None,
            client_certificate: None,
            insecure: false,
            service_name: None,
            resource: Vec::new(),
        }
    }
}

/// The generic variable's name and its `LOGS_` form, which wins.
fn pair(suffix: &str) -> [String; 2] {
    [
        format!("OTEL_EXPORTER_OTLP_LOGS_{suffix}"),
        format!("OTEL_EXPORTER_OTLP_{suffix}"),
    ]
}

/// Every `OTEL_EXPORTER_OTLP_[LOGS_]*` name this configuration reads (`ENDPOINT` aside).
/// Every variable this destination reads: the one list the warnings, `hivelog check`, the
/// README test and the fuzz list use. For each `OTEL_EXPORTER_OTLP_*` setting the `LOGS_`
/// form wins over the generic one.
pub const VARS: &[Var] = &[
    Var::new(
        "OTEL_LOGS_EXPORTER",
        "off",
        "comma list of exporters; one named otlp switches the destination on",
    ),
    Var::new(
        "HIVELOG_OTLP_LEVEL",
        "(HIVELOG_LEVEL)",
        "filter for this destination only",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://localhost:4318",
        "collector base URL; /v1/logs is appended over HTTP (gRPC default :4317)",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "(OTEL_EXPORTER_OTLP_ENDPOINT + /v1/logs)",
        "logs URL, used as given",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf",
        "http/protobuf, http/json or grpc",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        "(OTEL_EXPORTER_OTLP_PROTOCOL)",
        "protocol for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "none",
        "headers on every export, k=v,k2=v2 with percent-encoded values",
    )
    .secret(),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "(OTEL_EXPORTER_OTLP_HEADERS)",
        "headers for logs",
    )
    .secret(),
    Var::new("OTEL_EXPORTER_OTLP_COMPRESSION", "none", "gzip or none"),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
        "(OTEL_EXPORTER_OTLP_COMPRESSION)",
        "compression for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "10000",
        "milliseconds per export; 0 = no limit",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
        "(OTEL_EXPORTER_OTLP_TIMEOUT)",
        "timeout for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "none",
        "PEM file of CAs trusted for the collector",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
        "(OTEL_EXPORTER_OTLP_CERTIFICATE)",
        "CAs for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "none",
        "PEM private key for mTLS",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
        "(OTEL_EXPORTER_OTLP_CLIENT_KEY)",
        "mTLS key for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "none",
        "PEM client certificate for mTLS",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
        "(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)",
        "mTLS certificate for logs",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_INSECURE",
        "false",
        "gRPC without TLS for an endpoint without a scheme",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
        "(OTEL_EXPORTER_OTLP_INSECURE)",
        "insecure for logs",
    ),
    Var::new(
        "OTEL_SERVICE_NAME",
        "(service.name of OTEL_RESOURCE_ATTRIBUTES, else HIVELOG_SERVICE)",
        "the resource's service.name",
    ),
    Var::new(
        "OTEL_RESOURCE_ATTRIBUTES",
        "none",
        "resource attributes, k=v,k2=v2 with percent-encoded values",
    ),
];

#[cfg(test)]
pub(crate) const SUFFIXES: &[&str] = &[
    "PROTOCOL",
    "HEADERS",
    "COMPRESSION",
    "TIMEOUT",
    "CERTIFICATE",
    "CLIENT_KEY",
    "CLIENT_CERTIFICATE",
    "INSECURE",
];

impl OtlpConfig {
    /// A configuration sending to `endpoint` (the full logs URL over HTTP,
    /// `http://collector:4318/v1/logs`), with the specification's defaults otherwise.
    pub fn new(endpoint: impl Into<String>) -> Result<Self, ConfigError> {
        let endpoint = endpoint.into();
        check_url("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint, false)?;
        Ok(OtlpConfig {
            endpoint: Some(Endpoint::Logs(endpoint)),
            ..OtlpConfig::default()
        })
    }

    /// Sets the protocol.
    pub fn protocol_set(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the compression.
    pub fn compression_set(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the timeout of one export; `None`: no limit.
    pub fn timeout_set(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header sent with every export (kept secret).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), Secret::new(value)));
        self
    }

    /// The configuration of the `OTEL_*` variables; `None` when `OTEL_LOGS_EXPORTER` does not
    /// contain `otlp`. Every variable is read either way, so none is reported as unknown.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let on = exporter_on(env)?;
        let config = OtlpConfig::default().apply_env(env)?;
        Ok(on.then_some(config))
    }

    /// These settings with every variable that is set applied over them.
    pub fn apply_env(mut self, env: &Env) -> Result<Self, ConfigError> {
        exporter_on(env)?;
        if let Some((var, v)) = first(env, "PROTOCOL") {
            self.protocol = parse_protocol(var, v)?;
        }
        // gRPC endpoints may omit the scheme: `_INSECURE` then chooses plain text or TLS.
        let bare_ok = self.protocol == Protocol::Grpc;
        if let Some(v) = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") {
            check_url("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", v, bare_ok)?;
            self.endpoint = Some(Endpoint::Logs(v.to_owned()));
        } else if let Some(v) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            check_url("OTEL_EXPORTER_OTLP_ENDPOINT", v, bare_ok)?;
            self.endpoint = Some(Endpoint::Base(v.to_owned()));
        }
        if let Some((var, v)) = first(env, "HEADERS") {
            self.headers = parse_headers(var, v)?;
        }
        if let Some((var, v)) = first(env, "COMPRESSION") {
            self.compression = match v.to_ascii_lowercase().as_str() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                _ => {
                    return Err(ConfigError::invalid(
                        var,
                        v,
                        "a compression",
                        "gzip or none",
                    ))
                }
            };
        }
        if let Some((var, v)) = first(env, "TIMEOUT") {
            let ms: u64 = v.parse().map_err(|_| {
                ConfigError::invalid(
                    var,
                    v,
                    "a timeout",
                    "a whole number of milliseconds (10000), 0 for no limit",
                )
            })?;
            self.timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        for (suffix, slot) in [
            ("CERTIFICATE", &mut self.certificate),
            ("CLIENT_KEY", &mut self.client_key),
            ("CLIENT_CERTIFICATE", &mut self.client_certificate),
        ] {
            if let Some((var, v)) = first(env, suffix) {
                *slot = Some(read_pem(var, v)?);
            }
        }
        if self.client_key.is_some() != self.client_certificate.is_some() {
            let var = if self.client_key.is_some() {
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
            } else {
                "OTEL_EXPORTER_OTLP_CLIENT_KEY"
            };
            return Err(ConfigError::conflict(
                var,
                "mTLS needs both OTEL_EXPORTER_OTLP_[LOGS_]CLIENT_KEY and OTEL_EXPORTER_OTLP_[LOGS_]CLIENT_CERTIFICATE",
            ));
        }
        if let Some((var, _)) = first(env, "INSECURE") {
            self.insecure = env.bool(var)?.unwrap_or(false);
        }
        if let Some(v) = env.get("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in parse_pairs("OTEL_RESOURCE_ATTRIBUTES", v, false)? {
                if k == "service.name" {
                    self.service_name = Some(v);
                } else {
                    self.resource.retain(|(name, _)| *name != k);
                    self.resource.push((k, v));
                }
            }
        }
        if let Some(v) = env.get("OTEL_SERVICE_NAME") {
            self.service_name = Some(v.to_owned());
        }
        Ok(self)
    }

    /// The URL exports go to: the `LOGS_` endpoint as given, else the generic one plus
    /// `/v1/logs` over HTTP, else the protocol's default.
    pub fn endpoint(&self) -> String {
        let http = self.protocol != Protocol::Grpc;
        match &self.endpoint {
            Some(Endpoint::Logs(url)) if http => url.clone(),
            Some(Endpoint::Logs(url)) => grpc_url(url, self.insecure),
            Some(Endpoint::Base(url)) if http => {
                let sep = if url.ends_with('/') { "" } else { "/" };
                format!("{url}{sep}{LOGS_PATH}")
            }
            Some(Endpoint::Base(url)) => grpc_url(url, self.insecure),
            None if http => format!("{DEFAULT_HTTP_ENDPOINT}/{LOGS_PATH}"),
            None => DEFAULT_GRPC_ENDPOINT.to_owned(),
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The timeout of one export; `None`: no limit.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The names of the headers sent with every export (their values stay secret).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(k, _)| k.as_str())
    }

    /// Whether gRPC may use plain text for an endpoint without a scheme (`_INSECURE`).
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// `service.name` set by `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`, if any.
    pub fn service_name(&self) -> Option<&str> {
        self.service_name.as_deref()
    }

    /// The resource attributes of `OTEL_RESOURCE_ATTRIBUTES` (other than `service.name`).
    pub fn resource_attributes(&self) -> &[(String, String)] {
        &self.resource
    }
}

/// Whether `OTEL_LOGS_EXPORTER` names `otlp`; `none` alone or other exporters mean off.
fn exporter_on(env: &Env) -> Result<bool, ConfigError> {
    let Some(v) = env.get(EXPORTER_VAR) else {
        return Ok(false);
    };
    let mut on = false;
    for name in v.split(',').map(str::trim) {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError::invalid(
                EXPORTER_VAR,
                v,
                "a list of exporters",
                "comma-separated names such as otlp, console or none",
            ));
        }
        on |= name.eq_ignore_ascii_case("otlp");
    }
    Ok(on)
}

/// The `LOGS_` form of a setting, else the generic one: its name and value.
fn first<'e>(env: &'e Env, suffix: &str) -> Option<(&'static str, &'e str)> {
    let [logs, generic] = pair(suffix);
    // Both names are read so neither is ever reported unused.
    let l = env.get(&logs);
    let g = env.get(&generic);
    match (l, g) {
        (Some(v), _) => Some((leak_name(&logs), v)),
        (None, Some(v)) => Some((leak_name(&generic), v)),
        (None, None) => None,
    }
}

/// The `'static` name of a known variable, for errors (every name is in the table).
fn leak_name(name: &str) -> &'static str {
    VARS.iter()
        .map(|v| v.name)
        .find(|n| *n == name)
        .unwrap_or("OTEL_EXPORTER_OTLP_*")
}

fn parse_protocol(var: &str, v: &str) -> Result<Protocol, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Ok(Protocol::HttpJson),
        "grpc" => Ok(Protocol::Grpc),
        _ => Err(ConfigError::invalid(
            var,
            v,
            "an OTLP protocol",
            "http/protobuf, http/json or grpc",
        )),
    }
}

fn check_url(var: &str, v: &str, bare_ok: bool) -> Result<(), ConfigError> {
    let with_scheme;
    let v_full = if bare_ok && !v.contains("://") {
        with_scheme = format!("http://{v}");
        with_scheme.as_str()
    } else {
        v
    };
    let rest = v_full
        .strip_prefix("http://")
        .or_else(|| v_full.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && reqwest::Url::parse(v_full).is_ok() => {
            Ok(())
        }
        _ => Err(ConfigError::invalid(
            var,
            v,
            "an endpoint URL",
            "http:// or https:// then host[:port][/path] (http://collector:4318)",
        )),
    }
}

/// A gRPC endpoint with its scheme: as given, else `http://` when `insecure`, else `https://`.
fn grpc_url(url: &str, insecure: bool) -> String {
    if url.contains("://") {
        url.to_owned()
    } else if insecure {
        format!("http://{url}")
    } else {
        format!("https://{url}")
    }
}

/// Headers in the specification's `k=v,k2=v2` form with percent-encoded values; the value in
/// an error is hidden (it may be a key).
fn parse_headers(var: &str, v: &str) -> Result<Vec<(String, Secret)>, ConfigError> {
    let pairs = parse_pairs(var, v, true)?;
    let mut out = Vec::with_capacity(pairs.len());
    for (k, val) in pairs {
        let name_ok = reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_ok();
        let value_ok = reqwest::header::HeaderValue::from_str(&val).is_ok();
        if !name_ok || !value_ok {
            return Err(ConfigError::invalid(
                var,
                "<hidden>",
                "a list of HTTP headers",
                "name=value pairs, comma-separated, values percent-encoded, no control characters",
            ));
        }
        out.push((k, Secret::new(val)));
    }
    Ok(out)
}

/// The W3C Baggage-like `k=v,k2=v2` list both `_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES` use:
/// keys trimmed, values trimmed and percent-decoded, empty members skipped.
pub(crate) fn parse_pairs(
    var: &str,
    v: &str,
    secret: bool,
) -> Result<Vec<(String, String)>, ConfigError> {
    let shown = if secret { "<hidden>" } else { v };
    let bad = || {
        ConfigError::invalid(
            var,
            shown,
            "a list of key=value pairs",
            "key=value pairs, comma-separated, values percent-encoded (k1=v1,k2=v%202)",
        )
    };
    let mut out = Vec::new();
    for member in v.split(',') {
        if member.trim().is_empty() {
            continue;
        }
        let (k, val) = member.split_once('=').ok_or_else(bad)?;
        let k = k.trim();
        if k.is_empty() {
            return Err(bad());
        }
        out.push((k.to_owned(), percent_decode(val.trim()).ok_or_else(bad)?));
    }
    Ok(out)
}

/// `%XX` decoding into UTF-8; `None` on a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn read_pem(var: &'static str, path: &str) -> Result<PemFile, ConfigError> {
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(var, path, "a readable PEM file", &format!("a file ({e})"))
    })?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::invalid(
            var,
            path,
            "a PEM file",
            "a file with -----BEGIN ...----- blocks",
        ));
    }
    Ok(PemFile {
        var,
        path: PathBuf::from(path),
        pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    fn on(pairs: &[(&str, &str)]) -> OtlpConfig {
        let mut all = vec![("OTEL_LOGS_EXPORTER", "otlp")];
        all.extend_from_slice(pairs);
        OtlpConfig::from_env(&env(&all)).unwrap().unwrap()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        let mut all = vec![("OTEL_LOGS_EXPORTER", "otlp")];
        all.extend_from_slice(pairs);
        OtlpConfig::from_env(&env(&all)).unwrap_err().to_string()
    }

    #[test]
    fn the_exporter_list_switches_it_on_only_when_it_names_otlp() {
        let with = |v: &str| {
            OtlpConfig::from_env(&env(&[("OTEL_LOGS_EXPORTER", v)]))
                .unwrap()
                .is_some()
        };
        assert!(with("otlp"));
        assert!(with("console, OTLP"));
        assert!(!with("none"));
        assert!(!with("console"));
        assert!(!with(""));
        assert!(OtlpConfig::from_env(&env(&[])).unwrap().is_none());
        // Endpoint alone (a service set up for traces) does not switch logs on.
        assert!(
            OtlpConfig::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]))
                .unwrap()
                .is_none()
        );
        assert!(err(&[("OTEL_LOGS_EXPORTER", "otlp,,x y")]).starts_with("OTEL_LOGS_EXPORTER:"));
    }

    #[test]
    fn endpoints_follow_the_specification() {
        assert_eq!(on(&[]).endpoint(), "http://localhost:4318/v1/logs");
        assert_eq!(
            on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).endpoint(),
            "http://c:4318/v1/logs"
        );
        assert_eq!(
            on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c/otlp/")]).endpoint(),
            "https://c/otlp/v1/logs"
        );
        assert_eq!(
            on(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:9/custom")
            ])
            .endpoint(),
            "http://l:9/custom"
        );
        let e = err(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' is not an endpoint URL"),
            "{e}"
        );
    }

    #[test]
    fn the_logs_form_of_each_setting_wins_and_bad_values_name_their_variable() {
        let c = on(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "GZIP"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ]);
        assert_eq!(c.protocol(), Protocol::HttpJson);
        assert_eq!(c.compression(), Compression::Gzip);
        assert_eq!(c.timeout(), Some(Duration::from_millis(2500)));
        assert!(c.insecure());
        assert_eq!(
            on(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]).timeout(),
            None,
            "0 = no limit"
        );
        assert_eq!(on(&[]).timeout(), Some(DEFAULT_TIMEOUT));
        for (var, value, says) in [
            (
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                "http",
                "is not an OTLP protocol",
            ),
            (
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "zstd",
                "is not a compression",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "is not a timeout"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
                "maybe",
                "is not a boolean",
            ),
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                "/nonexistent.pem",
                "is not a readable PEM file",
            ),
        ] {
            let e = err(&[(var, value)]);
            assert!(e.starts_with(&format!("{var}: '{value}' {says}")), "{e}");
        }
        let grpc = |pairs: &[(&str, &str)]| {
            let mut all = vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
            all.extend_from_slice(pairs);
            on(&all).endpoint()
        };
        assert_eq!(grpc(&[]), "http://localhost:4317");
        assert_eq!(
            grpc(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]),
            "http://c:4317",
            "no /v1/logs over gRPC"
        );
        assert_eq!(
            grpc(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317")]),
            "https://c:4317"
        );
        assert_eq!(
            grpc(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317"),
                ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "true")
            ]),
            "http://c:4317"
        );
    }

    #[test]
    fn headers_are_percent_decoded_and_never_shown() {
        let c = on(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key = s%3Dcr3t%20k , x-tenant=acme,",
        )]);
        let h: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(h, [("api-key", "s=cr3t k"), ("x-tenant", "acme")]);
        assert!(!format!("{c:?}").contains("cr3t"));
        assert!(format!("{c:?}").contains("api-key"));
        let c = on(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "b=2"),
        ]);
        assert_eq!(c.header_names().collect::<Vec<_>>(), ["b"]);
        for bad in ["novalue", "k=%zz", "k=a%0Ab", "bad name=1"] {
            let e = err(&[("OTEL_EXPORTER_OTLP_HEADERS", bad)]);
            assert!(
                e.starts_with("OTEL_EXPORTER_OTLP_HEADERS: '<hidden>' is not a list"),
                "{bad}: {e}"
            );
            assert!(!e.contains(bad));
        }
    }

    #[test]
    fn service_name_comes_from_otel_service_name_then_resource_attributes() {
        let c = on(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,deployment.environment.name=prod,team=a%2Cb",
        )]);
        assert_eq!(c.service_name(), Some("from-attrs"));
        assert_eq!(
            c.resource_attributes(),
            [
                ("deployment.environment.name".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b".to_owned())
            ]
        );
        let c = on(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "checkout"),
        ]);
        assert_eq!(c.service_name(), Some("checkout"));
        assert_eq!(on(&[]).service_name(), None);
        let e = err(&[("OTEL_RESOURCE_ATTRIBUTES", "justakey")]);
        assert!(e.starts_with("OTEL_RESOURCE_ATTRIBUTES: 'justakey'"), "{e}");
    }

    #[test]
    fn mtls_needs_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("c.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let p = pem.to_str().unwrap();
        let c = on(&[("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", p)]);
        assert_eq!(
            c.certificate.unwrap().var,
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"
        );
        let e = err(&[("OTEL_EXPORTER_OTLP_CLIENT_KEY", p)]);
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE:"),
            "{e}"
        );
    }
}

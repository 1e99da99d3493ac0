//! The sink's options: code defaults, `HIVELOG_ES_*` overrides, and their validation.
//!
//! Everything that can be checked before the first event is checked here, at `init`, so that
//! a typo fails `try_init` with a message naming the variable instead of turning into a stream
//! of rejected documents at run time: node URLs, the Cloud ID, the index template (against
//! Elasticsearch's index-name rules), the API key's form and the CA certificate file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use hivelog_core::env::parse_bytes;
use hivelog_core::format::time::civil_from_days;
use hivelog_core::{ConfigError, Env, Secret};

/// Default index template (`HIVELOG_ES_INDEX`): one index (or data stream) per service.
pub const DEFAULT_INDEX: &str = "logs-{service}";
/// Default most bytes of NDJSON per `_bulk` request (`HIVELOG_ES_MAX_BATCH_BYTES`): 5 MB, the
/// low end of Elastic's advice ("a few megabytes to tens of megabytes") and far under the
/// server's `http.max_content_length` (100 MB by default).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 5_000_000;
/// Default most documents per `_bulk` request.
pub const DEFAULT_MAX_BATCH_DOCS: usize = 10_000;
/// Default time allowed for one `_bulk` request, connect to last byte (`HIVELOG_ES_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Elasticsearch's longest index name, in bytes.
pub const MAX_INDEX_NAME_BYTES: usize = 255;
/// Characters Elasticsearch forbids in index names (`:` is refused since 8.0: it names remote
/// clusters).
pub const FORBIDDEN_INDEX_CHARS: &[char] =
    &['\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ' ', ':'];

/// Every variable [`EsConfig::from_env`] reads (`HIVELOG_ES_LEVEL` belongs to the facade).
pub const ENV_VARS: &[&str] = &[
    "HIVELOG_ES_URL",
    "HIVELOG_ES_CLOUD_ID",
    "HIVELOG_ES_INDEX",
    "HIVELOG_ES_ACTION",
    "HIVELOG_ES_USERNAME",
    "HIVELOG_ES_PASSWORD",
    "HIVELOG_ES_API_KEY",
    "HIVELOG_ES_CA_CERT",
    "HIVELOG_ES_COMPRESS",
    "HIVELOG_ES_MAX_BATCH_BYTES",
    "HIVELOG_ES_TIMEOUT",
    "HIVELOG_ES_DEAD_LETTER",
    "HIVELOG_ES_SETUP",
];

/// The bulk action each document is sent with (`HIVELOG_ES_ACTION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Action {
    /// `create` (default): what data streams require; a retried document whose first attempt
    /// landed answers 409 and counts as delivered.
    #[default]
    Create,
    /// `index`: a retried document overwrites its earlier copy (same `_id`).
    Index,
}

impl Action {
    /// The action's name in the bulk body.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Index => "index",
        }
    }
}

/// Request body compression (`HIVELOG_ES_COMPRESS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Send the NDJSON as is (default): cheapest on CPU, best on a local network.
    #[default]
    None,
    /// `Content-Encoding: gzip` (level 1): about 10× fewer bytes for logs, for some CPU.
    Gzip,
}

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user (`elastic`).
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: ApiKey base64(id:api_key)`; holds the encoded form.
    ApiKey(Secret),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, password } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", password)
                .finish(),
            Auth::ApiKey(k) => f.debug_tuple("ApiKey").field(k).finish(),
        }
    }
}

impl Auth {
    /// The `Authorization` header's value, if any.
    pub fn header_value(&self) -> Option<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                b64.encode(format!("{username}:{}", password.expose()))
            )),
            Auth::ApiKey(k) => Some(format!("ApiKey {}", k.expose())),
        }
    }
}

/// The Elasticsearch sink's configuration.
///
/// Built from code with [`EsConfig::new`] or [`EsConfig::from_cloud_id`] and the setters, or
/// from `HIVELOG_ES_*` with [`EsConfig::from_env`]; [`EsConfig::apply_env`] lets variables
/// override code defaults. Its `Debug` never shows the password or API key.
///
/// ```
/// use hivelog_elk::{Action, EsConfig};
/// let config = EsConfig::new("https://es.internal:9200")?
///     .index("logs-{service}-{date:%Y.%m}")?
///     .action(Action::Create)
///     .basic_auth("elastic", "changeme");
/// assert!(!format!("{config:?}").contains("changeme"));
/// # Ok::<(), hivelog_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct EsConfig {
    pub(crate) nodes: Vec<String>,
    pub(crate) index: IndexTemplate,
    pub(crate) action: Action,
    pub(crate) auth: Auth,
    pub(crate) ca_cert: Option<CaCert>,
    pub(crate) compression: Compression,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_batch_docs: usize,
    pub(crate) timeout: Duration,
    pub(crate) dead_letter: Option<PathBuf>,
    pub(crate) setup: bool,
}

/// A CA bundle read at configuration time (so a bad path fails `init`).
#[derive(Clone)]
pub(crate) struct CaCert {
    pub(crate) path: PathBuf,
    pub(crate) pem: Vec<u8>,
}

impl fmt::Debug for CaCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.fmt(f)
    }
}

impl EsConfig {
    /// A configuration for one or more comma-separated node URLs (`http://` or `https://`,
    /// optionally with a path prefix such as `/api/v1/_elastic`), with every other option at
    /// its default. Credentials in the URL (`https://user:pass@host`) become basic auth.
    pub fn new(urls: &str) -> Result<Self, ConfigError> {
        let (nodes, auth) = parse_nodes("HIVELOG_ES_URL", urls)?;
        Ok(EsConfig {
            nodes,
            index: IndexTemplate::parse("HIVELOG_ES_INDEX", DEFAULT_INDEX)?,
            action: Action::default(),
            auth,
            ca_cert: None,
            compression: Compression::default(),
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_docs: DEFAULT_MAX_BATCH_DOCS,
            timeout: DEFAULT_TIMEOUT,
            dead_letter: None,
            setup: false,
        })
    }

    /// A configuration for an Elastic Cloud deployment, from its Cloud ID.
    pub fn from_cloud_id(cloud_id: &str) -> Result<Self, ConfigError> {
        let url = decode_cloud_id(cloud_id).map_err(|expected| {
            ConfigError::invalid(
                "HIVELOG_ES_CLOUD_ID",
                cloud_id,
                "an Elastic Cloud ID",
                &expected,
            )
        })?;
        EsConfig::new(&url)
    }

    /// Reads `HIVELOG_ES_*`: `None` when neither `HIVELOG_ES_URL` nor `HIVELOG_ES_CLOUD_ID`
    /// is set (the sink is off).
    pub fn from_env(env: &Env) -> Result<Option<EsConfig>, ConfigError> {
        let base = match (env.get("HIVELOG_ES_URL"), env.get("HIVELOG_ES_CLOUD_ID")) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ConfigError::conflict(
                    "HIVELOG_ES_CLOUD_ID",
                    "set either HIVELOG_ES_URL or HIVELOG_ES_CLOUD_ID, not both",
                ))
            }
            (Some(url), None) => EsConfig::new(url)?,
            (None, Some(id)) => EsConfig::from_cloud_id(id)?,
        };
        base.apply_env(env).map(Some)
    }

    /// Applies the `HIVELOG_ES_*` variables that are set over `self` (the URL or Cloud ID too).
    pub fn apply_env(mut self, env: &Env) -> Result<Self, ConfigError> {
        if let Some(url) = env.get("HIVELOG_ES_URL") {
            let (nodes, auth) = parse_nodes("HIVELOG_ES_URL", url)?;
            self.nodes = nodes;
            if auth != Auth::None {
                self.auth = auth;
            }
        } else if let Some(id) = env.get("HIVELOG_ES_CLOUD_ID") {
            self.nodes = EsConfig::from_cloud_id(id)?.nodes;
        }
        if let Some(t) = env.get("HIVELOG_ES_INDEX") {
            self.index = IndexTemplate::parse("HIVELOG_ES_INDEX", t)?;
        }
        if let Some(a) = env.choice(
            "HIVELOG_ES_ACTION",
            "a bulk action",
            &[("create", Action::Create), ("index", Action::Index)],
        )? {
            self.action = a;
        }
        if let Some(c) = env.choice(
            "HIVELOG_ES_COMPRESS",
            "a compression",
            &[("gzip", Compression::Gzip), ("none", Compression::None)],
        )? {
            self.compression = c;
        }
        let username = env.get("HIVELOG_ES_USERNAME").map(str::to_owned);
        let password = env.secret("HIVELOG_ES_PASSWORD");
        if let Some(key) = env.secret("HIVELOG_ES_API_KEY") {
            if username.is_some() || password.is_some() {
                return Err(ConfigError::conflict(
                    "HIVELOG_ES_API_KEY",
                    "set either HIVELOG_ES_API_KEY or HIVELOG_ES_USERNAME/_PASSWORD, not both",
                ));
            }
            self.auth = Auth::ApiKey(encode_api_key(key.expose())?);
        } else if let Some(username) = username {
            let password = password.unwrap_or_else(|| Secret::new(""));
            self.auth = Auth::Basic { username, password };
        } else if password.is_some() {
            return Err(ConfigError::conflict(
                "HIVELOG_ES_PASSWORD",
                "is set but HIVELOG_ES_USERNAME is not; set both (the Elastic Cloud user is usually 'elastic')",
            ));
        }
        if let Some(path) = env.get("HIVELOG_ES_CA_CERT") {
            self.ca_cert = Some(read_ca_cert("HIVELOG_ES_CA_CERT", path)?);
        }
        if let Some(v) = env.get("HIVELOG_ES_MAX_BATCH_BYTES") {
            let n = parse_bytes(v).filter(|n| (1_000..=1_000_000_000).contains(n));
            self.max_batch_bytes = n.ok_or_else(|| {
                ConfigError::invalid(
                    "HIVELOG_ES_MAX_BATCH_BYTES",
                    v,
                    "a batch size",
                    "a size from 1KB to 1GB, such as 5MB (keep it under the server's http.max_content_length)",
                )
            })? as usize;
        }
        if let Some(t) = env.duration("HIVELOG_ES_TIMEOUT")? {
            if t.is_zero() {
                return Err(ConfigError::invalid(
                    "HIVELOG_ES_TIMEOUT",
                    "0",
                    "a usable timeout",
                    "a positive duration such as 30s",
                ));
            }
            self.timeout = t;
        }
        if let Some(p) = env.get("HIVELOG_ES_DEAD_LETTER") {
            let path = PathBuf::from(p);
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if path.is_dir() || dir.is_some_and(|d| !d.is_dir()) {
                return Err(ConfigError::invalid(
                    "HIVELOG_ES_DEAD_LETTER",
                    p,
                    "a file path in an existing directory",
                    "a path such as /var/log/app/es-rejected.ndjson (the file is created on the first rejection)",
                ));
            }
            self.dead_letter = Some(path);
        }
        if let Some(s) = env.bool("HIVELOG_ES_SETUP")? {
            self.setup = s;
        }
        Ok(self)
    }

    /// Sets the index template: `{service}` and `{date:FORMAT}` (UTC, from each event's own
    /// time; `%Y %m %d %H %j %%`), default `logs-{service}`. Validated against Elasticsearch's
    /// index-name rules.
    pub fn index(mut self, template: &str) -> Result<Self, ConfigError> {
        self.index = IndexTemplate::parse("index", template)?;
        Ok(self)
    }

    /// Sets the bulk action (default `create`).
    pub fn action(mut self, action: Action) -> Self {
        self.action = action;
        self
    }

    /// Authenticates with a user and password.
    pub fn basic_auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::Basic {
            username: username.into(),
            password: Secret::new(password.into()),
        };
        self
    }

    /// Authenticates with an API key, as `id:api_key` or in its base64 ("encoded") form.
    pub fn api_key(mut self, key: &str) -> Result<Self, ConfigError> {
        self.auth = Auth::ApiKey(encode_api_key(key)?);
        Ok(self)
    }

    /// Trusts the CA certificates in this PEM file (in addition to the built-in roots).
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        self.ca_cert = Some(read_ca_cert("ca_cert", &path.to_string_lossy())?);
        Ok(self)
    }

    /// Sets request body compression (default none).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Sets the most NDJSON bytes per request (default 5 MB). One document larger than this
    /// is still sent, alone.
    pub fn max_batch_bytes(mut self, n: usize) -> Self {
        self.max_batch_bytes = n.max(1);
        self
    }

    /// Sets the most documents per request (default 10,000).
    pub fn max_batch_docs(mut self, n: usize) -> Self {
        self.max_batch_docs = n.max(1);
        self
    }

    /// Sets the time allowed for one request (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Appends rejected documents, with the reason, to this NDJSON file.
    pub fn dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.dead_letter = Some(path.into());
        self
    }

    /// Installs an index template for the index pattern at start (default off).
    pub fn setup(mut self, on: bool) -> Self {
        self.setup = on;
        self
    }

    /// The node base URLs (no trailing slash).
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The index template as given.
    pub fn index_template(&self) -> &str {
        &self.index.source
    }

    /// The authentication.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}

/// Splits a comma-separated node list; credentials found in a URL are moved out of it.
/// `user:pass@host` (a URL that did not parse) with the credentials masked: `***@host`.
fn mask_userinfo(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => raw.to_owned(),
    }
}

fn parse_nodes(var: &str, urls: &str) -> Result<(Vec<String>, Auth), ConfigError> {
    let mut nodes = Vec::new();
    let mut auth = Auth::None;
    for raw in urls.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| {
            // Never echo a password embedded in the URL.
            let shown = match reqwest::Url::parse(raw) {
                Ok(mut u) if u.password().is_some() => {
                    let _ = u.set_password(Some("***"));
                    u.to_string()
                }
                _ => mask_userinfo(raw),
            };
            ConfigError::invalid(var, &shown, "a node URL", why)
        };
        let mut url = reqwest::Url::parse(raw).map_err(|_| {
            bad("comma-separated http:// or https:// URLs such as https://es.internal:9200")
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(
                "comma-separated http:// or https:// URLs such as https://es.internal:9200",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "a URL without ?query or #fragment (a path prefix is fine)",
            ));
        }
        if !url.username().is_empty() {
            auth = Auth::Basic {
                username: decode_pct(url.username()),
                password: Secret::new(decode_pct(url.password().unwrap_or(""))),
            };
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        nodes.push(url.as_str().trim_end_matches('/').to_owned());
    }
    if nodes.is_empty() {
        return Err(ConfigError::invalid(
            var,
            urls,
            "a node URL",
            "http:// or https:// URLs",
        ));
    }
    Ok((nodes, auth))
}

fn decode_pct(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes an Elastic Cloud ID, `name:base64(host[:port]$es_uuid[:port]$kibana_uuid)`, into
/// the Elasticsearch URL `https://es_uuid.host[:port]`, as Elastic's own clients do. The
/// port defaults to 443; a port on the `es_uuid` part wins over one on the host.
pub fn decode_cloud_id(cloud_id: &str) -> Result<String, String> {
    const FORM: &str = "'name:base64(host$es_uuid$kibana_uuid)', as shown on the deployment's page in Elastic Cloud";
    let encoded = match cloud_id.rsplit_once(':') {
        Some((_, e)) => e,
        None => cloud_id,
    };
    let decoded = decode_base64_lenient(encoded).ok_or_else(|| FORM.to_owned())?;
    let decoded = String::from_utf8(decoded).map_err(|_| FORM.to_owned())?;
    let mut parts = decoded.trim_end().split('$');
    let host = parts.next().unwrap_or("");
    let es = parts.next().unwrap_or("");
    let (host, mut port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p),
        _ => (host, "443"),
    };
    let es = match es.rsplit_once(':') {
        Some((u, p)) if p.parse::<u16>().is_ok() => {
            port = p;
            u
        }
        _ => es,
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    };
    if !valid(host) || !valid(es) {
        return Err(FORM.to_owned());
    }
    Ok(if port == "443" {
        format!("https://{es}.{host}")
    } else {
        format!("https://{es}.{host}:{port}")
    })
}

/// Base64, standard or URL-safe alphabet, padded or not.
fn decode_base64_lenient(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

/// Turns an API key given as `id:api_key` or as its base64 form into the base64 form that
/// goes after `ApiKey ` in the `Authorization` header.
pub(crate) fn encode_api_key(key: &str) -> Result<Secret, ConfigError> {
    let key = key.trim();
    let key = key.strip_prefix("ApiKey ").unwrap_or(key).trim();
    if let Some((id, secret)) = key.split_once(':') {
        if !id.is_empty() && !secret.is_empty() {
            return Ok(Secret::new(
                base64::engine::general_purpose::STANDARD.encode(key),
            ));
        }
    } else if let Some(d) = decode_base64_lenient(key) {
        if std::str::from_utf8(&d).is_ok_and(|s| {
            s.split_once(':')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        }) {
            return Ok(Secret::new(key));
        }
    }
    Err(ConfigError::invalid(
        "HIVELOG_ES_API_KEY",
        "<hidden>",
        "an API key",
        "'id:api_key' or the base64 'encoded' form Elasticsearch returns",
    ))
}

fn read_ca_cert(var: &str, path: &str) -> Result<CaCert, ConfigError> {
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(
            var,
            path,
            "a readable file",
            &format!("a PEM CA certificate file ({e})"),
        )
    })?;
    if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |c| c.is_empty()) {
        return Err(ConfigError::invalid(
            var,
            path,
            "a PEM certificate file",
            "a file with one or more '-----BEGIN CERTIFICATE-----' blocks",
        ));
    }
    Ok(CaCert {
        path: PathBuf::from(path),
        pem,
    })
}

/// One piece of an index template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Service,
    Date(Vec<DatePart>),
}

/// One piece of a `{date:…}` format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DatePart {
    Year,
    Month,
    Day,
    Hour,
    DayOfYear,
    Char(char),
}

/// A parsed, validated `HIVELOG_ES_INDEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexTemplate {
    pub(crate) source: String,
    pub(crate) segments: Vec<Segment>,
}

const INDEX_FORM: &str = "an index name with optional {service} and {date:%Y.%m.%d} placeholders: lowercase, without \\ / * ? \" < > | , # : or space, not starting with - _ +, at most 255 bytes (logs-{service})";

impl IndexTemplate {
    /// Parses and validates `template` (the error names `var`).
    pub(crate) fn parse(var: &str, template: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::invalid(var, template, "a valid index name", INDEX_FORM);
        let mut segments = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or_else(bad)?;
                    let inner = &rest[1..end];
                    segments.push(match inner {
                        "service" => Segment::Service,
                        "date" => Segment::Date(parse_date_format("%Y.%m.%d").ok_or_else(bad)?),
                        _ => match inner.strip_prefix("date:") {
                            Some(f) => Segment::Date(parse_date_format(f).ok_or_else(bad)?),
                            None => return Err(bad()),
                        },
                    });
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    segments.push(Segment::Literal(rest[..i].to_owned()));
                    rest = &rest[i..];
                }
                None => {
                    segments.push(Segment::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        if segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(l) if l.contains('}')))
        {
            return Err(bad());
        }
        let t = IndexTemplate {
            source: template.to_owned(),
            segments,
        };
        // Validate with the longest values the placeholders can take, and a sample service
        // name (service names are made index-safe when the sink starts).
        let sample = t.render("s", 253_402_300_799);
        validate_index_name(&sample).map_err(|_| bad())?;
        let sample = t.render("", 0);
        if sample.is_empty() {
            return Err(bad());
        }
        Ok(t)
    }

    /// Whether the name depends on the event's time, and at what granularity (seconds).
    pub(crate) fn time_granularity(&self) -> Option<u64> {
        let mut g = None;
        for s in &self.segments {
            if let Segment::Date(parts) = s {
                let hourly = parts.contains(&DatePart::Hour);
                let this = if hourly { 3600 } else { 86_400 };
                g = Some(g.map_or(this, |x: u64| x.min(this)));
            }
        }
        g
    }

    /// The index name for `service` at `secs` since the epoch (UTC).
    pub(crate) fn render(&self, service: &str, secs: u64) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Service => out.push_str(service),
                Segment::Date(parts) => write_date(&mut out, parts, secs),
            }
        }
        out
    }

    /// A wildcard pattern matching every name the template can produce for `service`.
    pub(crate) fn pattern(&self, service: &str) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Service => out.push_str(service),
                Segment::Date(_) => {
                    if !out.ends_with('*') {
                        out.push('*')
                    }
                }
            }
        }
        out
    }
}

fn parse_date_format(f: &str) -> Option<Vec<DatePart>> {
    let mut parts = Vec::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        parts.push(if c == '%' {
            match chars.next()? {
                'Y' => DatePart::Year,
                'm' => DatePart::Month,
                'd' => DatePart::Day,
                'H' => DatePart::Hour,
                'j' => DatePart::DayOfYear,
                '%' => DatePart::Char('%'),
                _ => return None,
            }
        } else {
            DatePart::Char(c)
        });
    }
    (!parts.is_empty()).then_some(parts)
}

fn write_date(out: &mut String, parts: &[DatePart], secs: u64) {
    use std::fmt::Write as _;
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    for p in parts {
        let _ = match p {
            DatePart::Year => write!(out, "{:04}", y.clamp(0, 9999)),
            DatePart::Month => write!(out, "{m:02}"),
            DatePart::Day => write!(out, "{d:02}"),
            DatePart::Hour => write!(out, "{:02}", secs % 86_400 / 3600),
            DatePart::DayOfYear => {
                let jan1 = days_from_civil(y, 1, 1);
                write!(out, "{:03}", days - jan1 + 1)
            }
            DatePart::Char(c) => {
                out.push(*c);
                Ok(())
            }
        };
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Checks a concrete index name against Elasticsearch's rules; `Err` says which one it breaks.
pub fn validate_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name == "." || name == ".." {
        return Err("must not be '.' or '..'");
    }
    if name.len() > MAX_INDEX_NAME_BYTES {
        return Err("must be at most 255 bytes");
    }
    if name.starts_with(['-', '_', '+']) {
        return Err("must not start with '-', '_' or '+'");
    }
    if name.contains(FORBIDDEN_INDEX_CHARS) || name.contains(char::is_control) {
        return Err("must not contain \\ / * ? \" < > | , # : or space");
    }
    if name.to_lowercase() != name {
        return Err("must be lowercase");
    }
    Ok(())
}

/// Makes a service name safe inside an index name: lowercase, forbidden characters replaced by
/// `-`, no leading `-_+.`; `unknown` if nothing is left. Elasticsearch would reject every
/// document of a service called `MyApp`, so the name is adapted rather than refused.
pub fn index_safe_service(service: &str) -> String {
    let s: String = service
        .to_lowercase()
        .chars()
        .map(|c| {
            if FORBIDDEN_INDEX_CHARS.contains(&c) || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    let s = s.trim_start_matches(['-', '_', '+', '.']);
    let mut s = if s.is_empty() {
        "unknown".to_owned()
    } else {
        s.to_owned()
    };
    s.truncate(hivelog_core::record::floor_char_boundary(&s, 200));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_that_does_not_parse_are_masked_in_the_error() {
        for url in [
            "elastic:hunter2@es.internal:9200",
            "http://elastic:hunter2@[bad/x",
        ] {
            let e = EsConfig::new(url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("***@"), "{e}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn the_sink_is_off_without_url_or_cloud_id() {
        assert!(EsConfig::from_env(&env(&[("HIVELOG_ES_INDEX", "x")]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn cloud_ids_decode_as_elastics_clients_do() {
        use base64::engine::general_purpose::STANDARD;
        let id = format!(
            "my-deploy:{}",
            STANDARD.encode("us-east-1.aws.found.io$abc123$kib456")
        );
        assert_eq!(
            decode_cloud_id(&id).unwrap(),
            "https://abc123.us-east-1.aws.found.io"
        );
        let id = format!("x:{}", STANDARD.encode("eu.cloud.es.io:9243$es1$kb"));
        assert_eq!(
            decode_cloud_id(&id).unwrap(),
            "https://es1.eu.cloud.es.io:9243"
        );
        let id = format!("x:{}", STANDARD.encode("eu.cloud.es.io$es1:9244$kb:9245"));
        assert_eq!(
            decode_cloud_id(&id).unwrap(),
            "https://es1.eu.cloud.es.io:9244"
        );
        // Unpadded base64 and a name containing ':' are accepted.
        let enc = STANDARD_NO_PAD_ENC("host.io$uuid$k");
        assert_eq!(
            decode_cloud_id(&format!("a:b:{enc}")).unwrap(),
            "https://uuid.host.io"
        );
        let err = EsConfig::from_env(&env(&[("HIVELOG_ES_CLOUD_ID", "nonsense:!!")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("HIVELOG_ES_CLOUD_ID: 'nonsense:!!' is not an Elastic Cloud ID"),
            "{err}"
        );
    }

    #[allow(non_snake_case)]
    fn STANDARD_NO_PAD_ENC(s: &str) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(s)
    }

    #[test]
    fn auth_headers_are_what_elasticsearch_expects() {
        let c = EsConfig::from_env(&env(&[
            ("HIVELOG_ES_URL", "http://127.0.0.1:9200"),
            ("HIVELOG_ES_USERNAME", "elastic"),
            ("HIVELOG_ES_PASSWORD", "changeme"),
        ]))
        .unwrap()
        .unwrap();
        // base64("elastic:changeme")
        assert_eq!(
            c.auth.header_value().unwrap(),
            "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
        );
        assert!(!format!("{c:?}").contains("changeme"));

        let c = EsConfig::from_env(&env(&[
            ("HIVELOG_ES_URL", "http://127.0.0.1:9200"),
            (
                "HIVELOG_ES_API_KEY",
                "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw",
            ),
        ]))
        .unwrap()
        .unwrap();
        // The example from Elasticsearch's create-API-key documentation.
        assert_eq!(
            c.auth.header_value().unwrap(),
            "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        );
        let c2 = EsConfig::from_env(&env(&[
            ("HIVELOG_ES_URL", "http://127.0.0.1:9200"),
            (
                "HIVELOG_ES_API_KEY",
                "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.auth.header_value(), c2.auth.header_value());
        assert!(!format!("{c2:?}").contains("VnVh"));
        let err = EsConfig::from_env(&env(&[
            ("HIVELOG_ES_URL", "http://h"),
            ("HIVELOG_ES_API_KEY", "nokey"),
        ]))
        .unwrap_err();
        assert!(!err.to_string().contains("nokey"), "{err}");

        let c = EsConfig::new("https://bob:p%40ss@es.example:9200/prefix/").unwrap();
        assert_eq!(c.nodes, vec!["https://es.example:9200/prefix".to_owned()]);
        assert_eq!(
            c.auth.header_value().unwrap(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("bob:p@ss")
            )
        );
    }

    #[test]
    fn nodes_are_comma_separated_and_keep_their_path_prefix() {
        let c = EsConfig::new(" http://a:9200 , https://b/api/v1/_elastic/ ").unwrap();
        assert_eq!(c.nodes, vec!["http://a:9200", "https://b/api/v1/_elastic"]);
        for bad in ["", "ftp://x", "es:9200", "http://x?y=1"] {
            let err = EsConfig::from_env(&env(&[("HIVELOG_ES_URL", bad)]));
            assert!(matches!(err, Err(_) | Ok(None)), "{bad}");
        }
        let err = EsConfig::new("ftp://x").unwrap_err().to_string();
        assert!(
            err.starts_with("HIVELOG_ES_URL: 'ftp://x' is not a node URL"),
            "{err}"
        );
        let err = EsConfig::new("ftp://u:secret@x").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn index_names_are_validated_at_init() {
        for bad in [
            "Logs",
            "logs x",
            "logs/x",
            "logs*",
            "logs?",
            "lo\"gs",
            "a<b",
            "a>b",
            "a|b",
            "a,b",
            "a#b",
            "-logs",
            "_logs",
            "+logs",
            ".",
            "..",
            "a:b",
            "logs-{date:%Q}",
            "logs-{nope}",
            "logs-{service",
            "logs}",
            "{date:%Y-%M}",
        ] {
            let err = EsConfig::from_env(&env(&[
                ("HIVELOG_ES_URL", "http://h"),
                ("HIVELOG_ES_INDEX", bad),
            ]))
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with(&format!(
                    "HIVELOG_ES_INDEX: '{bad}' is not a valid index name; expected"
                )),
                "{bad}: {err}"
            );
        }
        let long = "a".repeat(256);
        assert!(EsConfig::new("http://h").unwrap().index(&long).is_err());
        assert!(EsConfig::new("http://h")
            .unwrap()
            .index(&"a".repeat(255))
            .is_ok());
        let t = IndexTemplate::parse("v", "logs-{service}-{date:%Y.%m.%d}").unwrap();
        // 2025-03-31T15:45:10Z
        assert_eq!(t.render("web", 1_743_435_910), "logs-web-2025.03.31");
        assert_eq!(t.pattern("web"), "logs-web-*");
        let t = IndexTemplate::parse("v", "l-{date:%Y%j-%H}").unwrap();
        assert_eq!(t.render("web", 1_743_435_910), "l-2025090-15");
        assert_eq!(t.time_granularity(), Some(3600));
        assert_eq!(
            IndexTemplate::parse("v", "l-{date}").unwrap().render("", 0),
            "l-1970.01.01"
        );
    }

    #[test]
    fn service_names_are_made_index_safe() {
        assert_eq!(index_safe_service("MyApp"), "myapp");
        assert_eq!(index_safe_service("_my app/x"), "my-app-x");
        assert_eq!(index_safe_service("--"), "unknown");
    }

    #[test]
    fn other_variables_parse_and_bad_values_name_the_variable() {
        let c = EsConfig::from_env(&env(&[
            ("HIVELOG_ES_URL", "http://h"),
            ("HIVELOG_ES_ACTION", "index"),
            ("HIVELOG_ES_COMPRESS", "gzip"),
            ("HIVELOG_ES_MAX_BATCH_BYTES", "1MiB"),
            ("HIVELOG_ES_TIMEOUT", "2s"),
            ("HIVELOG_ES_DEAD_LETTER", "/tmp/dl.ndjson"),
            ("HIVELOG_ES_SETUP", "true"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.action, Action::Index);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.max_batch_bytes, 1_048_576);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert!(c.setup);
        let err = EsConfig::from_env(&env(&[
            ("HIVELOG_ES_URL", "http://h"),
            ("HIVELOG_ES_ACTION", "upsert"),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "HIVELOG_ES_ACTION: 'upsert' is not a bulk action; expected one of create, index"
        );
        let err = EsConfig::from_env(&env(&[
            ("HIVELOG_ES_URL", "http://h"),
            ("HIVELOG_ES_CA_CERT", "/nonexistent.pem"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("HIVELOG_ES_CA_CERT: '/nonexistent.pem' is not a readable file"),
            "{err}"
        );
        for (k, v) in [
            ("HIVELOG_ES_MAX_BATCH_BYTES", "lots"),
            ("HIVELOG_ES_TIMEOUT", "0"),
            ("HIVELOG_ES_SETUP", "maybe"),
            ("HIVELOG_ES_DEAD_LETTER", "/nonexistent-dir/x.ndjson"),
        ] {
            let err = EsConfig::from_env(&env(&[("HIVELOG_ES_URL", "http://h"), (k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("{k}: '{v}' is not")), "{err}");
        }
    }
}

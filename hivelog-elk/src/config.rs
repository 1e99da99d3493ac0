//! The sink's options: code defaults, `HIVELOG_ES_*` overrides, and their validation.
//!
//! Everything that can be checked before the first event is checked here, at `init`, so that
//! a typo fails `try_init` with a message naming the variable instead of turning into a stream
//! of rejected documents at run time: node URLs, the Cloud ID, the index template (against
//! Elasticsearch's index-name rules), the API key's form and the CA certificate file.

use std::path::PathBuf;
use std::time::Duration;

use hivelog_core::env::parse_bytes;
use hivelog_core::{ConfigError, Env, Secret};

use crate::auth::{encode_api_key, read_ca_cert, CaCert};
use crate::index::IndexTemplate;
use crate::nodes::parse_nodes;

pub use crate::auth::Auth;
pub use crate::index::{index_safe_service, validate_index_name};
pub use crate::limits::{FORBIDDEN_INDEX_CHARS, MAX_INDEX_NAME_BYTES};
pub use crate::nodes::decode_cloud_id;

/// The variable that sets the index template; its errors name it, from code too.
const INDEX_VAR: &str = "HIVELOG_ES_INDEX";

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

impl EsConfig {
    /// A configuration for one or more comma-separated node URLs (`http://` or `https://`,
    /// optionally with a path prefix such as `/api/v1/_elastic`), with every other option at
    /// its default. Credentials in the URL (`https://user:pass@host`) become basic auth.
    pub fn new(urls: &str) -> Result<Self, ConfigError> {
        let (nodes, auth) = parse_nodes("HIVELOG_ES_URL", urls)?;
        Ok(EsConfig {
            nodes,
            index: IndexTemplate::parse(INDEX_VAR, DEFAULT_INDEX)?,
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
        self.apply_nodes(env)?;
        self.apply_request(env)?;
        self.apply_credentials(env)?;
        self.apply_limits(env)?;
        self.apply_extras(env)?;
        Ok(self)
    }

    /// `HIVELOG_ES_URL` or `HIVELOG_ES_CLOUD_ID`: where documents go.
    fn apply_nodes(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(url) = env.get("HIVELOG_ES_URL") {
            let (nodes, auth) = parse_nodes("HIVELOG_ES_URL", url)?;
            self.nodes = nodes;
            if auth != Auth::None {
                self.auth = auth;
            }
        } else if let Some(id) = env.get("HIVELOG_ES_CLOUD_ID") {
            self.nodes = EsConfig::from_cloud_id(id)?.nodes;
        }
        Ok(())
    }

    /// `HIVELOG_ES_INDEX`, `_ACTION`, `_COMPRESS`: what each request says.
    fn apply_request(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(t) = env.get("HIVELOG_ES_INDEX") {
            self.index = IndexTemplate::parse(INDEX_VAR, t)?;
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
        Ok(())
    }

    /// `HIVELOG_ES_USERNAME`, `_PASSWORD`, `_API_KEY`, `_CA_CERT`: who we are, whom we trust.
    fn apply_credentials(&mut self, env: &Env) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// `HIVELOG_ES_MAX_BATCH_BYTES`, `_TIMEOUT`: how large and how long one request may be.
    fn apply_limits(&mut self, env: &Env) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// `HIVELOG_ES_DEAD_LETTER`, `_SETUP`: what happens beside delivery.
    fn apply_extras(&mut self, env: &Env) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// Sets the index template (`HIVELOG_ES_INDEX`, default [`DEFAULT_INDEX`]): `{service}` and
    /// `{date:FORMAT}` (UTC, from each event's own time; `%Y %m %d %H %j %%`). Validated as the
    /// variable is, against Elasticsearch's index-name rules; the error names the variable.
    ///
    /// ```
    /// use hivelog_elk::EsConfig;
    /// let config = EsConfig::new("http://127.0.0.1:9200")?.index("logs-{service}-{date}")?;
    /// assert_eq!(config.index_template(), "logs-{service}-{date}");
    /// let err = EsConfig::new("http://127.0.0.1:9200")?.index("Logs").unwrap_err();
    /// assert!(err.to_string().starts_with("HIVELOG_ES_INDEX: 'Logs' is not a valid index name"));
    /// # Ok::<(), hivelog_core::ConfigError>(())
    /// ```
    pub fn index(mut self, template: &str) -> Result<Self, ConfigError> {
        self.index = IndexTemplate::parse(INDEX_VAR, template)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

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
    fn a_bad_cloud_id_names_the_variable() {
        let err = EsConfig::from_env(&env(&[("HIVELOG_ES_CLOUD_ID", "nonsense:!!")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("HIVELOG_ES_CLOUD_ID: 'nonsense:!!' is not an Elastic Cloud ID"),
            "{err}"
        );
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
    }

    #[test]
    fn the_index_setter_validates_as_the_variable_does() {
        for bad in ["Logs", "logs-{nope}", "a:b", "{date:%Y-%M}"] {
            let from_env = EsConfig::from_env(&env(&[
                ("HIVELOG_ES_URL", "http://h"),
                ("HIVELOG_ES_INDEX", bad),
            ]))
            .unwrap_err()
            .to_string();
            let from_code = EsConfig::new("http://h")
                .unwrap()
                .index(bad)
                .unwrap_err()
                .to_string();
            assert_eq!(from_code, from_env);
        }
        let c = EsConfig::new("http://h")
            .unwrap()
            .index("l-{date}")
            .unwrap();
        assert_eq!(c.index_template(), "l-{date}");
    }
}

//! Credentials and trust: the `Authorization` header (basic or API key) and the CA
//! certificates read from `HIVELOG_ES_CA_CERT`.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use hivelog_core::{ConfigError, Secret};

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

pub(crate) fn read_ca_cert(var: &str, path: &str) -> Result<CaCert, ConfigError> {
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

/// Base64, standard or URL-safe alphabet, padded or not.
pub(crate) fn decode_base64_lenient(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

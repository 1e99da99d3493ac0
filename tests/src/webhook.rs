//! A fourth destination, written the way a team would add one of its own: an HTTP endpoint
//! that takes the JSON lines as NDJSON (`POST`, one request per batch).
//!
//! It exists to prove the plug-in contract: this file is the whole destination (variables,
//! configuration, sink; the probe comes with `SinkConfig`), and it reaches `init`, the warnings and `hivelog check` with
//! one registration line, `hivelog::register_destination(&hivelog_tests::webhook::DESTINATION)`,
//! without a change to the facade or the CLI.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | delivered |
//! | 401, 403 | failed (`credentials_refused`): retrying cannot help |
//! | 429 | retry (`throttled`) |
//! | 5xx, 408 | retry (`unavailable`) |
//! | other 4xx | each record rejected with the answer's status |
//! | connection refused, reset | retry (`unreachable`); no answer in 10 s: retry (`timed_out`) |

use std::sync::Arc;
use std::time::Duration;

use hivelog_core::destination::{SinkConfig, SinkDestination};
use hivelog_core::{
    BatchLimits, ConfigError, Env, FailureKind, Format, Outcomes, Record, Secret, Sink, Var,
};

/// Longest time one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's variables.
pub const VARS: &[Var] = &[
    Var::new(
        "HIVELOG_WEBHOOK_URL",
        "off",
        "http(s) URL the NDJSON batches are POSTed to; switches the sink on",
    ),
    Var::new(
        "HIVELOG_WEBHOOK_LEVEL",
        "(HIVELOG_LEVEL)",
        "filter for this destination only",
    ),
    Var::new(
        "HIVELOG_WEBHOOK_TOKEN",
        "none",
        "bearer token sent in Authorization",
    )
    .secret(),
];

/// The value to register: `hivelog::register_destination(&DESTINATION)`.
pub static DESTINATION: SinkDestination<WebhookConfig> =
    SinkDestination::new("webhook", VARS, &["HIVELOG_WEBHOOK_URL"]);

/// The webhook's validated configuration.
pub struct WebhookConfig {
    url: String,
    token: Option<Secret>,
}

impl WebhookConfig {
    /// POSTs to `url` (checked as `HIVELOG_WEBHOOK_URL` is), without a token.
    ///
    /// ```
    /// let config = hivelog_tests::webhook::WebhookConfig::new("http://127.0.0.1:9/logs")?;
    /// # Ok::<(), hivelog_core::ConfigError>(())
    /// ```
    pub fn new(url: &str) -> Result<WebhookConfig, ConfigError> {
        Ok(WebhookConfig {
            url: checked_url(url)?,
            token: None,
        })
    }
}

/// `url` when it is an http(s) URL; the error names `HIVELOG_WEBHOOK_URL` otherwise.
fn checked_url(url: &str) -> Result<String, ConfigError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::invalid(
            "HIVELOG_WEBHOOK_URL",
            url,
            "a webhook URL",
            "http://host:port/path or https://…",
        ));
    }
    Ok(url.to_owned())
}

impl SinkConfig for WebhookConfig {
    type Sink = WebhookSink;

    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.get("HIVELOG_WEBHOOK_URL") else {
            return Ok(None);
        };
        Ok(Some(WebhookConfig::new(url)?.apply_env(env)?))
    }

    /// Each variable that is set replaces its setting: a URL made in code keeps the token
    /// from the environment, and the other way round.
    fn apply_env(mut self, env: &Env) -> Result<Self, ConfigError> {
        if let Some(url) = env.get("HIVELOG_WEBHOOK_URL") {
            self.url = checked_url(url)?;
        }
        if let Some(token) = env.secret("HIVELOG_WEBHOOK_TOKEN") {
            self.token = Some(token);
        }
        Ok(self)
    }

    fn target(&self) -> String {
        self.url.clone()
    }

    fn into_sink(self, format: Arc<Format>) -> WebhookSink {
        WebhookSink::new(self, format)
    }
}

/// POSTs each batch as NDJSON.
pub struct WebhookSink {
    config: WebhookConfig,
    format: Arc<Format>,
    client: reqwest::Client,
    body: Vec<u8>,
}

impl WebhookSink {
    fn new(config: WebhookConfig, format: Arc<Format>) -> WebhookSink {
        WebhookSink {
            config,
            format,
            client: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
            body: Vec::new(),
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: 1000,
            max_bytes: 1 << 20,
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        self.body.clear();
        for r in batch {
            self.format.write_json(r, &mut self.body);
            self.body.push(b'\n');
        }
        let mut req = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/x-ndjson")
            .body(self.body.clone());
        if let Some(t) = &self.config.token {
            req = req.bearer_auth(t.expose());
        }
        let n = batch.len();
        let status = match req.send().await {
            Ok(resp) => resp.status().as_u16(),
            Err(e) if e.is_timeout() => {
                return Outcomes::retry_all(n, FailureKind::TimedOut, e.to_string())
            }
            Err(e) => return Outcomes::retry_all(n, FailureKind::Unreachable, e.to_string()),
        };
        let said = format!("{} answered {status}", self.config.url);
        let mut out = Outcomes::delivered(n);
        out.add_bytes_sent(self.body.len() as u64);
        match status {
            200..=299 => out,
            401 | 403 => Outcomes::fail_all(n, FailureKind::Credentials, said),
            429 => Outcomes::retry_all(n, FailureKind::Throttled, said),
            408 | 500..=599 => Outcomes::retry_all(n, FailureKind::Unavailable, said),
            _ => {
                (0..n).for_each(|i| out.reject(i, said.clone()));
                out
            }
        }
    }
}

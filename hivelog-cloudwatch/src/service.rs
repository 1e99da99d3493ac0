//! The CloudWatch Logs calls: client setup from the AWS chain, idempotent creation of the
//! group and streams, retention, and PutLogEvents.
//!
//! - The client is built on the sink's thread (`aws-config` may read files and ask IMDS for a
//!   region or credentials), never in `init()`.
//! - The SDK's retries are off; [`crate::retry`] says why.
//! - A stream is created the first time it is used (`CreateLogStream`; "already exists" is
//!   success) and remembered. If the group is missing, it is created then, and the retention
//!   applied. Creating the stream first means a role with only `logs:CreateLogStream` and
//!   `logs:PutLogEvents` (the usual setup when the group comes from infrastructure code) works.
//! - When a later put says `ResourceNotFoundException` (someone deleted the stream or group),
//!   the stream (and group) is recreated at once and the request's records are handed back for
//!   a retry, so the pipeline resends them after its first, short backoff.
//! - Sequence tokens are obsolete: puts to one stream may run in parallel.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::config::{Credentials, Region};
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::types::{InputLogEvent, RejectedLogEventsInfo};
use aws_sdk_cloudwatchlogs::Client;

use crate::config::CloudWatchConfig;
use crate::request_builder::Put;
use crate::retry::{classify, failure_kind, Disposition};
use hivelog_core::FailureKind;

/// The header marking a PutLogEvents request that holds embedded-metric-format lines, as the
/// CloudWatch agent sends it (`HIVELOG_METRICS=emf`).
pub const EMF_HEADER: &str = "x-amzn-logs-format";
/// [`EMF_HEADER`]'s value.
pub const EMF_FORMAT: &str = "json/emf";

/// Longest wait for a TCP (and TLS) connection to CloudWatch.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one call's answer; a 1 MiB put normally takes well under a second.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed call: what to do about it and the message for diagnostics.
#[derive(Debug, Clone)]
pub(crate) struct CallError {
    pub disposition: Disposition,
    pub kind: FailureKind,
    pub message: String,
}

/// A create call's result: "already exists" is success (creation is idempotent).
fn created<T, E>(
    what: &str,
    res: Result<
        T,
        aws_sdk_cloudwatchlogs::error::SdkError<
            E,
            aws_sdk_cloudwatchlogs::config::http::HttpResponse,
        >,
    >,
    already_exists: impl Fn(&E) -> bool,
) -> Result<(), CallError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match res {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(&already_exists) => Ok(()),
        Err(e) => Err(CallError::from_sdk(what, e)),
    }
}

impl CallError {
    fn from_sdk<E>(
        what: &str,
        err: aws_sdk_cloudwatchlogs::error::SdkError<
            E,
            aws_sdk_cloudwatchlogs::config::http::HttpResponse,
        >,
    ) -> Self
    where
        E: aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        CallError {
            disposition: classify(&err),
            kind: failure_kind(&err),
            message: describe(what, &err),
        }
    }
}

/// `CreateLogStream: ThrottlingException: Rate exceeded`, or for errors without an AWS error
/// code (network, timeout, unreadable answer) the error and its sources. Never the raw
/// response: its headers and body are the server's to choose, and end up in diagnostics.
fn describe<E>(
    what: &str,
    err: &aws_sdk_cloudwatchlogs::error::SdkError<
        E,
        aws_sdk_cloudwatchlogs::config::http::HttpResponse,
    >,
) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(code) = err.code() {
        return match err.message() {
            Some(m) => format!("{what}: {code}: {m}"),
            None => format!("{what}: {code}"),
        };
    }
    let mut out = format!("{what}: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The result of one request: the records it carried and what happened.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// Batch positions of the request's events, in request order.
    pub indices: Vec<usize>,
    /// The request's size as CloudWatch counts it.
    pub bytes: usize,
    /// Accepted (possibly with some events refused), or failed.
    pub result: Result<Option<RejectedLogEventsInfo>, CallError>,
}

/// The client and what has been created so far; shared by the concurrent puts.
#[derive(Debug)]
pub(crate) struct Service {
    client: Client,
    group: String,
    create: bool,
    retention: Option<u32>,
    retention_done: AtomicBool,
    ready: Mutex<HashSet<Arc<str>>>,
}

impl Service {
    /// Builds the client from the AWS chain and the config's overrides.
    pub(crate) async fn connect(config: &CloudWatchConfig) -> Service {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(CALL_TIMEOUT)
                    .build(),
            );
        if let Some(region) = config.region_override() {
            loader = loader.region(Region::new(region.to_owned()));
        }
        if let Some(url) = config.endpoint() {
            loader = loader.endpoint_url(url);
        }
        if let Some((key, secret, token)) = config.credentials() {
            loader = loader.credentials_provider(Credentials::new(
                key,
                secret.expose(),
                token.map(|t| t.expose().to_owned()),
                None,
                "hivelog",
            ));
        }
        let sdk = loader.load().await;
        Service {
            client: Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
                    .interceptor(crate::response_cap::CapResponseBody)
                    .build(),
            ),
            group: config.group_name().to_owned(),
            create: config.creates(),
            retention: config.retention(),
            retention_done: AtomicBool::new(config.retention().is_none()),
            ready: Mutex::new(HashSet::new()),
        }
    }

    /// Makes sure `stream` exists (creating it, and the group, when allowed).
    pub(crate) async fn ensure_stream(&self, stream: &Arc<str>) -> Result<(), CallError> {
        if !self.create || self.ready.lock().unwrap().contains(stream) {
            return Ok(());
        }
        match self.create_stream(stream).await {
            Err(e) if e.disposition == Disposition::NotFound => {
                self.create_group().await?;
                self.create_stream(stream).await?;
            }
            other => other?,
        }
        self.apply_retention().await;
        self.ready.lock().unwrap().insert(stream.clone());
        Ok(())
    }

    async fn create_stream(&self, stream: &str) -> Result<(), CallError> {
        let res = self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(stream)
            .send()
            .await;
        created("CreateLogStream", res, |e| {
            e.is_resource_already_exists_exception()
        })
    }

    async fn create_group(&self) -> Result<(), CallError> {
        let res = self
            .client
            .create_log_group()
            .log_group_name(&self.group)
            .send()
            .await;
        created("CreateLogGroup", res, |e| {
            e.is_resource_already_exists_exception()
        })
    }

    /// Sets the retention once. A refusal (no `logs:PutRetentionPolicy` permission) is reported
    /// on stderr and not retried: it must not hold up the logs themselves.
    async fn apply_retention(&self) {
        let Some(days) = self.retention else { return };
        if self.retention_done.load(Ordering::Relaxed) {
            return;
        }
        let res = self
            .client
            .put_retention_policy()
            .log_group_name(&self.group)
            .retention_in_days(days as i32)
            .send()
            .await;
        match res {
            Ok(_) => self.retention_done.store(true, Ordering::Relaxed),
            Err(e) => {
                let e = CallError::from_sdk("PutRetentionPolicy", e);
                if matches!(e.disposition, Disposition::Reject | Disposition::Fail)
                    && !self.retention_done.swap(true, Ordering::Relaxed)
                {
                    eprintln!(
                        "hivelog: cloudwatch: could not set retention of {} to {days} days: {}",
                        self.group, e.message
                    );
                }
            }
        }
    }

    /// Sends one request (marked as EMF when it holds such lines); on `ResourceNotFoundException` recreates the stream and asks for a retry.
    pub(crate) async fn deliver(&self, put: Put) -> Delivery {
        let indices: Vec<usize> = put.events.iter().map(|e| e.index).collect();
        let bytes = put.bytes;
        let emf = put.emf;
        let mut events = Vec::with_capacity(put.events.len());
        for e in put.events {
            events.push(
                InputLogEvent::builder()
                    .timestamp(e.timestamp)
                    .message(e.message)
                    .build()
                    .expect("timestamp and message are set"),
            );
        }
        let result = self.deliver_events(&put.stream, events, emf).await;
        Delivery {
            indices,
            bytes,
            result,
        }
    }

    async fn deliver_events(
        &self,
        stream: &Arc<str>,
        events: Vec<InputLogEvent>,
        emf: bool,
    ) -> Result<Option<RejectedLogEventsInfo>, CallError> {
        self.ensure_stream(stream).await?;
        match self.put(stream, events, emf).await {
            // The events were moved into the request; rather than keep a copy of every request
            // for this rare case, recreate the stream now and let the pipeline resend them.
            Err(mut e) if e.disposition == Disposition::NotFound && self.create => {
                self.ready.lock().unwrap().remove(stream);
                self.ensure_stream(stream).await?;
                e.disposition = Disposition::Retry;
                e.message = format!("{} (recreated log stream {stream}; resending)", e.message);
                Err(e)
            }
            Err(mut e) if e.disposition == Disposition::NotFound => {
                e.disposition = Disposition::Fail;
                e.message = format!(
                    "{} (log group {} or its stream {stream} does not exist and HIVELOG_CLOUDWATCH_CREATE=false)",
                    e.message, self.group
                );
                Err(e)
            }
            other => other,
        }
    }

    async fn put(
        &self,
        stream: &str,
        events: Vec<InputLogEvent>,
        emf: bool,
    ) -> Result<Option<RejectedLogEventsInfo>, CallError> {
        self.client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .customize()
            .mutate_request(move |req| {
                // What the CloudWatch agent sends with EMF lines (optional for CloudWatch today).
                if emf {
                    req.headers_mut().insert(EMF_HEADER, EMF_FORMAT);
                }
            })
            .send()
            .await
            .map(|out| out.rejected_log_events_info)
            .map_err(|e| CallError::from_sdk("PutLogEvents", e))
    }
}

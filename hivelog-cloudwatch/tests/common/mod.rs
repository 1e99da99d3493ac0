//! Helpers shared by the integration tests: records, sinks pointed at 127.0.0.1, a client to
//! read back what arrived.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_sdk_cloudwatchlogs::config::{Credentials, Region};
use aws_sdk_cloudwatchlogs::Client;
use hivelog_cloudwatch::{CloudWatchConfig, CloudWatchSink};
use hivelog_core::record::Str;
use hivelog_core::{Format, Outcome, Outcomes, Record, Secret};
use tracing_core::Level;

/// A current-thread runtime, like the pipeline's.
pub fn runtime() -> tokio::runtime::Runtime {
    // No test may reach the real instance metadata service.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A group name no other test (in this run or a previous one against the same moto) uses.
pub fn unique(prefix: &str) -> String {
    hivelog_tests::peers::unique(&format!("hivelog-test/{prefix}"))
}

/// Settings for `group` at `url` with dummy credentials and a fixed `{instance}`.
pub fn config(url: &str, group: &str) -> CloudWatchConfig {
    // No test may reach the real instance metadata service, whichever helper it starts with.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    CloudWatchConfig::new(group)
        .endpoint_url(url)
        .region("us-east-1")
        .static_credentials("test", Secret::new("test"))
        .instance("test-instance")
}

/// A sink with the default JSON format, service `svc`.
pub fn sink(config: CloudWatchConfig) -> CloudWatchSink {
    CloudWatchSink::new(config, format())
}

/// The format the sinks use.
pub fn format() -> Arc<Format> {
    Arc::new(Format::builder().service("svc").build())
}

/// A record of `target` with `message` at `time`.
pub fn record(target: &'static str, message: &str, time: SystemTime) -> Record {
    let mut r = Record::new(Level::INFO, Str::Static(target), 1 << 20, 0);
    r.message = Some(r.fields.push_str(message));
    r.time = time;
    r
}

/// A client for reading back, same endpoint and credentials.
pub async fn client(url: &str) -> Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    Client::new(&sdk)
}

/// Every event of a stream, oldest first, as (timestamp, message); pages until the token repeats.
pub async fn events(client: &Client, group: &str, stream: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("GetLogEvents");
        for e in page.events() {
            out.push((
                e.timestamp().unwrap_or_default(),
                e.message().unwrap_or_default().to_owned(),
            ));
        }
        let next = page.next_forward_token().map(str::to_owned);
        if next.is_none() || next == token {
            return out;
        }
        token = next;
    }
}

/// The stream names of a group.
pub async fn streams(client: &Client, group: &str) -> Vec<String> {
    let mut names: Vec<String> = client
        .describe_log_streams()
        .log_group_name(group)
        .send()
        .await
        .expect("DescribeLogStreams")
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// How many outcomes are of each kind: (delivered, deferred, retry, rejected, failed).
pub fn tally(o: &Outcomes) -> (usize, usize, usize, usize, usize) {
    let mut t = (0, 0, 0, 0, 0);
    for x in o.as_slice() {
        match x {
            Outcome::Delivered => t.0 += 1,
            Outcome::Deferred => t.1 += 1,
            Outcome::Retry => t.2 += 1,
            Outcome::Rejected(_) => t.3 += 1,
            Outcome::Failed => t.4 += 1,
        }
    }
    t
}

/// The message of a text-format record as sent.
pub fn text(message: &str) -> String {
    format!("INFO {message}")
}

/// Sends `batch`, then its deferred records again, as the pipeline does, until none is left;
/// returns the tally of the final outcomes (deferred is then always 0).
pub async fn send_until_done(
    sink: &mut CloudWatchSink,
    batch: &[Record],
) -> (usize, usize, usize, usize, usize) {
    use hivelog_core::Sink;
    let mut pending: Vec<Record> = batch.to_vec();
    let mut total = (0, 0, 0, 0, 0);
    loop {
        let o = sink.send(&pending).await;
        let t = tally(&o);
        total = (
            total.0 + t.0,
            0,
            total.2 + t.2,
            total.3 + t.3,
            total.4 + t.4,
        );
        let next: Vec<Record> = pending
            .iter()
            .zip(o.as_slice())
            .filter(|(_, o)| **o == Outcome::Deferred)
            .map(|(r, _)| r.clone())
            .collect();
        if next.is_empty() {
            return total;
        }
        pending = next;
    }
}

//! Helpers for the cross-cutting suites: one backend per sink (the Forward receiver, noida-db,
//! moto), a facade configured against it through a [`FaultProxy`], and a way to read back which
//! events the backend holds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_cloudwatchlogs::config::{Credentials, Region};
use hivelog::{Env, Guard, Stats};
use hivelog_core::Secret;
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::peers;
pub use hivelog_tests::peers::{http, unique};
use serde_json::Value;
use tracing::Dispatch;

/// Which sink a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fluent,
    Es,
    CloudWatch,
}

/// Pipeline settings that keep a fault test short: quick batches, quick retries, and a retry
/// window far longer than any test so nothing is given up on.
pub const FAST: &[(&str, &str)] = &[
    ("HIVELOG_OUTPUT", "none"),
    ("HIVELOG_SERVICE", "svc"),
    ("HIVELOG_FLUSH_INTERVAL", "50ms"),
    ("HIVELOG_RETRY_BASE", "10ms"),
    ("HIVELOG_RETRY_CAP", "200ms"),
    ("HIVELOG_RETRY_MAX_ELAPSED", "60s"),
    ("HIVELOG_SHUTDOWN_TIMEOUT", "5s"),
];

/// Per-sink timeouts shorter than a fault's hold, so a blackhole is detected in the test.
pub const FAST_FLUENT: &[(&str, &str)] = &[
    ("HIVELOG_FLUENT_ACK_TIMEOUT", "500ms"),
    ("HIVELOG_FLUENT_CONNECT_TIMEOUT", "500ms"),
    ("HIVELOG_FLUENT_WRITE_TIMEOUT", "500ms"),
];
pub const FAST_ES: &[(&str, &str)] = &[("HIVELOG_ES_TIMEOUT", "500ms")];

/// A destination and how to read it back.
pub enum Backend {
    Fluent(ForwardReceiver),
    Es { url: String, index: String },
    CloudWatch { url: String, group: String },
}

pub fn addr_of(url: &str) -> SocketAddr {
    let hostport = url
        .trim_start_matches("http://")
        .trim_start_matches("tcp://")
        .split('/')
        .next()
        .unwrap();
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

impl Backend {
    pub fn new(kind: Kind) -> Backend {
        match kind {
            Kind::Fluent => Backend::Fluent(ForwardReceiver::start(ReceiverConfig::default())),
            Kind::Es => Backend::Es {
                url: peers::es_url(),
                index: unique("hl-rel"),
            },
            Kind::CloudWatch => Backend::CloudWatch {
                url: peers::moto_url(),
                group: unique("hivelog-rel"),
            },
        }
    }

    /// The Forward receiver (fluent backends only).
    pub fn receiver(&mut self) -> &mut ForwardReceiver {
        match self {
            Backend::Fluent(r) => r,
            _ => panic!("not a fluent backend"),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Backend::Fluent(_) => Kind::Fluent,
            Backend::Es { .. } => Kind::Es,
            Backend::CloudWatch { .. } => Kind::CloudWatch,
        }
    }

    /// Where the real server listens.
    pub fn upstream(&self) -> SocketAddr {
        match self {
            Backend::Fluent(r) => r.addr(),
            Backend::Es { url, .. } | Backend::CloudWatch { url, .. } => addr_of(url),
        }
    }

    /// A facade sending to `addr` (the proxy, or the server itself), with [`FAST`] settings
    /// and `extra` variables over them.
    pub fn build(&self, addr: SocketAddr, extra: &[(&str, &str)]) -> (Dispatch, Guard) {
        self.builder(addr, extra)
            .try_build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn builder(&self, addr: SocketAddr, extra: &[(&str, &str)]) -> hivelog::Builder {
        let per_sink = match self {
            Backend::Fluent(_) => FAST_FLUENT,
            Backend::Es { .. } => FAST_ES,
            Backend::CloudWatch { .. } => &[],
        };
        let mut pairs: Vec<(String, String)> = FAST
            .iter()
            .chain(per_sink)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let b = hivelog::builder();
        let b = match self {
            Backend::Fluent(_) => {
                pairs.push(("HIVELOG_FLUENT_ADDR".into(), format!("tcp://{addr}")));
                b
            }
            Backend::Es { index, .. } => {
                pairs.push(("HIVELOG_ES_URL".into(), format!("http://{addr}")));
                pairs.push(("HIVELOG_ES_INDEX".into(), index.clone()));
                b
            }
            Backend::CloudWatch { group, .. } => {
                b.destination(cloudwatch_config(&format!("http://{addr}"), group))
            }
        };
        for (k, v) in extra {
            pairs.retain(|(k2, _)| k2 != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        b.env(Env::from_pairs(pairs))
    }

    /// Every event the destination holds whose `run` field is `run`: `seq` → how many copies.
    pub fn received(&self, run: &str) -> BTreeMap<u64, usize> {
        let mut out = BTreeMap::new();
        for v in self.records() {
            if v["run"] == run {
                *out.entry(v["seq"].as_u64().expect("seq")).or_insert(0) += 1;
            }
        }
        out
    }

    /// Every record the destination holds, as JSON.
    pub fn records(&self) -> Vec<Value> {
        match self {
            Backend::Fluent(r) => r.events().iter().map(|e| to_json(&e.record)).collect(),
            Backend::Es { url, index } => es_documents(url, index),
            Backend::CloudWatch { url, group } => cloudwatch_messages(url, group)
                .iter()
                .map(|m| serde_json::from_str(m).unwrap_or(Value::String(m.clone())))
                .collect(),
        }
    }
}

pub fn cloudwatch_config(url: &str, group: &str) -> hivelog_cloudwatch::CloudWatchConfig {
    hivelog_cloudwatch::CloudWatchConfig::new(group)
        .endpoint_url(url)
        .region("us-east-1")
        .static_credentials("test", Secret::new("test"))
        .instance("rel")
}

/// An msgpack value as JSON (for the Forward receiver's records).
pub fn to_json(v: &rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(*b),
        M::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        M::F32(f) => serde_json::json!(*f),
        M::F64(f) => serde_json::json!(*f),
        M::String(s) => Value::String(s.as_str().unwrap_or_default().to_owned()),
        M::Binary(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        M::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        M::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v)))
                .collect(),
        ),
        M::Ext(_, b) => Value::String(hex_of(b)),
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every document of `index` (its `_source`).
pub fn es_documents(url: &str, index: &str) -> Vec<Value> {
    http("POST", &format!("{url}/{index}/_refresh"), None);
    let (status, v) = http(
        "POST",
        &format!("{url}/{index}/_search"),
        Some(serde_json::json!({"size": 10000, "query": {"match_all": {}}})),
    );
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{v}");
    v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_source"].clone())
        .collect()
}

/// Every message in every stream of `group`.
pub fn cloudwatch_messages(url: &str, group: &str) -> Vec<String> {
    runtime().block_on(async {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await;
        let client = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        let Ok(streams) = client
            .describe_log_streams()
            .log_group_name(group)
            .send()
            .await
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in streams.log_streams() {
            let stream = s.log_stream_name().unwrap_or_default();
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
                out.extend(
                    page.events()
                        .iter()
                        .map(|e| e.message().unwrap_or_default().to_owned()),
                );
                let next = page.next_forward_token().map(str::to_owned);
                if next.is_none() || next == token {
                    break;
                }
                token = next;
            }
        }
        out
    })
}

/// The single sink's counters in a report.
pub fn only_sink(report: &hivelog::Report) -> Stats {
    assert_eq!(report.sinks.len(), 1, "{report:?}");
    report.sinks[0].clone()
}

/// Asserts the accounting identity, exactly, and that nothing is pending.
pub fn assert_balanced(s: &Stats, enqueued: u64) {
    assert!(s.is_balanced(), "{s:?}");
    assert_eq!(s.enqueued, enqueued, "{s:?}");
    assert_eq!(
        s.delivered + s.rejected + s.dropped() + s.failed + s.pending,
        enqueued,
        "{s:?}"
    );
}

/// Logs events `seqs` of `run` through `dispatch`; returns each call's duration.
pub fn log_events(
    dispatch: &Dispatch,
    run: &str,
    seqs: std::ops::Range<u64>,
    pad: usize,
) -> Vec<Duration> {
    let pad = "x".repeat(pad);
    let mut took = Vec::with_capacity((seqs.end - seqs.start) as usize);
    tracing::dispatcher::with_default(dispatch, || {
        for seq in seqs {
            let t = std::time::Instant::now();
            tracing::info!(run = %run, seq, pad = %pad, "reliability event");
            took.push(t.elapsed());
        }
    });
    took
}

/// The `q` quantile of some durations.
pub fn quantile(d: &[Duration], q: f64) -> Duration {
    let mut v = d.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

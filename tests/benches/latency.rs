//! The service's log call while each destination is faulted, in a release build: the cost of
//! one `info!` through the facade (`hivelog::builder()…try_build()`) for every sink and every
//! fault of the project's TCP fault proxy (pass, delay, blackhole, reset mid-stream, refuse).
//!
//! Two figures per case, in one run:
//! - criterion's mean per call, with the destination faulted for the whole measurement (the
//!   queue fills up and the budget's overflow rule takes over: that is part of the cost);
//! - the latency distribution (p50, p99, p99.9, max) of 10,000 calls paced at 10,000/s right
//!   after the fault starts, while the queue still has room and the sink thread is busy
//!   failing, timing out and retrying.
//!
//! The destinations are the in-repo servers (a Forward receiver that counts, an HTTP endpoint
//! answering valid `_bulk` and CloudWatch Logs responses): this measures the caller, not a
//! destination, so no external server is needed.
//!
//! `cargo bench -p hivelog-tests --bench latency` (`-- fluent/blackhole` for one case).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use hivelog::Env;
use hivelog_core::Secret;
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::http::{HttpServer, Request, Response};
use hivelog_tests::proxy::{FaultProxy, Mode};
use tracing::Dispatch;

const FAULTS: [(&str, Mode); 5] = [
    ("pass", Mode::Pass),
    ("delay300ms", Mode::Delay(Duration::from_millis(300))),
    ("blackhole", Mode::Blackhole),
    ("reset", Mode::ResetAfter(100)),
    ("refuse", Mode::Refuse),
];

/// One destination, running for the whole benchmark.
enum Server {
    Fluent(ForwardReceiver),
    Http(HttpServer),
}

impl Server {
    fn start(sink: &str) -> Server {
        match sink {
            "fluent" => Server::Fluent(ForwardReceiver::start(
                ReceiverConfig::default().count_only(),
            )),
            "elasticsearch" => Server::Http(HttpServer::start(bulk_answer)),
            _ => Server::Http(HttpServer::start(|_: &Request| {
                Response::new(200)
                    .header("content-type", "application/x-amz-json-1.1")
                    .body("{}")
            })),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Server::Fluent(r) => r.addr(),
            Server::Http(s) => s.addr(),
        }
    }
}

/// A valid `_bulk` answer: one `201` item per document.
fn bulk_answer(req: &Request) -> Response {
    let docs = req
        .decoded_body()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        / 2;
    let items = vec![r#"{"create":{"status":201}}"#; docs].join(",");
    Response::json(200, format!(r#"{{"errors":false,"items":[{items}]}}"#))
}

fn facade(sink: &str, proxy: &FaultProxy) -> (Dispatch, hivelog::Guard) {
    let url = match sink {
        "fluent" => proxy.tcp_url(),
        _ => proxy.http_url(),
    };
    let mut pairs = vec![
        ("HIVELOG_OUTPUT", "none".to_owned()),
        ("HIVELOG_SERVICE", "bench".to_owned()),
        ("HIVELOG_EXTRA", "env=bench,region=eu-west-1".to_owned()),
        ("HIVELOG_BUFFER_BYTES", "16MiB".to_owned()),
        ("HIVELOG_FLUSH_INTERVAL", "50ms".to_owned()),
        ("HIVELOG_RETRY_BASE", "10ms".to_owned()),
        ("HIVELOG_RETRY_CAP", "200ms".to_owned()),
        ("HIVELOG_FLUENT_CONNECT_TIMEOUT", "500ms".to_owned()),
        ("HIVELOG_FLUENT_WRITE_TIMEOUT", "500ms".to_owned()),
        ("HIVELOG_FLUENT_ACK_TIMEOUT", "500ms".to_owned()),
        ("HIVELOG_ES_TIMEOUT", "500ms".to_owned()),
    ];
    pairs.retain(|(k, _)| match sink {
        "fluent" => !k.starts_with("HIVELOG_ES_"),
        "elasticsearch" => !k.starts_with("HIVELOG_FLUENT_"),
        _ => !k.starts_with("HIVELOG_ES_") && !k.starts_with("HIVELOG_FLUENT_"),
    });
    let mut builder = hivelog::builder();
    match sink {
        "fluent" => pairs.push(("HIVELOG_FLUENT_ADDR", url)),
        "elasticsearch" => pairs.push(("HIVELOG_ES_URL", url)),
        _ => {
            builder = builder.destination(
                hivelog_cloudwatch::CloudWatchConfig::new("bench")
                    .endpoint_url(&url)
                    .region("us-east-1")
                    .static_credentials("bench", Secret::new("bench"))
                    .instance("bench"),
            )
        }
    }
    builder
        .env(Env::from_pairs(pairs))
        .try_build()
        .unwrap_or_else(|e| panic!("{sink}: {e}"))
}

#[inline(always)]
fn log_one(i: u64) {
    tracing::info!(
        user = "a@b.c",
        article = "https://example.com/x",
        seq = i,
        "article hit"
    );
}

/// `n` calls paced at `per_sec`, each timed.
fn paced(dispatch: &Dispatch, n: u64, per_sec: u64) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n as usize);
    let start = Instant::now();
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..n {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / per_sec);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            let t = Instant::now();
            log_one(i);
            took.push(t.elapsed());
        }
    });
    took.sort();
    took
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    // The Forward receiver, the HTTP server and the proxy run their own tokio runtimes; the
    // AWS SDK must not look for instance metadata.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut rows = Vec::new();
    for sink in ["fluent", "elasticsearch", "cloudwatch"] {
        let server = Server::start(sink);
        for (name, mode) in FAULTS {
            let proxy = FaultProxy::start(server.addr());
            let (dispatch, guard) = facade(sink, &proxy);
            let dispatch = Arc::new(dispatch);
            // Connected and delivering before the fault.
            tracing::dispatcher::with_default(&dispatch, || (0..100).for_each(log_one));
            guard.flush(Duration::from_secs(10));
            proxy.set(mode);
            let took = paced(&dispatch, 10_000, 10_000);
            let during = guard.report();
            let id = format!("{sink}/{name}");
            c.bench_function(&id, |b| {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut i = 0u64;
                    b.iter(|| {
                        i += 1;
                        log_one(i)
                    })
                })
            });
            let pending: u64 = during.sinks.iter().map(|s| s.pending_bytes).sum();
            let row = format!(
                "| {sink} | {name} | {:?} | {:?} | {:?} | {:?} | {} KiB |",
                quantile(&took, 0.5),
                quantile(&took, 0.99),
                quantile(&took, 0.999),
                quantile(&took, 1.0),
                pending >> 10,
            );
            eprintln!("paced {row}");
            rows.push(row);
            proxy.heal();
            let _ = guard.shutdown(Duration::from_millis(500));
        }
    }
    c.final_summary();
    eprintln!(
        "\n10,000 calls at 10,000/s after the fault starts:\n\
         | sink | fault | p50 | p99 | p99.9 | max | pending then |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        eprintln!("{r}");
    }
}

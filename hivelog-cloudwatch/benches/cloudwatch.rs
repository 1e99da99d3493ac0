//! Benchmarks of the CloudWatch sink.
//!
//! 1. Batch fill (printed, and checked ≥ 95 %): a steady stream of 200-byte events (200,000 a
//!    second) through the pipeline into a local recording server that answers after 20 ms;
//!    each PutLogEvents request's size as CloudWatch counts it (message bytes + 26 per event)
//!    against the 1,048,576-byte limit.
//! 2. Throughput into moto: the full path (capture-free records pushed into a pipeline, JSON-free
//!    text messages, batching, parallel puts) against a plain aws-sdk loop sending pre-built
//!    10,000-event batches one after another. Both send 60-byte messages.
//!
//! Run by hand with a moto of its own (the benchmark resets moto's state between iterations):
//! ```text
//! .venv-peers/bin/moto_server -H 127.0.0.1 -p 4570 &
//! HIVELOG_TEST_MOTO=http://127.0.0.1:4570 AWS_EC2_METADATA_DISABLED=true \
//!   cargo bench -p hivelog-cloudwatch --bench cloudwatch
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::BehaviorVersion;
use aws_sdk_cloudwatchlogs::config::{Credentials, Region};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_cloudwatchlogs::Client;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use hivelog_cloudwatch::{limits, CloudWatchConfig, CloudWatchSink, MessageFormat};
use hivelog_core::pipeline::Overflow;
use hivelog_core::record::Str;
use hivelog_core::{Format, Pipeline, PipelineConfig, Record, Secret};
use hivelog_tests::http::{HttpServer, Response};
use tracing_core::Level;

/// Events per measured iteration of the throughput benchmarks.
const EVENTS: usize = 100_000;
/// Message size of the throughput benchmarks (10,000 of them fit one request).
const MESSAGE_BYTES: usize = 60;

fn record(message: &str) -> Record {
    let mut r = Record::new(Level::INFO, Str::Static("bench"), 1 << 20, 0);
    r.message = Some(r.fields.push_str(message));
    r
}

fn config(url: &str, group: &str) -> CloudWatchConfig {
    CloudWatchConfig::new(group)
        .endpoint_url(url)
        .region("us-east-1")
        .static_credentials("test", Secret::new("test"))
        .instance("bench")
        .stream("s")
        .unwrap()
        .format(MessageFormat::Text)
}

fn pipeline_config() -> PipelineConfig {
    PipelineConfig {
        buffer_bytes: 1 << 30,
        overflow: Overflow::Block(Duration::from_secs(30)),
        ..PipelineConfig::default()
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bench-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Pushes a steady stream of 200-byte events and reports how full each request was.
fn batch_fill() {
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    // 20 ms per answer: CloudWatch's own latency in a region, so batches form as they would.
    let server = HttpServer::start(|_| {
        Response::new(200)
            .header("content-type", "application/x-amz-json-1.1")
            .body("{}")
            .delay(Duration::from_millis(20))
    });
    let sink = CloudWatchSink::new(
        config(&server.url(), "fill"),
        Arc::new(Format::builder().build()),
    );
    let pipeline = Pipeline::spawn(sink, pipeline_config()).unwrap();
    // "INFO " + 195 bytes = a 200-byte CloudWatch message.
    let text = "x".repeat(195);
    let n = 200_000;
    let interval = Duration::from_micros(5); // 200k events/s, steady
    let start = Instant::now();
    for i in 0..n {
        let due = start + interval * i;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        pipeline.push(record(&text));
    }
    let stats = pipeline.shutdown(Instant::now() + Duration::from_secs(60));
    assert_eq!(stats.delivered, n as u64, "{stats:?}");
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .filter(|r| {
            r.header("x-amz-target")
                .is_some_and(|t| t.ends_with("PutLogEvents"))
        })
        .map(|r| {
            r.json()["logEvents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["message"].as_str().unwrap().len() + limits::EVENT_OVERHEAD)
                .sum()
        })
        .collect();
    let fill: Vec<f64> = sizes
        .iter()
        .map(|b| *b as f64 / limits::MAX_BATCH_BYTES as f64)
        .collect();
    // The last request of the run carries the remainder and is not "steady".
    let steady = &fill[..fill.len() - 1];
    let mean = steady.iter().sum::<f64>() / steady.len() as f64;
    let min = steady.iter().cloned().fold(f64::MAX, f64::min);
    let at_least_95 = steady.iter().filter(|f| **f >= 0.95).count();
    eprintln!(
        "batch fill, 200-byte events: {} requests, mean {:.2} %, min {:.2} % of 1,048,576 bytes, {} of {} at least 95 % (last request {:.2} %)",
        sizes.len(),
        mean * 100.0,
        min * 100.0,
        at_least_95,
        steady.len(),
        fill.last().unwrap() * 100.0
    );
    assert!(mean >= 0.95, "mean fill {mean}");
}

fn moto_url() -> Option<String> {
    std::env::var("HIVELOG_TEST_MOTO").ok()
}

fn reset(url: &str) {
    // moto keeps everything in memory: start every iteration from empty. Plain std I/O, so it
    // can run inside the baseline's runtime.
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let req = format!("POST /moto-api/reset HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
}

fn throughput(c: &mut Criterion) {
    if std::env::var_os("HIVELOG_BENCH_SKIP_FILL").is_none() {
        batch_fill();
    }
    let Some(url) = moto_url() else {
        eprintln!("HIVELOG_TEST_MOTO is not set: skipping the throughput benchmarks");
        return;
    };
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let mut g = c.benchmark_group("into_moto");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(EVENTS as u64));

    let text = "y".repeat(MESSAGE_BYTES - "INFO ".len());
    let concurrency: usize = std::env::var("HIVELOG_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(hivelog_cloudwatch::DEFAULT_MAX_CONCURRENCY);
    g.bench_function(format!("hivelog_pipeline_concurrency_{concurrency}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                reset(&url);
                let sink = CloudWatchSink::new(
                    config(&url, &unique("p")).max_concurrency(concurrency),
                    Arc::new(Format::builder().build()),
                );
                let records: Vec<Record> = (0..EVENTS).map(|_| record(&text)).collect();
                // Like the baseline, client setup and group/stream creation are not measured.
                let pipeline = Pipeline::spawn(sink, pipeline_config()).unwrap();
                pipeline.push(record("warm-up"));
                pipeline.flush(Instant::now() + Duration::from_secs(10));
                let start = Instant::now();
                for mut r in records {
                    r.time = SystemTime::now();
                    pipeline.push(r);
                }
                let stats = pipeline.shutdown(Instant::now() + Duration::from_secs(120));
                total += start.elapsed();
                assert_eq!(stats.delivered, EVENTS as u64 + 1, "{stats:?}");
            }
            total
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let message = "y".repeat(MESSAGE_BYTES);
    g.bench_function("plain_sdk_loop_10000_event_batches", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    reset(&url);
                    let sdk = aws_config::defaults(BehaviorVersion::latest())
                        .endpoint_url(&url)
                        .region(Region::new("us-east-1"))
                        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
                        .load()
                        .await;
                    let client = Client::new(&sdk);
                    let group = unique("sdk");
                    client
                        .create_log_group()
                        .log_group_name(&group)
                        .send()
                        .await
                        .unwrap();
                    client
                        .create_log_stream()
                        .log_group_name(&group)
                        .log_stream_name("s")
                        .send()
                        .await
                        .unwrap();
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as i64;
                    let batches: Vec<Vec<InputLogEvent>> = (0..EVENTS / 10_000)
                        .map(|_| {
                            (0..10_000)
                                .map(|_| {
                                    InputLogEvent::builder()
                                        .timestamp(now)
                                        .message(message.clone())
                                        .build()
                                        .unwrap()
                                })
                                .collect()
                        })
                        .collect();
                    let start = Instant::now();
                    for batch in batches {
                        client
                            .put_log_events()
                            .log_group_name(&group)
                            .log_stream_name("s")
                            .set_log_events(Some(batch))
                            .send()
                            .await
                            .unwrap();
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);

//! Benchmarks: export encoding alone (protobuf and JSON), and end to end (push → pipeline →
//! OTLP/HTTP to an in-process server answering 200 with an empty `ExportLogsServiceResponse`).
//!
//! ```text
//! CARGO_TARGET_DIR=target/h-otlp cargo bench -p hivelog-otlp --bench otlp
//! ```
//!
//! After criterion's groups, a single run of 1,000,000 records prints records per CPU second
//! for the encoder on one core, and end to end the CPU time hivelog's own threads spent per
//! record (the caller pushing and the pipeline's thread encoding and sending; the server's
//! thread excluded), the figure BENCHMARKS.md compares with the Fluentd sink's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use hivelog_core::record::{Fields, SpanNode, SpanTrace, Str, Value};
use hivelog_core::trace::TraceContext;
use hivelog_core::{Env, Format, Pipeline, PipelineConfig, Record};
use hivelog_otlp::{OtlpConfig, OtlpSink};
use tracing_core::Level;

fn format() -> Arc<Format> {
    Arc::new(Format::builder().service("bench").build())
}

fn config(endpoint: &str, protocol: &str) -> OtlpConfig {
    OtlpConfig::from_env(&Env::from_pairs([
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
    ]))
    .unwrap()
    .unwrap()
}

/// A typical web-service event inside a traced request span: a message, three fields, the
/// code location, and the span's two fields.
fn record(i: u64, span: &Arc<SpanNode>) -> Record {
    let mut r = Record::new(Level::INFO, Str::Static("webapp::articles"), 1 << 20, 4);
    r.message = Some(r.fields.push_str("article hit"));
    let user = r.fields.push_str("a@b.c");
    r.fields.push("user", Value::Str(user));
    let url = r
        .fields
        .push_str("https://news.example.com/2025/03/31/some-article-slug");
    r.fields.push("article", Value::Str(url));
    r.fields.push("latency_ms", Value::U64(12 + i % 100));
    r.file = Some(Str::Static("src/articles.rs"));
    r.line = Some(42);
    r.module = Some(Str::Static("webapp::articles"));
    r.span = Some(span.clone());
    r.seq = i;
    r
}

/// The Fluentd sink benchmark's event (a message and three fields, no span, no code location),
/// for the end-to-end comparison with it.
fn plain_record(i: u64) -> Record {
    let mut r = Record::new(Level::INFO, Str::Static("app::http::server"), 1 << 16, 4);
    r.message = Some(r.fields.push_str("article hit"));
    let u = r.fields.push_str("a@b.c");
    r.fields.push("user", Value::Str(u));
    r.fields.push("status", Value::U64(200));
    r.fields.push("latency_ms", Value::F64(1.25));
    r.seq = i;
    r
}

fn span() -> Arc<SpanNode> {
    let mut f = Fields::with_limit(1 << 20, 2);
    let route = f.push_str("/articles/{id}");
    f.push("http.route", Value::Str(route));
    let method = f.push_str("GET");
    f.push("http.method", Value::Str(method));
    let ctx = TraceContext::continue_or_start(None);
    Arc::new(SpanNode::new("request", f, None).with_trace(Some(SpanTrace::new(ctx))))
}

fn bench_encode(c: &mut Criterion) {
    let span = span();
    let batch: Vec<Record> = (0..8192).map(|i| record(i, &span)).collect();
    let mut g = c.benchmark_group("otlp_encode");
    g.throughput(Throughput::Elements(batch.len() as u64));
    for protocol in ["http/protobuf", "http/json"] {
        let mut sink = OtlpSink::new(config("http://127.0.0.1:9/v1/logs", protocol), format());
        let (body, sent) = sink.encode(&batch);
        assert_eq!(sent.len(), batch.len());
        eprintln!(
            "{protocol}: {} bytes for {} records ({} bytes each)",
            body.len(),
            sent.len(),
            body.len() / sent.len()
        );
        g.bench_function(BenchmarkId::new(protocol, batch.len()), |b| {
            b.iter(|| sink.encode(&batch).0.len())
        });
    }
    g.finish();
}

/// A minimal OTLP/HTTP collector on 127.0.0.1: reads each request (keep-alive), checks it
/// holds a body, answers 200 with an empty `ExportLogsServiceResponse`. Threads are named
/// `http-server` so their CPU is not counted as hivelog's.
struct Collector {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl Collector {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn request_count(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

fn collector() -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::Builder::new()
        .name("http-server".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::Builder::new()
                    .name("http-server".into())
                    .spawn(move || serve(conn, &count))
                    .unwrap();
            }
        })
        .unwrap();
    Collector { url, requests }
}

fn serve(conn: TcpStream, count: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        assert!(!body.is_empty(), "an export has records");
        count.fetch_add(1, Ordering::Relaxed);
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
    }
}

fn pipeline_config() -> PipelineConfig {
    PipelineConfig {
        buffer_bytes: 2_000_000_000,
        ..PipelineConfig::default()
    }
}

/// Pushes `batch` and flushes; the time from the first push to the end of the flush.
fn run(pipeline: &Pipeline, batch: Vec<Record>) -> Duration {
    let n = batch.len() as u64;
    let before = pipeline.stats().delivered;
    let t = Instant::now();
    for r in batch {
        pipeline.push(r);
    }
    let stats = pipeline.flush(Instant::now() + Duration::from_secs(120));
    let elapsed = t.elapsed();
    assert_eq!(stats.delivered - before, n, "{stats:?}");
    elapsed
}

fn bench_end_to_end(c: &mut Criterion) {
    let server = collector();
    let sink = OtlpSink::new(
        config(&format!("{}/v1/logs", server.url()), "http/protobuf"),
        format(),
    );
    let pipeline = Pipeline::spawn(sink, pipeline_config()).unwrap();
    let span = span();
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("otlp_end_to_end");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("push_flush_http_protobuf", N), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<Record> = (0..N).map(|i| record(i, &span)).collect();
                total += run(&pipeline, batch);
            }
            total
        })
    });
    g.finish();
    pipeline.shutdown(Instant::now() + Duration::from_secs(10));
}

/// CPU seconds (user + system) of this process's threads whose name satisfies `keep`.
fn threads_cpu(keep: impl Fn(&str) -> bool) -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for task in dir.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if keep(comm.trim()) {
            total += stat_cpu(&task.path().join("stat"));
        }
    }
    total
}

/// utime + stime of a `/proc/.../stat` file, in seconds (USER_HZ = 100).
fn stat_cpu(path: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the ")" that closes the name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 13 {
        return f64::NAN;
    }
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

fn one_run() {
    const N: u64 = 1_000_000;
    let span = span();
    for protocol in ["http/protobuf", "http/json"] {
        let mut sink = OtlpSink::new(config("http://127.0.0.1:9/v1/logs", protocol), format());
        let batch: Vec<Record> = (0..8192).map(|i| record(i, &span)).collect();
        let rounds = N as usize / batch.len() + 1;
        let me = std::path::Path::new("/proc/thread-self/stat");
        let cpu0 = stat_cpu(me);
        let t = Instant::now();
        for _ in 0..rounds {
            sink.encode(&batch);
        }
        let wall = t.elapsed().as_secs_f64();
        let cpu = stat_cpu(me) - cpu0;
        let n = (rounds * batch.len()) as f64;
        println!(
            "otlp encode {protocol}: {n} records, {:.3} µs CPU/record ({:.0} records per CPU second; wall {:.3} s)",
            cpu * 1e6 / n,
            n / cpu,
            wall
        );
    }
    end_to_end_once("traced request event", |i| record(i, &span));
    end_to_end_once("Fluentd benchmark's event", plain_record);
}

fn end_to_end_once(what: &str, make: impl Fn(u64) -> Record) {
    const N: u64 = 1_000_000;
    let server = collector();
    let sink = OtlpSink::new(
        config(&format!("{}/v1/logs", server.url()), "http/protobuf"),
        format(),
    );
    let pipeline = Pipeline::spawn(sink, pipeline_config()).unwrap();
    run(&pipeline, (0..10_000).map(&make).collect());
    let batch: Vec<Record> = (0..N).map(&make).collect();
    let ours = |name: &str| !name.starts_with("http-server");
    let sink_thread = |name: &str| name.starts_with("hivelog-");
    let (cpu0, sink0) = (threads_cpu(ours), threads_cpu(sink_thread));
    let elapsed = run(&pipeline, batch);
    let cpu = threads_cpu(ours) - cpu0;
    let sink_cpu = threads_cpu(sink_thread) - sink0;
    let requests = server.request_count();
    pipeline.shutdown(Instant::now() + Duration::from_secs(10));
    println!(
        "otlp end to end, {what}: {N} records in {:.3} s = {:.0} records/s; hivelog CPU {:.2} µs/record \
         (pipeline thread {:.2}, caller {:.2}; {requests} requests incl. warm-up)",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64(),
        cpu * 1e6 / N as f64,
        sink_cpu * 1e6 / N as f64,
        (cpu - sink_cpu) * 1e6 / N as f64,
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_encode(&mut c);
    bench_end_to_end(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        one_run();
    }
}

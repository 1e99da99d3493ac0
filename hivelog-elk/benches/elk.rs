//! Benchmarks: bulk encoding alone, and end to end (push → pipeline → `_bulk` over HTTP to a
//! local server that parses the NDJSON and answers a valid bulk response).
//!
//! ```text
//! CARGO_TARGET_DIR=target/h-elk cargo bench -p hivelog-elk --bench elk
//! ```
//!
//! After criterion's groups, a single end-to-end run of 1,000,000 documents prints documents
//! per second and the CPU time hivelog's own threads spent per document (the caller thread
//! pushing and the pipeline's thread encoding and sending; the server's thread excluded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use hivelog_core::record::{Str, Value};
use hivelog_core::{Format, Pipeline, PipelineConfig, Record};
use hivelog_elk::bench::Encoder;
use hivelog_elk::{EsConfig, EsSink};
use hivelog_tests::http::{HttpServer, Request, Response};
use tracing_core::Level;

fn format() -> Arc<Format> {
    Arc::new(Format::builder().service("bench").build())
}

/// A typical web-service event: a message and three fields.
fn record(i: u64) -> Record {
    let mut r = Record::new(Level::INFO, Str::Static("webapp::articles"), 1 << 20, 4);
    r.message = Some(r.fields.push_str("article hit"));
    let user = r.fields.push_str("a@b.c");
    r.fields.push("user", Value::Str(user));
    let url = r
        .fields
        .push_str("https://news.example.com/2025/03/31/some-article-slug");
    r.fields.push("article", Value::Str(url));
    r.fields.push("latency_ms", Value::U64(12 + i % 100));
    r.seq = i;
    r
}

/// Answers like Elasticsearch with `filter_path=errors,items.*.status,…`: one item per
/// action line, after checking that every line is JSON-ish and the body ends with `\n`.
fn bulk_server() -> HttpServer {
    let server = HttpServer::start(|req: &Request| {
        let body = req.decoded_body();
        assert!(body.ends_with(b"\n"), "bulk body must end with a newline");
        let mut lines = 0usize;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(
                line[0] == b'{' && line[line.len() - 1] == b'}',
                "not a JSON object line"
            );
            lines += 1;
        }
        let docs = lines / 2;
        const ITEM: &[u8] = br#"{"create":{"status":201}}"#;
        let mut out = Vec::with_capacity(32 + docs * (ITEM.len() + 1));
        out.extend_from_slice(br#"{"errors":false,"items":["#);
        for i in 0..docs {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(ITEM);
        }
        out.extend_from_slice(b"]}");
        Response::json(200, out)
    });
    server.keep_requests(false);
    server
}

fn bench_encode(c: &mut Criterion) {
    let config = EsConfig::new("http://127.0.0.1:9").unwrap();
    let mut enc = Encoder::new(&config, format());
    let batch: Vec<Record> = (0..10_000).map(record).collect();
    let (docs, bytes) = enc.encode(&batch);
    assert_eq!(docs, batch.len());
    eprintln!(
        "encode: {} bytes for {docs} documents ({} bytes each)",
        bytes,
        bytes / docs
    );
    let mut g = c.benchmark_group("elk_encode");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function(BenchmarkId::new("bulk_ndjson", batch.len()), |b| {
        b.iter(|| enc.encode(&batch))
    });
    g.finish();
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
    let server = bulk_server();
    let sink = EsSink::new(EsConfig::new(&server.url()).unwrap(), format());
    let pipeline = Pipeline::spawn(sink, pipeline_config()).unwrap();
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("elk_end_to_end");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("push_flush_http", N), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<Record> = (0..N).map(record).collect();
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
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for task in dir.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !keep(comm.trim()) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that closes the name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 13 {
            total +=
                (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / ticks;
        }
    }
    total
}

/// CPU seconds of the calling thread.
fn this_thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 13 {
        return f64::NAN;
    }
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

fn one_run() {
    const N: u64 = 1_000_000;
    {
        let config = EsConfig::new("http://127.0.0.1:9").unwrap();
        let mut enc = Encoder::new(&config, format());
        let batch: Vec<Record> = (0..10_000).map(record).collect();
        let rounds = N as usize / batch.len();
        let cpu0 = this_thread_cpu();
        let t = Instant::now();
        for _ in 0..rounds {
            enc.encode(&batch);
        }
        let wall = t.elapsed().as_secs_f64();
        let cpu = this_thread_cpu() - cpu0;
        println!(
            "elk encode: {N} documents, {:.3} µs CPU/document ({:.0} documents per CPU second; wall {:.3} s)",
            cpu * 1e6 / N as f64,
            N as f64 / cpu,
            wall
        );
    }
    let server = bulk_server();
    let sink = EsSink::new(EsConfig::new(&server.url()).unwrap(), format());
    let pipeline = Pipeline::spawn(sink, pipeline_config()).unwrap();
    // Warm up connections and allocations.
    run(&pipeline, (0..10_000).map(record).collect());
    let batch: Vec<Record> = (0..N).map(record).collect();
    let ours = |name: &str| !name.starts_with("http-server");
    let sink_thread = |name: &str| name.starts_with("hivelog-");
    let server_thread = |name: &str| name.starts_with("http-server");
    let (cpu0, sink0, server0) = (
        threads_cpu(ours),
        threads_cpu(sink_thread),
        threads_cpu(server_thread),
    );
    let elapsed = run(&pipeline, batch);
    let cpu = threads_cpu(ours) - cpu0;
    let sink_cpu = threads_cpu(sink_thread) - sink0;
    let server_cpu = threads_cpu(server_thread) - server0;
    let requests = server.request_count();
    pipeline.shutdown(Instant::now() + Duration::from_secs(10));
    println!(
        "elk end to end: {N} documents in {:.3} s = {:.0} documents/s; hivelog CPU {:.2} µs/document \
         (pipeline thread {:.2}, caller {:.2}; test server {:.2}; {requests} requests incl. warm-up)",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64(),
        cpu * 1e6 / N as f64,
        sink_cpu * 1e6 / N as f64,
        (cpu - sink_cpu) * 1e6 / N as f64,
        server_cpu * 1e6 / N as f64,
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

//! Throughput of the Fluentd sink.
//!
//! - `encode/*`: records → PackedForward entries (and a gzip message), single thread.
//! - `end_to_end/ack`: `Pipeline::push` → batches → `FluentSink` → TCP → the test receiver
//!   (which decodes the framing and counts entries) → acks, timed until `flush` returns.
//! - `end_to_end/ack_two_receivers`: the same into two receivers of equal weight (a tier):
//!   each batch is cut into one message per receiver, in flight together.
//!
//! After the criterion groups, one extra run prints hivelog's CPU time per delivered event: the
//! CPU of the pushing thread plus the CPU of the `hivelog-fluent` pipeline thread (read from
//! `/proc/self/task/*/stat`), excluding the receiver's (printed apart).
//!
//! `CARGO_TARGET_DIR=/work/main/target/h-fluent cargo bench -p hivelog-fluent --bench fluent`

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hivelog_core::record::{Str, Value};
use hivelog_core::{Format, Pipeline, PipelineConfig, Record};
use hivelog_fluent::encode::{self, Encoder};
use hivelog_fluent::{FluentConfig, FluentSink, TimeFormat};
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};

/// A typical small event: message, three fields (~150 bytes encoded).
fn record(i: u64) -> Record {
    let mut r = Record::new(
        tracing::Level::INFO,
        Str::Static("app::http::server"),
        1 << 16,
        4,
    );
    r.time = UNIX_EPOCH + Duration::new(1_763_000_000 + i / 1000, (i % 1_000_000_000) as u32);
    r.message = Some(r.fields.push_str("article hit"));
    let u = r.fields.push_str("a@b.c");
    r.fields.push("user", Value::Str(u));
    r.fields.push("status", Value::U64(200));
    r.fields.push("latency_ms", Value::F64(1.25));
    r.seq = i;
    r
}

fn format() -> Arc<Format> {
    Arc::new(Format::builder().service("bench").build())
}

fn bench_encode(c: &mut Criterion) {
    let records: Vec<Record> = (0..10_000).map(record).collect();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(records.len() as u64));
    let mut enc = Encoder::new(format(), TimeFormat::EventTime);
    let mut out = Vec::with_capacity(4 << 20);
    g.bench_function("entries", |b| {
        b.iter(|| {
            out.clear();
            let at = encode::open_message(&mut out, "bench");
            for r in &records {
                enc.entry(r, &mut out);
            }
            encode::close_message(
                &mut out,
                at,
                records.len(),
                Some("chunk"),
                false,
                &mut Vec::new(),
            );
            out.len()
        })
    });
    let mut scratch = Vec::new();
    g.bench_function("entries_gzip", |b| {
        b.iter(|| {
            out.clear();
            let at = encode::open_message(&mut out, "bench");
            for r in &records {
                enc.entry(r, &mut out);
            }
            encode::close_message(
                &mut out,
                at,
                records.len(),
                Some("chunk"),
                true,
                &mut scratch,
            );
            out.len()
        })
    });
    g.finish();
}

fn pipeline(receivers: &[ForwardReceiver]) -> Pipeline {
    let addr: Vec<String> = receivers.iter().map(ForwardReceiver::url).collect();
    let sink = FluentSink::new(FluentConfig::new(&addr.join(",")).unwrap(), format());
    let cfg = PipelineConfig {
        // Room for every pre-built record of a run: the bench measures throughput, not drops.
        buffer_bytes: 2_000_000_000,
        ..PipelineConfig::default()
    };
    Pipeline::spawn(sink, cfg).unwrap()
}

const E2E_EVENTS: u64 = 200_000;

fn count(receivers: &[ForwardReceiver]) -> u64 {
    receivers.iter().map(ForwardReceiver::count).sum()
}

fn bench_end_to_end(c: &mut Criterion) {
    let start = || ForwardReceiver::start(ReceiverConfig::default().count_only());
    let one = vec![start()];
    let two = vec![start(), start()];
    let mut g = c.benchmark_group("end_to_end");
    g.throughput(Throughput::Elements(E2E_EVENTS));
    g.sample_size(10);
    for (name, receivers) in [("ack", &one), ("ack_two_receivers", &two)] {
        let p = pipeline(receivers);
        g.bench_function(name, |b| {
            b.iter_batched(
                || (0..E2E_EVENTS).map(record).collect::<Vec<_>>(),
                |records| {
                    let before = count(receivers);
                    for rec in records {
                        p.push(rec);
                    }
                    let stats = p.flush(Instant::now() + Duration::from_secs(60));
                    assert_eq!(stats.pending, 0);
                    assert_eq!(count(receivers) - before, E2E_EVENTS);
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    cpu_per_event("ack", &one);
    cpu_per_event("ack_two_receivers", &two);
}

/// utime + stime of a thread of this process, in clock ticks.
fn thread_ticks(name: &str) -> Option<u64> {
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // `comm` holds at most 15 bytes of the thread name.
        if !comm.trim().is_empty() && name.starts_with(comm.trim()) {
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
        }
    }
    None
}

fn self_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn cpu_per_event(name: &str, r: &[ForwardReceiver]) {
    let p = pipeline(r);
    let n = 1_000_000u64;
    let records: Vec<Record> = (0..n).map(record).collect();
    let before = count(r);
    let t = Instant::now();
    let caller0 = self_ticks();
    let sink0 = thread_ticks("hivelog-fluent").unwrap_or(0);
    let recv0 = thread_ticks("forward-receiver").unwrap_or(0);
    for rec in records {
        p.push(rec);
    }
    let caller1 = self_ticks();
    let stats = p.flush(Instant::now() + Duration::from_secs(120));
    let wall = t.elapsed();
    let sink1 = thread_ticks("hivelog-fluent").unwrap_or(0);
    let recv1 = thread_ticks("forward-receiver").unwrap_or(0);
    let delivered = count(r) - before;
    assert_eq!(stats.pending, 0);
    let tick = 1e9 / 100.0; // USER_HZ is 100 on Linux.
    let caller_ns = (caller1 - caller0) as f64 * tick / n as f64;
    let sink_ns = (sink1 - sink0) as f64 * tick / n as f64;
    let recv_ns = (recv1 - recv0) as f64 * tick / n as f64;
    println!(
        "end_to_end/{name} cpu: {n} events, {delivered} delivered in {wall:?} ({:.2} M events/s); \
         hivelog CPU per event: {:.0} ns on the log call + {:.0} ns on the sink thread = {:.0} ns \
         (the first test receiver: {:.0} ns)",
        delivered as f64 / wall.as_secs_f64() / 1e6,
        caller_ns,
        sink_ns,
        caller_ns + sink_ns,
        recv_ns
    );
}

criterion_group!(benches, bench_encode, bench_end_to_end);
criterion_main!(benches);

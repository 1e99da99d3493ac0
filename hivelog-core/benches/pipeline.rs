//! Delivery pipeline benchmarks.
//!
//! - `pipeline/push`: the caller's cost of one event, shaped like
//!   `info!(user = "a@b.c", article = "https://example.com/x", "article hit")`: building the
//!   `Record` (what capture does) and `Pipeline::push`, into a pipeline whose sink only counts.
//! - `pipeline/enqueue`: `Pipeline::push` alone, the record built beforehand.
//! - `pipeline/push_sink_hung`: `pipeline/push` while the destination hangs (the budget fills,
//!   then events are dropped and counted).
//! - `baseline/fmt_json_to_io_sink`: the same event through `tracing_subscriber::fmt().json()`
//!   into `io::sink()`, for comparison.
//! - `pipeline/throughput`: push 100,000 prebuilt records from one thread and wait until the
//!   sink has them all; also prints the worker thread's CPU use over that time.
//! - before the criterion groups, a 10× overload (a stalled sink, 16 MB budget, 160 MB of
//!   events offered) prints the process's peak RSS growth.
//!
//! `cargo bench -p hivelog-core --bench pipeline`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use hivelog_core::pipeline::Overflow;
use hivelog_core::record::{Str, Value};
use hivelog_core::{BatchLimits, Outcomes, Pipeline, PipelineConfig, Record, Sink};

/// Counts events and bytes; optionally stalls (an unreachable destination).
struct CountingSink {
    events: Arc<AtomicU64>,
    stall: Arc<AtomicBool>,
    /// `/proc/<pid>/task/<tid>` of the worker thread, for its CPU time.
    thread: Arc<Mutex<Option<PathBuf>>>,
}

impl Sink for CountingSink {
    fn name(&self) -> &'static str {
        "count"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: 10_000,
            max_bytes: 16 << 20,
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        if let Ok(mut t) = self.thread.lock() {
            if t.is_none() {
                *t = std::fs::read_link("/proc/thread-self")
                    .ok()
                    .map(|p| Path::new("/proc").join(p));
            }
        }
        while self.stall.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let bytes: usize = batch.iter().map(|r| r.message().len() + 64).sum();
        self.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut o = Outcomes::delivered(batch.len());
        o.add_bytes_sent(bytes as u64);
        o
    }
}

struct Counting {
    pipeline: Pipeline,
    events: Arc<AtomicU64>,
    stall: Arc<AtomicBool>,
    thread: Arc<Mutex<Option<PathBuf>>>,
}

fn counting(config: PipelineConfig) -> Counting {
    let events = Arc::new(AtomicU64::new(0));
    let stall = Arc::new(AtomicBool::new(false));
    let thread = Arc::new(Mutex::new(None));
    let sink = CountingSink {
        events: events.clone(),
        stall: stall.clone(),
        thread: thread.clone(),
    };
    Counting {
        pipeline: Pipeline::spawn(sink, config).unwrap(),
        events,
        stall,
        thread,
    }
}

/// `info!(user = "a@b.c", article = "https://example.com/x", "article hit")`, captured.
fn article_hit() -> Record {
    let mut r = Record::new(
        tracing::Level::INFO,
        Str::Static("bench::handler"),
        1 << 20,
        2,
    );
    r.module = Some(Str::Static("bench::handler"));
    r.file = Some(Str::Static("src/handler.rs"));
    r.line = Some(42);
    let user = r.fields.push_str("a@b.c");
    r.fields.push("user", Value::Str(user));
    let article = r.fields.push_str("https://example.com/x");
    r.fields.push("article", Value::Str(article));
    let message = r.fields.push_str("article hit");
    r.message = Some(message);
    r
}

fn push(c: &mut Criterion) {
    let p = counting(PipelineConfig::default()).pipeline;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("push", |b| b.iter(|| p.push(black_box(article_hit()))));
    g.bench_function("enqueue", |b| {
        b.iter_batched(article_hit, |r| p.push(r), BatchSize::SmallInput)
    });
    // The same while the destination hangs: the queue fills, then every event is dropped and
    // counted; the caller's cost must not grow.
    let hung = counting(PipelineConfig::default());
    hung.stall.store(true, Ordering::Relaxed);
    g.bench_function("push_sink_hung", |b| {
        b.iter(|| hung.pipeline.push(black_box(article_hit())))
    });
    g.finish();
    let s = hung.pipeline.stats();
    if s.enqueued > 0 {
        println!(
            "push_sink_hung: {} events, {} pending ({:.1} MB), {} dropped (overflow)",
            s.enqueued,
            s.pending,
            s.pending_bytes as f64 / 1e6,
            s.dropped_overflow
        );
    }
    hung.stall.store(false, Ordering::Relaxed);
    hung.pipeline
        .shutdown(Instant::now() + Duration::from_secs(10));
    // CPU time per call of this thread, which a loaded machine distorts far less than wall time.
    let filtered_out = p.stats().enqueued == 0;
    if !filtered_out {
        const CALLS: u32 = 2_000_000;
        let build = cpu_per_call(CALLS, || drop(black_box(article_hit())));
        let push = cpu_per_call(CALLS, || p.push(black_box(article_hit())));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish();
        let json = tracing::subscriber::with_default(subscriber, || {
            cpu_per_call(CALLS / 4, || {
                tracing::info!(
                    user = "a@b.c",
                    article = "https://example.com/x",
                    "article hit"
                )
            })
        });
        println!(
            "push (CPU time of the calling thread): build record {} ns, build + push {} ns; \
             fmt().json() into io::sink() {} ns; ratio {:.2}",
            build.as_nanos(),
            push.as_nanos(),
            json.as_nanos(),
            push.as_secs_f64() / json.as_secs_f64()
        );
    }
    let s = p.shutdown(Instant::now() + Duration::from_secs(10));
    if filtered_out {
        return;
    }
    println!(
        "push: {} events, {} delivered, {} dropped (overflow), {} pending",
        s.enqueued, s.delivered, s.dropped_overflow, s.pending
    );
}

/// CPU time of the calling thread per call of `f`, over `calls` calls.
fn cpu_per_call(calls: u32, mut f: impl FnMut()) -> Duration {
    let me = std::fs::read_link("/proc/thread-self")
        .map(|p| Path::new("/proc").join(p))
        .expect("/proc/thread-self");
    let c0 = thread_cpu(&me).unwrap_or_default();
    for _ in 0..calls {
        f();
    }
    thread_cpu(&me).unwrap_or_default().saturating_sub(c0) / calls
}

/// CPU time (user + system) of the thread at `/proc/<pid>/task/<tid>` (Linux).
fn thread_cpu(dir: &Path) -> Option<Duration> {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after `(comm) `: state is the 1st; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?;
    Some(Duration::from_secs_f64(ticks / ticks_per_sec))
}

fn throughput(c: &mut Criterion) {
    const N: u64 = 100_000;
    let Counting {
        pipeline: p,
        events,
        thread,
        ..
    } = counting(PipelineConfig::default());
    // One record through, so that the worker's thread is known.
    p.push(article_hit());
    p.flush(Instant::now() + Duration::from_secs(5));
    let dir = thread.lock().unwrap().clone();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    let this_thread = std::fs::read_link("/proc/thread-self")
        .ok()
        .map(|p| Path::new("/proc").join(p));
    let (mut wall, mut pushing, mut producer_cpu) = (Duration::ZERO, 0u64, Duration::ZERO);
    let cpu0 = dir.as_deref().and_then(thread_cpu);
    g.bench_function("throughput", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let records: Vec<Record> = (0..N).map(|_| article_hit()).collect();
                let target = events.load(Ordering::Relaxed) + N;
                let t0 = Instant::now();
                let c0 = this_thread.as_deref().and_then(thread_cpu);
                for r in records {
                    p.push(r);
                }
                if let (Some(a), Some(b)) = (c0, this_thread.as_deref().and_then(thread_cpu)) {
                    producer_cpu += b.saturating_sub(a);
                }
                pushing += N;
                p.flush(Instant::now() + Duration::from_secs(30));
                let took = t0.elapsed();
                assert!(
                    events.load(Ordering::Relaxed) >= target,
                    "not all delivered"
                );
                total += took;
            }
            wall += total;
            total
        })
    });
    g.finish();
    // CPU time per event is what a loaded machine does not distort: it bounds the sustainable
    // rate as 1 / (worker CPU per event) with the worker on one core.
    if pushing == 0 {
        return; // filtered out
    }
    if let (Some(a), Some(b)) = (cpu0, dir.as_deref().and_then(thread_cpu)) {
        let cpu = b.saturating_sub(a);
        println!(
            "throughput: worker thread used {cpu:.2?} CPU over {wall:.2?} of wall time ({:.0}% of one core); \
             {:.0} ns CPU per event on the worker → {:.1} M events/s per worker core; \
             producer {:.0} ns CPU per push (prebuilt records)",
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
            cpu.as_secs_f64() * 1e9 / pushing.max(1) as f64,
            pushing as f64 / cpu.as_secs_f64().max(1e-9) / 1e6,
            producer_cpu.as_secs_f64() * 1e9 / pushing.max(1) as f64,
        );
    }
    let s = p.shutdown(Instant::now() + Duration::from_secs(10));
    println!(
        "throughput: {} delivered, {} dropped, {} bytes sent",
        s.delivered,
        s.dropped(),
        s.bytes_sent
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Offers ten times the budget to a stalled pipeline and prints how much the peak RSS grew.
fn overload() {
    const BUDGET: usize = 16_000_000;
    let before = peak_rss_kib();
    let Counting {
        pipeline: p, stall, ..
    } = counting(PipelineConfig {
        buffer_bytes: BUDGET,
        overflow: Overflow::DropOldest,
        ..PipelineConfig::default()
    });
    stall.store(true, Ordering::Relaxed);
    let size = article_hit().size();
    let n = 10 * BUDGET / size;
    let t0 = Instant::now();
    for _ in 0..n {
        p.push(article_hit());
    }
    let elapsed = t0.elapsed();
    let s = p.stats();
    let after = peak_rss_kib();
    stall.store(false, Ordering::Relaxed);
    let fin = p.shutdown(Instant::now() + Duration::from_secs(10));
    println!(
        "overload: {n} events of {size} B offered ({:.0} MB, 10x a {} MB budget) in {elapsed:.2?}; \
         pending {} ({:.1} MB), dropped {}; peak RSS grew {:.1} MB (from {:.1} MB); after recovery delivered {}",
        (n * size) as f64 / 1e6,
        BUDGET / 1_000_000,
        s.pending,
        s.pending_bytes as f64 / 1e6,
        s.dropped_overflow,
        after.saturating_sub(before) as f64 / 1024.0,
        before as f64 / 1024.0,
        fin.delivered,
    );
}

/// The same event through `tracing_subscriber::fmt().json()` into `io::sink()`: the reference
/// the issue compares the caller's cost with.
fn baseline(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    tracing::subscriber::with_default(subscriber, || {
        g.bench_function("fmt_json_to_io_sink", |b| {
            b.iter(|| {
                tracing::info!(
                    user = "a@b.c",
                    article = "https://example.com/x",
                    "article hit"
                )
            })
        });
    });
    g.finish();
}

fn main() {
    overload();
    let mut c = Criterion::default().configure_from_args();
    push(&mut c);
    baseline(&mut c);
    throughput(&mut c);
    c.final_summary();
}

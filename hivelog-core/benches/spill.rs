//! Disk buffer benchmarks (`HIVELOG_SPILL_DIR`).
//!
//! - `spill/write`: 100,000 events encoded and appended to segment files (what `overflow` mode
//!   does for each event memory cannot hold, and `always` mode for every event), flushed to the
//!   operating system at the end.
//! - `spill/replay`: the same segments read back: frames checked (length, CRC32) and records
//!   decoded, as at the next start.
//! - `spill/push_no_dir`, `spill/push_overflow_dir` and `spill/push_always_dir`: the log call's
//!   `Pipeline::push` into a healthy destination, without a spill folder, with one in
//!   `overflow` mode (it must cost nothing while the destination keeps up), and in `always`
//!   mode (every event goes to disk, by the pipeline's worker, not by the log call).
//! - `spill/always_throughput`: 100,000 events through a pipeline in `always` mode (each written,
//!   read back and delivered), until the sink has them all.
//!
//! `cargo bench -p hivelog-core --bench spill`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use hivelog_core::pipeline::{SpillConfig, SpillMode};
use hivelog_core::record::{Str, Value};
use hivelog_core::spill::{codec, segment};
use hivelog_core::{BatchLimits, Outcomes, Pipeline, PipelineConfig, Record, Sink};

const N: u64 = 100_000;

/// `info!(user = "a@b.c", article = "https://example.com/x", "article hit")`, captured.
fn article_hit() -> Record {
    let mut r = Record::new(Level::INFO, Str::Static("bench::handler"), 1 << 20, 2);
    r.module = Some(Str::Static("bench::handler"));
    r.file = Some(Str::Static("src/handler.rs"));
    r.line = Some(42);
    let user = r.fields.push_str("a@b.c");
    r.fields.push("user", Value::Str(user));
    let article = r.fields.push_str("https://example.com/x");
    r.fields.push("article", Value::Str(article));
    r.message = Some(r.fields.push_str("article hit"));
    r
}

use tracing::Level;

/// Writes `records` into 4 MiB segments under `dir` (emptied first); returns their paths.
fn write_segments(dir: &Path, records: &[Record]) -> Vec<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    let mut writer: Option<segment::SegmentWriter> = None;
    let mut buf = Vec::new();
    for r in records {
        let w = writer.get_or_insert_with(|| {
            let p = dir.join(format!("{:020}.seg", paths.len()));
            paths.push(p.clone());
            segment::SegmentWriter::create(&p).unwrap()
        });
        buf.clear();
        codec::encode(r, &mut buf);
        w.append(&buf).unwrap();
        if w.len() >= hivelog_core::spill::SEGMENT_BYTES {
            writer.take().unwrap().flush().unwrap();
        }
    }
    if let Some(mut w) = writer {
        w.flush().unwrap();
    }
    paths
}

fn write_and_replay(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("hivelog-bench-spill-{}", std::process::id()));
    let records: Vec<Record> = (0..N).map(|_| article_hit()).collect();
    let mut g = c.benchmark_group("spill");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("write", |b| {
        b.iter(|| black_box(write_segments(&dir, &records)))
    });
    let paths = write_segments(&dir, &records);
    let bytes: u64 = paths.iter().map(|p| p.metadata().unwrap().len()).sum();
    println!(
        "spill: {N} events take {bytes} bytes on disk ({} per event)",
        bytes / N
    );
    g.bench_function("replay", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for p in &paths {
                let data = std::fs::read(p).unwrap();
                for f in segment::frames(&data) {
                    if let segment::Frame::Record(bytes) = f {
                        black_box(codec::decode(bytes).unwrap());
                        n += 1;
                    }
                }
            }
            assert_eq!(n, N);
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Counts what it is sent.
struct Discard(Arc<AtomicU64>);

impl Sink for Discard {
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
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Outcomes::delivered(batch.len())
    }
}

fn spilling(dir: &Path, mode: SpillMode) -> PipelineConfig {
    let mut spill = SpillConfig::new(dir);
    spill.mode = mode;
    PipelineConfig {
        spill: Some(spill),
        ..PipelineConfig::default()
    }
    .for_service("bench")
}

fn push(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("hivelog-bench-push-{}", std::process::id()));
    let plain = Pipeline::spawn(Discard(Arc::default()), PipelineConfig::default()).unwrap();
    let overflow =
        Pipeline::spawn(Discard(Arc::default()), spilling(&dir, SpillMode::Overflow)).unwrap();
    let always = Pipeline::spawn(
        Discard(Arc::default()),
        spilling(&dir.join("always"), SpillMode::Always),
    )
    .unwrap();
    let mut g = c.benchmark_group("spill");
    g.throughput(Throughput::Elements(1));
    for (name, p) in [
        ("push_no_dir", &plain),
        ("push_overflow_dir", &overflow),
        ("push_always_dir", &always),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(article_hit, |r| p.push(r), BatchSize::SmallInput)
        });
    }
    g.finish();
    for p in [plain, overflow, always] {
        let s = p.shutdown(Instant::now() + Duration::from_secs(10));
        println!(
            "{}: spilled {}, dropped {}",
            p.name(),
            s.spilled,
            s.dropped()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn always(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("hivelog-bench-always-{}", std::process::id()));
    let delivered = Arc::new(AtomicU64::new(0));
    let p = Pipeline::spawn(
        Discard(delivered.clone()),
        spilling(&dir, SpillMode::Always),
    )
    .unwrap();
    let mut g = c.benchmark_group("spill");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("always_throughput", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let records: Vec<Record> = (0..N).map(|_| article_hit()).collect();
                let target = delivered.load(Ordering::Relaxed) + N;
                let t0 = Instant::now();
                for r in records {
                    p.push(r);
                }
                while delivered.load(Ordering::Relaxed) < target {
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
    let s = p.shutdown(Instant::now() + Duration::from_secs(10));
    println!(
        "always: spilled {}, replayed {}, delivered {}, dropped {}",
        s.spilled,
        s.replayed,
        s.delivered,
        s.dropped()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    write_and_replay(&mut c);
    push(&mut c);
    always(&mut c);
    c.final_summary();
}

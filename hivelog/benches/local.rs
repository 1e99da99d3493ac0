//! The default local output (a writer thread, many lines per `write(2)`) against
//! `tracing_subscriber::fmt().json()`, both writing JSON lines to a real file, side by side in
//! one run. Run: `cargo bench -p hivelog --bench local`.
//!
//! The file is real because the syscall per line is part of what users pay; `io::sink()` would
//! hide it. Same event and fields on both sides (hivelog with 2 extras, tracing-subscriber with
//! `flatten_event(true)`; in the span case `with_current_span(true)`). Each sample is timed
//! with one of three clocks, so one group answers one question:
//!
//! - `caller_*`: CPU time of the logging thread over the log calls only
//!   (`CLOCK_THREAD_CPUTIME_ID`: what the caller pays, unaffected by preemption on a shared
//!   machine). hivelog's writer drains after the clock stops (untimed), so the queue never
//!   fills and nothing is dropped (checked at the end);
//! - `process_cpu`: CPU time of the whole process (every thread,
//!   `CLOCK_PROCESS_CPUTIME_ID`) over the log calls *and* hivelog's drain: everything the
//!   service pays per event;
//! - `throughput`: wall time of the log calls and the drain, as lines per second. The caller
//!   and the writer run in parallel, so this is a lower bound of the writer's throughput.
//!
//! - `caller_paced`: wall time of each log call alone when events come every 10 µs (100k/s,
//!   a busy service), so hivelog's writer has drained and sleeps before most events: the price
//!   of waking it (one futex wake) is in this figure, which the tight loops above hide.
//!
//! At the end, one pass of 1,000,000 events measures the writer thread alone: its CPU time
//! (`/proc/self/task/<tid>/schedstat`) per line, printed as lines per second of one core.
//!
//! The files are truncated between samples (untimed) so the disk does not fill.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tracing::{info, info_span, Dispatch};

/// What a sample's clock covers.
#[derive(Clone, Copy)]
enum Clock {
    /// CPU time of the logging thread over the log calls.
    Caller,
    /// Process CPU time of the log calls and the drain.
    ProcessCpu,
    /// Wall time of the log calls and the drain.
    Drained,
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// One subscriber writing to one file.
struct Side {
    dispatch: Dispatch,
    guard: Option<hivelog::Guard>,
    file: File,
}

impl Side {
    fn hivelog(path: &Path, mode: hivelog::OutputMode) -> Side {
        let env = hivelog::Env::from_pairs([("HIVELOG_BUFFER_BYTES", "1GB")]);
        let (dispatch, guard) = hivelog::builder()
            .env(env)
            .extra("service", "bench")
            .extra("environment", "prod")
            .output_mode(mode)
            .output(hivelog::Output::File {
                path: path.to_owned(),
                rotation: hivelog::Rotation::Never,
                keep: 1,
            })
            .try_build()
            .unwrap();
        let file = OpenOptions::new().write(true).open(path).unwrap();
        Side {
            dispatch,
            guard: Some(guard),
            file,
        }
    }

    fn tracing_subscriber(path: &Path, span: bool) -> Side {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let writer = Arc::new(file.try_clone().unwrap());
        let dispatch = Dispatch::new(
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(span)
                .with_span_list(false)
                .with_writer(writer)
                .finish(),
        );
        Side {
            dispatch,
            guard: None,
            file,
        }
    }

    /// Runs `iters` events (in a span when `span`) and returns what `clock` measured.
    fn sample(&self, iters: u64, clock: Clock, span: bool) -> Duration {
        let elapsed = tracing::dispatcher::with_default(&self.dispatch, || {
            let s = span.then(|| info_span!("handle", request_id = 42, route = "/hit"));
            let _e = s.as_ref().map(|s| s.enter());
            let (wall, cpu, own) = (Instant::now(), process_cpu(), thread_cpu());
            for _ in 0..iters {
                event();
            }
            let calls = thread_cpu() - own;
            self.drain();
            match clock {
                Clock::Caller => calls,
                Clock::ProcessCpu => process_cpu() - cpu,
                Clock::Drained => wall.elapsed(),
            }
        });
        self.file.set_len(0).unwrap();
        elapsed
    }

    /// Runs `iters` events 10 µs apart; returns the wall time of the log calls alone.
    fn paced(&self, iters: u64) -> Duration {
        const GAP: Duration = Duration::from_micros(10);
        let total = tracing::dispatcher::with_default(&self.dispatch, || {
            let mut total = Duration::ZERO;
            let mut next = Instant::now();
            for _ in 0..iters {
                next += GAP;
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
                let t = Instant::now();
                event();
                total += t.elapsed();
            }
            total
        });
        self.drain();
        self.file.set_len(0).unwrap();
        total
    }

    fn drain(&self) {
        if let Some(g) = &self.guard {
            g.flush(Duration::from_secs(60));
        }
    }
}

fn event() {
    info!(
        user = "a@b.c",
        article = "https://example.com/x",
        "article hit"
    );
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let hl = Side::hivelog(&dir.path().join("async.log"), hivelog::OutputMode::Async);
    let hl_sync = Side::hivelog(&dir.path().join("sync.log"), hivelog::OutputMode::Sync);
    let ts = Side::tracing_subscriber(&dir.path().join("ts.log"), false);
    let ts_span = Side::tracing_subscriber(&dir.path().join("ts_span.log"), true);

    let groups = [
        ("caller_event", Clock::Caller, false),
        ("caller_event_in_span", Clock::Caller, true),
        ("process_cpu", Clock::ProcessCpu, false),
        ("throughput", Clock::Drained, false),
    ];
    for (name, clock, span) in groups {
        let mut g = c.benchmark_group(name);
        if matches!(clock, Clock::Drained) {
            g.throughput(Throughput::Elements(1));
        }
        let sides: &[(&str, &Side)] = match clock {
            Clock::Drained => &[("hivelog", &hl)],
            _ => &[
                ("hivelog", &hl),
                ("hivelog_sync", &hl_sync),
                ("tracing_subscriber_json", if span { &ts_span } else { &ts }),
            ],
        };
        for (side_name, side) in sides {
            g.bench_function(*side_name, |b| {
                b.iter_custom(|iters| side.sample(iters, clock, span))
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("caller_paced");
    g.warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(300))
        .sample_size(10);
    for (side_name, side) in [("hivelog", &hl), ("tracing_subscriber_json", &ts)] {
        g.bench_function(side_name, |b| b.iter_custom(|iters| side.paced(iters)));
    }
    g.finish();

    writer_alone(&hl);
    let report = hl.guard.as_ref().unwrap().report().local.unwrap();
    println!("hivelog async local output over the whole run: {report:?}");
    assert_eq!((report.dropped, report.failed), (0, 0), "nothing dropped");
}

/// The writer thread's CPU time so far: the first field of its `schedstat`, in nanoseconds.
fn writer_cpu() -> Duration {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == "hivelog-output" {
            let stat = std::fs::read_to_string(task.join("schedstat")).unwrap();
            let ns = stat.split_whitespace().next().unwrap().parse().unwrap();
            return Duration::from_nanos(ns);
        }
    }
    panic!("no hivelog-output thread");
}

/// Writer CPU per line over 1,000,000 lines, and what that makes per second of one core.
fn writer_alone(side: &Side) {
    const N: u64 = 1_000_000;
    let (before, wall) = (writer_cpu(), Instant::now());
    let process = side.sample(N, Clock::ProcessCpu, false);
    let (writer, wall) = (writer_cpu() - before, wall.elapsed());
    println!(
        "writer alone, {N} lines to a file: writer CPU {:.0} ns/line = {:.2} M lines/s per core; \
         whole process CPU {:.0} ns/line; wall {:.2} M lines/s",
        writer.as_nanos() as f64 / N as f64,
        N as f64 / writer.as_secs_f64() / 1e6,
        process.as_nanos() as f64 / N as f64,
        N as f64 / wall.as_secs_f64() / 1e6,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

//! One run of the CPU-pressure benchmark (issue 24): the default local output (`async`, the
//! default budget) against `tracing_subscriber::fmt().json()`, each writing JSON lines to a
//! real file, as a new user would set them up. `scripts/bench-cpu-pressure.sh` runs it in each
//! condition (quiet, one core with `taskset -c 0`, a busy-loop process beside it), alternating
//! the two sides in separate processes, and prints medians and ratios:
//!
//! ```sh
//! scripts/bench-cpu-pressure.sh            # 5 pairs per cell, 1,000,000 events per run
//! target/release/examples/cpu_pressure hivelog span 1000000 /tmp/x.log   # one run by hand
//! ```
//!
//! Arguments: `hivelog|fmt`, `event|span|paced`, the number of events, the file. One line is
//! printed, `key=value` pairs:
//! - `caller_ns`: CPU time of the logging thread over the log calls, per event (what the call
//!   costs, whatever the preemption). For `paced` (one event every 10 µs, spinning between
//!   them, so the writer has drained before most events), each call is timed alone with the
//!   thread's CPU clock, minus the clock's own cost measured the same way without an event;
//! - `process_ns`: CPU time of the whole process over the log calls and the drain (hivelog's
//!   flush), per event: everything the service pays. It is the caller's figure plus the CPU
//!   time of every other thread (hivelog's writer), so that `paced`'s spinning is not in it;
//! - `dropped`: lines hivelog's report counts as dropped; `missing`: events not found in the
//!   file (must be `dropped`);
//! - `cs_per_100k`: context switches of every thread of the process (voluntary and not, from
//!   `/proc/self/task/*/status`) per 100,000 events.
//!
//! `hog` spins forever (the script's busy neighbour, stopped by its process id).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, info_span, Dispatch};

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Context switches of every thread of this process so far.
fn context_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten() {
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += n.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

fn event() {
    info!(
        user = "a@b.c",
        article = "https://example.com/x",
        "article hit"
    );
}

/// The log calls: a tight loop, or one event every 10 µs. Returns the caller's CPU time.
fn log(n: u64, paced: bool) -> Duration {
    if !paced {
        let own = thread_cpu();
        for _ in 0..n {
            event();
        }
        return thread_cpu() - own;
    }
    // Two rounds per event (the event, then the clock alone): one event every 10 µs.
    const GAP: Duration = Duration::from_micros(5);
    let (mut total, mut clock) = (Duration::ZERO, Duration::ZERO);
    let mut next = Instant::now();
    for i in 0..2 * n {
        next += GAP;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        // Odd rounds time the clock alone, to subtract its own cost.
        let t = thread_cpu();
        if i % 2 == 0 {
            event();
            total += thread_cpu() - t;
        } else {
            clock += thread_cpu() - t;
        }
    }
    total.saturating_sub(clock)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hog") {
        loop {
            std::hint::black_box(0u64);
        }
    }
    let (side, case, n, path) = (
        args[1].as_str(),
        args[2].as_str(),
        args[3].parse::<u64>().expect("the number of events"),
        Path::new(&args[4]),
    );
    let _ = std::fs::remove_file(path);
    let span = case == "span";
    let (dispatch, guard) = match side {
        "hivelog" => {
            let (d, g) = hivelog::builder()
                .extra("service", "bench")
                .extra("environment", "prod")
                .output(hivelog::Output::File {
                    path: path.to_owned(),
                    rotation: hivelog::Rotation::Never,
                    keep: 1,
                })
                .try_build()
                .unwrap();
            (d, Some(g))
        }
        "fmt" => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            let d = Dispatch::new(
                tracing_subscriber::fmt()
                    .json()
                    .flatten_event(true)
                    .with_current_span(span)
                    .with_span_list(false)
                    .with_writer(Arc::new(file))
                    .finish(),
            );
            (d, None)
        }
        other => panic!("side: '{other}' is not hivelog or fmt"),
    };
    let (caller, process, cs, dropped) = tracing::dispatcher::with_default(&dispatch, || {
        let s = info_span!("handle", request_id = 42, route = "/hit");
        let _e = span.then(|| s.enter());
        let (cs, cpu, main) = (context_switches(), process_cpu(), thread_cpu());
        let caller = log(n, case == "paced");
        let dropped = guard.as_ref().map_or(0, |g| {
            g.flush(Duration::from_secs(600))
                .local
                .map_or(0, |l| l.dropped)
        });
        let others = (process_cpu() - cpu).saturating_sub(thread_cpu() - main);
        (caller, caller + others, context_switches() - cs, dropped)
    });
    drop(guard);
    let lines = BufReader::new(std::fs::File::open(path).unwrap())
        .lines()
        .filter(|l| l.as_ref().is_ok_and(|l| l.contains("article hit")))
        .count() as u64;
    let _ = std::fs::remove_file(path);
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "side={side} case={case} n={n} caller_ns={:.1} process_ns={:.1} dropped={dropped} missing={} cs_per_100k={:.0}",
        per(caller),
        per(process),
        n - lines,
        cs as f64 * 100_000.0 / n as f64,
    );
}

//! What volume control costs on the log call, each case beside its baseline in one run:
//! `cargo bench -p hivelog --bench volume`.
//!
//! - `filtered_debug`: a `debug!` under level `info`, with a fixed level and with
//!   `HIVELOG_LEVEL_FILE` (after a change to `debug` and back, as an operator would do);
//!   the contract is ≤ 1.1× the fixed level.
//! - `enabled_event`: an `info!` written as JSON to `io::sink()`, without and with
//!   `HIVELOG_RATE_LIMIT` set and never reached; the contract is ≤ 1.1× without.
//!
//! Both sides of a group run the very same function (one callsite): see `format.rs` on why
//! two closures would measure code layout instead.

use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, Criterion};
use tracing::{debug, info, Dispatch};

fn build(vars: &[(&str, &str)]) -> (Dispatch, hivelog::Guard) {
    hivelog::builder()
        .env(hivelog::Env::from_pairs(vars.iter().copied()))
        .extra("service", "bench")
        .writer(io::sink())
        .try_build()
        .unwrap()
}

#[inline(never)]
fn filtered_debug(b: &mut criterion::Bencher<'_>) {
    b.iter(|| debug!(x = black_box(1), "filtered"))
}

#[inline(never)]
fn enabled_event(b: &mut criterion::Bencher<'_>) {
    b.iter(|| {
        info!(
            user = "a@b.c",
            article = "https://example.com/x",
            "article hit"
        )
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("level");
    std::fs::write(&file, "info\n").unwrap();
    let (fixed, _fixed) = build(&[("HIVELOG_LEVEL", "info")]);
    let (from_file, from_file_guard) = build(&[
        ("HIVELOG_LEVEL", "info"),
        ("HIVELOG_LEVEL_FILE", file.to_str().unwrap()),
    ]);
    from_file_guard.set_level("debug").unwrap();
    from_file_guard.set_level("info").unwrap();

    let mut g = c.benchmark_group("filtered_debug");
    g.warm_up_time(std::time::Duration::from_secs(3));
    g.bench_function("fixed_level", |b| {
        tracing::dispatcher::with_default(&fixed, || filtered_debug(b))
    });
    g.bench_function("level_file", |b| {
        tracing::dispatcher::with_default(&from_file, || filtered_debug(b))
    });
    g.finish();

    let (limited, _limited) = build(&[("HIVELOG_RATE_LIMIT", "1000000000/s")]);
    let mut g = c.benchmark_group("enabled_event");
    g.bench_function("no_rate_limit", |b| {
        tracing::dispatcher::with_default(&fixed, || enabled_event(b))
    });
    g.bench_function("rate_limit_not_reached", |b| {
        tracing::dispatcher::with_default(&limited, || enabled_event(b))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

//! hivelog's JSON output against tracing-subscriber's, side by side in one run, per event,
//! into `io::sink()`. Run: `cargo bench -p hivelog --bench format`.
//!
//! Both subscribers are installed the same way (`tracing::dispatcher::with_default`), so the
//! dispatch overhead is identical and the difference is the formatting and writing. hivelog
//! runs in `sync` mode here (the calling thread formats and writes), so this measures the
//! formatter; `benches/local.rs` measures the default writer thread against a real file.

use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, Criterion};
use tracing::{debug, info, info_span, Dispatch};

fn hivelog_dispatch() -> (Dispatch, hivelog::Guard) {
    hivelog::builder()
        .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
        .extra("service", "bench")
        .extra("environment", "prod")
        .output_mode(hivelog::OutputMode::Sync)
        .writer(io::sink())
        .try_build()
        .unwrap()
}

fn ts_flat() -> Dispatch {
    Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(io::sink)
            .finish(),
    )
}

fn ts_span() -> Dispatch {
    Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(io::sink)
            .finish(),
    )
}

fn event() {
    info!(
        user = "a@b.c",
        article = "https://example.com/x",
        "article hit"
    );
}

fn bench(c: &mut Criterion) {
    let (hl, _guard) = hivelog_dispatch();
    let flat = ts_flat();
    let span = ts_span();

    let mut g = c.benchmark_group("event");
    g.bench_function("hivelog", |b| {
        tracing::dispatcher::with_default(&hl, || b.iter(event))
    });
    g.bench_function("tracing_subscriber_json", |b| {
        tracing::dispatcher::with_default(&flat, || b.iter(event))
    });
    g.finish();

    let mut g = c.benchmark_group("event_in_span");
    g.bench_function("hivelog", |b| {
        tracing::dispatcher::with_default(&hl, || {
            let s = info_span!("handle", request_id = 42, route = "/hit");
            let _e = s.enter();
            b.iter(event)
        })
    });
    g.bench_function("tracing_subscriber_json", |b| {
        tracing::dispatcher::with_default(&span, || {
            let s = info_span!("handle", request_id = 42, route = "/hit");
            let _e = s.enter();
            b.iter(event)
        })
    });
    g.finish();

    // Both sides run the very same loop (one function, one callsite): a filtered-out event is
    // rejected by `tracing`'s level check before any subscriber code runs, so what differs is
    // only the subscriber's level hint. Two separate closures measured code layout instead
    // (one vs two cycles per iteration for the same seven instructions). A longer warm-up:
    // at well under a nanosecond per iteration, the first function measured after a 1 s
    // warm-up read up to 1.7x slower than the second, whichever it was.
    let mut g = c.benchmark_group("filtered_debug");
    g.warm_up_time(std::time::Duration::from_secs(3));
    g.bench_function("hivelog", |b| {
        tracing::dispatcher::with_default(&hl, || filtered_debug(b))
    });
    g.bench_function("tracing_subscriber_json", |b| {
        tracing::dispatcher::with_default(&flat, || filtered_debug(b))
    });
    g.finish();
}

/// hivelog only: an event two spans deep, before and after the process's first `Span::record`
/// (from then on, capture checks that the span chain an event links to is current). Runs last:
/// the record cannot be undone.
fn span_record_check(c: &mut Criterion) {
    let (hl, _guard) = hivelog_dispatch();
    let nested = |b: &mut criterion::Bencher<'_>| {
        tracing::dispatcher::with_default(&hl, || {
            let outer = info_span!("handle", request_id = 42, route = "/hit");
            let _o = outer.enter();
            let inner = info_span!("load", article = 7);
            let _i = inner.enter();
            b.iter(event)
        })
    };
    let mut g = c.benchmark_group("nested_spans");
    g.bench_function("no_record_yet", nested);
    tracing::dispatcher::with_default(&hl, || {
        let s = info_span!("recorded", status = tracing::field::Empty);
        s.record("status", 200);
    });
    g.bench_function("after_a_record", nested);
    g.finish();
}

#[inline(never)]
fn filtered_debug(b: &mut criterion::Bencher<'_>) {
    b.iter(|| debug!(x = black_box(1), "filtered"))
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench, span_record_check
}
criterion_main!(benches);

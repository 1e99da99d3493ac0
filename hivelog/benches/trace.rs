//! The cost of trace correlation per event: the same event outside any span, inside an
//! untraced span, and inside a traced span (which adds `trace_id` and `span_id` to the line),
//! into `io::sink()`. Run: `cargo bench -p hivelog --bench trace`.
//!
//! The bar: traced ≤ 1.10 × untraced; outside any span, unchanged (compare `no_span`
//! with `event/hivelog` of the `format` bench on the same build).

use std::io;

use criterion::{criterion_group, criterion_main, Criterion};
use tracing::{info, info_span};

fn event() {
    info!(
        user = "a@b.c",
        article = "https://example.com/x",
        "article hit"
    );
}

fn bench(c: &mut Criterion) {
    let (hl, _guard) = hivelog::builder()
        .env(hivelog::Env::from_pairs(Vec::<(String, String)>::new()))
        .extra("service", "bench")
        .extra("environment", "prod")
        .writer(io::sink())
        .try_build()
        .unwrap();
    let mut g = c.benchmark_group("trace");
    g.bench_function("no_span", |b| {
        tracing::dispatcher::with_default(&hl, || b.iter(event))
    });
    g.bench_function("untraced_span", |b| {
        tracing::dispatcher::with_default(&hl, || {
            let s = info_span!("handle", request_id = 42, route = "/hit");
            let _e = s.enter();
            b.iter(event)
        })
    });
    g.bench_function("traced_span", |b| {
        tracing::dispatcher::with_default(&hl, || {
            let s = info_span!("handle", request_id = 42, route = "/hit");
            hivelog::trace::start(&s, None);
            let _e = s.enter();
            b.iter(event)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

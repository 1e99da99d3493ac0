//! Network faults between hivelog and each destination, through the project's own TCP fault
//! proxy ([`hivelog_tests::proxy`]): pass, delay, blackhole, reset mid-stream, lost answers,
//! refuse, heal.
//!
//! Every case logs through the facade (`builder().try_build()` + `with_default`): 20 events
//! with the network healthy, 20 while the fault is on (held long enough for the sink to send
//! into it and for its timeouts to fire), 20 after healing; then one flush, and:
//! - `enqueued = delivered + rejected + dropped + failed + pending`, exactly, with nothing
//!   pending;
//! - every event is at the destination (read back from the Forward receiver, noida-db's
//!   `_search`, moto's GetLogEvents) or counted as not delivered;
//! - no log call waited for the unreachable destination (each took less than a sink
//!   timeout; p50/p99 printed);
//! - Elasticsearch stores no duplicate (client `_id`), and every copy of a Fluent event that
//!   was resent carries one chunk id.
//!
//! Destinations: the Forward receiver (fluent), noida-db (elk), moto (cloudwatch). With the
//! servers running (`scripts/test.sh` starts them): `cargo test -p hivelog-tests --test faults`.

mod common;

use std::time::Duration;

use common::*;
use hivelog_tests::proxy::{FaultProxy, Mode};

/// How long a fault stays on: longer than the sinks' configured timeouts (500 ms).
const HOLD: Duration = Duration::from_millis(1200);
/// The log call never waits for the network: a call blocked on the destination would return
/// only when a sink timeout (500 ms) fired, so every call must take less. This is the
/// behaviour, not a speed figure: latencies are printed here, and measured in a release build
/// by `cargo bench -p hivelog-tests --bench latency`.
const SINK_TIMEOUT: Duration = Duration::from_millis(500);

fn fault_case(kind: Kind, fault: Mode) {
    let backend = Backend::new(kind);
    let proxy = FaultProxy::start(backend.upstream());
    let (dispatch, guard) = backend.build(proxy.addr(), &[]);
    let run = unique("run");

    let healthy = log_events(&dispatch, &run, 0..20, 0);
    let s = only_sink(&guard.flush(Duration::from_secs(15)));
    assert_eq!((s.delivered, s.pending), (20, 0), "before the fault: {s:?}");

    proxy.set(fault);
    let during = log_events(&dispatch, &run, 20..40, 0);
    std::thread::sleep(HOLD);
    let held = only_sink(&guard.report());
    proxy.heal();
    log_events(&dispatch, &run, 40..60, 0);

    let report = guard.flush(Duration::from_secs(20));
    let s = only_sink(&report);
    assert_balanced(&s, 60);
    assert_eq!(s.pending, 0, "{s:?}");
    assert_eq!(
        s.delivered, 60,
        "with a 60 s retry window every event is delivered after healing: {s:?}"
    );
    let got = backend.received(&run);
    let missing: Vec<u64> = (0..60).filter(|i| !got.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{kind:?}/{fault:?}: delivered but not at the destination: {missing:?}"
    );
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    // Elasticsearch never stores a retried document twice (client `_id` + `create`: 409 counts
    // as delivered). Fluent is at-least-once (a lost ack means a resend) and CloudWatch has no
    // idempotency key: their duplicates are printed, not asserted.
    if kind == Kind::Es {
        assert_eq!(duplicates, 0, "{kind:?}/{fault:?}: {got:?}");
    }
    if let Backend::Fluent(receiver) = &backend {
        // Every copy of an event came in a message with the same chunk id: a receiver that
        // remembers chunk ids can drop the resends.
        let mut chunks: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> =
            Default::default();
        for e in receiver.events() {
            let v = to_json(&e.record);
            if v["run"] == run.as_str() {
                chunks
                    .entry(v["seq"].as_u64().unwrap())
                    .or_default()
                    .insert(e.chunk.clone().unwrap_or_default());
            }
        }
        let split: Vec<_> = chunks.iter().filter(|(_, c)| c.len() > 1).collect();
        assert!(
            split.is_empty(),
            "copies under different chunk ids: {split:?}"
        );
    }
    let p = proxy.stats();
    match fault {
        Mode::Blackhole => assert!(p.swallowed_bytes > 0, "blackhole not hit: {p:?}"),
        Mode::ResetAfter(_) | Mode::ResetOnAnswer => {
            assert!(p.resets > 0, "reset not hit: {p:?}")
        }
        _ => {}
    }
    let p99 = quantile(&during, 0.99);
    eprintln!(
        "FIGURE faults {kind:?} {fault:?}: log call p50 {:?} p99 {:?} (healthy p99 {:?}); \
         while held: delivered {} pending {} retried {}; after heal: {s:?}; duplicates {duplicates}; proxy {p:?}",
        quantile(&during, 0.5),
        p99,
        quantile(&healthy, 0.99),
        held.delivered,
        held.pending,
        held.retried,
    );
    let max = quantile(&during, 1.0);
    assert!(
        max < SINK_TIMEOUT,
        "a log call took {max:?} during {fault:?}: as long as a sink timeout"
    );
    let s = only_sink(&guard.shutdown(Duration::from_secs(2)));
    assert_balanced(&s, 60);
}

macro_rules! fault_tests {
    ($($name:ident: $kind:expr, $fault:expr;)*) => {$(
        #[test]
        fn $name() {
            fault_case($kind, $fault);
        }
    )*};
}

fault_tests! {
    fluent_delay_heal: Kind::Fluent, Mode::Delay(Duration::from_millis(300));
    fluent_blackhole_heal: Kind::Fluent, Mode::Blackhole;
    fluent_reset_mid_stream_heal: Kind::Fluent, Mode::ResetAfter(40);
    fluent_refuse_heal: Kind::Fluent, Mode::Refuse;
    es_delay_heal: Kind::Es, Mode::Delay(Duration::from_millis(300));
    es_blackhole_heal: Kind::Es, Mode::Blackhole;
    es_reset_mid_stream_heal: Kind::Es, Mode::ResetAfter(300);
    es_refuse_heal: Kind::Es, Mode::Refuse;
    cloudwatch_delay_heal: Kind::CloudWatch, Mode::Delay(Duration::from_millis(300));
    cloudwatch_blackhole_heal: Kind::CloudWatch, Mode::Blackhole;
    cloudwatch_reset_mid_stream_heal: Kind::CloudWatch, Mode::ResetAfter(600);
    cloudwatch_refuse_heal: Kind::CloudWatch, Mode::Refuse;
    fluent_lost_acks_heal: Kind::Fluent, Mode::ResetOnAnswer;
    es_lost_responses_heal: Kind::Es, Mode::ResetOnAnswer;
    cloudwatch_lost_responses_heal: Kind::CloudWatch, Mode::ResetOnAnswer;
}

/// With acks on, the receiver dying (after recording some messages, before acking them) and
/// coming back on the same port loses nothing: unacked chunks are resent with the same id.
#[test]
fn fluent_receiver_restart_with_acks_loses_nothing() {
    let mut backend = Backend::new(Kind::Fluent);
    let proxy = FaultProxy::start(backend.upstream());
    let (dispatch, guard) = backend.build(proxy.addr(), &[]);
    let run = unique("restart");
    log_events(&dispatch, &run, 0..50, 0);
    backend.receiver().wait_for(10, Duration::from_secs(5));
    backend.receiver().stop();
    log_events(&dispatch, &run, 50..100, 0);
    std::thread::sleep(Duration::from_millis(800));
    let before = backend.receiver().events().len();
    backend.receiver().start_again();
    log_events(&dispatch, &run, 100..150, 0);
    let s = only_sink(&guard.flush(Duration::from_secs(20)));
    assert_balanced(&s, 150);
    assert_eq!((s.delivered, s.pending, s.failed), (150, 0, 0), "{s:?}");
    let seen = backend.received(&run);
    let missing: Vec<u64> = (0..150).filter(|i| !seen.contains_key(i)).collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    eprintln!(
        "FIGURE faults fluent restart: {before} events before the stop, {} copies received for 150 events, {s:?}",
        seen.values().sum::<usize>()
    );
}

/// A blackholed destination with a small budget: the queue stays within its bytes, overflow
/// is counted (never silent), and after healing the identity holds and the rest is delivered.
fn overflow_case(kind: Kind) {
    let backend = Backend::new(kind);
    let proxy = FaultProxy::start(backend.upstream());
    let budget = 32 * 1024u64;
    let (dispatch, guard) = backend.build(
        proxy.addr(),
        &[
            ("HIVELOG_BUFFER_BYTES", "32KiB"),
            ("HIVELOG_FLUENT_ACK_TIMEOUT", "300ms"),
        ],
    );
    let run = unique("overflow");
    proxy.set(Mode::Blackhole);
    let took = log_events(&dispatch, &run, 0..2000, 200);
    let mid = only_sink(&guard.report());
    assert!(
        mid.pending_bytes <= budget,
        "pending {} bytes over a {budget}-byte budget: {mid:?}",
        mid.pending_bytes
    );
    assert!(mid.dropped_overflow > 0, "{mid:?}");
    proxy.heal();
    let s = only_sink(&guard.flush(Duration::from_secs(20)));
    assert_balanced(&s, 2000);
    assert_eq!(s.pending, 0, "{s:?}");
    assert_eq!(s.delivered + s.dropped_overflow, 2000, "{s:?}");
    let got = backend.received(&run);
    assert_eq!(got.len() as u64, s.delivered, "{s:?}");
    eprintln!(
        "FIGURE faults overflow {kind:?}: 2000 x ~300 B into a 32 KiB budget while blackholed: \
         peak pending {} B, dropped {}, delivered {}; log call p99 {:?} max {:?}",
        mid.pending_bytes,
        s.dropped_overflow,
        s.delivered,
        quantile(&took, 0.99),
        quantile(&took, 1.0)
    );
}

#[test]
fn fluent_overflow_while_blackholed_is_counted_and_bounded() {
    overflow_case(Kind::Fluent);
}

#[test]
fn es_overflow_while_blackholed_is_counted_and_bounded() {
    overflow_case(Kind::Es);
}

#[test]
fn cloudwatch_overflow_while_blackholed_is_counted_and_bounded() {
    overflow_case(Kind::CloudWatch);
}

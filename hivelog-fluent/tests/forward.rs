//! hivelog-fluent against the Forward receiver of `hivelog-tests` (itself proven against
//! `fluent-logger` and hand-made frames in `tests/tests/forward_receiver.rs`).
//!
//! The first half calls `Sink::send` directly to check each protocol rule in isolation; the
//! second half goes through `Pipeline::spawn`, as the `hivelog` crate does, for the faults.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use hivelog_core::pipeline::RetryPolicy;
use hivelog_core::record::{Str, Value};
use hivelog_core::{Format, Outcome, Pipeline, PipelineConfig, Record, Sink};
use hivelog_fluent::sink::tally;
use hivelog_fluent::{Compression, FluentConfig, FluentSink, TimeFormat};
use hivelog_tests::forward::{Event, Fault, ForwardReceiver, Mode, ReceiverConfig};

const TARGETS: [&str; 3] = ["app::db", "app::http::server", "app"];

fn format() -> Arc<Format> {
    Arc::new(Format::builder().service("svc").build())
}

/// Record `i`: its own nanosecond time, message, fields of each type, one of three targets.
fn record(i: u64) -> Record {
    let mut r = Record::new(
        tracing::Level::INFO,
        Str::Static(TARGETS[(i % 3) as usize]),
        1 << 16,
        4,
    );
    r.time = UNIX_EPOCH
        + Duration::new(
            1_763_000_000 + i / 1000,
            (i * 1_000_003 % 1_000_000_000) as u32,
        );
    r.message = Some(r.fields.push_fmt(format_args!("event {i}")));
    r.fields.push("i", Value::U64(i));
    r.fields.push("neg", Value::I64(-(i as i64)));
    r.fields.push("ratio", Value::F64(i as f64 / 4.0));
    let s = r.fields.push_str("ünïcode \"quoted\"");
    r.fields.push("s", Value::Str(s));
    r.seq = i;
    r
}

fn batch(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(record).collect()
}

fn index_of(e: &Event) -> u64 {
    e.get("i").and_then(rmpv::Value::as_u64).expect("field i")
}

fn json_of(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match v {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(*b),
        M::Integer(i) => i
            .as_u64()
            .map(J::from)
            .unwrap_or_else(|| J::from(i.as_i64().unwrap())),
        M::F64(f) => J::from(*f),
        M::String(s) => J::String(s.as_str().unwrap().to_owned()),
        M::Array(a) => J::Array(a.iter().map(json_of).collect()),
        M::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), json_of(v)))
                .collect(),
        ),
        other => panic!("unexpected {other:?}"),
    }
}

fn config(r: &ForwardReceiver) -> FluentConfig {
    FluentConfig::new(&r.url()).unwrap()
}

fn fast_pipeline() -> PipelineConfig {
    PipelineConfig {
        flush_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(60),
        },
        ..PipelineConfig::default()
    }
}

#[tokio::test]
async fn every_event_arrives_once_with_exact_nanosecond_time_and_the_json_fields() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let format = format();
    let mut sink = FluentSink::new(config(&r), format.clone());
    let b = batch(0..2000);
    let out = sink.send(&b).await;
    assert_eq!(tally(&out), [2000, 0, 0, 0, 0], "{:?}", out.error());
    let events = r.events();
    assert_eq!(events.len(), 2000);
    let mut seen = vec![false; 2000];
    for e in &events {
        let i = index_of(e);
        assert!(!seen[i as usize], "event {i} twice");
        seen[i as usize] = true;
        let (secs, nanos) = b[i as usize].unix_time();
        assert_eq!((e.secs, e.nanos, e.event_time), (secs, nanos, true));
        let mut json = Vec::new();
        format.write_json(&b[i as usize], &mut json);
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json_of(&e.record), json);
        assert_eq!(e.tag, "svc");
    }
    let m = r.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].mode, m[0].size, m[0].acked),
        (Mode::PackedForward, Some(2000), true)
    );
    assert_eq!(out.bytes_sent(), m[0].bytes as u64);
    assert!(r.errors().is_empty(), "{:?}", r.errors());
}

#[tokio::test]
async fn tags_route_by_target_with_one_message_per_tag() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r).tag("{service}.{target}").unwrap(), format());
    let out = sink.send(&batch(0..30)).await;
    assert_eq!(tally(&out), [30, 0, 0, 0, 0]);
    let mut tags: Vec<(String, usize)> = r
        .messages()
        .iter()
        .map(|m| (m.tag.clone(), m.entries))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            ("svc.app".into(), 10),
            ("svc.app.db".into(), 10),
            ("svc.app.http.server".into(), 10)
        ]
    );
    for e in r.events() {
        let target = TARGETS[(index_of(&e) % 3) as usize];
        assert_eq!(e.tag, format!("svc.{}", target.replace("::", ".")));
    }
}

#[tokio::test]
async fn gzip_sends_compressed_packed_forward_that_decodes() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r).compress(Compression::Gzip), format());
    assert_eq!(tally(&sink.send(&batch(0..500)).await), [500, 0, 0, 0, 0]);
    assert_eq!(tally(&sink.send(&batch(500..600)).await), [100, 0, 0, 0, 0]);
    let m = r.messages();
    assert!(m
        .iter()
        .all(|m| m.mode == Mode::CompressedPackedForward && m.gzip_members == 1));
    let mut got: Vec<u64> = r.events().iter().map(index_of).collect();
    got.sort();
    assert_eq!(got, (0..600).collect::<Vec<_>>());
    assert!(m[0].bytes < 500 * 60, "compressed to {} bytes", m[0].bytes);
}

#[tokio::test]
async fn integer_time_and_no_ack_for_old_receivers() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r).time(TimeFormat::Integer).ack(false), format());
    assert_eq!(tally(&sink.send(&batch(0..10)).await), [10, 0, 0, 0, 0]);
    assert_eq!(r.wait_for_async(10, Duration::from_secs(5)).await, 10);
    let e = &r.events()[3];
    assert_eq!((e.secs, e.nanos, e.event_time), (1_763_000_000, 0, false));
    assert_eq!(r.messages()[0].chunk, None);
}

#[tokio::test]
async fn unix_socket_transport_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let r = ForwardReceiver::start_unix(&dir.path().join("fluent.sock"), ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r), format());
    assert_eq!(tally(&sink.send(&batch(0..50)).await), [50, 0, 0, 0, 0]);
    assert_eq!(r.count(), 50);
}

#[tokio::test]
async fn the_same_records_resent_carry_the_same_chunk() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r), format());
    let b = batch(0..20);
    sink.send(&b).await;
    sink.send(&b).await;
    sink.send(&b[..19]).await;
    let m = r.messages();
    assert_eq!(m[0].chunk, m[1].chunk);
    assert_ne!(m[0].chunk, m[2].chunk);
    assert_eq!(m[0].chunk.as_ref().unwrap().len(), 24);
}

#[tokio::test]
async fn an_unacked_message_is_resent_whole_with_its_chunk_and_newer_records_follow_apart() {
    let r = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::NeverAck));
    let mut sink = FluentSink::new(config(&r).ack_timeout(Duration::from_millis(100)), format());
    let first = batch(0..10);
    assert_eq!(tally(&sink.send(&first).await), [0, 0, 10, 0, 0]);
    // As the pipeline does: the retried records lead, newer ones follow.
    let again = batch(0..15);
    assert_eq!(tally(&sink.send(&again).await), [0, 0, 15, 0, 0]);
    let m = r.messages();
    assert_eq!(m.len(), 3);
    assert_eq!((m[1].entries, m[2].entries), (10, 5));
    assert_eq!(m[0].chunk, m[1].chunk, "the resent message keeps its chunk");
    assert_ne!(m[1].chunk, m[2].chunk);
}

#[tokio::test]
async fn messages_stay_under_the_limit_and_the_rest_is_deferred_or_rejected() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let max = 64 * 1024;
    let mut sink = FluentSink::new(config(&r).max_message_bytes(max), format());
    assert!(sink.limits().max_bytes < max);
    let mut b = batch(0..2000);
    // One event that can never fit in a message on its own.
    let mut huge = record(2000);
    let s = huge.fields.push_str(&"x".repeat(60_000));
    huge.fields.push("blob", Value::Str(s));
    let s = huge.fields.push_str(&"y".repeat(10_000));
    huge.fields.push("blob2", Value::Str(s));
    b.insert(0, huge);
    let out = sink.send(&b).await;
    let [delivered, deferred, retry, rejected, failed] = tally(&out);
    assert_eq!((retry, failed), (0, 0));
    assert_eq!(rejected, 1);
    assert!(matches!(out.as_slice()[0], Outcome::Rejected(_)));
    assert!(
        out.reason(0).contains("HIVELOG_FLUENT_MAX_MESSAGE_BYTES"),
        "{}",
        out.reason(0)
    );
    assert!(delivered > 100 && deferred > 100, "{delivered} {deferred}");
    assert_eq!(r.count() as usize, delivered);
    assert!(r.messages().iter().all(|m| m.bytes <= max));
    // Delivered records are a prefix: deferral keeps the order.
    assert!(out.as_slice()[1..=delivered]
        .iter()
        .all(|o| *o == Outcome::Delivered));
}

#[tokio::test]
async fn encoded_len_bounds_the_bytes_on_the_wire() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r), format());
    let b = batch(0..300);
    let bound: usize = b.iter().map(|x| sink.encoded_len(x)).sum();
    sink.send(&b).await;
    let bytes = r.messages()[0].bytes;
    assert!(bytes <= bound + 1024, "{bytes} > {bound}");
}

#[tokio::test]
async fn shared_key_handshake_then_delivery() {
    let r = ForwardReceiver::start(ReceiverConfig::default().shared_key("s3cret"));
    let mut sink = FluentSink::new(config(&r).shared_key("s3cret"), format());
    assert_eq!(tally(&sink.send(&batch(0..10)).await), [10, 0, 0, 0, 0]);
    assert_eq!(tally(&sink.send(&batch(10..20)).await), [10, 0, 0, 0, 0]);
    assert_eq!(r.handshakes(), (1, 0));
    assert_eq!(r.connections(), 1);
    assert!(r.errors().is_empty(), "{:?}", r.errors());
}

#[tokio::test]
async fn shared_key_with_user_and_password() {
    let mut rc = ReceiverConfig::default().shared_key("k");
    rc.user = Some(("alice".into(), "pw".into()));
    let r = ForwardReceiver::start(rc);
    let mut sink = FluentSink::new(config(&r).shared_key("k").user("alice", "pw"), format());
    assert_eq!(tally(&sink.send(&batch(0..3)).await), [3, 0, 0, 0, 0]);
    let mut rc = ReceiverConfig::default().shared_key("k");
    rc.user = Some(("alice".into(), "pw".into()));
    let r = ForwardReceiver::start(rc);
    let mut sink = FluentSink::new(config(&r).shared_key("k").user("alice", "wrong"), format());
    let out = sink.send(&batch(0..3)).await;
    assert_eq!(tally(&out), [0, 0, 0, 0, 3]);
    assert!(
        out.error().unwrap().contains("username/password mismatch"),
        "{:?}",
        out.error()
    );
}

#[tokio::test]
async fn a_wrong_shared_key_fails_with_a_clear_error_and_no_busy_loop() {
    let r = ForwardReceiver::start(ReceiverConfig::default().shared_key("s3cret"));
    let mut sink = FluentSink::new(config(&r).shared_key("nope"), format());
    let out = sink.send(&batch(0..5)).await;
    assert_eq!(tally(&out), [0, 0, 0, 0, 5]);
    let err = out.error().unwrap();
    assert!(
        err.contains("shared_key mismatch") && err.contains("HIVELOG_FLUENT_SHARED_KEY"),
        "{err}"
    );
    // Later batches fail at once with the same reason, without reconnecting.
    for _ in 0..20 {
        let out = sink.send(&batch(5..6)).await;
        assert_eq!(out.error(), Some(err));
    }
    assert_eq!(r.connections(), 1);
    assert_eq!(r.count(), 0);
}

#[tokio::test]
async fn a_wrong_server_digest_is_refused_and_nothing_is_sent() {
    let r = ForwardReceiver::start(
        ReceiverConfig::default()
            .shared_key("k")
            .fault(Fault::WrongServerDigest),
    );
    let mut sink = FluentSink::new(config(&r).shared_key("k"), format());
    let out = sink.send(&batch(0..5)).await;
    assert_eq!(tally(&out), [0, 0, 0, 0, 5]);
    assert!(out.error().unwrap().contains("digest"), "{:?}", out.error());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.count(), 0);
}

#[tokio::test]
async fn a_receiver_closing_after_helo_is_reported_and_retried() {
    let r = ForwardReceiver::start(
        ReceiverConfig::default()
            .shared_key("k")
            .fault(Fault::CloseAfterHelo),
    );
    let mut sink = FluentSink::new(config(&r).shared_key("k"), format());
    let out = sink.send(&batch(0..5)).await;
    assert_eq!(tally(&out), [0, 0, 5, 0, 0]);
    let err = out.error().unwrap();
    assert!(
        err.contains("closed the connection during the handshake") && err.contains("SHARED_KEY"),
        "{err}"
    );
}

#[tokio::test]
async fn key_mismatches_in_either_direction_name_the_fix() {
    // We have a key, the receiver has none: no HELO comes.
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let mut sink = FluentSink::new(
        config(&r)
            .shared_key("k")
            .connect_timeout(Duration::from_millis(300)),
        format(),
    );
    let out = sink.send(&batch(0..2)).await;
    assert_eq!(tally(&out), [0, 0, 0, 0, 2]);
    assert!(
        out.error().unwrap().contains("sent no HELO"),
        "{:?}",
        out.error()
    );
    // The receiver wants a key, we have none: its HELO arrives where an ack was expected.
    let r = ForwardReceiver::start(ReceiverConfig::default().shared_key("k"));
    let mut sink = FluentSink::new(config(&r), format());
    let out = sink.send(&batch(0..2)).await;
    assert_eq!(tally(&out), [0, 0, 0, 0, 2]);
    assert!(
        out.error()
            .unwrap()
            .contains("set HIVELOG_FLUENT_SHARED_KEY"),
        "{:?}",
        out.error()
    );
}

#[tokio::test]
async fn a_never_acking_receiver_times_out_into_retries() {
    let r = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::NeverAck));
    let mut sink = FluentSink::new(config(&r).ack_timeout(Duration::from_millis(200)), format());
    let t = Instant::now();
    let out = sink.send(&batch(0..10)).await;
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(tally(&out), [0, 0, 10, 0, 0]);
    assert!(
        out.error().unwrap().contains("did not ack"),
        "{:?}",
        out.error()
    );
    // The next attempt uses a fresh connection, so a late ack cannot be mistaken.
    sink.send(&batch(0..10)).await;
    assert_eq!(r.connections(), 2);
}

#[tokio::test]
async fn a_receiver_that_is_down_gives_retries_with_the_address_in_the_error() {
    let r = ForwardReceiver::down(ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r), format());
    let out = sink.send(&batch(0..3)).await;
    assert_eq!(tally(&out), [0, 0, 3, 0, 0]);
    let err = out.error().unwrap();
    assert!(
        err.contains(&format!("cannot connect to tcp://{}", r.addr())),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_before_sending() {
    let mut r = ForwardReceiver::start(ReceiverConfig::default());
    let mut sink = FluentSink::new(config(&r), format());
    assert_eq!(tally(&sink.send(&batch(0..3)).await), [3, 0, 0, 0, 0]);
    r.stop();
    r.start_again();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(tally(&sink.send(&batch(3..6)).await), [3, 0, 0, 0, 0]);
    assert_eq!(r.count(), 6);
}

// ---- Through the pipeline ----

fn spawn(sink: FluentSink, cfg: PipelineConfig) -> Pipeline {
    Pipeline::spawn(sink, cfg).unwrap()
}

#[test]
fn pipeline_delivers_everything_when_the_receiver_comes_up_late() {
    let mut r = ForwardReceiver::down(ReceiverConfig::default());
    let p = spawn(FluentSink::new(config(&r), format()), fast_pipeline());
    for i in 0..1000 {
        p.push(record(i));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(r.count(), 0);
    r.start_again();
    let stats = p.flush(Instant::now() + Duration::from_secs(20));
    assert_eq!(
        (stats.delivered, stats.pending, stats.failed),
        (1000, 0, 0),
        "{stats:?}"
    );
    let mut got: Vec<u64> = r.events().iter().map(index_of).collect();
    got.sort();
    assert_eq!(
        got,
        (0..1000).collect::<Vec<_>>(),
        "every event exactly once"
    );
}

#[test]
fn pipeline_loses_nothing_when_the_receiver_is_killed_and_restarted_mid_stream() {
    let mut r = ForwardReceiver::start(ReceiverConfig::default());
    let p = spawn(FluentSink::new(config(&r), format()), fast_pipeline());
    let n = 30_000u64;
    for i in 0..n {
        p.push(record(i));
        if i == n / 3 {
            r.stop();
        }
        if i == n / 2 {
            r.start_again();
        }
        if i % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let stats = p.flush(Instant::now() + Duration::from_secs(30));
    assert_eq!(
        (
            stats.delivered,
            stats.pending,
            stats.failed,
            stats.dropped()
        ),
        (n, 0, 0, 0),
        "{stats:?}"
    );
    let mut counts = vec![0u32; n as usize];
    let mut chunks: Vec<Option<String>> = vec![None; n as usize];
    for e in r.events() {
        let i = index_of(&e) as usize;
        counts[i] += 1;
        // A duplicate is a whole message resent: it carries the first copy's chunk.
        match &chunks[i] {
            None => chunks[i] = e.chunk.clone(),
            Some(c) => assert_eq!(
                Some(c),
                e.chunk.as_ref(),
                "event {i} resent in another message"
            ),
        }
    }
    assert!(counts.iter().all(|c| *c >= 1), "lost events");
    let dups: u64 = counts.iter().map(|c| u64::from(c - 1)).sum();
    // Duplicates only come from resent, unacked records.
    assert!(
        dups <= stats.retried,
        "{dups} duplicates > {} retried",
        stats.retried
    );
}

#[test]
fn pipeline_survives_a_receiver_that_drops_a_message_mid_stream() {
    let r = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::DropMessage(2)));
    let p = spawn(FluentSink::new(config(&r), format()), fast_pipeline());
    for i in 0..3000 {
        p.push(record(i));
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let stats = p.flush(Instant::now() + Duration::from_secs(20));
    assert_eq!((stats.delivered, stats.pending), (3000, 0), "{stats:?}");
    assert!(stats.retried > 0);
    let mut got: Vec<u64> = r.events().iter().map(index_of).collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 3000);
}

#[test]
fn a_never_acking_receiver_gets_bounded_resends_and_the_events_fail_in_the_end() {
    let r = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::NeverAck));
    let mut cfg = fast_pipeline();
    cfg.retry.max_elapsed = Duration::from_secs(2);
    let p = spawn(
        FluentSink::new(config(&r).ack_timeout(Duration::from_millis(100)), format()),
        cfg,
    );
    for i in 0..100 {
        p.push(record(i));
    }
    let stats = p.flush(Instant::now() + Duration::from_secs(10));
    assert_eq!(
        (stats.delivered, stats.failed, stats.pending),
        (0, 100, 0),
        "{stats:?}"
    );
    assert!(
        stats
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("did not ack"),
        "{stats:?}"
    );
    // Each attempt costs an ack timeout at least: at most ~2s / 100ms resends.
    let sent = r.count();
    assert!((100..=100 * 25).contains(&sent), "{sent} events received");
}

#[test]
fn a_wrong_key_through_the_pipeline_reports_the_reason_without_hammering() {
    let r = ForwardReceiver::start(ReceiverConfig::default().shared_key("right"));
    let p = spawn(
        FluentSink::new(config(&r).shared_key("wrong"), format()),
        fast_pipeline(),
    );
    for i in 0..50 {
        p.push(record(i));
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = p.flush(Instant::now() + Duration::from_secs(5));
    assert_eq!((stats.delivered, stats.failed), (0, 50), "{stats:?}");
    assert!(stats.last_error.unwrap().contains("shared_key mismatch"));
    assert_eq!(r.connections(), 1, "one attempt per AUTH_RETRY_INTERVAL");
}

/// The receiver accepts and never reads nor acks, and the sink's timeouts are a minute: every
/// one of 100 000 pushes returns while the first send is still stuck (no timeout fired, nothing
/// retried or failed yet), so no push waits for the network. What a push costs is measured by
/// the benchmarks, not here.
#[test]
fn log_calls_return_while_the_receiver_hangs() {
    let r = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::Stall));
    let mut cfg = fast_pipeline();
    cfg.buffer_bytes = 4_000_000;
    let p = spawn(
        FluentSink::new(
            config(&r)
                .write_timeout(Duration::from_secs(60))
                .ack_timeout(Duration::from_secs(60)),
            format(),
        ),
        cfg,
    );
    let n = 100_000;
    for rec in batch(0..n) {
        p.push(rec);
    }
    let stats = p.stats();
    assert_eq!(stats.enqueued, n, "{stats:?}");
    assert_eq!(
        (stats.delivered, stats.retried, stats.failed),
        (0, 0, 0),
        "the first send is still waiting on the receiver: {stats:?}"
    );
    assert!(
        stats.dropped_overflow > 0,
        "the budget bounds memory: {stats:?}"
    );
    assert_eq!(r.count(), 0);
}

#[tokio::test]
async fn tls_with_a_private_ca_delivers_and_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = hivelog_tests::forward::tls_material(dir.path());
    let r = ForwardReceiver::start_tls(ReceiverConfig::default().shared_key("k"), &cert, &key);
    let cfg = FluentConfig::new(&r.tls_url())
        .unwrap()
        .ca_cert(&ca)
        .shared_key("k");
    let mut sink = FluentSink::new(cfg, format());
    assert_eq!(tally(&sink.send(&batch(0..100)).await), [100, 0, 0, 0, 0]);
    assert_eq!(
        tally(&sink.send(&batch(100..200)).await),
        [200 - 100, 0, 0, 0, 0]
    );
    assert_eq!(
        (r.count(), r.connections(), r.handshakes()),
        (200, 1, (1, 0))
    );
    // The same server without its CA in the trust store: refused before anything is sent.
    let mut sink = FluentSink::new(FluentConfig::new(&r.tls_url()).unwrap(), format());
    let out = sink.send(&batch(0..1)).await;
    assert_eq!(tally(&out), [0, 0, 1, 0, 0]);
    let err = out.error().unwrap();
    assert!(
        err.contains("TLS with tls://localhost") && err.contains("certificate"),
        "{err}"
    );
    assert_eq!(r.count(), 200);
}

#[test]
fn a_silent_network_partition_is_detected_by_the_ack_timeout_and_healed_without_loss() {
    use hivelog_tests::proxy::{FaultProxy, Mode as Net};
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let proxy = FaultProxy::start(r.addr());
    let cfg = FluentConfig::new(&format!("tcp://{}", proxy.addr()))
        .unwrap()
        .ack_timeout(Duration::from_millis(300));
    let p = spawn(FluentSink::new(cfg, format()), fast_pipeline());
    for i in 0..500 {
        p.push(record(i));
    }
    assert_eq!(
        p.flush(Instant::now() + Duration::from_secs(10)).delivered,
        500
    );
    // The peer goes silent: writes still succeed into the socket, only acks stop.
    proxy.set(Net::Blackhole);
    for i in 500..1000 {
        p.push(record(i));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let stats = p.stats();
    assert!(stats.retried > 0, "{stats:?}");
    assert!(
        stats
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("did not ack"),
        "{stats:?}"
    );
    proxy.heal();
    let stats = p.flush(Instant::now() + Duration::from_secs(20));
    assert_eq!(
        (stats.delivered, stats.pending, stats.failed),
        (1000, 0, 0),
        "{stats:?}"
    );
    let mut got: Vec<u64> = r.events().iter().map(index_of).collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 1000);
}

#[test]
fn a_connection_reset_in_the_middle_of_a_message_loses_nothing() {
    use hivelog_tests::proxy::{FaultProxy, Mode as Net};
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let proxy = FaultProxy::start(r.addr());
    let p = spawn(
        FluentSink::new(
            FluentConfig::new(&format!("tcp://{}", proxy.addr())).unwrap(),
            format(),
        ),
        fast_pipeline(),
    );
    proxy.set(Net::ResetAfter(10_000));
    for i in 0..2000 {
        p.push(record(i));
    }
    std::thread::sleep(Duration::from_millis(300));
    proxy.heal();
    let stats = p.flush(Instant::now() + Duration::from_secs(20));
    assert_eq!((stats.delivered, stats.pending), (2000, 0), "{stats:?}");
    assert!(proxy.stats().resets > 0);
    let mut got: Vec<u64> = r.events().iter().map(index_of).collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 2000);
    assert!(
        r.errors().iter().all(|e| e.contains("partial message")),
        "{:?}",
        r.errors()
    );
}

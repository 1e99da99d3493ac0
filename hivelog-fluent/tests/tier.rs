//! Several Fluentd receivers as one tier: failover, silence, weights and standbys, against the
//! in-repo Forward receivers and the fault proxy, through the pipeline as the `hivelog` crate
//! runs it.
//!
//! What every test checks on the receivers' side: every event arrived at least once, and an
//! event that arrived twice came both times under the same chunk id (a whole message resent
//! because its ack was lost, which a downstream can drop by chunk).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use hivelog_core::endpoints::{EndpointState, EndpointStats};
use hivelog_core::pipeline::RetryPolicy;
use hivelog_core::record::{Str, Value};
use hivelog_core::{Format, Pipeline, PipelineConfig, Record, Stats};
use hivelog_fluent::{FluentConfig, FluentSink};
use hivelog_tests::forward::{ForwardReceiver, ReceiverConfig};
use hivelog_tests::proxy::{FaultProxy, Mode as Net};
use hivelog_tests::wait_until;

fn format() -> Arc<Format> {
    Arc::new(Format::builder().service("svc").build())
}

fn record(i: u64) -> Record {
    let mut r = Record::new(tracing::Level::INFO, Str::Static("app"), 1 << 16, 4);
    r.time = UNIX_EPOCH + Duration::new(1_763_000_000 + i / 1000, 0);
    r.message = Some(r.fields.push_fmt(format_args!("event {i}")));
    r.fields.push("i", Value::U64(i));
    r
}

fn pipeline(config: FluentConfig) -> Pipeline {
    let cfg = PipelineConfig {
        flush_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(60),
        },
        ..PipelineConfig::default()
    };
    Pipeline::spawn(FluentSink::new(config, format()), cfg).unwrap()
}

/// Pushes `range`, pausing now and then so that batches stay small and many, and calls
/// `at(i)` before each push.
fn stream(p: &Pipeline, range: std::ops::Range<u64>, mut at: impl FnMut(u64)) {
    for i in range {
        at(i);
        p.push(record(i));
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Events per index over all receivers; asserts none is lost and duplicates share a chunk.
fn check_all_arrived(receivers: &[&ForwardReceiver], n: u64) -> u64 {
    let mut chunks: HashMap<u64, Option<String>> = HashMap::new();
    let mut copies = 0u64;
    for r in receivers {
        for e in r.events() {
            let i = e.get("i").and_then(rmpv::Value::as_u64).expect("field i");
            copies += 1;
            match chunks.get(&i) {
                None => {
                    chunks.insert(i, e.chunk.clone());
                }
                Some(c) => assert_eq!(c, &e.chunk, "event {i} resent in another message"),
            }
        }
    }
    let missing: Vec<u64> = (0..n)
        .filter(|i| !chunks.contains_key(i))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "lost events, first: {missing:?}");
    copies - n
}

fn endpoint<'a>(stats: &'a Stats, name: &str) -> &'a EndpointStats {
    stats
        .endpoints
        .iter()
        .find(|e| e.endpoint == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {:?}", stats.endpoints))
}

fn resent(stats: &Stats) -> u64 {
    stats.endpoints.iter().map(|e| e.resent).sum()
}

#[test]
fn one_of_two_receivers_killed_mid_stream_loses_nothing() {
    let mut a = ForwardReceiver::start(ReceiverConfig::default());
    let b = ForwardReceiver::start(ReceiverConfig::default());
    let addr = format!("{},{}", a.url(), b.url());
    let p = pipeline(FluentConfig::new(&addr).unwrap());
    let n = 20_000;
    stream(&p, 0..n, |i| {
        if i == n / 3 {
            a.stop();
        }
    });
    let stats = p.shutdown(Instant::now() + Duration::from_secs(10));
    assert_eq!(
        (stats.delivered, stats.pending, stats.failed),
        (n, 0, 0),
        "{stats:?}"
    );
    let dups = check_all_arrived(&[&a, &b], n);
    assert!(
        dups <= resent(&stats) + stats.retried,
        "{dups} duplicates: {stats:?}"
    );
    assert_eq!(endpoint(&stats, &a.url()).state, EndpointState::Down);
    assert_eq!(endpoint(&stats, &b.url()).state, EndpointState::Up);
    let delivered: u64 = stats.endpoints.iter().map(|e| e.delivered).sum();
    assert_eq!(delivered, n, "{:?}", stats.endpoints);
    assert!(
        a.count() > 0 && b.count() > n / 2,
        "{} {}",
        a.count(),
        b.count()
    );
}

/// The proxy in front of one receiver swallows everything from the middle of the stream on,
/// on open and new connections alike (a hung aggregator). The ack timeout is a minute: only
/// the silence rule can get the events through before the 10 s deadline.
#[test]
fn one_of_two_receivers_going_silent_mid_stream_loses_nothing() {
    let a = ForwardReceiver::start(ReceiverConfig::default());
    let b = ForwardReceiver::start(ReceiverConfig::default());
    let proxy = FaultProxy::start(a.addr());
    let addr = format!("{},{}", proxy.tcp_url(), b.url());
    let cfg = FluentConfig::new(&addr)
        .unwrap()
        .ack_timeout(Duration::from_secs(60));
    let p = pipeline(cfg);
    let n = 20_000;
    stream(&p, 0..n, |i| {
        if i == n / 3 {
            proxy.set(Net::Blackhole);
        }
    });
    // A flush, not a shutdown: the shutdown rule does not apply, only the silence rule.
    let stats = p.flush(Instant::now() + Duration::from_secs(10));
    assert_eq!(
        (stats.delivered, stats.pending, stats.failed),
        (n, 0, 0),
        "{stats:?}"
    );
    let dups = check_all_arrived(&[&a, &b], n);
    let silent = endpoint(&stats, &proxy.tcp_url());
    assert!(
        endpoint(&stats, &b.url()).resent > 0,
        "the silent server's messages went to the other: {:?}",
        stats.endpoints
    );
    assert!(
        silent.delivered > 0 && silent.delivered < n / 2,
        "{silent:?}"
    );
    // Only messages whose ack the silence swallowed may arrive twice, as resent.
    assert!(dups <= resent(&stats), "{dups} duplicates: {stats:?}");
}

/// The only receiver's connection goes silent one second in, while a new connection would
/// work; the default ack timeout (30 s) is longer than the 10 s shutdown deadline.
#[test]
fn the_only_receivers_silent_connection_is_replaced_within_a_10s_shutdown() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let proxy = FaultProxy::start(r.addr());
    let p = pipeline(FluentConfig::new(&proxy.tcp_url()).unwrap());
    let n = 20_000;
    let started = Instant::now();
    let mut silenced = false;
    stream(&p, 0..n, |_| {
        if !silenced && started.elapsed() >= Duration::from_secs(1) {
            proxy.set(Net::Silent);
            silenced = true;
        }
    });
    if !silenced {
        proxy.set(Net::Silent);
    }
    let stats = p.shutdown(Instant::now() + Duration::from_secs(10));
    assert_eq!(
        (stats.delivered, stats.pending, stats.failed),
        (n, 0, 0),
        "{stats:?}"
    );
    assert!(
        proxy.stats().accepted >= 2,
        "a new connection replaced the silent one"
    );
    // Only messages whose ack the silence swallowed may arrive twice, as resent.
    let dups = check_all_arrived(&[&r], n);
    assert!(dups <= resent(&stats), "{dups} duplicates: {stats:?}");
    assert!(resent(&stats) > 0, "{stats:?}");
}

/// Silence before the first ack: there is no latency to compare with, so only the shutdown
/// rule (half the time left) gets the events out, on a new connection, before the deadline.
#[test]
fn at_shutdown_unacked_messages_are_resent_before_the_deadline_not_after_the_ack_timeout() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let proxy = FaultProxy::start(r.addr());
    let p = pipeline(FluentConfig::new(&proxy.tcp_url()).unwrap());
    // The sink connects at start; that connection goes silent before carrying anything.
    assert!(wait_until(Duration::from_secs(5), || proxy
        .stats()
        .accepted
        > 0));
    proxy.set(Net::Silent);
    stream(&p, 0..1000, |_| {});
    let stats = p.shutdown(Instant::now() + Duration::from_secs(4));
    assert_eq!(
        (stats.delivered, stats.pending, stats.failed),
        (1000, 0, 0),
        "{stats:?}"
    );
    check_all_arrived(&[&r], 1000);
}

#[test]
fn primaries_share_by_weight_and_the_standby_waits_until_no_primary_is_up() {
    let mut a = ForwardReceiver::start(ReceiverConfig::default().count_only());
    let mut b = ForwardReceiver::start(ReceiverConfig::default().count_only());
    let c = ForwardReceiver::start(ReceiverConfig::default().count_only());
    let addr = format!("{},{}?weight=20,{}?standby", a.addr(), b.addr(), c.url());
    let p = pipeline(FluentConfig::new(&addr).unwrap());
    let n = 40_000;
    stream(&p, 0..n, |_| {});
    let stats = p.flush(Instant::now() + Duration::from_secs(10));
    assert_eq!((stats.delivered, stats.pending), (n, 0), "{stats:?}");
    let (ca, cb) = (a.count() as f64, b.count() as f64);
    let share_a = ca / (ca + cb);
    assert!(
        (share_a - 0.75).abs() <= 0.075 && ((1.0 - share_a) - 0.25).abs() <= 0.025,
        "shares {share_a:.3} / {:.3} for weights 60 / 20",
        1.0 - share_a
    );
    assert_eq!(
        c.count(),
        0,
        "the standby took traffic while primaries were up"
    );
    let s = endpoint(&stats, &c.url());
    assert_eq!(s.state, EndpointState::Standby, "{:?}", stats.endpoints);
    // No primary left: the standby takes everything.
    a.stop();
    b.stop();
    stream(&p, n..n + 1000, |_| {});
    let stats = p.shutdown(Instant::now() + Duration::from_secs(10));
    assert_eq!((stats.delivered, stats.pending), (n + 1000, 0), "{stats:?}");
    assert!(c.count() >= 1000, "{}", c.count());
    assert_eq!(endpoint(&stats, &c.url()).state, EndpointState::Up);
}

#[test]
fn the_heartbeat_finds_a_dead_standby_before_it_is_needed() {
    let a = ForwardReceiver::start(ReceiverConfig::default());
    let standby = ForwardReceiver::down(ReceiverConfig::default());
    let addr = format!("{},{}?standby", a.url(), standby.url());
    let cfg = FluentConfig::new(&addr)
        .unwrap()
        .heartbeat_interval(Duration::from_millis(50));
    let p = pipeline(cfg);
    let mut i = 0;
    let found = wait_until(Duration::from_secs(5), || {
        p.push(record(i));
        i += 1;
        let stats = p.flush(Instant::now() + Duration::from_secs(2));
        endpoint(&stats, &standby.url()).state == EndpointState::Down
    });
    assert!(found, "{:?}", p.stats().endpoints);
    assert_eq!(a.count(), i);
}

/// The fault proxy's `Silent` mode, which the tests above rely on: the connection open at the
/// switch carries nothing either way, a new one is forwarded.
#[test]
fn the_proxys_silent_mode_silences_open_connections_and_lets_new_ones_through() {
    use std::io::{Read, Write};
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let proxy = FaultProxy::start(r.addr());
    let frame = |chunk: &str| {
        let v = rmpv::Value::Array(vec![
            "t".into(),
            1.into(),
            rmpv::Value::Map(vec![("a".into(), 1.into())]),
            rmpv::Value::Map(vec![("chunk".into(), chunk.into())]),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    };
    let acked = |s: &mut std::net::TcpStream, chunk: &str| {
        s.write_all(&frame(chunk)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                let v = rmpv::decode::read_value(&mut &buf[..n]).unwrap();
                hivelog_fluent::ack::ack_of(&v) == Some(chunk.as_bytes())
            }
            _ => false,
        }
    };
    let mut old = std::net::TcpStream::connect(proxy.addr()).unwrap();
    assert!(acked(&mut old, "c1"));
    proxy.set(Net::Silent);
    assert!(
        !acked(&mut old, "c2"),
        "the open connection still carries acks"
    );
    let mut new = std::net::TcpStream::connect(proxy.addr()).unwrap();
    assert!(acked(&mut new, "c3"));
    assert_eq!(r.count(), 2, "c2 must not have reached the receiver");
}

//! By hand against a real Fluentd (PEERS.md): ignored by default, since Fluentd cannot run in
//! CI. Start Fluentd with an open `forward` source and one with `<security> shared_key s3cret`,
//! then:
//!
//! ```text
//! HIVELOG_TEST_FLUENTD=tcp://127.0.0.1:24931 HIVELOG_TEST_FLUENTD_SECURE=tcp://127.0.0.1:24932 \
//!   cargo test -p hivelog-fluent --test real_fluentd -- --ignored --nocapture
//! ```
//!
//! and read what Fluentd wrote (its `<match>` output) for the tags `svc.real.*`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use hivelog_core::record::{Str, Value};
use hivelog_core::{Format, Record, Sink};
use hivelog_fluent::sink::tally;
use hivelog_fluent::{Compression, FluentConfig, FluentSink};

fn record(i: u64) -> Record {
    let mut r = Record::new(tracing::Level::WARN, Str::Static("real::check"), 1 << 16, 4);
    r.time = UNIX_EPOCH + Duration::new(1_763_000_000 + i, 123_456_789);
    r.message = Some(r.fields.push_fmt(format_args!("real fluentd {i}")));
    r.fields.push("i", Value::U64(i));
    r.fields.push("neg", Value::I64(-7));
    r.fields.push("ratio", Value::F64(0.5));
    r.seq = i;
    r
}

#[tokio::test]
#[ignore = "needs a real Fluentd; see the module docs"]
async fn against_real_fluentd() {
    let open = std::env::var("HIVELOG_TEST_FLUENTD").expect("HIVELOG_TEST_FLUENTD");
    let secure = std::env::var("HIVELOG_TEST_FLUENTD_SECURE").expect("HIVELOG_TEST_FLUENTD_SECURE");
    let format = Arc::new(Format::builder().service("svc").build());
    let batch: Vec<Record> = (0..5).map(record).collect();
    let cases = [
        (
            "packed+ack",
            FluentConfig::new(&open)
                .unwrap()
                .tag("{service}.real.packed")
                .unwrap(),
        ),
        (
            "gzip+ack",
            FluentConfig::new(&open)
                .unwrap()
                .tag("{service}.real.gzip")
                .unwrap()
                .compress(Compression::Gzip),
        ),
        (
            "no ack",
            FluentConfig::new(&open)
                .unwrap()
                .tag("{service}.real.noack")
                .unwrap()
                .ack(false),
        ),
        (
            "right key",
            FluentConfig::new(&secure)
                .unwrap()
                .tag("{service}.real.secure")
                .unwrap()
                .shared_key("s3cret"),
        ),
        (
            "wrong key",
            FluentConfig::new(&secure)
                .unwrap()
                .tag("{service}.real.wrong")
                .unwrap()
                .shared_key("nope"),
        ),
        (
            "no key",
            FluentConfig::new(&secure)
                .unwrap()
                .tag("{service}.real.nokey")
                .unwrap()
                .ack_timeout(Duration::from_secs(3)),
        ),
    ];
    for (name, cfg) in cases {
        let mut sink = FluentSink::new(cfg, format.clone());
        let out = sink.send(&batch).await;
        println!(
            "{name}: [delivered, deferred, retry, rejected, failed] = {:?}; error: {:?}",
            tally(&out),
            out.error()
        );
    }
}

/// Throughput through the pipeline into a Fluentd `null` output with acks:
/// `HIVELOG_TEST_FLUENTD_NULL=tcp://127.0.0.1:24933`.
#[test]
#[ignore = "needs a real Fluentd; see the module docs"]
fn throughput_into_real_fluentd() {
    let addr = std::env::var("HIVELOG_TEST_FLUENTD_NULL").expect("HIVELOG_TEST_FLUENTD_NULL");
    let format = Arc::new(Format::builder().service("svc").build());
    let sink = FluentSink::new(FluentConfig::new(&addr).unwrap(), format);
    let cfg = hivelog_core::PipelineConfig {
        buffer_bytes: 1_000_000_000,
        ..Default::default()
    };
    let p = hivelog_core::Pipeline::spawn(sink, cfg).unwrap();
    let n = 300_000;
    let records: Vec<Record> = (0..n).map(record).collect();
    let t = std::time::Instant::now();
    for r in records {
        p.push(r);
    }
    let stats = p.flush(std::time::Instant::now() + Duration::from_secs(120));
    let wall = t.elapsed();
    println!(
        "{} delivered in {wall:?}: {:.0} events/s ({stats:?})",
        stats.delivered,
        stats.delivered as f64 / wall.as_secs_f64()
    );
    assert_eq!(stats.delivered, n);
}

/// Two real Fluentd processes as a tier, one killed mid-stream:
/// `HIVELOG_TEST_FLUENTD_TIER=tcp://127.0.0.1:24331,tcp://127.0.0.1:24332` and
/// `HIVELOG_TEST_FLUENTD_KILL_PGID=<process group of the first>` (SIGKILLed a third of the way
/// in; `HIVELOG_TEST_FLUENTD_SIGNAL=STOP` hangs it instead, a silent aggregator). Prints the
/// per-server figures; count what each Fluentd wrote by the `run` field.
#[test]
#[ignore = "needs two real Fluentd processes; see the module docs"]
fn real_fluentd_tier_with_one_killed() {
    let addr = std::env::var("HIVELOG_TEST_FLUENTD_TIER").expect("HIVELOG_TEST_FLUENTD_TIER");
    let kill = std::env::var("HIVELOG_TEST_FLUENTD_KILL_PGID").ok();
    let signal = std::env::var("HIVELOG_TEST_FLUENTD_SIGNAL").unwrap_or_else(|_| "KILL".into());
    let run = std::process::id();
    let format = Arc::new(
        Format::builder()
            .service("svc")
            .extra("run", run.to_string())
            .build(),
    );
    let sink = FluentSink::new(FluentConfig::new(&addr).unwrap(), format);
    let cfg = hivelog_core::PipelineConfig {
        buffer_bytes: 1_000_000_000,
        ..Default::default()
    };
    let p = hivelog_core::Pipeline::spawn(sink, cfg).unwrap();
    let n = 200_000u64;
    let t = std::time::Instant::now();
    for i in 0..n {
        if i == n / 3 {
            if let Some(pgid) = &kill {
                let status = std::process::Command::new("kill")
                    .args(["-s", &signal, "--", &format!("-{pgid}")])
                    .status()
                    .unwrap();
                println!("SIG{signal} to process group {pgid} at event {i}: {status}");
            }
        }
        p.push(record(i));
        if i % 2000 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let stats = p.shutdown(std::time::Instant::now() + Duration::from_secs(30));
    println!(
        "run {run}: {} of {n} delivered in {:?}, pending {}, failed {}, retried {}",
        stats.delivered,
        t.elapsed(),
        stats.pending,
        stats.failed,
        stats.retried
    );
    for e in &stats.endpoints {
        println!("  {e}");
    }
    assert_eq!((stats.delivered, stats.pending), (n, 0), "{stats:?}");
}

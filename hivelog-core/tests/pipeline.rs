//! The delivery pipeline's rules, driven by a scriptable sink (`common::TestSink`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hivelog_core::pipeline::Overflow;
use hivelog_core::{Pipeline, PipelineConfig, Record, Stats};

fn spawn(sink: TestSink, config: PipelineConfig) -> Pipeline {
    Pipeline::spawn(sink, config).expect("spawn pipeline")
}

fn assert_balanced(s: &Stats) {
    assert!(
        s.is_balanced(),
        "enqueued {} != delivered {} + rejected {} + dropped {} + failed {} + pending {}",
        s.enqueued,
        s.delivered,
        s.rejected,
        s.dropped(),
        s.failed,
        s.pending
    );
}

/// The budget for `n` records like `numbered(_)`.
fn budget_for(n: usize) -> usize {
    numbered(0).size() * n
}

#[test]
fn nothing_is_lost_when_the_destination_recovers_within_the_retry_budget() {
    let ctl = Control::new();
    {
        let mut s = ctl.script();
        s.fail_next = 3;
        s.fail_error = "connection refused".into();
    }
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..100 {
        p.push(numbered(i));
    }
    let report = p.shutdown(secs(10.0));
    assert_eq!(report.enqueued, 100);
    assert_eq!(report.delivered, 100, "{report:?}");
    assert_eq!((report.failed, report.pending, report.dropped()), (0, 0, 0));
    assert!(report.retried >= 3, "{report:?}");
    assert_eq!(report.last_error.as_deref(), Some("connection refused"));
    assert_eq!(ctl.delivered(), (0..100).collect::<Vec<u64>>());
    assert!(ctl.closed.load(Ordering::SeqCst), "close was called");
    assert_balanced(&report);
}

#[test]
fn retried_events_keep_their_order_before_newer_ones() {
    let ctl = Control::new();
    {
        let mut s = ctl.script();
        s.fail_next = 4;
        s.fail_error = "503 Service Unavailable".into();
        s.delay = Duration::from_millis(2);
    }
    let p = spawn(TestSink::new(&ctl).max_events(8), fast_config());
    for i in 0..60 {
        p.push(numbered(i));
        if i % 5 == 0 {
            thread::sleep(Duration::from_millis(3));
        }
    }
    let report = p.shutdown(secs(10.0));
    assert_eq!(report.delivered, 60, "{report:?}");
    let expected: Vec<String> = (0..60).map(|i| format!("m{i:04}")).collect();
    assert_eq!(ctl.messages(), expected);
    // Every attempt is in `seq` order, retried records first.
    for attempt in &ctl.seen().attempts {
        assert!(attempt.windows(2).all(|w| w[0] < w[1]), "{attempt:?}");
    }
}

#[test]
fn deferred_records_lead_the_next_batch_without_backoff_or_retry_count() {
    let ctl = Control::new();
    ctl.script().defer_from = Some(3);
    let p = spawn(TestSink::new(&ctl).max_events(10), fast_config());
    for i in 0..25 {
        p.push(numbered(i));
    }
    let report = p.shutdown(secs(10.0));
    assert_eq!((report.delivered, report.retried), (25, 0), "{report:?}");
    assert_eq!(ctl.delivered(), (0..25).collect::<Vec<u64>>());
}

#[test]
fn a_sink_that_defers_everything_is_backed_off_not_spun() {
    let ctl = Control::new();
    ctl.script().defer_from = Some(0);
    let mut config = fast_config();
    config.retry.max_elapsed = Duration::from_millis(100);
    let p = spawn(TestSink::new(&ctl), config);
    p.push(numbered(0));
    let report = p.flush(secs(5.0));
    assert_eq!(report.failed, 1, "{report:?}");
    assert!(ctl.seen().attempts.len() < 200, "the worker spun");
    assert_balanced(&report);
}

#[test]
fn accounting_balances_at_every_report() {
    let ctl = Control::new();
    {
        let mut s = ctl.script();
        s.fail_next = 3;
        s.fail_error = "throttled".into();
        s.reject_prefix = Some("bad");
        s.delay = Duration::from_micros(500);
    }
    let config = PipelineConfig {
        buffer_bytes: budget_for(300),
        overflow: Overflow::DropOldest,
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(50), config);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (p, stop) = (p.clone(), stop.clone());
        thread::spawn(move || {
            let mut reports = 0;
            while !stop.load(Ordering::SeqCst) {
                assert_balanced(&p.stats());
                reports += 1;
            }
            reports
        })
    };
    let producers: Vec<_> = (0..2)
        .map(|t| {
            let p = p.clone();
            thread::spawn(move || {
                for i in 0..5000 {
                    p.push(if i % 7 == 0 {
                        record(&format!("bad{t}{i:04}"))
                    } else {
                        numbered(i)
                    });
                    if i % 500 == 0 {
                        assert_balanced(&p.flush(Instant::now() + Duration::from_millis(5)));
                    }
                }
            })
        })
        .collect();
    for t in producers {
        t.join().unwrap();
    }
    let report = p.shutdown(secs(10.0));
    p.push(numbered(0));
    let after = p.stats();
    stop.store(true, Ordering::SeqCst);
    assert!(watcher.join().unwrap() > 0);
    assert_balanced(&report);
    assert_eq!(report.enqueued, 10_000);
    assert_eq!(report.pending, 0, "{report:?}");
    assert!(report.rejected > 0 && report.delivered > 0, "{report:?}");
    assert_eq!(after.dropped_shutdown, 1);
    assert_balanced(&after);
}

#[test]
fn drop_newest_keeps_the_first_events_and_counts_the_rest() {
    let ctl = Control::new();
    ctl.hang();
    let config = PipelineConfig {
        buffer_bytes: budget_for(10),
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(1), config);
    p.push(numbered(0));
    ctl.wait_holding();
    for i in 1..30 {
        p.push(numbered(i));
    }
    let s = p.stats();
    assert_eq!(
        (s.enqueued, s.pending, s.dropped_overflow),
        (30, 10, 20),
        "{s:?}"
    );
    ctl.release();
    let report = p.shutdown(secs(10.0));
    assert_eq!(ctl.delivered(), (0..10).collect::<Vec<u64>>());
    assert_eq!((report.delivered, report.dropped_overflow), (10, 20));
    assert_balanced(&report);
}

#[test]
fn drop_oldest_evicts_queued_events_but_not_the_batch_in_flight() {
    let ctl = Control::new();
    ctl.hang();
    let config = PipelineConfig {
        buffer_bytes: budget_for(10),
        overflow: Overflow::DropOldest,
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(1), config);
    p.push(numbered(0));
    ctl.wait_holding();
    for i in 1..30 {
        p.push(numbered(i));
    }
    let s = p.stats();
    assert_eq!(
        (s.enqueued, s.pending, s.dropped_overflow),
        (30, 10, 20),
        "{s:?}"
    );
    ctl.release();
    let report = p.shutdown(secs(10.0));
    let expected: Vec<String> = [0]
        .into_iter()
        .chain(21..30)
        .map(|i| format!("m{i:04}"))
        .collect();
    assert_eq!(ctl.messages(), expected);
    assert_eq!((report.delivered, report.dropped_overflow), (10, 20));
    assert_balanced(&report);
}

#[test]
fn an_event_larger_than_the_whole_budget_is_dropped() {
    let ctl = Control::new();
    let config = PipelineConfig {
        buffer_bytes: budget_for(2),
        overflow: Overflow::DropOldest,
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl), config);
    p.push(record(&"x".repeat(4000)));
    let s = p.shutdown(secs(5.0));
    assert_eq!((s.enqueued, s.dropped_overflow, s.delivered), (1, 1, 0));
}

#[test]
fn block_waits_at_most_its_timeout_then_drops() {
    let ctl = Control::new();
    ctl.hang();
    let config = PipelineConfig {
        buffer_bytes: budget_for(2),
        overflow: Overflow::Block(Duration::from_millis(100)),
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(1), config);
    p.push(numbered(0));
    ctl.wait_holding();
    p.push(numbered(1));
    let t0 = Instant::now();
    p.push(numbered(2));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    let s = p.stats();
    assert_eq!((s.pending, s.dropped_overflow), (2, 1), "{s:?}");
    ctl.release();
    let report = p.shutdown(secs(5.0));
    assert_eq!(report.delivered, 2);
    assert_balanced(&report);
}

#[test]
fn block_admits_the_event_as_soon_as_room_frees_up() {
    let ctl = Control::new();
    ctl.hang();
    let config = PipelineConfig {
        buffer_bytes: budget_for(2),
        overflow: Overflow::Block(Duration::from_secs(5)),
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(1), config);
    p.push(numbered(0));
    ctl.wait_holding();
    p.push(numbered(1));
    let releaser = {
        let ctl = ctl.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            ctl.release();
        })
    };
    let t0 = Instant::now();
    p.push(numbered(2));
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    releaser.join().unwrap();
    let report = p.shutdown(secs(5.0));
    assert_eq!((report.delivered, report.dropped()), (3, 0), "{report:?}");
}

/// The sink hangs until released, with no timeout of its own: every one of 20 000 pushes
/// returns while it is still hanging, so no push waits for the destination. (What a push costs
/// is measured by `cargo bench -p hivelog-core`, not here.)
#[test]
fn log_calls_return_while_the_destination_hangs() {
    let ctl = Control::new();
    ctl.hang();
    let p = spawn(TestSink::new(&ctl).max_events(100), fast_config());
    p.push(numbered(0));
    ctl.wait_holding();
    for i in 1..20_000 {
        p.push(numbered(i));
    }
    assert!(
        ctl.holding.load(Ordering::SeqCst) > 0,
        "the send is still hanging"
    );
    assert!(ctl.delivered().is_empty());
    assert_eq!(p.stats().pending, 20_000);
    let t0 = Instant::now();
    let report = p.shutdown(Instant::now() + Duration::from_millis(100));
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(report.pending, 20_000);
    assert_balanced(&report);
}

#[test]
fn shutdown_returns_by_its_deadline_with_a_hung_sink_and_reports_what_is_pending() {
    let ctl = Control::new();
    ctl.hang();
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..100 {
        p.push(numbered(i));
    }
    let t0 = Instant::now();
    let report = p.shutdown(Instant::now() + Duration::from_millis(300));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!((report.pending, report.delivered), (100, 0), "{report:?}");
    assert!(report.pending_bytes > 0);
    assert_balanced(&report);
    // The abandoned send was cancelled and the sink closed.
    assert!(wait_until(Duration::from_secs(2), || ctl
        .closed
        .load(Ordering::SeqCst)));
}

#[test]
fn shutdown_returns_by_its_deadline_even_when_the_sink_blocks_its_thread() {
    let ctl = Control::new();
    ctl.script().block_thread = Duration::from_secs(3);
    let p = spawn(TestSink::new(&ctl), fast_config());
    p.push(numbered(0));
    assert!(wait_until(Duration::from_secs(2), || !ctl
        .seen()
        .attempts
        .is_empty()));
    let t0 = Instant::now();
    let report = p.shutdown(Instant::now() + Duration::from_millis(200));
    // Well before the sink's thread comes back (3 s).
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(report.pending, 1);
}

#[test]
fn shutdown_retries_while_the_deadline_allows() {
    let ctl = Control::new();
    {
        let mut s = ctl.script();
        s.fail_next = 5;
        s.fail_error = "connection reset".into();
    }
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..10 {
        p.push(numbered(i));
    }
    let report = p.shutdown(secs(10.0));
    assert_eq!((report.delivered, report.pending), (10, 0), "{report:?}");
}

#[test]
fn shutdown_is_idempotent_and_later_events_count_as_dropped_after_shutdown() {
    let ctl = Control::new();
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..5 {
        p.push(numbered(i));
    }
    let first = p.shutdown(secs(5.0));
    let clone = p.clone();
    clone.push(numbered(5));
    let second = clone.shutdown(secs(5.0));
    assert_eq!(first.delivered, 5);
    assert_eq!(
        (second.delivered, second.dropped_shutdown, second.enqueued),
        (5, 1, 6)
    );
    assert_balanced(&second);
    // flush after shutdown returns at once
    let t0 = Instant::now();
    p.flush(secs(5.0));
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn dropping_the_last_handle_does_not_wait_and_still_delivers() {
    let ctl = Control::new();
    ctl.script().delay = Duration::from_millis(500);
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..10 {
        p.push(numbered(i));
    }
    let t0 = Instant::now();
    drop(p);
    assert!(
        t0.elapsed() < Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    assert!(wait_until(Duration::from_secs(5), || ctl
        .closed
        .load(Ordering::SeqCst)));
    assert_eq!(ctl.delivered().len(), 10);
}

#[test]
fn without_a_runtime_shutdown_delivers_everything() {
    let ctl = Control::new();
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..1000 {
        p.push(numbered(i));
    }
    let report = p.shutdown(secs(10.0));
    assert_eq!(report.delivered, 1000);
    assert_eq!(ctl.seen().thread.as_deref(), Some("hivelog-test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_multi_thread_runtime_flush_shutdown_and_drop_do_not_deadlock() {
    let ctl = Control::new();
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..100 {
        p.push(numbered(i));
    }
    assert_eq!(p.flush(secs(10.0)).delivered, 100);
    p.push(numbered(100));
    let report = p.shutdown(secs(10.0));
    assert_eq!(report.delivered, 101);
    drop(p);
}

#[tokio::test(flavor = "current_thread")]
async fn inside_a_current_thread_runtime_flush_shutdown_and_drop_do_not_deadlock() {
    let ctl = Control::new();
    // The sink sleeps on its own runtime: if it depended on this one, nothing would progress.
    ctl.script().delay = Duration::from_millis(1);
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..100 {
        p.push(numbered(i));
    }
    assert_eq!(p.flush(secs(10.0)).delivered, 100);
    p.push(numbered(100));
    let report = p.shutdown(secs(10.0));
    assert_eq!(report.delivered, 101);
    drop(p);
}

#[test]
fn shutdown_from_drop_inside_block_on_of_a_current_thread_runtime() {
    struct Guard(Pipeline);
    impl Drop for Guard {
        fn drop(&mut self) {
            let report = self.0.shutdown(Instant::now() + self.0.shutdown_timeout());
            assert_eq!(report.delivered, 10);
        }
    }
    let ctl = Control::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        let guard = Guard(spawn(TestSink::new(&ctl), fast_config()));
        for i in 0..10 {
            guard.0.push(numbered(i));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(guard);
    });
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn retries_that_outlast_max_elapsed_count_as_failed_with_the_last_error() {
    let ctl = Control::new();
    {
        let mut s = ctl.script();
        s.fail_next = u32::MAX;
        s.fail_error = "503 Service Unavailable".into();
    }
    let mut config = fast_config();
    config.retry.max_elapsed = Duration::from_millis(100);
    let p = spawn(TestSink::new(&ctl), config);
    for i in 0..5 {
        p.push(numbered(i));
    }
    let report = p.flush(secs(5.0));
    assert_eq!(
        (report.failed, report.pending, report.delivered),
        (5, 0, 0),
        "{report:?}"
    );
    let err = report.last_error.unwrap();
    assert!(
        err.contains("503 Service Unavailable") && err.contains("gave up"),
        "{err}"
    );
}

#[test]
fn retry_after_from_the_destination_is_a_floor_for_the_backoff() {
    let ctl = Control::new();
    {
        let mut s = ctl.script();
        s.fail_next = 1;
        s.fail_error = "429 Too Many Requests".into();
        s.retry_after = Some(Duration::from_millis(200));
    }
    let p = spawn(TestSink::new(&ctl), fast_config());
    p.push(numbered(0));
    let report = p.flush(secs(5.0));
    assert_eq!(report.delivered, 1);
    let times = ctl.seen().attempt_times.clone();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_millis(200),
        "{:?}",
        times[1] - times[0]
    );
}

#[test]
fn rejected_events_are_counted_with_the_reason_and_not_resent() {
    let ctl = Control::new();
    ctl.script().reject_prefix = Some("bad");
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..10 {
        p.push(if i % 3 == 0 {
            record(&format!("bad{i}"))
        } else {
            numbered(i)
        });
    }
    let report = p.shutdown(secs(5.0));
    assert_eq!(
        (report.delivered, report.rejected, report.retried),
        (6, 4, 0)
    );
    assert!(report
        .last_error
        .unwrap()
        .contains("mapper_parsing_exception"));
    let attempts: usize = ctl.seen().attempts.iter().map(Vec::len).sum();
    assert_eq!(attempts, 10, "each event sent once");
}

#[test]
fn a_permanent_failure_counts_as_failed_without_retry() {
    let ctl = Control::new();
    ctl.script().fail_permanently = true;
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..5 {
        p.push(numbered(i));
    }
    let report = p.shutdown(secs(5.0));
    assert_eq!((report.failed, report.retried, report.pending), (5, 0, 0));
    assert_eq!(report.last_error.as_deref(), Some("401 Unauthorized"));
}

#[test]
fn a_panicking_sink_is_retried_and_reported() {
    let ctl = Control::new();
    ctl.script().panic_next = 1;
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..5 {
        p.push(numbered(i));
    }
    let report = p.shutdown(secs(5.0));
    assert_eq!((report.delivered, report.retried), (5, 5), "{report:?}");
    let err = report.last_error.unwrap();
    assert!(err.contains("sink panicked: test sink exploded"), "{err}");
}

#[test]
fn seq_numbers_increase_per_pipeline() {
    let (a, b) = (Control::new(), Control::new());
    let pa = spawn(TestSink::new(&a), fast_config());
    let pb = spawn(TestSink::new(&b), fast_config());
    for i in 0..10 {
        pa.push(numbered(i));
        if i % 2 == 0 {
            pb.push(numbered(i));
        }
    }
    pa.shutdown(secs(5.0));
    pb.shutdown(secs(5.0));
    assert_eq!(a.delivered(), (0..10).collect::<Vec<u64>>());
    assert_eq!(b.delivered(), (0..5).collect::<Vec<u64>>());
}

#[test]
fn flush_sends_what_was_queued_without_waiting_for_the_interval() {
    let ctl = Control::new();
    let config = PipelineConfig {
        flush_interval: Duration::from_secs(60),
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl), config);
    for i in 0..10 {
        p.push(numbered(i));
    }
    let t0 = Instant::now();
    let report = p.flush(secs(5.0));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!((report.delivered, report.pending), (10, 0));
    // Still running afterwards.
    p.push(numbered(10));
    assert_eq!(p.flush(secs(5.0)).delivered, 11);
}

#[test]
fn a_partial_batch_leaves_after_the_flush_interval() {
    let ctl = Control::new();
    let config = PipelineConfig {
        flush_interval: Duration::from_millis(50),
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl), config);
    p.push(numbered(0));
    let t0 = Instant::now();
    assert!(wait_until(Duration::from_secs(2), || p.stats().delivered == 1));
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn a_full_batch_leaves_without_waiting_for_the_interval() {
    let ctl = Control::new();
    let config = PipelineConfig {
        flush_interval: Duration::from_secs(60),
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(10), config);
    for i in 0..10 {
        p.push(numbered(i));
    }
    assert!(wait_until(Duration::from_secs(2), || p.stats().delivered == 10));
}

#[test]
fn batches_respect_max_events_and_max_bytes() {
    let ctl = Control::new();
    let mut sink = TestSink::new(&ctl).max_events(7);
    sink.encoded_len = Some(100);
    sink.limits.max_bytes = 300;
    let p = spawn(sink, fast_config());
    for i in 0..20 {
        p.push(numbered(i));
    }
    p.shutdown(secs(5.0));
    let seen = ctl.seen();
    assert!(
        seen.attempts.iter().all(|a| a.len() <= 3),
        "{:?}",
        seen.attempts
    );
    assert_eq!(seen.delivered, (0..20).collect::<Vec<u64>>());
    drop(seen);

    let ctl = Control::new();
    let p = spawn(TestSink::new(&ctl).max_events(7), fast_config());
    for i in 0..50 {
        p.push(numbered(i));
    }
    p.shutdown(secs(5.0));
    assert!(ctl.seen().attempts.iter().all(|a| a.len() <= 7));
    assert_eq!(ctl.delivered().len(), 50);
}

#[test]
fn bytes_sent_are_counted_from_the_sink() {
    let ctl = Control::new();
    ctl.script().bytes_per_record = 40;
    let p = spawn(TestSink::new(&ctl), fast_config());
    for i in 0..10 {
        p.push(numbered(i));
    }
    assert_eq!(p.shutdown(secs(5.0)).bytes_sent, 400);
}

#[test]
fn the_worker_thread_is_named_for_the_sink_and_start_runs_first() {
    let ctl = Control::new();
    let p = spawn(TestSink::new(&ctl), fast_config());
    assert_eq!(p.name(), "test");
    p.push(numbered(0));
    p.flush(secs(5.0));
    assert!(ctl.started.load(Ordering::SeqCst));
    assert_eq!(ctl.seen().thread.as_deref(), Some("hivelog-test"));
}

#[test]
fn memory_stays_within_the_budget_under_a_tenfold_overload() {
    for overflow in [Overflow::DropNewest, Overflow::DropOldest] {
        let ctl = Control::new();
        ctl.hang();
        let budget = budget_for(100);
        let config = PipelineConfig {
            buffer_bytes: budget,
            overflow,
            ..fast_config()
        };
        let p = spawn(TestSink::new(&ctl).max_events(10), config);
        for i in 0..1000 {
            p.push(numbered(i));
            let s = p.stats();
            assert!(s.pending_bytes as usize <= budget, "{overflow}: {s:?}");
        }
        let s = p.stats();
        assert_eq!(
            (s.pending, s.dropped_overflow),
            (100, 900),
            "{overflow}: {s:?}"
        );
        ctl.release();
        assert_eq!(p.shutdown(secs(5.0)).delivered, 100);
    }
}

#[test]
fn flush_and_shutdown_called_on_a_pipeline_thread_do_not_wait_for_it() {
    // What a panic hook does when a sink (or its blocking task) panics: flush every pipeline.
    for in_blocking in [false, true] {
        let ctl = Control::new();
        let p = spawn(TestSink::new(&ctl), fast_config());
        let waited = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let (p, waited) = (p.clone(), waited.clone());
            let mut s = ctl.script();
            s.in_blocking = in_blocking;
            s.call_in_send = Some(Arc::new(move || {
                let t0 = Instant::now();
                p.flush(Instant::now() + Duration::from_secs(3));
                waited.lock().unwrap().push(t0.elapsed());
            }));
        }
        p.push(numbered(0));
        let report = p.flush(secs(10.0));
        assert_eq!(report.delivered, 1);
        let waited = waited.lock().unwrap().clone();
        assert!(!waited.is_empty());
        assert!(
            waited.iter().all(|w| *w < Duration::from_secs(1)),
            "{waited:?}"
        );
        ctl.script().call_in_send = None;
        p.shutdown(secs(5.0));
    }
}

/// A record of exactly `bytes` bytes as the budget counts them.
fn sized(bytes: usize) -> Record {
    let empty = || {
        Record::new(
            tracing::Level::INFO,
            hivelog_core::record::Str::Static("test"),
            1 << 20,
            2,
        )
    };
    let mut r = empty();
    let m = r.fields.push_str(&"x".repeat(bytes - empty().size()));
    r.message = Some(m);
    assert_eq!(r.size(), bytes);
    r
}

#[test]
fn drop_oldest_keeps_the_queue_when_evicting_it_would_not_make_room() {
    let ctl = Control::new();
    ctl.hang();
    let unit = numbered(0).size();
    let config = PipelineConfig {
        buffer_bytes: 20 * unit,
        overflow: Overflow::DropOldest,
        flush_interval: Duration::from_secs(60),
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(1), config);
    p.push(sized(12 * unit));
    p.flush(Instant::now() + Duration::from_millis(1));
    ctl.wait_holding();
    for i in 1..=8 {
        p.push(numbered(i));
    }
    // 12 units in flight + 9 > 20: evicting the 8 queued would not help.
    p.push(sized(9 * unit));
    let s = p.stats();
    assert_eq!((s.pending, s.dropped_overflow), (9, 1), "{s:?}");
    ctl.release();
    let report = p.shutdown(secs(5.0));
    assert_eq!(report.delivered, 9);
}

/// Like `numbered(i)` (same size), at `level`.
fn leveled(level: tracing::Level, i: usize) -> Record {
    let mut r = numbered(i);
    r.level = level;
    r
}

#[test]
fn drop_lowest_keeps_every_error_and_warn_under_a_flood_of_info() {
    use tracing::Level;
    let ctl = Control::new();
    ctl.hang();
    let config = PipelineConfig {
        buffer_bytes: budget_for(40),
        overflow: Overflow::DropLowest,
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(1), config);
    p.push(numbered(0));
    ctl.wait_holding();
    let level = |i: usize| match i {
        i if i % 20 == 0 => Level::ERROR,
        i if i % 30 == 0 => Level::WARN,
        _ => Level::INFO,
    };
    for i in 1..600 {
        p.push(leveled(level(i), i));
    }
    let s = p.stats();
    assert_eq!((s.enqueued, s.pending), (600, 40), "{s:?}");
    assert_eq!(s.dropped_by_level.info, 560, "{s:?}");
    assert_eq!(s.dropped_by_level.total(), s.dropped(), "{s:?}");
    ctl.release();
    let report = p.shutdown(secs(10.0));
    assert_balanced(&report);
    let got = ctl.messages();
    let important: Vec<String> = (1..600)
        .filter(|&i| level(i) != Level::INFO)
        .map(|i| format!("m{i:04}"))
        .collect();
    // Every ERROR and WARN is delivered, in order.
    let delivered_important: Vec<String> = got
        .iter()
        .filter(|m| important.contains(m))
        .cloned()
        .collect();
    assert_eq!(delivered_important, important);
    // The INFO kept are the first ones of the burst (newest dropped first within a level).
    let info: Vec<String> = got
        .iter()
        .filter(|m| !important.contains(m))
        .cloned()
        .collect();
    let first_info: Vec<String> = (0..600)
        .filter(|&i| level(i) == Level::INFO || i == 0)
        .take(info.len())
        .map(|i| format!("m{i:04}"))
        .collect();
    assert_eq!(info, first_info);
    assert_eq!(report.delivered, 40);
}

#[test]
fn drop_lowest_evicts_the_lowest_level_first_and_drops_an_error_only_when_nothing_is_below() {
    use tracing::Level;
    let ctl = Control::new();
    ctl.hang();
    let config = PipelineConfig {
        buffer_bytes: budget_for(5),
        overflow: Overflow::DropLowest,
        ..fast_config()
    };
    let p = spawn(TestSink::new(&ctl).max_events(1), config);
    p.push(leveled(Level::ERROR, 0));
    ctl.wait_holding();
    // Queued: E1 E2 W3 I4 (full with the one in flight).
    for (i, l) in [
        (1, Level::ERROR),
        (2, Level::ERROR),
        (3, Level::WARN),
        (4, Level::INFO),
    ] {
        p.push(leveled(l, i));
    }
    p.push(leveled(Level::WARN, 5)); // evicts I4
    p.push(leveled(Level::WARN, 6)); // nothing below WARN queued: dropped itself
    p.push(leveled(Level::ERROR, 7)); // evicts the newest WARN (W5)
    p.push(leveled(Level::ERROR, 8)); // evicts W3
    p.push(leveled(Level::ERROR, 9)); // only ERROR queued: dropped itself
    let s = p.stats();
    assert_eq!(
        (
            s.dropped_by_level.info,
            s.dropped_by_level.warn,
            s.dropped_by_level.error
        ),
        (1, 3, 1),
        "{s:?}"
    );
    ctl.release();
    let report = p.shutdown(secs(10.0));
    assert_eq!(
        ctl.messages(),
        ["m0000", "m0001", "m0002", "m0007", "m0008"]
    );
    assert_eq!((report.delivered, report.dropped_overflow), (5, 5));
    assert_balanced(&report);
}

#[test]
fn drops_at_shutdown_are_counted_by_level() {
    let ctl = Control::new();
    let p = spawn(TestSink::new(&ctl), fast_config());
    p.shutdown(secs(5.0));
    p.push(leveled(tracing::Level::WARN, 0));
    let s = p.stats();
    assert_eq!(
        (s.dropped_shutdown, s.dropped_by_level.warn),
        (1, 1),
        "{s:?}"
    );
}

#[test]
fn drop_lowest_keeps_half_the_budget_queued_so_an_error_can_evict_info_while_a_batch_hangs() {
    let ctl = Control::new();
    ctl.hang();
    let config = PipelineConfig {
        buffer_bytes: budget_for(10),
        overflow: Overflow::DropLowest,
        ..fast_config()
    };
    // A sink that would take everything queued in one batch.
    let p = spawn(TestSink::new(&ctl).max_events(1000), config);
    for i in 0..10 {
        p.push(numbered(i));
    }
    ctl.wait_holding();
    p.push(leveled(tracing::Level::ERROR, 10));
    let s = p.stats();
    assert_eq!(
        (s.pending, s.dropped_by_level.info, s.dropped_by_level.error),
        (10, 1, 0),
        "{s:?}"
    );
    ctl.release();
    let report = p.shutdown(secs(10.0));
    assert!(ctl.messages().contains(&"m0010".to_owned()));
    assert_eq!(report.delivered, 10);
    assert_balanced(&report);
}

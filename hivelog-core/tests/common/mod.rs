//! A scriptable sink for the pipeline tests: it can be slow, hang, fail N times, reject some
//! records, ask for a delay (`Retry-After`), defer records, panic, and it records what it saw.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hivelog_core::pipeline::{Overflow, RetryPolicy};
use hivelog_core::record::Str;
use hivelog_core::{BatchLimits, FailureKind, Outcomes, PipelineConfig, Record, Sink};

/// What the sink does on its next sends.
#[derive(Default)]
pub struct Script {
    /// Each send sleeps this long (asynchronously) before answering.
    pub delay: Duration,
    /// Each send blocks its thread this long (a badly written sink).
    pub block_thread: Duration,
    /// This many next sends answer "retry everything".
    pub fail_next: u32,
    /// Error text of those failures.
    pub fail_error: String,
    /// Every send answers "failed for good".
    pub fail_permanently: bool,
    /// With `fail_next`, the server's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Records whose message starts with this are rejected.
    pub reject_prefix: Option<&'static str>,
    /// Records at this index of a batch or later are deferred.
    pub defer_from: Option<usize>,
    /// This many next sends panic.
    pub panic_next: u32,
    /// Emit `tracing` events (target `noisy_sink`) in start, send, close, from a spawned task
    /// and from `spawn_blocking`.
    pub noisy: bool,
    /// Bytes reported per delivered record.
    pub bytes_per_record: u64,
    /// Called on the pipeline's thread at each send (inside `spawn_blocking` if `in_blocking`).
    pub call_in_send: Option<Arc<dyn Fn() + Send + Sync>>,
    pub in_blocking: bool,
}

/// What the sink saw.
#[derive(Default)]
pub struct Seen {
    /// `seq` of each delivered record, in delivery order.
    pub delivered: Vec<u64>,
    /// Message of each delivered record, in delivery order.
    pub messages: Vec<String>,
    /// `seq`s of every send attempt.
    pub attempts: Vec<Vec<u64>>,
    /// When each attempt started.
    pub attempt_times: Vec<Instant>,
    /// Name of the thread that ran send.
    pub thread: Option<String>,
}

/// Shared between a test and its sink.
#[derive(Default)]
pub struct Control {
    script: Mutex<Script>,
    seen: Mutex<Seen>,
    /// While set, every send waits (asynchronously) before answering: a hung destination.
    pub hold: AtomicBool,
    /// Sends currently waiting on `hold`.
    pub holding: AtomicUsize,
    pub started: AtomicBool,
    pub closed: AtomicBool,
}

impl Control {
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }
    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
    pub fn hang(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }
    pub fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }
    /// Waits until a send is waiting on `hold` (or panics after 5 s).
    pub fn wait_holding(&self) {
        assert!(
            wait_until(Duration::from_secs(5), || self
                .holding
                .load(Ordering::SeqCst)
                > 0),
            "the sink never received a batch"
        );
    }
    pub fn delivered(&self) -> Vec<u64> {
        self.seen().delivered.clone()
    }
    pub fn messages(&self) -> Vec<String> {
        self.seen().messages.clone()
    }
}

pub struct TestSink {
    pub ctl: Arc<Control>,
    pub limits: BatchLimits,
    /// `encoded_len` of every record, if set.
    pub encoded_len: Option<usize>,
}

impl TestSink {
    pub fn new(ctl: &Arc<Control>) -> TestSink {
        TestSink {
            ctl: ctl.clone(),
            limits: BatchLimits {
                max_events: 1000,
                max_bytes: 1 << 20,
            },
            encoded_len: None,
        }
    }
    pub fn max_events(mut self, n: usize) -> Self {
        self.limits.max_events = n;
        self
    }
}

fn noise(what: &'static str) {
    tracing::info!(target: "noisy_sink", what, "the sink's own libraries log this");
    // Libraries such as rustls log through `log`, bridged to `tracing` by `LogTracer`.
    tracing_log::log::info!(target: "noisy_sink", "{what}: logged through the log crate");
}

impl Sink for TestSink {
    fn name(&self) -> &'static str {
        "test"
    }

    fn limits(&self) -> BatchLimits {
        self.limits
    }

    fn encoded_len(&self, record: &Record) -> usize {
        self.encoded_len.unwrap_or_else(|| record.size())
    }

    async fn start(&mut self) {
        self.ctl.started.store(true, Ordering::SeqCst);
        if self.ctl.script().noisy {
            noise("start");
        }
    }

    async fn send(&mut self, batch: &[Record]) -> Outcomes {
        let ctl = self.ctl.clone();
        {
            let mut seen = ctl.seen();
            seen.attempts.push(batch.iter().map(|r| r.seq).collect());
            seen.attempt_times.push(Instant::now());
            seen.thread = std::thread::current().name().map(str::to_owned);
        }
        let (delay, block, noisy, call, in_blocking) = {
            let s = ctl.script();
            (
                s.delay,
                s.block_thread,
                s.noisy,
                s.call_in_send.clone(),
                s.in_blocking,
            )
        };
        if let Some(call) = call {
            if in_blocking {
                tokio::task::spawn_blocking(move || call()).await.unwrap();
            } else {
                call();
            }
        }
        if noisy {
            noise("send");
            tokio::task::spawn_blocking(|| noise("spawn_blocking"))
                .await
                .unwrap();
            tokio::spawn(async { noise("spawned task") }).await.unwrap();
        }
        if ctl.hold.load(Ordering::SeqCst) {
            ctl.holding.fetch_add(1, Ordering::SeqCst);
            while ctl.hold.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            ctl.holding.fetch_sub(1, Ordering::SeqCst);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if !block.is_zero() {
            std::thread::sleep(block);
        }
        let mut s = ctl.script();
        if s.panic_next > 0 {
            s.panic_next -= 1;
            drop(s);
            panic!("test sink exploded");
        }
        if s.fail_permanently {
            return Outcomes::fail_all(batch.len(), FailureKind::Credentials, "401 Unauthorized");
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            let mut o =
                Outcomes::retry_all(batch.len(), FailureKind::Unavailable, s.fail_error.clone());
            if let Some(d) = s.retry_after {
                o.set_retry_after(d);
            }
            return o;
        }
        let mut o = Outcomes::delivered(batch.len());
        let mut seen = ctl.seen();
        for (i, r) in batch.iter().enumerate() {
            if s.defer_from.is_some_and(|k| i >= k) {
                o.defer(i);
            } else if s.reject_prefix.is_some_and(|p| r.message().starts_with(p)) {
                o.reject(i, "mapper_parsing_exception: failed to parse field [n]");
            } else {
                seen.delivered.push(r.seq);
                seen.messages.push(r.message().to_owned());
                o.add_bytes_sent(s.bytes_per_record);
            }
        }
        o
    }

    async fn close(&mut self) {
        self.ctl.closed.store(true, Ordering::SeqCst);
        if self.ctl.script().noisy {
            noise("close");
        }
    }
}

/// A record whose message is `msg`.
pub fn record(msg: &str) -> Record {
    let mut r = Record::new(tracing::Level::INFO, Str::Static("test"), 4096, 2);
    let m = r.fields.push_str(msg);
    r.message = Some(m);
    r
}

/// `m0000`, `m0001`, …: messages of equal length, so records of equal size.
pub fn numbered(i: usize) -> Record {
    record(&format!("m{i:04}"))
}

/// A configuration for tests: short intervals and backoff, large budget.
pub fn fast_config() -> PipelineConfig {
    PipelineConfig {
        buffer_bytes: 64 << 20,
        overflow: Overflow::DropNewest,
        flush_interval: Duration::from_millis(10),
        shutdown_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            base: Duration::from_millis(2),
            cap: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(30),
        },
        spill: None,
    }
}

pub fn secs(s: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(s)
}

// The one `wait_until` of the workspace's tests; this crate sits below `hivelog-tests`, so it
// takes the file rather than the crate.
#[allow(dead_code)]
#[path = "../../../tests/src/wait.rs"]
mod wait;
pub use wait::wait_until;

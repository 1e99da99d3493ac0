//! The pipeline's worker: one dedicated thread running a tokio current-thread runtime, that
//! cuts batches, sends them, applies their outcomes and retries.
//!
//! Why a dedicated thread and runtime rather than a task on the application's runtime: the
//! application may have no runtime, a multi-thread one, or a current-thread one whose only
//! thread is the one calling `shutdown` from `Drop`; a task there could never run while that
//! thread waits for it. Our own thread makes `flush`/`shutdown` plain waits on a condition
//! variable, valid from any thread.
//!
//! Why `Dispatch::none()`: the sink's libraries (hyper, rustls, the AWS SDK) log through
//! `tracing` and `log`; if those events reached the application's subscriber they would be
//! captured by hivelog and queued back to the sink that produced them. The worker thread and
//! every thread its runtime starts (`spawn_blocking`, used for DNS resolution) get
//! `Dispatch::none()` as their default dispatcher. hivelog's own diagnostics go to stderr
//! ([`crate::diag`]).
//!
//! A batch is cut when the queue holds `max_events` records or `max_bytes` (counted with
//! [`Sink::encoded_len`]), when its oldest record may have waited `flush_interval`, or on
//! `flush`/`shutdown`. Records the sink marks `Retry` or `Deferred` stay with the worker and
//! lead the next batch, ahead of newer records; `Retry` waits for the backoff first.
//!
//! With a spill folder, retryable failures are retried for as long as it takes (new events
//! wait on disk meanwhile, and the disk budget bounds them), not only for `max_elapsed`; the
//! worker also writes the events the log calls queued for the disk (the outbox, from a task of
//! its own), reads spilled segments back into the queue (oldest
//! first, while memory is at most half used), deletes a segment once every record read from it
//! is resolved, hands written frames to the disk every `HIVELOG_SPILL_FSYNC` from a task of its
//! own (so a send in progress does not delay it), and at the shutdown deadline writes what is
//! still pending in memory to a segment replayed before the others.
//!
//! A panic inside [`Sink::send`] is caught: the batch is retried with the error
//! `sink panicked: <message>` (so a one-off panic loses nothing, and a panic on every attempt
//! ends as `failed` after `max_elapsed`, like any persistent error). A panic in `start` or
//! `close` is reported and otherwise ignored.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::queue::{Resolution, Shared};
use super::retry::Backoff;
use super::thread::{enter_pipeline_thread, set_current};
use crate::diag;
use crate::record::Record;
use crate::sink::{FailureKind, Outcome, Outcomes, Sink};
use crate::spill::Sealed;
use spill_io::{sync_spill, write_spill};

mod spill_io;

/// Shortest wait between two checks for a partial batch, and shortest backoff, so that zero
/// settings cannot spin the worker.
const MIN_TICK: Duration = Duration::from_millis(1);
/// Time `Sink::close` gets when the shutdown deadline has already passed.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// Builds the runtime and starts the thread `hivelog-<sink>`.
pub(crate) fn spawn<S: Sink>(sink: S, shared: Arc<Shared>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("hivelog-{}-blocking", shared.name))
        .on_thread_start(enter_pipeline_thread)
        .build()?;
    std::thread::Builder::new()
        .name(format!("hivelog-{}", shared.name))
        .spawn(move || {
            enter_pipeline_thread();
            set_current(shared.clone());
            // Marks the pipeline finished even if the worker itself panics, so that no
            // `flush` or `shutdown` waits for a thread that is gone.
            let _finish = FinishOnDrop(shared.clone());
            runtime.block_on(Worker::new(sink, shared).run());
            // Do not wait for blocking tasks (a DNS lookup that hangs) at exit.
            runtime.shutdown_background();
        })?;
    Ok(())
}

struct FinishOnDrop(Arc<Shared>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            diag::warn(
                self.0.name,
                "worker",
                "hivelog's pipeline stopped after a panic",
            );
        }
        self.0.finish();
    }
}

/// A record the worker keeps for the next batch.
struct Held {
    record: Record,
    /// When it first failed with `Retry` (for `max_elapsed`).
    since: Option<Instant>,
}

struct Worker<S> {
    sink: S,
    shared: Arc<Shared>,
    backoff: Backoff,
    /// Records for the next batch, ahead of the queue: retried, deferred, or cut off by
    /// `max_bytes`; in `seq` order.
    held: VecDeque<Held>,
    retry_at: Option<Instant>,
    last_cut: Instant,
    /// The last batch was cut by a limit: more may be ready now.
    backlog: bool,
    /// The batch being sent; its buffer is swapped with the queue's when the whole queue fits.
    batch: VecDeque<Record>,
    since: Vec<Option<Instant>>,
    reported_overflow: u64,
    /// Segments read back from the spill folder, oldest first, with the `seq` range their
    /// records got; deleted once every record below the range's end is resolved.
    replaying: VecDeque<(Sealed, std::ops::Range<u64>)>,
}

impl<S: Sink> Worker<S> {
    fn new(sink: S, shared: Arc<Shared>) -> Self {
        Worker {
            sink,
            backoff: Backoff::new(shared.config.retry),
            shared,
            held: VecDeque::new(),
            retry_at: None,
            last_cut: Instant::now(),
            backlog: false,
            batch: VecDeque::new(),
            since: Vec::new(),
            reported_overflow: 0,
            replaying: VecDeque::new(),
        }
    }

    async fn run(mut self) {
        let shared = self.shared.clone();
        let name = shared.name;
        tokio::select! {
            biased;
            r = CatchUnwind(Box::pin(self.sink.start())) => {
                if let Err(p) = r {
                    diag::warn(name, "panic", format_args!("sink panicked in start: {}", panic_message(&*p)));
                }
            }
            _ = stop_deadline(&shared) => {}
        }
        let tick = shared.config.flush_interval.max(MIN_TICK);
        if let Some(spill) = &shared.config.spill {
            tokio::spawn(sync_spill(shared.clone(), spill.fsync.max(MIN_TICK)));
            tokio::spawn(write_spill(shared.clone()));
        }
        loop {
            if shared.spill_mode.is_some() {
                shared.write_outbox();
            }
            self.ack_segments();
            self.replay();
            let now = Instant::now();
            let v = shared.view();
            if v.dropped_overflow > self.reported_overflow {
                self.reported_overflow = v.dropped_overflow;
                diag::warn(
                    name,
                    "overflow",
                    format_args!(
                        "buffer full ({} bytes): {} events dropped so far (HIVELOG_OVERFLOW={}, HIVELOG_BUFFER_BYTES)",
                        shared.config.buffer_bytes, v.dropped_overflow, shared.config.overflow
                    ),
                );
            }
            let deadline = v.deadline.filter(|_| v.closing);
            if let Some(deadline) = deadline {
                if v.pending == 0 || now >= deadline {
                    break;
                }
            }
            let clip = |t: Instant| deadline.map_or(t, |d| t.min(d));
            if let Some(at) = self.retry_at.filter(|at| *at > now) {
                self.sleep_or_wake(clip(at)).await;
                continue;
            }
            let limits = self.sink.limits();
            let ready = !self.held.is_empty()
                || (v.queued > 0
                    && (v.closing
                        || v.flush_wanted
                        || self.backlog
                        || v.queued >= limits.max_events.max(1)
                        || v.queued_bytes >= limits.max_bytes
                        || now >= self.last_cut + tick));
            if !ready {
                if v.queued == 0 {
                    // Idle: the next record is picked up at most one interval after it arrives.
                    self.last_cut = now;
                }
                self.sleep_or_wake(clip(self.last_cut + tick)).await;
                continue;
            }
            self.send_batch(now).await;
        }
        self.close().await;
    }

    /// Sleeps until `until` or until a push, flush or shutdown wakes the worker.
    async fn sleep_or_wake(&self, until: Instant) {
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = self.shared.work.notified() => {}
        }
    }

    /// Cuts a batch (held records first, then the queue), sends it and applies its outcomes.
    async fn send_batch(&mut self, now: Instant) {
        let limits = self.sink.limits();
        let max_events = limits.max_events.max(1);
        self.batch.clear();
        self.since.clear();
        while self.batch.len() < max_events {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            self.batch.push_back(h.record);
            self.since.push(h.since);
        }
        let held_min = self.batch.front().map(|r| r.seq);
        self.shared
            .take(max_events - self.batch.len(), &mut self.batch, held_min);
        self.since.resize(self.batch.len(), None);
        // Outside the lock: a wrapped ring buffer is rotated into one slice.
        self.batch.make_contiguous();
        self.last_cut = now;

        // Cut by bytes; one record always goes, even if alone it exceeds the limit (the sink
        // rejects or truncates it).
        let mut bytes = 0usize;
        let mut cut = self.batch.len();
        for (i, r) in self.batch.iter().enumerate() {
            let len = self.sink.encoded_len(r);
            if i > 0 && bytes.saturating_add(len) > limits.max_bytes {
                cut = i;
                break;
            }
            bytes = bytes.saturating_add(len);
        }
        self.backlog = cut < self.batch.len() || self.batch.len() == max_events;
        let rest: Vec<(Record, Option<Instant>)> = self
            .batch
            .drain(cut..)
            .zip(self.since.drain(cut..))
            .collect();
        for (record, since) in rest.into_iter().rev() {
            self.held.push_front(Held { record, since });
        }
        if self.batch.is_empty() {
            return;
        }

        let shared = self.shared.clone();
        let sent = {
            let send = CatchUnwind(Box::pin(self.sink.send(self.batch.as_slices().0)));
            tokio::select! {
                biased;
                r = send => Some(r),
                _ = stop_deadline(&shared) => None,
            }
        };
        let n = self.batch.len();
        let outcomes = match sent {
            Some(Ok(o)) => o,
            Some(Err(p)) => {
                let msg = format!("sink panicked: {}", panic_message(&*p));
                diag::warn(
                    shared.name,
                    "panic",
                    format_args!("{msg}; the batch will be retried"),
                );
                Outcomes::retry_all(n, FailureKind::Internal, msg)
            }
            None => {
                // The shutdown deadline passed during the send: the batch stays pending.
                for (record, since) in self.batch.drain(..).zip(self.since.drain(..)).rev() {
                    self.held.push_front(Held { record, since });
                }
                shared.resolve(
                    Resolution::default(),
                    self.held.front().map(|h| h.record.seq),
                );
                return;
            }
        };
        self.apply(outcomes);
    }

    /// Counts delivered, rejected and failed records, and keeps the others for the next batch.
    fn apply(&mut self, outcomes: Outcomes) {
        let now = Instant::now();
        let verdict = self.classify(&outcomes, now);
        let (r, first_reason, gave_up) = self.resolve(&outcomes, &verdict, now);
        self.report(r, &verdict, first_reason, gave_up, now);
        // The buffer goes back to the queue at the next swap; do not keep a burst's peak.
        let max_events = self.sink.limits().max_events.max(1024);
        if self.batch.capacity() > 4 * max_events {
            self.batch.shrink_to(max_events);
        }
    }

    /// Phase 1: what the batch's outcomes mean as a whole (retry or not, when, which error).
    fn classify<'o>(&mut self, outcomes: &'o Outcomes, now: Instant) -> Verdict<'o> {
        let n = self.batch.len();
        if outcomes.len() != n {
            diag::warn(
                self.shared.name,
                "outcomes",
                format_args!(
                    "sink returned {} outcomes for {n} records; the missing ones are retried",
                    outcomes.len()
                ),
            );
        }
        let outcome = |i: usize| outcome_at(outcomes, i);
        // A batch where nothing was sent and everything deferred would loop without end.
        let all_deferred = (0..n).all(|i| outcome(i) == Outcome::Deferred);
        let any_retry = all_deferred || (0..n).any(|i| outcome(i) == Outcome::Retry);
        let error = outcomes.error().unwrap_or(if all_deferred {
            "the sink deferred every record of a batch"
        } else if any_retry {
            "the destination asked for a retry"
        } else {
            "the sink reported a permanent failure"
        });
        let retry_at = if any_retry {
            // At least a tick, so that a zero base and cap cannot spin the worker.
            let delay = self
                .backoff
                .next_delay(outcomes.retry_after())
                .max(MIN_TICK);
            Some(now + delay)
        } else {
            self.backoff.reset();
            None
        };
        Verdict {
            all_deferred,
            kind: outcomes.failure().unwrap_or(FailureKind::Internal),
            error,
            retry_at,
        }
    }

    /// Phase 2: counts each record's outcome and keeps retried and deferred ones, in order,
    /// ahead of the queue. Returns the counts, the first rejection reason and how many
    /// records ran out of retries.
    fn resolve<'o>(
        &mut self,
        outcomes: &'o Outcomes,
        v: &Verdict<'_>,
        now: Instant,
    ) -> (Resolution, Option<&'o str>, u64) {
        let mut r = Resolution {
            bytes_sent: outcomes.bytes_sent(),
            ..Resolution::default()
        };
        let mut first_reason: Option<&str> = None;
        let mut gave_up = 0u64;
        let mut keep: Vec<Held> = Vec::new();
        for (i, (record, since)) in self.batch.drain(..).zip(self.since.drain(..)).enumerate() {
            let o = if v.all_deferred {
                Outcome::Retry
            } else {
                outcome_at(outcomes, i)
            };
            match o {
                Outcome::Delivered => r.delivered += 1,
                Outcome::Rejected(idx) => {
                    r.rejected += 1;
                    first_reason.get_or_insert(outcomes.reason(idx));
                }
                Outcome::Failed => r.failed += 1,
                Outcome::Deferred => {
                    keep.push(Held { record, since });
                    continue;
                }
                Outcome::Retry => {
                    let first = since.unwrap_or(now);
                    // With a disk buffer the disk is the bound, not the time: an outage
                    // longer than `max_elapsed` must not turn the backlog into failures.
                    let keep_trying = self.shared.spill_active
                        || self.backoff.within_budget(first, v.retry_at.unwrap_or(now));
                    if keep_trying {
                        r.retried += 1;
                        let since = Some(first);
                        keep.push(Held { record, since });
                        continue;
                    }
                    r.failed += 1;
                    gave_up += 1;
                }
            }
            r.resolved_bytes += record.size() as u64;
        }
        for h in keep.into_iter().rev() {
            self.held.push_front(h);
        }
        self.retry_at = if r.retried > 0 { v.retry_at } else { None };
        (r, first_reason, gave_up)
    }

    /// Phase 3: sets the last error, applies the counts to the shared counters and says on
    /// stderr what was retried, failed or rejected.
    fn report(
        &mut self,
        mut r: Resolution,
        v: &Verdict<'_>,
        first_reason: Option<&str>,
        gave_up: u64,
        now: Instant,
    ) {
        let (name, kind, error) = (self.shared.name, v.kind, v.error);
        let (retried, failed, rejected) = (r.retried, r.failed, r.rejected);
        if gave_up > 0 {
            r.last_error = Some(format!(
                "gave up after retrying for {:?}: {error}",
                self.backoff.max_elapsed()
            ));
            r.last_failure = Some(kind);
        } else if failed > 0 || retried > 0 {
            r.last_error = Some(error.to_owned());
            r.last_failure = Some(kind);
        } else if let Some(reason) = first_reason {
            r.last_error = Some(format!("rejected: {reason}"));
        }
        let last_error = r.last_error.clone();
        self.shared
            .resolve(r, self.held.front().map(|h| h.record.seq));
        if retried > 0 {
            let wait = v
                .retry_at
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or_default();
            diag::warn(
                name,
                kind.as_str(),
                format_args!("{retried} events will be retried in {wait:?} ({kind}): {error}"),
            );
        }
        if failed > 0 {
            let error = last_error.as_deref().unwrap_or(error);
            diag::warn(
                name,
                "failed",
                format_args!("{failed} events failed ({kind}): {error}"),
            );
        }
        if let Some(reason) = first_reason {
            diag::warn(
                name,
                "rejected",
                format_args!("{rejected} events rejected by the destination: {reason}"),
            );
        }
    }

    async fn close(&mut self) {
        let saved = self.save_pending().await;
        let name = self.shared.name;
        let deadline = self.shared.deadline().unwrap_or_else(Instant::now);
        let until = deadline.max(Instant::now() + CLOSE_GRACE);
        let close = CatchUnwind(Box::pin(self.sink.close()));
        match tokio::time::timeout_at(until.into(), close).await {
            Ok(Ok(())) => {}
            Ok(Err(p)) => {
                diag::warn(
                    name,
                    "panic",
                    format_args!("sink panicked in close: {}", panic_message(&*p)),
                );
            }
            Err(_) => {
                diag::warn(
                    name,
                    "close",
                    "the sink did not close before the shutdown deadline",
                );
            }
        }
        let v = self.shared.view();
        if v.pending > 0 {
            diag::warn(
                name,
                "shutdown",
                format_args!(
                    "{} events ({} bytes) were not sent before the shutdown deadline{}",
                    v.pending,
                    v.pending_bytes,
                    if self.shared.spill_active {
                        format!(
                            "; the spill folder holds {} bytes for the next start ({saved} \
                             events written to it now)",
                            v.spill_bytes
                        )
                    } else {
                        String::new()
                    }
                ),
            );
        }
    }
}

/// What a batch's outcomes mean as a whole ([`Worker::classify`]).
struct Verdict<'o> {
    all_deferred: bool,
    kind: FailureKind,
    error: &'o str,
    retry_at: Option<Instant>,
}

/// The outcome of record `i`; a missing one is a retry.
fn outcome_at(outcomes: &Outcomes, i: usize) -> Outcome {
    outcomes
        .as_slice()
        .get(i)
        .copied()
        .unwrap_or(Outcome::Retry)
}

/// Completes when the shutdown deadline has passed (never, before shutdown begins).
async fn stop_deadline(shared: &Shared) {
    loop {
        let notified = shared.stop.notified();
        tokio::pin!(notified);
        // Registered before the check, so a shutdown between the check and the await is seen.
        notified.as_mut().enable();
        if let Some(deadline) = shared.deadline() {
            tokio::time::sleep_until(deadline.into()).await;
            return;
        }
        notified.await;
    }
}

/// A future that turns a panic while polling into an error (what `futures`'
/// `catch_unwind` does, without the dependency).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

//! Waiting on an event, never on time: a condition polled until it holds or a deadline passes.
//!
//! Why a deadline and not a sleep: a test that sleeps "long enough" for a heartbeat, an fsync
//! or a reconnection fails on a loaded machine and wastes time on an idle one. A condition
//! polled every few milliseconds returns as soon as the event happened; the deadline only
//! bounds a failure, so it can be generous.
//!
//! This file is the one copy: `hivelog-core`'s tests include it by path (that crate sits below
//! this one and cannot depend on it), every other crate uses [`wait_until`] from here.

use std::time::{Duration, Instant};

/// How often the condition is looked at.
const POLL: Duration = Duration::from_millis(2);

/// Polls `done` until it returns true, for at most `timeout`; whether it did.
///
/// ```
/// use std::time::{Duration, Instant};
/// let t0 = Instant::now();
/// assert!(hivelog_tests::wait::wait_until(Duration::from_secs(5), || t0.elapsed() > Duration::from_millis(10)));
/// ```
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Like [`wait_until`] without blocking an async runtime's thread.
pub async fn wait_until_async(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

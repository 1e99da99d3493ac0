//! What is retried, and when.
//!
//! Backoff is per pipeline, not per event: a failed attempt means the destination is
//! unhealthy, so the whole pipeline waits (newer events queue behind the retried ones, which
//! keeps their order for destinations that care, such as CloudWatch). The wait is exponential
//! with full jitter (a random time in `[0, min(cap, base × 2ⁿ)]`), so that many processes
//! failing together do not retry in lockstep; a server's `Retry-After` is a floor. Success
//! resets the exponent.

use std::time::{Duration, Instant};

use rand::Rng as _;

use super::config::RetryPolicy;

/// The backoff state of one pipeline.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// The ceiling of the next wait: `min(cap, base × 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.policy
            .base
            .checked_mul(factor)
            .unwrap_or(self.policy.cap)
            .min(self.policy.cap)
    }

    /// The wait before the next attempt, after a failed one; never below `retry_after`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let jittered = if ceiling.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::rng().random_range(0..=ceiling.as_nanos() as u64))
        };
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }

    /// A batch went through without retries: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Whether an event first failed at `since` may still be retried at `at`.
    pub fn within_budget(&self, since: Instant, at: Instant) -> bool {
        at.saturating_duration_since(since) <= self.policy.max_elapsed
    }

    pub fn max_elapsed(&self) -> Duration {
        self.policy.max_elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap_with_full_jitter() {
        let mut b = Backoff::new(policy());
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay(None);
                assert!(d <= c, "{d:?} > {c:?}");
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays_over_the_whole_range() {
        let mut lows = 0;
        for _ in 0..200 {
            let mut b = Backoff::new(policy());
            if b.next_delay(None) < Duration::from_millis(50) {
                lows += 1;
            }
        }
        assert!(
            (40..160).contains(&lows),
            "{lows} of 200 below half the ceiling"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(policy());
        for _ in 0..20 {
            assert!(b.next_delay(Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        }
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut b = Backoff::new(policy());
        for _ in 0..100 {
            assert!(b.next_delay(None) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn the_budget_is_measured_from_the_first_failure() {
        let b = Backoff::new(policy());
        let t0 = Instant::now();
        assert!(b.within_budget(t0, t0 + Duration::from_secs(10)));
        assert!(!b.within_budget(t0, t0 + Duration::from_secs(11)));
    }
}

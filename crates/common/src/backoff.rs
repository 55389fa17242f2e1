//! Exponential backoff with jitter: the one retry schedule of the whole pipeline.
//!
//! Producer reconnects, consumer retries of inference calls and S3 uploads all wait with this.
//! Delay n (from 0) is drawn uniformly from `[d/2, d]` with `d = min(max, initial * 2^n)`
//! ("equal jitter"): growth stays visible in logs while many clients that failed together
//! spread their retries out instead of hammering a recovering server in lockstep.
//!
//! With the defaults (100 ms, cap 30 s): ~0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30 ...

use std::time::Duration;

/// A retry schedule; [`Backoff::reset`] it after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Retries since the last success; picks the delay's position in the schedule.
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay, without jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ns = fastrand::u64(0..=(ceiling - half).as_nanos() as u64);
        half + Duration::from_nanos(jitter_ns)
    }

    /// Back to the start of the schedule, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stop_at_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let expected_ceilings = [100, 200, 400, 800, 1000, 1000];
        for ms in expected_ceilings {
            let ceiling = Duration::from_millis(ms);
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} not in [{ms}/2, {ms}] ms"
            );
        }
    }

    #[test]
    fn reset_starts_the_schedule_again() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(5));
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.attempt(), 5);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(10));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
    }
}

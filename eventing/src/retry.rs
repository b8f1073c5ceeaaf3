//! [`RetryPolicy`]: how often, and after how long, a failed delivery is tried again.

use std::time::Duration;

/// How a listener retries failed deliveries before they go to its dead-letter queue.
///
/// The default: 5 attempts in all, waiting 1 s, 2 s, 4 s, 8 s between them. A panic counts
/// as a failure like any error; only [`HandlerError::permanent`](crate::HandlerError::permanent)
/// failures and payloads that do not decode skip the retries.
///
/// ```
/// use std::time::Duration;
/// use eventing::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(4, Duration::from_millis(500));
/// assert_eq!(policy.delay_before(2), Duration::from_millis(500));
/// assert_eq!(policy.delay_before(4), Duration::from_secs(2));
/// assert_eq!(RetryPolicy::fixed(3, Duration::from_secs(1)).delay_before(3), Duration::from_secs(1));
///
/// // Waits of 200 ms doubling up to 5 s, 8 attempts in all.
/// let policy = RetryPolicy::exponential(8, Duration::from_millis(200))
///     .with_backoff(eventing::Backoff::exponential(Duration::from_secs(5)));
/// assert_eq!(policy.delay_before(8), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first delivery included (1: no retry).
    pub max_attempts: u32,
    /// The wait before the second attempt.
    pub first_delay: Duration,
    /// How the wait grows.
    pub backoff: Backoff,
}

/// How the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same wait every time.
    Fixed,
    /// The wait doubles each time, up to `max` (made with [`Backoff::exponential`]).
    #[non_exhaustive]
    Exponential {
        /// The longest wait.
        max: Duration,
    },
}

impl Backoff {
    /// The wait doubles each time, up to `max`.
    #[must_use]
    pub fn exponential(max: Duration) -> Self {
        Self::Exponential { max }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::exponential(5, Duration::from_secs(1))
    }
}

impl RetryPolicy {
    /// `max_attempts` in all, waiting `first_delay` and doubling (up to a minute).
    #[must_use]
    pub fn exponential(max_attempts: u32, first_delay: Duration) -> Self {
        Self { max_attempts, first_delay, backoff: Backoff::exponential(Duration::from_secs(60)) }
    }

    /// `max_attempts` in all, waiting `delay` between them.
    #[must_use]
    pub fn fixed(max_attempts: u32, delay: Duration) -> Self {
        Self { max_attempts, first_delay: delay, backoff: Backoff::Fixed }
    }

    /// No retries: a failure goes straight to the dead-letter queue.
    #[must_use]
    pub fn none() -> Self {
        Self::fixed(1, Duration::ZERO)
    }

    /// Sets the attempts in all, the first delivery included (1: no retry).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the wait before the second attempt.
    #[must_use]
    pub fn with_first_delay(mut self, first_delay: Duration) -> Self {
        self.first_delay = first_delay;
        self
    }

    /// Sets how the wait grows.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The wait before attempt `attempt` (2 for the first retry).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let retries_before = attempt.saturating_sub(2);
        match self.backoff {
            Backoff::Fixed => self.first_delay,
            Backoff::Exponential { max } => {
                let factor = 2_u32.saturating_pow(retries_before.min(31));
                self.first_delay.saturating_mul(factor).min(max)
            }
        }
    }

    /// Whether a delivery that failed on `attempt` is tried again.
    pub fn retries_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The distinct waits this policy uses, shortest first: one retry queue each.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (2..=self.max_attempts).map(|attempt| self.delay_before(attempt)).collect();
        delays.sort();
        delays.dedup();
        delays
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Backoff, RetryPolicy};

    #[test]
    fn every_setting_has_a_with_method() {
        let policy = RetryPolicy::none()
            .with_max_attempts(4)
            .with_first_delay(Duration::from_millis(100))
            .with_backoff(Backoff::exponential(Duration::from_millis(250)));
        assert_eq!(policy.max_attempts, 4);
        assert_eq!(policy.first_delay, Duration::from_millis(100));
        assert_eq!(
            policy.delays(),
            [Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(250)]
        );
        assert_eq!(RetryPolicy::default().with_backoff(Backoff::Fixed), RetryPolicy::fixed(5, Duration::from_secs(1)));
    }
}

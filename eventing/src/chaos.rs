//! [`Chaos`]: faults injected on purpose, to see a service survive them before production
//! does it for you. Off by default; logged loudly when on.

use std::num::{ParseFloatError, ParseIntError};
use std::time::Duration;

/// What to inject into deliveries and handler calls.
///
/// Built from [`Chaos::default`] (nothing injected) with the `with_*` methods, or read
/// from `EVENTING_CHAOS`'s format with [`Chaos::parse`]:
///
/// ```
/// use std::time::Duration;
/// let chaos = eventing::Chaos::default()
///     .with_fail_share(0.2)
///     .with_nack_share(0.05)
///     .with_delay(Duration::from_millis(1), Duration::from_millis(20))
///     .with_exempt_events(["billing.invoice_paid"]);
/// assert!(chaos.is_active());
/// assert_eq!(eventing::Chaos::parse("fail=0.2,nack=0.05,delay=1..20ms,exempt=billing.invoice_paid"), Ok(chaos));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Chaos {
    /// Share (0.0–1.0) of handler calls that fail with an injected, retryable error.
    pub fail_share: f64,
    /// Share of deliveries returned to the queue unhandled (a nack with requeue).
    pub nack_share: f64,
    /// A random delay in this range before each handler call.
    pub delay: Option<(Duration, Duration)>,
    /// Events no chaos touches.
    pub exempt_events: Vec<String>,
}

/// Why a chaos setting in `EVENTING_CHAOS`'s format could not be read: each names the
/// part at fault, as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// A part without `=`.
    #[error("`{part}`: expected key=value")]
    NotKeyValue {
        /// The part, as written.
        part: String,
    },
    /// A share (`fail=`, `nack=`) that is not a number.
    #[error("`{part}`: not a number")]
    NotAShare {
        /// The part, as written.
        part: String,
        /// What the number parser found.
        #[source]
        source: ParseFloatError,
    },
    /// A share outside 0.0 to 1.0.
    #[error("`{part}`: a share is 0.0 to 1.0")]
    ShareOutOfRange {
        /// The part, as written.
        part: String,
        /// The share it gives.
        share: f64,
    },
    /// A delay not written `delay=MIN..MAXms`.
    #[error("`{part}`: write delay=MIN..MAXms")]
    DelayFormat {
        /// The part, as written.
        part: String,
    },
    /// A delay bound that is not a whole number of milliseconds.
    #[error("`{part}`: not a number")]
    NotMillis {
        /// The part, as written.
        part: String,
        /// What the number parser found.
        #[source]
        source: ParseIntError,
    },
    /// A delay range whose minimum is above its maximum.
    #[error("`{part}`: the range is backwards")]
    BackwardsRange {
        /// The part, as written.
        part: String,
    },
    /// A key other than `fail`, `nack`, `delay` and `exempt`.
    #[error("`{key}`: unknown chaos setting (fail, nack, delay, exempt)")]
    UnknownSetting {
        /// The key, as written.
        key: String,
    },
}

/// What chaos decided for one delivery.
pub(crate) enum Injected {
    /// Handle it normally.
    Nothing,
    /// Return it to the queue unhandled.
    Nack,
    /// Fail the handler call.
    Fail,
}

impl Chaos {
    /// Whether anything is injected at all.
    pub fn is_active(&self) -> bool {
        self.fail_share > 0.0 || self.nack_share > 0.0 || self.delay.is_some()
    }

    /// Sets the share (0.0–1.0) of handler calls that fail with an injected, retryable error.
    #[must_use]
    pub fn with_fail_share(mut self, share: f64) -> Self {
        self.fail_share = share;
        self
    }

    /// Sets the share (0.0–1.0) of deliveries returned to the queue unhandled.
    #[must_use]
    pub fn with_nack_share(mut self, share: f64) -> Self {
        self.nack_share = share;
        self
    }

    /// Delays each handler call by a random time from `min` to `max`.
    #[must_use]
    pub fn with_delay(mut self, min: Duration, max: Duration) -> Self {
        self.delay = Some((min, max));
        self
    }

    /// Sets the events no chaos touches (by event name).
    #[must_use]
    pub fn with_exempt_events(mut self, events: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.exempt_events = events.into_iter().map(Into::into).collect();
        self
    }

    /// Reads `fail=0.2,nack=0.05,delay=10..50ms,exempt=a|b` (the `EVENTING_CHAOS` format);
    /// every part is optional.
    pub fn parse(text: &str) -> Result<Self, ChaosError> {
        let mut chaos = Self::default();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let owned = || part.to_owned();
            let (key, value) = part.split_once('=').ok_or_else(|| ChaosError::NotKeyValue { part: owned() })?;
            let share = |value: &str| -> Result<f64, ChaosError> {
                let share: f64 = value.parse().map_err(|source| ChaosError::NotAShare { part: owned(), source })?;
                if (0.0..=1.0).contains(&share) {
                    Ok(share)
                } else {
                    Err(ChaosError::ShareOutOfRange { part: owned(), share })
                }
            };
            match key {
                "fail" => chaos.fail_share = share(value)?,
                "nack" => chaos.nack_share = share(value)?,
                "delay" => {
                    let format = || ChaosError::DelayFormat { part: owned() };
                    let millis = value.strip_suffix("ms").ok_or_else(format)?;
                    let (low, high) = millis.split_once("..").ok_or_else(format)?;
                    let parse = |n: &str| {
                        n.parse::<u64>()
                            .map(Duration::from_millis)
                            .map_err(|source| ChaosError::NotMillis { part: owned(), source })
                    };
                    let (low, high) = (parse(low)?, parse(high)?);
                    if low > high {
                        return Err(ChaosError::BackwardsRange { part: owned() });
                    }
                    chaos.delay = Some((low, high));
                }
                "exempt" => chaos.exempt_events = value.split('|').map(str::to_owned).collect(),
                other => return Err(ChaosError::UnknownSetting { key: other.to_owned() }),
            }
        }
        Ok(chaos)
    }

    /// Decides for one delivery of `event`, after sleeping the random delay if any.
    pub(crate) async fn inject(&self, event: &str) -> Injected {
        if self.exempt_events.iter().any(|exempt| exempt == event) {
            return Injected::Nothing;
        }
        if let Some((low, high)) = self.delay {
            let span = u64::try_from((high - low).as_micros()).unwrap_or(u64::MAX);
            tokio::time::sleep(low + Duration::from_micros(fastrand::u64(0..=span))).await;
        }
        if fastrand::f64() < self.nack_share {
            Injected::Nack
        } else if fastrand::f64() < self.fail_share {
            Injected::Fail
        } else {
            Injected::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Chaos, ChaosError};

    #[test]
    fn mistakes_are_typed_and_name_the_part() {
        let refused = |text: &str| Chaos::parse(text).expect_err(text);
        assert!(matches!(refused("fail"), ChaosError::NotKeyValue { part } if part == "fail"));
        assert!(matches!(refused("fail=lots"), ChaosError::NotAShare { part, .. } if part == "fail=lots"));
        assert!(matches!(refused("nack=1.5"), ChaosError::ShareOutOfRange { share, .. } if share == 1.5));
        assert!(matches!(refused("delay=10..50"), ChaosError::DelayFormat { .. }));
        assert!(matches!(refused("delay=x..50ms"), ChaosError::NotMillis { .. }));
        assert!(matches!(refused("delay=50..10ms"), ChaosError::BackwardsRange { .. }));
        assert!(matches!(refused("panic=0.1"), ChaosError::UnknownSetting { key } if key == "panic"));
    }

    #[test]
    fn messages_say_what_to_write_and_keep_the_cause() {
        let error = Chaos::parse("fail=0.2, delay=5ms").expect_err("no range");
        assert_eq!(error.to_string(), "`delay=5ms`: write delay=MIN..MAXms");
        let error = Chaos::parse("fail=lots").expect_err("not a number");
        assert_eq!(error.to_string(), "`fail=lots`: not a number");
        let cause = std::error::Error::source(&error).expect("the parser's error").to_string();
        assert_eq!(cause, "invalid float literal");
        assert_eq!(
            Chaos::parse("bogus=1").expect_err("unknown").to_string(),
            "`bogus`: unknown chaos setting (fail, nack, delay, exempt)"
        );
    }
}

//! [`Chaos`]: faults injected on purpose, to see a service survive them before production
//! does it for you. Off by default; logged loudly when on.

use std::time::Duration;

/// What to inject into deliveries and handler calls.
///
/// ```
/// use std::time::Duration;
/// let chaos = eventing::Chaos {
///     fail_share: 0.2,
///     nack_share: 0.05,
///     delay: Some((Duration::from_millis(1), Duration::from_millis(20))),
///     exempt_events: vec!["billing.invoice_paid".into()],
/// };
/// assert!(chaos.is_active());
/// assert_eq!(eventing::Chaos::parse("fail=0.2,nack=0.05,delay=1..20ms,exempt=billing.invoice_paid"), Ok(chaos));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
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

    /// Reads `fail=0.2,nack=0.05,delay=10..50ms,exempt=a|b` (the `EVENTING_CHAOS` format);
    /// every part is optional.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut chaos = Self::default();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected key=value"))?;
            let share = |value: &str| -> Result<f64, String> {
                let share: f64 = value.parse().map_err(|_| format!("`{part}`: not a number"))?;
                if (0.0..=1.0).contains(&share) { Ok(share) } else { Err(format!("`{part}`: a share is 0.0 to 1.0")) }
            };
            match key {
                "fail" => chaos.fail_share = share(value)?,
                "nack" => chaos.nack_share = share(value)?,
                "delay" => {
                    let millis = value.strip_suffix("ms").ok_or_else(|| format!("`{part}`: write delay=MIN..MAXms"))?;
                    let (low, high) =
                        millis.split_once("..").ok_or_else(|| format!("`{part}`: write delay=MIN..MAXms"))?;
                    let parse = |n: &str| {
                        n.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("`{part}`: not a number"))
                    };
                    let (low, high) = (parse(low)?, parse(high)?);
                    if low > high {
                        return Err(format!("`{part}`: the range is backwards"));
                    }
                    chaos.delay = Some((low, high));
                }
                "exempt" => chaos.exempt_events = value.split('|').map(str::to_owned).collect(),
                other => return Err(format!("`{other}`: unknown chaos setting (fail, nack, delay, exempt)")),
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

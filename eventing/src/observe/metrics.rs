//! The `metrics` feature: counters, a histogram and a gauge through the `metrics` facade.
//! The names and labels are documented in the parent module; they are part of the
//! product's face, so they are constants here and in the README.

use std::borrow::Cow;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub(crate) const PUBLISHED: &str = "eventing_published_total";
pub(crate) const HANDLED: &str = "eventing_handled_total";
pub(crate) const HANDLE_DURATION: &str = "eventing_handle_duration_seconds";
pub(crate) const IN_FLIGHT: &str = "eventing_handlers_in_flight";
pub(crate) const RECONNECTS: &str = "eventing_reconnects_total";

/// The `outcome` label of [`HANDLED`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handled {
    Ok,
    Retried,
    DeadLettered,
    Declined,
}

impl Handled {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Declined => "declined",
        }
    }
}

/// One message published by the application or a handler, confirmed by the broker.
pub(crate) fn published(event: Cow<'static, str>) {
    counter!(PUBLISHED, "event" => event).increment(1);
}

/// A delivery of `event` to `listener` settled as `outcome`.
pub(crate) fn handled(event: &'static str, listener: &'static str, outcome: Handled) {
    counter!(HANDLED, "event" => event, "listener" => listener, "outcome" => outcome.label()).increment(1);
}

/// How long the handle stack took for a delivery of `event` to `listener`.
pub(crate) fn handle_duration(event: &'static str, listener: &'static str, took: Duration) {
    histogram!(HANDLE_DURATION, "event" => event, "listener" => listener).record(took);
}

/// A connection recovered.
pub(crate) fn reconnected() {
    counter!(RECONNECTS).increment(1);
}

/// Counts one delivery in `eventing_handlers_in_flight{listener}` while it lives.
pub(crate) struct InFlight(&'static str);

impl InFlight {
    pub(crate) fn start(listener: &'static str) -> Self {
        gauge!(IN_FLIGHT, "listener" => listener).increment(1.0);
        Self(listener)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(IN_FLIGHT, "listener" => self.0).decrement(1.0);
    }
}

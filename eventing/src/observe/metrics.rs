//! The `metrics` feature: counters, a histogram and a gauge through the `metrics` facade.
//! The names and labels are documented in the parent module; they are part of the
//! product's face, so they are constants here and in the README.

use std::borrow::Cow;
use std::time::Duration;

use metrics::{SharedString, counter, gauge, histogram};

use crate::ListenerInfo;

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
    /// A request whose handler failed (the error went back to the caller; never retried).
    Failed,
    /// A request that came after its caller gave up, dropped unhandled.
    Expired,
}

impl Handled {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Declined => "declined",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// One message published by the application or a handler, confirmed by the broker.
pub(crate) fn published(event: Cow<'static, str>) {
    counter!(PUBLISHED, "event" => event).increment(1);
}

/// The `event` label of a delivery of `event_type` to `listener`: the listener's event (no
/// copy), or for a pattern listener the name of the event delivered.
#[allow(clippy::ptr_arg, reason = "a borrowed name stays a label without a copy")]
fn event_label(listener: &ListenerInfo, event_type: &Cow<'static, str>) -> SharedString {
    match (listener.pattern, event_type) {
        (None, _) => SharedString::const_str(listener.event),
        (Some(_), Cow::Borrowed(name)) => SharedString::const_str(name),
        (Some(_), Cow::Owned(name)) => SharedString::from_owned(name.clone()),
    }
}

/// A delivery of `event_type` to `listener` settled as `outcome`.
#[allow(clippy::ptr_arg, reason = "a borrowed name stays a label without a copy")]
pub(crate) fn handled(listener: &ListenerInfo, event_type: &Cow<'static, str>, outcome: Handled) {
    let event = event_label(listener, event_type);
    counter!(HANDLED, "event" => event, "listener" => listener.name, "outcome" => outcome.label()).increment(1);
}

/// How long the handle stack took for a delivery of `event_type` to `listener`.
#[allow(clippy::ptr_arg, reason = "a borrowed name stays a label without a copy")]
pub(crate) fn handle_duration(listener: &ListenerInfo, event_type: &Cow<'static, str>, took: Duration) {
    let event = event_label(listener, event_type);
    histogram!(HANDLE_DURATION, "event" => event, "listener" => listener.name).record(took);
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

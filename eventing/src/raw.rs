//! [`RawEvent`]: any event as published, for pattern listeners that take families of events
//! (`billing.#`) or every event (`#`), typed or not.

use std::any::type_name;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::Event;
use crate::message::Message;

/// An event as it arrived: its name and its JSON body, undecoded. The input of pattern
/// listeners (`#[event_listener(pattern = "billing.#")] impl Listener<RawEvent> for T`);
/// the metadata is on the [`Context`](crate::Context), as for any listener.
///
/// ```
/// use eventing::{event_listener, Context, HandlerError, Listener, RawEvent};
///
/// #[derive(Default)]
/// pub struct AuditTrail;
///
/// #[event_listener(pattern = "billing.#")]
/// impl Listener<RawEvent> for AuditTrail {
///     async fn on(&self, event: RawEvent, ctx: &Context) -> Result<(), HandlerError> {
///         tracing::info!(event = event.name(), id = ctx.message_id(), bytes = event.body().len(), "audit");
///         Ok(())
///     }
/// }
/// ```
#[derive(Clone)]
pub struct RawEvent {
    message: Arc<Message>,
}

impl RawEvent {
    /// The event's name (its routing key), e.g. `billing.invoice_paid`.
    pub fn name(&self) -> &str {
        &self.message.event_type
    }

    /// The body exactly as published (JSON, for everything eventing publishes).
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }

    /// The body decoded as `T`, when the caller knows the type; `?` in a handler turns a
    /// failure into a [`HandlerError`](crate::HandlerError).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        serde_json::from_slice(&self.message.body).map_err(|source| DecodeError {
            event: self.name().to_owned(),
            target: type_name::<T>(),
            source,
        })
    }
}

impl std::fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawEvent")
            .field("name", &self.name())
            .field("body", &String::from_utf8_lossy(self.body()))
            .finish()
    }
}

/// A [`RawEvent`]'s body does not decode as the type asked for.
#[derive(Debug, thiserror::Error)]
#[error("event `{event}` does not decode as `{target}`: {source}")]
pub struct DecodeError {
    /// The event's name.
    pub event: String,
    /// The type it was decoded as.
    pub target: &'static str,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

/// What a listener can take: an [`#[event]`](crate::event) type, decoded from the body, or
/// a [`RawEvent`], not decoded. Implemented for both; not for other types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an `#[event]` type",
    note = "add `#[eventing::event]` to the definition of `{Self}` (and derive `Serialize` and `Deserialize`), \
            or take `eventing::RawEvent` with `#[event_listener(pattern = \"...\")]`"
)]
pub trait Receivable: Sized + Send + Sync + 'static {
    /// The event's name, or `None` for [`RawEvent`] (whose listeners bind a pattern).
    #[doc(hidden)]
    const NAME: Option<&'static str>;
    /// Whether the event is durable (false for [`RawEvent`]).
    #[doc(hidden)]
    const DURABLE: bool;
    /// The listener's input from a delivered message.
    #[doc(hidden)]
    fn receive(message: &Arc<Message>) -> Result<Self, serde_json::Error>;
}

impl<E: Event> Receivable for E {
    const NAME: Option<&'static str> = Some(E::NAME);
    const DURABLE: bool = E::DURABLE;

    fn receive(message: &Arc<Message>) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(&message.body)
    }
}

impl Receivable for RawEvent {
    const NAME: Option<&'static str> = None;
    const DURABLE: bool = false;

    fn receive(message: &Arc<Message>) -> Result<Self, serde_json::Error> {
        Ok(Self { message: Arc::clone(message) })
    }
}

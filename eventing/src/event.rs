//! The [`Event`] trait that `#[event]` implements.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What an event's body must be: JSON both ways. Implemented for every type that derives
/// `Serialize` and `Deserialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must derive `Serialize` and `Deserialize` to be an event",
    label = "an `#[event]` travels as JSON",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait Payload: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Payload for T {}

/// A domain event: a serde type with a routing name, implemented by [`#[event]`](crate::event).
///
/// The name is the routing key on the wire and part of every queue name of its listeners;
/// it defaults to the snake case of the type name and may contain dots
/// (`billing.invoice_paid`) so that wildcard bindings can select a family.
///
/// ```
/// use eventing::Event;
/// # use serde::{Deserialize, Serialize};
///
/// #[eventing::event(name = "billing.invoice_paid", durable)]
/// #[derive(Serialize, Deserialize)]
/// struct InvoicePaid { invoice: String }
///
/// assert_eq!(InvoicePaid::NAME, "billing.invoice_paid");
/// assert!(InvoicePaid::DURABLE);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an `#[event]` type",
    note = "add `#[eventing::event]` to the definition of `{Self}` (and derive `Serialize` and `Deserialize`)"
)]
pub trait Event: Payload + Send + Sync + 'static {
    /// The event's name: its routing key and the middle part of its listeners' queue names.
    const NAME: &'static str;
    /// Whether the event survives a broker restart: durable queues, persistent messages.
    const DURABLE: bool;
}

//! What the macros' generated code refers to. Not a public API: it changes without notice.

pub use ::inventory;
pub use ::serde;

pub use crate::interceptor::InterceptorDescriptor;
pub use crate::recurring::{RecurringAttributes, RecurringDescriptor};
pub use crate::registry::{EventDescriptor, ListenerAttributes, ListenerDescriptor};
pub use crate::request::{RequestDescriptor, RequestHandlerDescriptor};
pub use crate::schema::{SchemaFn, SchemaProbe, SchemaResult, WithSchema, WithoutSchema};

/// Implemented by `#[event]` just before `Event`, so that a missing derive is reported
/// first in the words of [`EventSerialize`] and [`EventDeserialize`], which say what to
/// derive, rather than only as an unsatisfied serde bound of `Event`'s supertraits.
pub trait EventJson: EventSerialize + EventDeserialize {}

/// What a missing `Serialize` derive on an `#[event]` type is reported as.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must derive `Serialize` to be an event",
    label = "an `#[event]` travels as JSON: derive `Serialize` and `Deserialize`",
    note = "add `#[derive(serde::Serialize)]` to `{Self}`; `#[event]` does not derive it for you"
)]
pub trait EventSerialize {}

impl<T: ::serde::Serialize> EventSerialize for T {}

/// What a missing `Deserialize` derive on an `#[event]` type is reported as.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must derive `Deserialize` to be an event",
    label = "an `#[event]` travels as JSON: derive `Serialize` and `Deserialize`",
    note = "add `#[derive(serde::Deserialize)]` to `{Self}`; `#[event]` does not derive it for you"
)]
pub trait EventDeserialize {}

impl<T: ::serde::de::DeserializeOwned> EventDeserialize for T {}

/// Implemented by `#[request]` just before `Request`, so that a missing derive is reported
/// in words that say what to derive.
pub trait RequestJson: RequestSerialize + RequestDeserialize {}

/// What a missing `Serialize` derive on a `#[request]` type is reported as.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must derive `Serialize` to be a request",
    label = "a `#[request]` travels as JSON: derive `Serialize` and `Deserialize`",
    note = "add `#[derive(serde::Serialize)]` to `{Self}`; `#[request]` does not derive it for you"
)]
pub trait RequestSerialize {}

impl<T: ::serde::Serialize> RequestSerialize for T {}

/// What a missing `Deserialize` derive on a `#[request]` type is reported as.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must derive `Deserialize` to be a request",
    label = "a `#[request]` travels as JSON: derive `Serialize` and `Deserialize`",
    note = "add `#[derive(serde::Deserialize)]` to `{Self}`; `#[request]` does not derive it for you"
)]
pub trait RequestDeserialize {}

impl<T: ::serde::de::DeserializeOwned> RequestDeserialize for T {}

/// Checks, where `#[request(reply = T)]` names it, that a reply type travels as JSON.
pub const fn assert_reply<T: crate::request::ReplyPayload>() {}

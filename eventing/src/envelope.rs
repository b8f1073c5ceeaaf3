//! [`Envelope`]: one message as [interceptors](crate::Interceptor) see it, on the way out
//! and on the way in.

use std::sync::Arc;

use crate::message::{HeaderValue, Message, is_reserved_header};

/// A message with its metadata, as an [`Interceptor`](crate::Interceptor) sees it.
///
/// On the sending side ([`Interceptor::send`](crate::Interceptor::send)) headers can be set;
/// on the handling side ([`Interceptor::handle`](crate::Interceptor::handle)) the envelope
/// also names the [`listener`](Self::listener) that handles it.
///
/// ```
/// # use eventing::{interceptor, Envelope, Interceptor};
/// #[derive(Default)]
/// struct StampRegion;
///
/// #[interceptor]
/// impl Interceptor for StampRegion {
///     fn send(&self, envelope: &mut Envelope) {
///         if envelope.get("region").is_none() {
///             envelope.set("region", "eu-west");
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Envelope {
    message: Stored,
    listener: Option<&'static str>,
}

/// The message: owned while it is being published, shared while it is being handled.
#[derive(Debug)]
// Short-lived, on the stack of one publish or delivery; boxing the owned message would add
// an allocation per publish (it grew past clippy's threshold with `reply_to`/`expiration`).
#[allow(clippy::large_enum_variant)]
enum Stored {
    Owned(Message),
    Shared(Arc<Message>),
}

impl Envelope {
    /// An outgoing message, before it reaches the transport.
    pub(crate) fn outgoing(message: Message) -> Self {
        Self { message: Stored::Owned(message), listener: None }
    }

    /// A delivery about to be handled by `listener`.
    pub(crate) fn incoming(message: Arc<Message>, listener: &'static str) -> Self {
        Self { message: Stored::Shared(message), listener: Some(listener) }
    }

    /// The message, to publish after the interceptors ran.
    pub(crate) fn into_message(self) -> Message {
        match self.message {
            Stored::Owned(message) => message,
            Stored::Shared(message) => Arc::unwrap_or_clone(message),
        }
    }

    fn message(&self) -> &Message {
        match &self.message {
            Stored::Owned(message) => message,
            Stored::Shared(message) => message,
        }
    }

    /// A text header's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.message().header_text(name)
    }

    /// Any header's value (text, integer or boolean).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.message().headers.get(name)
    }

    /// Sets a header on the outgoing message. Names starting with `x-eventing-` are
    /// eventing's own, and names longer than 255 bytes do not fit AMQP: setting one is
    /// refused and logged as an error, the message is sent without it.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<HeaderValue>) {
        let name = name.into();
        if is_reserved_header(&name) {
            tracing::error!(
                header = %name,
                event = %self.event_name(),
                "an interceptor tried to set a reserved header (x-eventing-*); it is not set"
            );
            return;
        }
        if let Err(reason) = crate::naming::check_length(&name) {
            tracing::error!(event = %self.event_name(), %reason, "an interceptor tried to set a header whose name is too long; it is not set");
            return;
        }
        let message = match &mut self.message {
            Stored::Owned(message) => message,
            Stored::Shared(shared) => Arc::make_mut(shared),
        };
        message.headers.insert(name, value.into());
    }

    /// The event name (the routing key).
    pub fn event_name(&self) -> &str {
        &self.message().event_type
    }

    /// The message id.
    pub fn message_id(&self) -> &str {
        &self.message().message_id
    }

    /// The id of the causal chain the message belongs to.
    pub fn correlation_id(&self) -> &str {
        self.message().chain_id()
    }

    /// The body: the event's JSON.
    pub fn body(&self) -> &[u8] {
        &self.message().body
    }

    /// The delivery attempt, 1 on first delivery.
    pub fn attempt(&self) -> u32 {
        self.message().attempt
    }

    /// The listener (or request handler) handling the message; `None` on the sending side.
    pub fn listener(&self) -> Option<&'static str> {
        self.listener
    }
}

//! The send stack: event → message → interceptors' `send` → transport, with confirms.
//! Every message the bus publishes goes through it: the application's publishes, handlers'
//! follow-ups, the runtime's moves of failed messages to retry and dead-letter queues, and
//! requests (`requests.rs`, which then wait for the reply). Replies do not: they answer a
//! delivery (`serve.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde::de::IgnoredAny;
use tracing::Instrument;

use crate::envelope::Envelope;
use crate::interceptor::ErasedInterceptor;
use crate::message::{HeaderValue, Headers, JSON, Message, is_reserved_header};
use crate::transport::{BoxFuture, Origin, Route, Transport, TransportError};
use crate::{Error, Event, naming};

/// Publishes to the bus's exchange; shared by the [`Bus`](crate::Bus), every handler's
/// [`Context`](crate::Context) and the consumers' failure path.
pub(crate) struct Publisher {
    transport: Arc<dyn Transport>,
    exchange: String,
    app_id: Arc<str>,
    interceptors: Arc<[Arc<dyn ErasedInterceptor>]>,
    /// Every registered event's name and durability, for `publish_raw`.
    events: HashMap<&'static str, bool>,
    closed: AtomicBool,
    /// Sends requests (`requests.rs`); set once at launch.
    pub(crate) requests: std::sync::OnceLock<super::requests::RequestClient>,
    /// The transport's `messaging.system`, for the spans of the `opentelemetry` feature.
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    system: &'static str,
}

/// Headers given to `publish_with`, checked and converted.
pub(crate) fn extra_headers<K: Into<String>, V: Into<HeaderValue>>(
    headers: impl IntoIterator<Item = (K, V)>,
) -> Result<Headers, Error> {
    let mut extra = Headers::new();
    for (name, value) in headers {
        let name = name.into();
        if is_reserved_header(&name) {
            return Err(Error::ReservedHeader { name });
        }
        if let Err(reason) = naming::check_length(&name) {
            return Err(Error::InvalidHeader { name, reason: reason.to_string() });
        }
        extra.insert(name, value.into());
    }
    Ok(extra)
}

impl Publisher {
    pub(crate) fn new(
        transport: Arc<dyn Transport>,
        exchange: String,
        app_id: Arc<str>,
        interceptors: Arc<[Arc<dyn ErasedInterceptor>]>,
        events: HashMap<&'static str, bool>,
        system: &'static str,
    ) -> Self {
        Self {
            transport,
            exchange,
            app_id,
            interceptors,
            events,
            closed: AtomicBool::new(false),
            requests: std::sync::OnceLock::new(),
            system,
        }
    }

    /// The transport's `messaging.system`.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn system(&self) -> &'static str {
        self.system
    }

    pub(crate) fn exchange(&self) -> &str {
        &self.exchange
    }

    pub(crate) fn app_id(&self) -> &Arc<str> {
        &self.app_id
    }

    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    pub(crate) fn interceptors(&self) -> &Arc<[Arc<dyn ErasedInterceptor>]> {
        &self.interceptors
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Publishes `event` with `headers`; with a `cause`, the message continues the cause's
    /// chain. Returns once the broker confirmed it.
    pub(crate) async fn publish<E: Event>(
        &self,
        event: &E,
        headers: Headers,
        cause: Option<&Message>,
    ) -> Result<(), Error> {
        let body = serde_json::to_vec(event).map_err(|source| Error::Encode { event: E::NAME, source })?;
        self.publish_body(Cow::Borrowed(E::NAME), body, E::DURABLE, headers, cause).await
    }

    /// Publishes `body` as the event `name` after checking both; a registered event's
    /// durability applies.
    pub(crate) async fn publish_raw(
        &self,
        name: &str,
        body: Vec<u8>,
        headers: Headers,
        cause: Option<&Message>,
    ) -> Result<(), Error> {
        naming::check_event_name(name).map_err(|reason| Error::InvalidName {
            kind: "event",
            name: name.to_owned(),
            rust_type: "publish_raw".into(),
            reason: reason.to_string(),
        })?;
        serde_json::from_slice::<IgnoredAny>(&body)
            .map_err(|source| Error::InvalidJson { event: name.to_owned(), source })?;
        let (name, durable) = match self.events.get_key_value(name) {
            Some((registered, durable)) => (Cow::Borrowed(*registered), *durable),
            None => (Cow::Owned(name.to_owned()), false),
        };
        self.publish_body(name, body, durable, headers, cause).await
    }

    /// Publishes a JSON `body` as event `name`.
    pub(crate) async fn publish_body(
        &self,
        name: Cow<'static, str>,
        body: Vec<u8>,
        durable: bool,
        headers: Headers,
        cause: Option<&Message>,
    ) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::ShutDown);
        }
        let message_id = crate::message::new_message_id();
        // A message that starts a chain is its own correlation: `Message::chain_id` (and the
        // wire encoding) use its message id.
        let correlation_id = cause.map(|cause| cause.chain_id().to_owned());
        #[cfg(not(feature = "opentelemetry"))]
        let span = tracing::debug_span!(
            "publish",
            event = %name,
            message_id = %message_id,
            correlation_id = correlation_id.as_deref().unwrap_or(&message_id),
        );
        #[cfg(feature = "opentelemetry")]
        let span = crate::observe::otel::publish_span(
            &name,
            &message_id,
            correlation_id.as_deref().unwrap_or(&message_id),
            &self.exchange,
            self.system,
        );
        #[cfg(feature = "opentelemetry")]
        let headers = crate::observe::otel::inject(&span, headers);
        let message = Message {
            body,
            message_id,
            correlation_id,
            causation_id: cause.map(|cause| cause.message_id.clone()),
            event_type: name,
            content_type: Some(Cow::Borrowed(JSON)),
            timestamp: SystemTime::now(),
            app_id: Some(Arc::clone(&self.app_id)),
            persistent: durable,
            attempt: 1,
            headers,
            reply_to: None,
            expiration: None,
        };
        let origin = if cause.is_some() { Origin::Handler } else { Origin::Outside };
        // The name outlives the message (which the transport takes): free for a typed
        // event's `&'static str`, one copy for a name given at run time.
        let event = message.event_type.clone();
        let route = Route::Exchange { exchange: &self.exchange, routing_key: &event };
        let sent = self.send(route, message, origin).instrument(span).await;
        #[cfg(feature = "metrics")]
        if sent.is_ok() {
            crate::observe::metrics::published(event.clone());
        }
        sent.map_err(|source| Error::Publish { event: event.into_owned(), source })
    }

    /// The send stack's last steps: the interceptors' `send`, then the transport. Not an
    /// `async fn`: it hands back the transport's own future, so the message is not moved
    /// through one more state machine on every publish.
    pub(crate) fn send<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        origin: Origin,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.transport.publish(route, self.intercept(message), origin)
    }

    /// The interceptors' `send` on `message`, in the publishing task (also for requests,
    /// which then go to [`Transport::request`](crate::transport::Transport::request)).
    pub(crate) fn intercept(&self, message: Message) -> Message {
        if self.interceptors.is_empty() {
            return message;
        }
        let mut envelope = Envelope::outgoing(message);
        for interceptor in self.interceptors.iter() {
            interceptor.send(&mut envelope);
        }
        envelope.into_message()
    }
}

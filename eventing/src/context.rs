//! [`Context`]: what a handler knows about the delivery it handles, and how it publishes
//! follow-up events.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::message::{HeaderValue, Headers, Message};
use crate::request::DEFAULT_REQUEST_TIMEOUT;
use crate::runtime::{Publisher, extra_headers};
use crate::{Error, Event, Request, RequestError};

/// The delivery being handled: its metadata, and a publisher whose messages continue the
/// causal chain (same correlation id, causation id = this message's id).
///
/// ```
/// # use eventing::{event, event_listener, Context, HandlerError, Listener};
/// # use serde::{Deserialize, Serialize};
/// # #[event] #[derive(Serialize, Deserialize)] struct OrderPlaced { id: u64 }
/// # #[event] #[derive(Serialize, Deserialize)] struct StockReserved { order: u64 }
/// # #[derive(Default)] struct ReserveStock;
/// #[event_listener]
/// impl Listener<OrderPlaced> for ReserveStock {
///     async fn on(&self, order: OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
///         tracing::info!(message_id = ctx.message_id(), attempt = ctx.attempt(), "reserving");
///         ctx.publish(&StockReserved { order: order.id }).await?;
///         Ok(())
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    publisher: Arc<Publisher>,
    message: Arc<Message>,
    listener: &'static str,
    redelivered: bool,
}

impl Context {
    pub(crate) fn new(
        publisher: Arc<Publisher>,
        message: Arc<Message>,
        listener: &'static str,
        redelivered: bool,
    ) -> Self {
        Self { publisher, message, listener, redelivered }
    }

    /// Publishes a follow-up event carrying this delivery's correlation id and, as its
    /// causation id, this delivery's message id. Returns after the broker confirmed it.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<(), Error> {
        self.publisher.publish(event, Headers::new(), Some(&self.message)).await
    }

    /// [`publish`](Self::publish) with extra headers, e.g. `[("tenant", "acme")]`. Names
    /// starting with `x-eventing-` are eventing's own: giving one is an error and nothing
    /// is sent.
    pub async fn publish_with<E: Event, K: Into<String>, V: Into<HeaderValue>>(
        &self,
        event: &E,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), Error> {
        self.publisher.publish(event, extra_headers(headers)?, Some(&self.message)).await
    }

    /// Publishes a JSON `body` as the event `name` (see
    /// [`Bus::publish_raw`](crate::Bus::publish_raw)), continuing this delivery's chain.
    pub async fn publish_raw(&self, name: &str, body: Vec<u8>) -> Result<(), Error> {
        self.publisher.publish_raw(name, body, Headers::new(), Some(&self.message)).await
    }

    /// Sends a request and waits for its reply (see [`Bus::request`](crate::Bus::request)),
    /// up to the builder's request timeout. The handler sees this delivery's correlation id.
    pub async fn request<R: Request>(&self, request: &R) -> Result<R::Reply, RequestError> {
        let within = self.publisher.requests.get().map_or(DEFAULT_REQUEST_TIMEOUT, |client| client.timeout);
        self.request_within(request, within).await
    }

    /// [`request`](Self::request), waiting up to `timeout`.
    pub async fn request_within<R: Request>(&self, request: &R, timeout: Duration) -> Result<R::Reply, RequestError> {
        match self.publisher.requests.get() {
            Some(client) => client.call(&self.publisher, request, timeout, Some(&self.message)).await,
            None => Err(RequestError::ShutDown { request: R::NAME.to_owned() }),
        }
    }

    /// Sends a request to be handled once, without a reply (see [`Bus::send`](crate::Bus::send)).
    pub async fn send<R: Request>(&self, request: &R) -> Result<(), RequestError> {
        match self.publisher.requests.get() {
            Some(client) => client.send(&self.publisher, request, Some(&self.message)).await,
            None => Err(RequestError::ShutDown { request: R::NAME.to_owned() }),
        }
    }

    /// The id of the message being handled.
    pub fn message_id(&self) -> &str {
        &self.message.message_id
    }

    /// The id of the causal chain: the correlation id, or this message's own id when the
    /// publisher set none (it then starts a chain).
    pub fn correlation_id(&self) -> &str {
        self.message.chain_id()
    }

    /// The id of the message whose handler published this one, if any.
    pub fn causation_id(&self) -> Option<&str> {
        self.message.causation_id.as_deref()
    }

    /// The delivery attempt: 1 on first delivery.
    pub fn attempt(&self) -> u32 {
        self.message.attempt
    }

    /// Whether the broker delivered this message before without it being settled
    /// (a consumer stopped or crashed mid-handling).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The event name the message was published as.
    pub fn event_name(&self) -> &str {
        &self.message.event_type
    }

    /// The name of the listener handling the message.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// When the message was published.
    pub fn published_at(&self) -> SystemTime {
        self.message.timestamp
    }

    /// The publishing service (AMQP `app_id`), when the publisher named one.
    pub fn publisher_service(&self) -> Option<&str> {
        self.message.app_id.as_deref()
    }

    /// The message headers other than the ones these accessors read.
    pub fn headers(&self) -> &Headers {
        &self.message.headers
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("listener", &self.listener)
            .field("event", &self.message.event_type)
            .field("message_id", &self.message.message_id)
            .field("correlation_id", &self.correlation_id())
            .field("attempt", &self.message.attempt)
            .finish()
    }
}

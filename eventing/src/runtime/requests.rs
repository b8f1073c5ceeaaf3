//! Requests at run time: what `#[request]` and `#[request_handler]` registered (checked at
//! start), the request queues in the topology, the client behind `Bus::request`/`send`
//! and `Context::request`/`send`, and one serving loop per request handler.
//!
//! Wire: a request is published to the bus's exchange with its name as routing key,
//! `mandatory` (no queue: [`RequestError::NoHandler`]), with `reply_to` (set by the
//! transport), `correlation_id` (its own message id, unique per call), `message_id`,
//! `expiration` = the timeout, and the header `x-eventing-deadline`. The server replies to
//! `reply_to` through the default exchange with the same correlation id; the body is the
//! reply's JSON, or on failure `{"error": "..."}` with the text also in `x-eventing-error`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Publisher;
use super::handle::panic_message;
use crate::message::{HeaderValue, Headers, JSON, Message, header, unix_millis};
use crate::registry::ordered;
use crate::request::{
    ErasedRequestHandler, REQUEST_QUEUE_PREFIX, Request, RequestDescriptor, RequestError, RequestHandlerDescriptor,
};
use crate::transport::{
    BindingSpec, Delivery, Origin, QueueLifetime, QueueRole, QueueSpec, Route, Subscription, Topology, TransportError,
};
use crate::{Context, Error, Registry, State, naming};

/// The queue every handler of request `name` consumes.
pub(crate) fn request_queue(name: &str) -> String {
    format!("{REQUEST_QUEUE_PREFIX}{name}")
}

/// The request handlers linked into this program, checked: valid, unique request names
/// that no event uses, and at most one handler type per request.
pub(crate) struct RequestPlan {
    handlers: Vec<&'static RequestHandlerDescriptor>,
}

impl RequestPlan {
    /// Collects and checks every registration; serves the handlers `include` accepts (a
    /// request handler shows to the filter as a listener whose event is the request name).
    pub(crate) fn collect(include: &dyn Fn(&crate::ListenerInfo) -> bool) -> Result<Self, Error> {
        let events = Registry::collect()?;
        let mut names: HashMap<&'static str, &'static str> = HashMap::new();
        for request in inventory::iter::<RequestDescriptor> {
            let rust_type = (request.rust_type)();
            naming::check_event_name(request.name).map_err(|reason| Error::InvalidName {
                kind: "request",
                name: request.name.to_owned(),
                rust_type: rust_type.to_owned(),
                reason,
            })?;
            if let Some(event) = events.events().iter().find(|event| event.name == request.name) {
                return Err(Error::RequestNameClash {
                    name: request.name.to_owned(),
                    event: event.rust_type,
                    request: rust_type,
                });
            }
            if let Some(first) = names.insert(request.name, rust_type) {
                let (first, second) = ordered(first, rust_type);
                return Err(Error::DuplicateRequest { name: request.name.to_owned(), first, second });
            }
        }
        let mut handlers: Vec<&'static RequestHandlerDescriptor> =
            inventory::iter::<RequestHandlerDescriptor>.into_iter().collect();
        handlers.sort_by_key(|handler| (handler.request, (handler.rust_type)()));
        for pair in handlers.windows(2) {
            if pair[0].request == pair[1].request {
                let (first, second) = ordered((pair[0].rust_type)(), (pair[1].rust_type)());
                return Err(Error::DuplicateRequestHandler { request: pair[0].request.to_owned(), first, second });
            }
        }
        handlers.retain(|handler| include(&handler.info()));
        Ok(Self { handlers })
    }

    /// The Rust type of the handler served here for request `name`, if any.
    pub(crate) fn handler_of(&self, name: &str) -> Option<&'static str> {
        self.handlers.iter().find(|handler| handler.request == name).map(|handler| (handler.rust_type)())
    }

    /// Adds each handled request's queue `request.<name>` (durable), bound on its name.
    pub(crate) fn extend_topology(&self, topology: &mut Topology, exchange: &str) {
        if !self.handlers.is_empty() && !topology.exchanges.iter().any(|known| known == exchange) {
            topology.exchanges.push(exchange.to_owned());
        }
        for handler in &self.handlers {
            let queue = request_queue(handler.request);
            topology.queues.push(QueueSpec {
                name: queue.clone(),
                lifetime: QueueLifetime::Durable,
                role: QueueRole::Listener,
            });
            topology.bindings.push(BindingSpec {
                exchange: exchange.to_owned(),
                pattern: handler.request.to_owned(),
                queue,
            });
        }
    }

    /// Builds every handler; names every one whose state is missing.
    fn build(&self, state: &State) -> Result<Vec<Arc<dyn ErasedRequestHandler>>, Error> {
        let mut built = Vec::new();
        let mut missing: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for handler in &self.handlers {
            state.take_misses();
            match (handler.make)(state) {
                Ok(handler) => built.push(handler),
                Err(error) => {
                    let mut types = state.take_misses();
                    if !types.contains(&error.type_name) {
                        types.push(error.type_name);
                    }
                    missing.push(((handler.rust_type)(), types));
                }
            }
        }
        if missing.is_empty() { Ok(built) } else { Err(Error::MissingState { missing }) }
    }

    /// Builds the handlers and starts one serving loop per handler; returns their tasks.
    pub(crate) async fn start(
        &self,
        state: &State,
        publisher: &Arc<Publisher>,
        stop: &CancellationToken,
        concurrency: u16,
        drain_timeout: Duration,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, Error> {
        let built = self.build(state)?;
        let mut tasks = Vec::new();
        for (descriptor, handler) in self.handlers.iter().zip(built) {
            let queue = QueueSpec {
                name: request_queue(descriptor.request),
                lifetime: QueueLifetime::Durable,
                role: QueueRole::Listener,
            };
            let concurrency = if descriptor.concurrency == 0 { concurrency } else { descriptor.concurrency }.max(1);
            let prefetch = concurrency.saturating_mul(2);
            let subscription = match publisher.transport().consume(&queue, prefetch).await {
                Ok(subscription) => subscription,
                Err(source) => {
                    stop.cancel();
                    for task in tasks {
                        let _ = task.await;
                    }
                    return Err(Error::Consume { listener: (descriptor.rust_type)(), queue: queue.name, source });
                }
            };
            tracing::info!(
                request = descriptor.request,
                request_type = (descriptor.request_type)(),
                handler = (descriptor.rust_type)(),
                queue = %queue.name,
                concurrency,
                "serving requests"
            );
            let server = Arc::new(Server {
                request: descriptor.request,
                handler_type: (descriptor.rust_type)(),
                handler,
                publisher: Arc::clone(publisher),
                concurrency,
            });
            tasks.push(tokio::spawn(server.run(subscription, stop.child_token(), drain_timeout)));
        }
        Ok(tasks)
    }
}

/// Sends requests for one bus: the [`Bus`](crate::Bus)'s and its handlers' [`Context`]s'.
pub(crate) struct RequestClient {
    pub(crate) timeout: Duration,
    pub(crate) stop: CancellationToken,
}

impl RequestClient {
    /// Sends `request` and waits up to `within` for its reply; with a `cause`, the request
    /// continues the cause's chain.
    pub(crate) async fn call<R: Request>(
        &self,
        publisher: &Publisher,
        request: &R,
        within: Duration,
        cause: Option<&Message>,
    ) -> Result<R::Reply, RequestError> {
        let reply = self.exchange::<R>(publisher, request, Some(within), cause).await?;
        let Some(reply) = reply else {
            return Err(RequestError::Timeout { request: R::NAME.to_owned(), timeout: within });
        };
        if let Some(error) = reply.header_text(header::ERROR) {
            return Err(RequestError::Failed { request: R::NAME.to_owned(), error: error.to_owned() });
        }
        serde_json::from_slice(&reply.body).map_err(|error| RequestError::Codec {
            request: R::NAME.to_owned(),
            reason: format!("the reply does not decode as `{}`: {error}", std::any::type_name::<R::Reply>()),
        })
    }

    /// Sends `request` to be handled once, without a reply.
    pub(crate) async fn send<R: Request>(
        &self,
        publisher: &Publisher,
        request: &R,
        cause: Option<&Message>,
    ) -> Result<(), RequestError> {
        self.exchange::<R>(publisher, request, None, cause).await.map(|_| ())
    }

    async fn exchange<R: Request>(
        &self,
        publisher: &Publisher,
        request: &R,
        within: Option<Duration>,
        cause: Option<&Message>,
    ) -> Result<Option<Message>, RequestError> {
        let name = R::NAME;
        if publisher.is_closed() || self.stop.is_cancelled() {
            return Err(RequestError::ShutDown { request: name.to_owned() });
        }
        let body = serde_json::to_vec(request).map_err(|error| RequestError::Codec {
            request: name.to_owned(),
            reason: format!("does not encode: {error}"),
        })?;
        let now = SystemTime::now();
        let mut headers = Headers::new();
        if let Some(cause) = cause {
            headers.insert(header::CHAIN_ID.to_owned(), HeaderValue::Text(cause.chain_id().to_owned()));
        }
        if let Some(within) = within {
            headers.insert(header::DEADLINE.to_owned(), HeaderValue::Int(unix_millis(now + within)));
        }
        // The correlation id is the message id: unique per call, so replies match calls even
        // when one handler sends several requests (its chain travels in `x-eventing-chain-id`).
        let message = Message {
            body,
            message_id: uuid::Uuid::new_v4().to_string(),
            correlation_id: None,
            causation_id: cause.map(|cause| cause.message_id.clone()),
            event_type: Cow::Borrowed(name),
            content_type: Some(Cow::Borrowed(JSON)),
            timestamp: now,
            app_id: Some(Arc::clone(publisher.app_id())),
            persistent: false,
            attempt: 1,
            headers,
            reply_to: None,
            expiration: within,
        };
        let span = tracing::debug_span!("request", request = name, message_id = %message.message_id);
        let route = Route::Exchange { exchange: publisher.exchange(), routing_key: name };
        let call = publisher.transport().request(route, message, within).instrument(span);
        // The timeout bounds the whole call (connecting, publishing, waiting), not only the
        // wait for the reply that the transport bounds.
        let call = async move {
            match within {
                Some(within) => tokio::time::timeout(within, call).await.unwrap_or(Ok(None)),
                None => call.await,
            }
        };
        tokio::select! {
            result = call => result.map_err(|source| match source {
                TransportError::Unroutable { .. } => RequestError::NoHandler { request: name.to_owned() },
                TransportError::Closed if self.stop.is_cancelled() => RequestError::ShutDown { request: name.to_owned() },
                source => RequestError::Transport { request: name.to_owned(), source },
            }),
            () = self.stop.cancelled() => Err(RequestError::ShutDown { request: name.to_owned() }),
        }
    }
}

/// One request handler's serving loop.
struct Server {
    request: &'static str,
    handler_type: &'static str,
    handler: Arc<dyn ErasedRequestHandler>,
    publisher: Arc<Publisher>,
    concurrency: u16,
}

impl Server {
    /// Serves until `stop`, then returns the deliveries not started and waits (up to
    /// `drain_timeout`) for the ones in flight, whose replies still go out.
    async fn run(
        self: Arc<Self>,
        mut subscription: Box<dyn Subscription>,
        stop: CancellationToken,
        drain_timeout: Duration,
    ) {
        let mut in_flight = FuturesUnordered::new();
        let cancelled = stop.cancelled();
        tokio::pin!(cancelled);
        loop {
            let room = in_flight.len() < usize::from(self.concurrency);
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                next = subscription.next(), if room => match next {
                    Some(Ok(delivery)) => in_flight.push(self.handle(delivery)),
                    Some(Err(error)) => tracing::error!(request = self.request, %error, "consuming requests failed"),
                    None => {
                        tracing::error!(request = self.request, "the broker ended the request subscription");
                        break;
                    }
                },
            }
        }
        let unstarted = async {
            if let Err(error) = subscription.cancel().await {
                tracing::warn!(request = self.request, %error, "cancelling the request consumer failed");
            }
            while let Some(next) = subscription.next().await {
                if let Ok(delivery) = next {
                    let _ = delivery.acker.requeue().await;
                }
            }
        };
        let _ = tokio::time::timeout(drain_timeout, unstarted).await;
        let finish = async { while in_flight.next().await.is_some() {} };
        if tokio::time::timeout(drain_timeout, finish).await.is_err() {
            tracing::warn!(request = self.request, "request handlers still running at the shutdown deadline");
        }
    }

    async fn handle(&self, delivery: Delivery) {
        let message = Arc::clone(&delivery.message);
        let span = tracing::info_span!("serve", request = self.request, handler = self.handler_type, message_id = %message.message_id);
        async {
            if let Some(deadline) = message.headers.get(header::DEADLINE).and_then(HeaderValue::as_int) {
                let late = unix_millis(SystemTime::now()) - deadline;
                if late > 0 {
                    tracing::warn!(late_ms = late, "dropping an expired request unhandled: its caller gave up");
                    settle(delivery).await;
                    return;
                }
            }
            // Follow-ups continue the caller's chain, not the request's own correlation.
            let for_handler = match message.header_text(header::CHAIN_ID) {
                Some(chain) => {
                    let mut copy = (*message).clone();
                    copy.correlation_id = Some(chain.to_owned());
                    Arc::new(copy)
                }
                None => Arc::clone(&message),
            };
            let ctx = Context::new(Arc::clone(&self.publisher), for_handler, self.handler_type, delivery.redelivered);
            let answer = AssertUnwindSafe(self.handler.call(&message, ctx))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(format!("handler panicked: {}", panic_message(panic.as_ref()))));
            match &message.reply_to {
                Some(reply_to) => self.reply(reply_to, &message, answer).await,
                None => {
                    if let Err(error) = answer {
                        tracing::error!(%error, "a sent request failed; sends are not retried and nobody waits for a reply");
                    }
                }
            }
            settle(delivery).await;
        }
        .instrument(span)
        .await;
    }

    async fn reply(&self, reply_to: &str, request: &Message, answer: Result<Vec<u8>, String>) {
        let mut headers = Headers::new();
        let body = match answer {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "request failed; replying with the error");
                let body = serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default();
                headers.insert(header::ERROR.to_owned(), HeaderValue::Text(error));
                body
            }
        };
        let reply = Message {
            body,
            message_id: uuid::Uuid::new_v4().to_string(),
            // The caller matches on this: the request's correlation id (its message id when
            // it had none, as a plain AMQP client may send).
            correlation_id: Some(request.chain_id().to_owned()),
            causation_id: Some(request.message_id.clone()),
            event_type: Cow::Borrowed(self.request),
            content_type: Some(Cow::Borrowed(JSON)),
            timestamp: SystemTime::now(),
            app_id: Some(Arc::clone(self.publisher.app_id())),
            persistent: false,
            attempt: 1,
            headers,
            reply_to: None,
            expiration: None,
        };
        if let Err(error) = self.publisher.transport().publish(Route::Queue(reply_to), reply, Origin::Handler).await {
            tracing::warn!(%error, reply_to, "the reply could not be sent (has the caller gone?)");
        }
    }
}

/// Requests are never retried: every delivery is acknowledged once answered or dropped.
async fn settle(delivery: Delivery) {
    if let Err(error) = delivery.acker.ack().await {
        tracing::warn!(%error, "acknowledging a request failed; it may be delivered again");
    }
}

//! Requests at run time: what `#[request]` and `#[request_handler]` registered (checked at
//! start), the request queues in the topology, the client behind `Bus::request`/`send`
//! and `Context::request`/`send`, and one consume loop per request handler (serving each
//! request is `serve.rs`).
//!
//! A request leaves through the send stack like an event: its span (`publish`, with the
//! `opentelemetry` feature the trace context written into its headers), then the
//! interceptors' `send`, then the transport.
//!
//! Wire: a request is published to the bus's exchange with its name as routing key,
//! `mandatory` (no queue: [`RequestError::NoHandler`]), with `reply_to` (set by the
//! transport), `correlation_id` (its own message id, unique per call), `message_id`,
//! `expiration` = the timeout, and the header `x-eventing-deadline`. The server replies to
//! `reply_to` through the default exchange with the same correlation id; the body is the
//! reply's JSON, or on failure `{"error": "..."}` with the text also in `x-eventing-error`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::serve::Server;
use super::{Publisher, consumer};
use crate::message::{HeaderValue, Headers, JSON, Message, header, unix_millis};
use crate::registry::ordered;
use crate::request::{
    ErasedRequestHandler, REQUEST_QUEUE_PREFIX, Request, RequestDescriptor, RequestError, RequestHandlerDescriptor,
};
use crate::transport::{BindingSpec, QueueLifetime, QueueRole, QueueSpec, Route, Topology, TransportError};
use crate::{Error, Registry, State, naming};

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
                reason: reason.to_string(),
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
                info: descriptor.info(),
                handler,
                publisher: Arc::clone(publisher),
                queue: queue.name,
                concurrency,
            });
            tasks.push(tokio::spawn(consumer::run(server, subscription, stop.child_token(), drain_timeout)));
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
        let message_id = crate::message::new_message_id();
        #[cfg(not(feature = "opentelemetry"))]
        let span = tracing::debug_span!("publish", event = name, message_id = %message_id);
        #[cfg(feature = "opentelemetry")]
        let span = crate::observe::otel::publish_span(
            name,
            &message_id,
            &message_id,
            publisher.exchange(),
            publisher.system(),
        );
        #[cfg(feature = "opentelemetry")]
        let headers = crate::observe::otel::inject(&span, headers);
        let message = publisher.intercept(Message {
            body,
            message_id,
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
        });
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

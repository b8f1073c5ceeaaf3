//! The seam between the runtime and a broker: declare topology, publish with confirms,
//! consume with per-consumer prefetch, settle deliveries.
//!
//! The in-memory broker ([`crate::memory`]) and the RabbitMQ transport (`eventing-amqp`)
//! implement [`Transport`]; the runtime only ever talks to this trait, so both run the
//! same code above it. Third-party transports register a URL scheme with
//! [`TransportFactory`] through `inventory`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;

use crate::message::Message;

/// A boxed, `Send` future: what the object-safe [`Transport`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A future that is already complete with `Ok(())`. It has no size, so boxing it does not
/// allocate: transports return it from the fast path of `publish` and the settle methods.
#[derive(Debug, Clone, Copy, Default)]
pub struct Done;

impl Future for Done {
    type Output = Result<(), TransportError>;

    fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Boxes a result that is already known, without allocating when it is `Ok`.
pub fn ready<'a>(result: Result<(), TransportError>) -> BoxFuture<'a, Result<(), TransportError>> {
    match result {
        Ok(()) => Box::pin(Done),
        Err(error) => Box::pin(std::future::ready(Err(error))),
    }
}

/// A boxed error with no more structure than its text and source chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A broker connection as the runtime sees it.
pub trait Transport: Send + Sync + 'static {
    /// Declares exchanges, queues and bindings. Declaring what already exists with the
    /// same arguments is harmless; a queue that exists with other arguments is an error.
    fn declare<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Publishes one message and resolves only after the broker confirmed it. `origin` says
    /// who publishes: a transport with flow control makes only [`Origin::Outside`] wait.
    fn publish<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        origin: Origin,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Whether the connection is up now (for [`Bus::health`](crate::Bus::health)). A
    /// transport that cannot lose its connection, like the in-memory one, is always up.
    fn is_connected(&self) -> bool {
        true
    }

    /// Whether the broker refuses publishes for now (RabbitMQ's `connection.blocked`
    /// under a memory or disk alarm): publishes wait, up to the publish timeout.
    fn is_blocked(&self) -> bool {
        false
    }

    /// Tries to take the service-wide lock `name` (an exclusive queue of that name on
    /// RabbitMQ) for as long as this connection, or the returned guard, lives: `Ok(None)`
    /// when another connection holds it. Recurring work elects its runner with it. The
    /// default: this transport cannot elect, an error.
    fn try_lock<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Box<dyn Lock>>, TransportError>> {
        Box::pin(std::future::ready(Err(TransportError::Other {
            context: format!("taking the lock `{name}`"),
            source: "this transport cannot elect a runner for recurring work".into(),
        })))
    }

    /// The broker's name as OpenTelemetry's `messaging.system` knows it (`rabbitmq`,
    /// `kafka`...), for the spans of the `opentelemetry` feature. `None` (the default): the
    /// runtime names it after the URL scheme (`amqp`/`amqps`: `rabbitmq`), else `other`.
    fn system(&self) -> Option<&'static str> {
        None
    }

    /// Starts consuming `queue` with at most `prefetch` unsettled deliveries.
    fn consume<'a>(
        &'a self,
        queue: &'a QueueSpec,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>>;

    /// Closes the connection; unsettled deliveries go back to their queues.
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Publishes a request or a send, `mandatory`: a message no queue takes fails with
    /// [`TransportError::Unroutable`]. With `reply_within`, the transport sets the
    /// message's `reply_to` to an address of its own and resolves with the reply whose
    /// correlation id is the message's [`chain_id`](Message::chain_id), or `None` when none
    /// came in time; a reply that comes later, or to a dropped future, is discarded.
    /// Without it, resolves with `None` once the broker confirmed the message.
    ///
    /// A server replies with [`reply`](Self::reply) to the request's `reply_to`, with the
    /// request's correlation id. What a caller can rely on in the reply is its body,
    /// correlation id, content type and headers (`x-eventing-error` on a failed request);
    /// RabbitMQ replies carry nothing else, so their other fields are empty or defaults.
    /// The default says the transport does not support requests.
    fn request<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        reply_within: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Message>, TransportError>> {
        let _ = (route, message, reply_within);
        Box::pin(std::future::ready(Err(TransportError::Unsupported { what: "request/response" })))
    }

    /// Sends `reply` to a request's `reply_to` address. A reply is best effort: nothing
    /// retries it (one that does not arrive makes its caller time out, and the request is
    /// acknowledged either way), so a transport need not wait for the broker's confirm. The
    /// default publishes it to [`Route::Queue`] of `reply_to` with
    /// [`publish`](Self::publish).
    fn reply<'a>(&'a self, reply_to: &'a str, reply: Message) -> BoxFuture<'a, Result<(), TransportError>> {
        self.publish(Route::Queue(reply_to), reply, Origin::Handler)
    }
}

/// A lock taken with [`Transport::try_lock`]; dropping it releases the lock.
pub trait Lock: Send + Sync {
    /// Whether this connection still holds the lock, asking the broker: false once the
    /// connection was lost (another process may hold the lock by now).
    fn confirm(&self) -> BoxFuture<'_, bool>;
}

/// A stream of deliveries from one queue.
pub trait Subscription: Stream<Item = Result<Delivery, TransportError>> + Send + Unpin {
    /// Stops new deliveries. The stream then yields what was already delivered to this
    /// consumer and ends; those deliveries are still to be settled.
    fn cancel(&mut self) -> BoxFuture<'_, Result<(), TransportError>>;
}

/// Settles deliveries on the channel they came from.
pub trait Settle: Send + Sync + 'static {
    /// Acknowledges the delivery with this tag.
    fn ack(&self, tag: u64) -> BoxFuture<'_, Result<(), TransportError>>;
    /// Returns the delivery with this tag to its queue (marked redelivered).
    fn requeue(&self, tag: u64) -> BoxFuture<'_, Result<(), TransportError>>;
    /// Sends `reply` to a request's `reply_to` on the channel the request came on, where the
    /// transport has one that can (a hand-written RabbitMQ server replies on its consuming
    /// channel: no other connection's socket and task on the way). `None`, the default: the
    /// runtime sends it with [`Transport::reply`].
    fn reply<'a>(&'a self, reply_to: &'a str, reply: &'a Message) -> Option<BoxFuture<'a, Result<(), TransportError>>> {
        let _ = (reply_to, reply);
        None
    }
}

/// Who publishes a message, so a transport can apply flow control to the right publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The application, from outside any handler ([`Bus::publish`](crate::Bus::publish)):
    /// may wait for room when queues are over their flow limit.
    Outside,
    /// A handler's follow-up ([`Context::publish`](crate::Context::publish), also from a task
    /// the handler spawned): never waits on flow control, or a chain could block itself.
    Handler,
    /// The runtime moving a failed message to a delay tier or a dead-letter queue: never
    /// waits, and a message no queue takes is an error (it must not vanish).
    Runtime,
}

/// Where a message is published.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// Through a topic exchange with a routing key.
    Exchange {
        /// The exchange name.
        exchange: &'a str,
        /// The routing key (the event name).
        routing_key: &'a str,
    },
    /// Straight into one queue (AMQP's default exchange).
    Queue(&'a str),
}

/// One message delivered to a consumer, to be settled exactly once.
pub struct Delivery {
    /// The message.
    pub message: Arc<Message>,
    /// The exchange it was published to (empty for a direct-to-queue publish).
    pub exchange: Arc<str>,
    /// The routing key it was published with.
    pub routing_key: Arc<str>,
    /// Whether the broker delivered it before (to a consumer that did not settle it).
    pub redelivered: bool,
    /// Settles this delivery.
    pub acker: Acker,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message_id", &self.message.message_id)
            .field("event_type", &self.message.event_type)
            .field("routing_key", &self.routing_key)
            .field("redelivered", &self.redelivered)
            .field("tag", &self.acker.tag)
            .finish()
    }
}

/// The handle that settles one delivery.
pub struct Acker {
    channel: Arc<dyn Settle>,
    tag: u64,
}

impl fmt::Debug for Acker {
    /// The tag; the channel is a trait object with nothing to show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acker").field("tag", &self.tag).finish_non_exhaustive()
    }
}

impl Acker {
    /// An acker for delivery `tag` on `channel`.
    #[must_use]
    pub fn new(channel: Arc<dyn Settle>, tag: u64) -> Self {
        Self { channel, tag }
    }

    /// Acknowledges the delivery: the broker forgets the message.
    pub async fn ack(self) -> Result<(), TransportError> {
        self.channel.ack(self.tag).await
    }

    /// Returns the delivery to its queue.
    pub async fn requeue(self) -> Result<(), TransportError> {
        self.channel.requeue(self.tag).await
    }

    /// Sends `reply` to the delivered request's `reply_to` on the channel the request came
    /// on, when the transport can ([`Settle::reply`]); `None` otherwise.
    pub fn reply<'a>(
        &'a self,
        reply_to: &'a str,
        reply: &'a Message,
    ) -> Option<BoxFuture<'a, Result<(), TransportError>>> {
        self.channel.reply(reply_to, reply)
    }
}

/// Everything the runtime declares: one topic exchange, queues and their bindings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    /// Durable topic exchanges: the one events are published to, and one per delay tier.
    pub exchanges: Vec<String>,
    /// Queues: the delay tiers first, then each listener queue followed by the queues that
    /// serve it (its dead-letter queue).
    pub queues: Vec<QueueSpec>,
    /// Bindings of queues to exchanges.
    pub bindings: Vec<BindingSpec>,
}

/// A queue to declare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueSpec {
    /// The queue's name.
    pub name: String,
    /// How long the queue lives.
    pub lifetime: QueueLifetime,
    /// What the queue is for.
    pub role: QueueRole,
}

/// How long a queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueLifetime {
    /// Survives broker restarts (durable events, dead letters).
    Durable,
    /// Durable declaration with an idle expiry: the form RabbitMQ 4.x accepts for shared
    /// queues of non-durable events (transient non-exclusive queues are deprecated).
    Expiring {
        /// How long the queue may stay unused before the broker deletes it.
        idle: Duration,
    },
    /// Owned by one connection and deleted with it (per-process listeners).
    Exclusive,
}

/// What a queue is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueueRole {
    /// A listener consumes it.
    Listener,
    /// Holds failed messages for operators: no consumer; not part of "pending" work.
    DeadLetter,
    /// A delay tier, shared by the listeners of a service: retries wait here `delay`, then
    /// go back to the queue their routing key names. A retry is published to the exchange
    /// of the tier's name (in [`Topology::exchanges`], bound to the tier with `#`) with its
    /// listener's queue as routing key; on RabbitMQ the tier has `x-message-ttl` and
    /// dead-letters through the default exchange with that routing key (no plugin). Tiers
    /// are durable queues whatever they serve (RabbitMQ 4.x deprecates transient shared
    /// queues).
    Delay {
        /// How long a message waits.
        delay: Duration,
        /// The tier serves queues that may be gone when the wait ends (per-process queues,
        /// the expiring queues of non-durable events): an expired message whose queue is
        /// gone is dropped. Otherwise it serves durable queues, and RabbitMQ moves an
        /// expired message at least once (it keeps one whose queue is missing, retrying).
        transient: bool,
    },
}

/// A binding of a queue to a topic exchange.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingSpec {
    /// The exchange.
    pub exchange: String,
    /// The topic pattern (`user_created`, `billing.*`, `#`).
    pub pattern: String,
    /// The queue.
    pub queue: String,
}

/// Settings a transport factory gets from the builder.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The URL as configured (may contain credentials: never log it, use [`redact_url`]).
    pub url: String,
    /// The service name, for the connection name.
    pub service: String,
    /// The process id, for the connection name.
    pub process_id: String,
}

impl ConnectOptions {
    /// The settings for `url`, naming the connection after `service` and `process_id`.
    #[must_use]
    pub fn new(url: impl Into<String>, service: impl Into<String>, process_id: impl Into<String>) -> Self {
        Self { url: url.into(), service: service.into(), process_id: process_id.into() }
    }
}

/// Opens a connection for a [`TransportFactory`].
pub type Connect = fn(ConnectOptions) -> BoxFuture<'static, Result<Arc<dyn Transport>, TransportError>>;

/// A transport that a URL scheme selects; submit one with `inventory::submit!` from a
/// transport crate (as `eventing-amqp` does for `amqp` and `amqps`):
///
/// ```
/// # use eventing::transport::{BoxFuture, ConnectOptions, Transport, TransportError, TransportFactory};
/// # use std::sync::Arc;
/// fn connect(options: ConnectOptions) -> BoxFuture<'static, Result<Arc<dyn Transport>, TransportError>> {
///     # let _ = options;
///     # Box::pin(async { Err(TransportError::Closed) })
///     // ...
/// }
///
/// inventory::submit! { TransportFactory::new(&["kafka"], connect) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct TransportFactory {
    /// The URL schemes this factory serves, without `://`.
    pub schemes: &'static [&'static str],
    /// Connects.
    pub connect: Connect,
}

impl TransportFactory {
    /// A factory serving `schemes` (without `://`) with `connect`; `const`, for
    /// `inventory::submit!`.
    #[must_use]
    pub const fn new(schemes: &'static [&'static str], connect: Connect) -> Self {
        Self { schemes, connect }
    }
}

inventory::collect!(TransportFactory);

/// The URL with any password replaced by `***`, for errors and logs. Every endpoint of a
/// cluster URL is covered, also one with credentials of its own
/// (`amqp://a:x@host1,b:y@host2/`); a password containing `@`, `,` or `/` must be
/// percent-encoded anyway, as in any URL.
///
/// ```
/// assert_eq!(
///     eventing::transport::redact_url("amqp://guest:secret@host:5672/%2f"),
///     "amqp://guest:***@host:5672/%2f"
/// );
/// assert_eq!(
///     eventing::transport::redact_url("amqp://u:secret@host1:5672,host2:5673,v:other@host3/vhost"),
///     "amqp://u:***@host1:5672,host2:5673,v:***@host3/vhost"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let endpoints: Vec<String> = authority
        .split(',')
        .map(|endpoint| match endpoint.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                let hidden = if userinfo.contains(':') { ":***" } else { "" };
                format!("{user}{hidden}@{host}")
            }
            // A bare host, or a fragment of a password with an unencoded comma: hidden.
            None if looks_like_host(endpoint) => endpoint.to_owned(),
            None => "***".to_owned(),
        })
        .collect();
    format!("{scheme}://{}{path}", endpoints.join(","))
}

/// `host`, `host:port` or `[v6]:port`, with a numeric port.
fn looks_like_host(endpoint: &str) -> bool {
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) if !port.ends_with(']') => (host, Some(port)),
        _ => (endpoint, None),
    };
    port.is_none_or(|port| port.chars().all(|c| c.is_ascii_digit()))
        && host.chars().all(|c| c.is_ascii_alphanumeric() || "-._[]:%".contains(c))
}

/// A transport failed. `Debug` shows the message and its causes (see [`crate::Error`]).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker could not be reached or refused the connection.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The redacted URL.
        url: String,
        /// Which part was wrong (host, port, vhost, credentials) and the cause.
        reason: String,
    },
    /// A queue or exchange exists with other arguments than ours.
    #[error("{object} exists with different arguments: {reason}")]
    Conflict {
        /// `queue \`name\`` or `exchange \`name\``.
        object: String,
        /// What differs.
        reason: String,
    },
    /// An exclusive queue is owned by another connection.
    #[error("queue `{queue}` is exclusive to another connection (is another process using the same process id?)")]
    Locked {
        /// The queue.
        queue: String,
    },
    /// A queue or exchange that was expected to exist does not.
    #[error("{object} does not exist")]
    NotFound {
        /// `queue \`name\`` or `exchange \`name\``.
        object: String,
    },
    /// The broker refused a published message (negative confirm or return).
    #[error("the broker rejected the message: {reason}")]
    Rejected {
        /// Why.
        reason: String,
    },
    /// The connection or channel is closed.
    #[error("the connection is closed")]
    Closed,
    /// The message was sent but the broker did not confirm it in time: it may still be
    /// delivered (publishing it again can duplicate it). Every other publish error means it
    /// was not taken.
    #[error("unconfirmed, it may still be delivered: {reason}")]
    Unconfirmed {
        /// Why no confirm came (a timeout, a resource alarm, a lost connection).
        reason: String,
    },
    /// A mandatory message (a request) that no queue takes.
    #[error("no queue takes the message: {reason}")]
    Unroutable {
        /// The broker's words, with the routing key.
        reason: String,
    },
    /// The transport does not implement this.
    #[error("this transport does not support {what}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// Any other broker or I/O failure.
    #[error("{context}: {source}")]
    Other {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::report::report(self, f)
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_url;

    #[test]
    fn every_endpoint_of_a_cluster_url_is_redacted() {
        assert_eq!(
            redact_url("amqp://user:pass@host1:5672,host2:5673,host3:5674/vhost"),
            "amqp://user:***@host1:5672,host2:5673,host3:5674/vhost"
        );
        assert_eq!(
            redact_url("amqp://a:x@h1:1,b:y@[::1]:2?heartbeat=5"),
            "amqp://a:***@h1:1,b:***@[::1]:2?heartbeat=5"
        );
        assert_eq!(redact_url("amqp://h1,h2/v"), "amqp://h1,h2/v");
    }

    #[test]
    fn an_unencoded_comma_in_a_password_does_not_leak_it() {
        let redacted = redact_url("amqp://user:sec,ret@host1,host2/v");
        assert!(!redacted.contains("sec"), "{redacted}");
    }
}

//! The in-memory transport: a broker inside the process with RabbitMQ's semantics.
//!
//! A [`MemoryBroker`] has topic exchanges (`*` and `#` bindings), queues shared by
//! competing consumers (round-robin), exclusive per-connection queues that vanish with
//! their consumer, a prefetch bound per consumer, and unsettled deliveries requeued when
//! a consumer goes away. Messages are the same JSON bytes as on the wire. Several buses
//! can share one broker to show competing consumers and per-process fan-out in a test:
//!
//! ```rust,standalone_crate
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), eventing::Error> {
//! let broker = eventing::memory::MemoryBroker::new();
//! let first = eventing::builder().transport(broker.transport()).start().await?;
//! let second = eventing::builder().transport(broker.transport()).start().await?;
//! // ... publish through either; each competing listener sees each event once.
//! first.shutdown().await?;
//! second.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod lock;
mod queue;
mod requests;
pub(crate) mod topic;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use self::queue::{Entry, Queue, lock};
use crate::Event;
use crate::message::{Message, header};
use crate::transport::{
    BoxFuture, Origin, QueueLifetime, QueueRole, QueueSpec, Route, Subscription, Topology, Transport, TransportError,
    ready,
};

/// The broker's lookups by name, once per publish: foldhash instead of SipHash, which
/// was a twentieth of the in-memory publish path. The names come from this process's own
/// code and configuration, so SipHash's defence against chosen keys buys nothing here.
type HashMap<K, V> = foldhash::HashMap<K, V>;

/// Ready messages per queue above which [`Bus::publish`](crate::Bus::publish) waits for
/// the consumers to catch up (handlers publishing follow-ups never wait, so a chain of
/// handlers cannot block itself). A queue waits between half of it and all of it, so the
/// limit is also the working set a consumer reads through: at 2 048 the messages are still
/// in the caches when they are handled (10 000 was ~10 % slower end to end, BENCHMARKS.md).
pub const DEFAULT_FLOW_LIMIT: usize = 2_048;

/// An in-process broker. Cloning gives another handle to the same broker.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Broker>,
}

pub(crate) struct Broker {
    flow_limit: usize,
    exchanges: Mutex<HashMap<String, Exchange>>,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    pending: Arc<Pending>,
    /// Set once recording starts, so publishes skip the journal's lock until then.
    recording: AtomicBool,
    journal: Mutex<Option<Vec<PublishedMessage>>>,
    next_connection: AtomicU64,
    /// Callers waiting for replies, by reply address and correlation id (see `requests.rs`).
    replies: requests::Replies,
}

/// Messages ready or in flight in listener queues, shared by the broker and its queues.
#[derive(Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl Pending {
    fn added(&self, count: usize) {
        self.count.fetch_add(count, Ordering::AcqRel);
    }

    fn removed(&self, count: usize) {
        if self.count.fetch_sub(count, Ordering::AcqRel) == count {
            self.idle.notify_waiters();
        }
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            flow_limit: DEFAULT_FLOW_LIMIT,
            exchanges: Mutex::default(),
            queues: Mutex::default(),
            pending: Arc::default(),
            recording: AtomicBool::new(false),
            journal: Mutex::default(),
            next_connection: AtomicU64::default(),
            replies: requests::Replies::default(),
        }
    }
}

#[derive(Default)]
struct Exchange {
    bindings: Vec<(String, Arc<Queue>)>,
    /// Queues per routing key, rebuilt after a binding changes.
    routes: HashMap<Arc<str>, Arc<[Arc<Queue>]>>,
    name: Arc<str>,
}

static NAMED: LazyLock<Mutex<HashMap<String, MemoryBroker>>> = LazyLock::new(Mutex::default);

impl MemoryBroker {
    /// A new, empty broker.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A new broker whose queues throttle publishers above `limit` ready messages
    /// (default [`DEFAULT_FLOW_LIMIT`]).
    pub fn with_flow_limit(limit: usize) -> Self {
        Self { inner: Arc::new(Broker { flow_limit: limit.max(1), ..Broker::default() }) }
    }

    /// The process-wide broker behind `memory://<name>` (`memory://` is the name "").
    /// Every bus configured with the same URL shares it, as processes share a RabbitMQ.
    pub fn named(name: &str) -> Self {
        lock(&NAMED).entry(name.to_owned()).or_default().clone()
    }

    /// A new connection to this broker, for [`Builder::transport`](crate::Builder::transport).
    /// Exclusive queues declared through it belong to it.
    pub fn transport(&self) -> MemoryTransport {
        MemoryTransport {
            broker: Arc::clone(&self.inner),
            connection: self.inner.next_connection.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Starts recording every published message (see [`published`](Self::published)).
    pub fn record_published(&self) {
        lock(&self.inner.journal).get_or_insert_with(Vec::new);
        self.inner.recording.store(true, Ordering::Release);
    }

    /// Every message published since [`record_published`](Self::record_published), in order.
    pub fn published(&self) -> Vec<PublishedMessage> {
        lock(&self.inner.journal).clone().unwrap_or_default()
    }

    /// Messages ready or being handled in listener queues (dead letters do not count).
    pub fn pending(&self) -> usize {
        self.inner.pending.count.load(Ordering::Acquire)
    }

    /// Waits until no message is ready or being handled in any listener queue: every
    /// event published, directly or by handlers, was handled or dead-lettered. On timeout
    /// the error lists what is still pending.
    pub async fn settled(&self, timeout: Duration) -> Result<(), SettleTimeout> {
        let wait = async {
            loop {
                let idle = self.inner.pending.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.pending() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| SettleTimeout { timeout, pending: self.pending_messages() })
    }

    /// A snapshot of every message still pending in listener queues and delay tiers.
    pub fn pending_messages(&self) -> Vec<QueuedMessage> {
        self.queue_messages(|queue| queue.spec.role != QueueRole::DeadLetter)
    }

    /// Every message in every dead-letter queue.
    pub fn dead_letters(&self) -> Vec<QueuedMessage> {
        self.queue_messages(|queue| queue.spec.role == QueueRole::DeadLetter)
    }

    /// Every message in one queue, or `None` when there is no such queue.
    pub fn messages(&self, queue: &str) -> Option<Vec<QueuedMessage>> {
        let queue = lock(&self.inner.queues).get(queue).cloned()?;
        Some(snapshot(&queue))
    }

    /// Removes up to `limit` ready messages from the front of `queue`, oldest first
    /// (for purging dead letters or moving them elsewhere).
    pub fn take(&self, queue: &str, limit: usize) -> Result<Vec<QueuedMessage>, TransportError> {
        let queue = lock(&self.inner.queues)
            .get(queue)
            .cloned()
            .ok_or_else(|| TransportError::NotFound { object: format!("queue `{queue}`") })?;
        let name: Arc<str> = queue.spec.name.as_str().into();
        Ok(queue.take_ready(limit).into_iter().map(|entry| QueuedMessage::new(&name, entry, false)).collect())
    }

    /// Every queue with its counts, by name.
    pub fn queues(&self) -> Vec<QueueInfo> {
        let queues: Vec<Arc<Queue>> = lock(&self.inner.queues).values().cloned().collect();
        let mut infos: Vec<QueueInfo> = queues
            .iter()
            .map(|queue| {
                let (ready, in_flight, consumers) = queue.counts();
                QueueInfo { spec: queue.spec.clone(), ready, in_flight, consumers }
            })
            .collect();
        infos.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        infos
    }

    fn queue_messages(&self, select: impl Fn(&Queue) -> bool) -> Vec<QueuedMessage> {
        let mut queues: Vec<Arc<Queue>> =
            lock(&self.inner.queues).values().filter(|queue| select(queue)).cloned().collect();
        queues.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        queues.iter().flat_map(|queue| snapshot(queue)).collect()
    }
}

fn snapshot(queue: &Queue) -> Vec<QueuedMessage> {
    let name: Arc<str> = queue.spec.name.as_str().into();
    queue.snapshot().into_iter().map(|item| QueuedMessage::new(&name, item.entry, item.in_flight)).collect()
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker").field("pending", &self.pending()).finish_non_exhaustive()
    }
}

impl Broker {
    fn declare(self: &Arc<Self>, topology: &Topology, connection: u64) -> Result<(), TransportError> {
        {
            let mut exchanges = lock(&self.exchanges);
            for name in &topology.exchanges {
                exchanges
                    .entry(name.clone())
                    .or_insert_with(|| Exchange { name: name.as_str().into(), ..Exchange::default() });
            }
        }
        for spec in &topology.queues {
            self.declare_queue(spec, connection)?;
        }
        for binding in &topology.bindings {
            let queue = lock(&self.queues)
                .get(&binding.queue)
                .cloned()
                .ok_or_else(|| TransportError::NotFound { object: format!("queue `{}`", binding.queue) })?;
            let mut exchanges = lock(&self.exchanges);
            let exchange = exchanges
                .get_mut(&binding.exchange)
                .ok_or_else(|| TransportError::NotFound { object: format!("exchange `{}`", binding.exchange) })?;
            let exists = exchange
                .bindings
                .iter()
                .any(|(pattern, bound)| *pattern == binding.pattern && Arc::ptr_eq(bound, &queue));
            if !exists {
                exchange.bindings.push((binding.pattern.clone(), queue));
                exchange.routes.clear();
            }
        }
        Ok(())
    }

    fn declare_queue(self: &Arc<Self>, spec: &QueueSpec, connection: u64) -> Result<(), TransportError> {
        let mut queues = lock(&self.queues);
        if let Some(existing) = queues.get(&spec.name) {
            if existing.spec.lifetime != spec.lifetime {
                return Err(TransportError::Conflict {
                    object: format!("queue `{}`", spec.name),
                    reason: format!("declared as {:?}, exists as {:?}", spec.lifetime, existing.spec.lifetime),
                });
            }
            if existing.owner.is_some_and(|owner| owner != connection) {
                return Err(TransportError::Locked { queue: spec.name.clone() });
            }
            return Ok(());
        }
        let owner = (spec.lifetime == QueueLifetime::Exclusive).then_some(connection);
        queues.insert(
            spec.name.clone(),
            Arc::new(Queue::new(spec.clone(), owner, Arc::downgrade(self), Arc::clone(&self.pending), self.flow_limit)),
        );
        Ok(())
    }

    fn delete_queue(&self, name: &str) {
        let Some(queue) = lock(&self.queues).remove(name) else { return };
        for exchange in lock(&self.exchanges).values_mut() {
            let before = exchange.bindings.len();
            exchange.bindings.retain(|(_, bound)| !Arc::ptr_eq(bound, &queue));
            if exchange.bindings.len() != before {
                exchange.routes.clear();
            }
        }
        queue.mark_deleted();
    }

    /// What RabbitMQ does when a connection closes: its consumers' unsettled deliveries are
    /// requeued and the exclusive queues it declared are deleted.
    fn close_connection(&self, connection: u64) {
        requests::close_connection(self, connection);
        let queues: Vec<Arc<Queue>> = lock(&self.queues).values().cloned().collect();
        for queue in &queues {
            queue.remove_connection(connection);
        }
        for queue in queues.iter().filter(|queue| queue.owner == Some(connection)) {
            self.delete_queue(&queue.spec.name);
        }
    }

    /// Whether a message published on `route` would reach a queue. A missing exchange or
    /// queue counts as reached: publishing says it is missing.
    fn reaches_a_queue(&self, route: Route<'_>) -> bool {
        match route {
            Route::Exchange { exchange, routing_key } => lock(&self.exchanges).get(exchange).is_none_or(|exchange| {
                exchange.bindings.iter().any(|(pattern, _)| topic::matches(pattern, routing_key))
            }),
            Route::Queue(_) => true,
        }
    }

    /// Routes and enqueues; returns the queues that are now over their flow limit.
    fn publish(&self, route: Route<'_>, message: Message) -> Result<Vec<Arc<Queue>>, TransportError> {
        let (exchange, routing_key, queues): (Arc<str>, Arc<str>, Arc<[Arc<Queue>]>) = match route {
            Route::Exchange { exchange, routing_key } => {
                let mut exchanges = lock(&self.exchanges);
                let exchange = exchanges
                    .get_mut(exchange)
                    .ok_or_else(|| TransportError::NotFound { object: format!("exchange `{exchange}`") })?;
                let (key, queues) = match exchange.routes.get_key_value(routing_key) {
                    Some((key, queues)) => (Arc::clone(key), Arc::clone(queues)),
                    None => {
                        let queues: Arc<[Arc<Queue>]> = exchange
                            .bindings
                            .iter()
                            .filter(|(pattern, _)| topic::matches(pattern, routing_key))
                            .map(|(_, queue)| Arc::clone(queue))
                            .collect();
                        let key: Arc<str> = routing_key.into();
                        exchange.routes.insert(Arc::clone(&key), Arc::clone(&queues));
                        (key, queues)
                    }
                };
                (Arc::clone(&exchange.name), key, queues)
            }
            Route::Queue(name) => {
                let queue = lock(&self.queues)
                    .get(name)
                    .cloned()
                    .ok_or_else(|| TransportError::NotFound { object: format!("queue `{name}`") })?;
                ("".into(), name.into(), Arc::from([queue]))
            }
        };
        let message = Arc::new(message);
        if self.recording.load(Ordering::Acquire) {
            if let Some(journal) = lock(&self.journal).as_mut() {
                journal.push(PublishedMessage {
                    exchange: Arc::clone(&exchange),
                    routing_key: Arc::clone(&routing_key),
                    message: Arc::clone(&message),
                });
            }
        }
        let mut full = Vec::new();
        for queue in queues.iter() {
            let over_limit = queue.enqueue(Entry {
                seq: 0,
                message: Arc::clone(&message),
                exchange: Arc::clone(&exchange),
                routing_key: Arc::clone(&routing_key),
                redelivered: false,
            });
            if over_limit {
                full.push(Arc::clone(queue));
            }
        }
        Ok(full)
    }
}

/// One connection to a [`MemoryBroker`]; implements [`Transport`].
pub struct MemoryTransport {
    broker: Arc<Broker>,
    connection: u64,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport").field("connection", &self.connection).finish()
    }
}

impl Transport for MemoryTransport {
    fn declare<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), TransportError>> {
        ready(self.broker.declare(topology, self.connection))
    }

    fn publish<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        origin: Origin,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        if let Some(address) = requests::reply_address_of(route) {
            requests::take_reply(&self.broker, address, message);
            return ready(Ok(()));
        }
        if origin == Origin::Runtime && !self.broker.reaches_a_queue(route) {
            // RabbitMQ's transport publishes the runtime's moves `mandatory`.
            return ready(Err(TransportError::Rejected { reason: format!("no queue takes it ({route:?})") }));
        }
        let full = match self.broker.publish(route, message) {
            Ok(full) if full.is_empty() || origin != Origin::Outside => return ready(Ok(())),
            other => other,
        };
        Box::pin(async move {
            // Flow control: the message is in; an outside publisher waits for room before
            // it returns, so a fast producer cannot grow a consumed queue without bound.
            for queue in full? {
                queue.room().await;
            }
            Ok(())
        })
    }

    fn system(&self) -> Option<&'static str> {
        Some("memory")
    }

    fn consume<'a>(
        &'a self,
        queue: &'a QueueSpec,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>> {
        let result = lock(&self.broker.queues)
            .get(&queue.name)
            .cloned()
            .ok_or_else(|| TransportError::NotFound { object: format!("queue `{}`", queue.name) })
            .and_then(|queue| {
                if queue.owner.is_some_and(|owner| owner != self.connection) {
                    return Err(TransportError::Locked { queue: queue.spec.name.clone() });
                }
                queue.subscribe(self.connection, prefetch)
            })
            .map(|subscription| Box::new(subscription) as Box<dyn Subscription>);
        Box::pin(std::future::ready(result))
    }

    fn try_lock<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn crate::transport::Lock>>, TransportError>> {
        Box::pin(std::future::ready(lock::try_lock(&self.broker, name, self.connection)))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.broker.close_connection(self.connection);
        ready(Ok(()))
    }

    fn request<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        reply_within: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Message>, TransportError>> {
        Box::pin(requests::request(&self.broker, self.connection, route, message, reply_within))
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.broker.close_connection(self.connection);
    }
}

/// A message as published, recorded by [`MemoryBroker::record_published`].
#[derive(Debug, Clone)]
pub struct PublishedMessage {
    /// The exchange (empty for a publish straight to a queue).
    pub exchange: Arc<str>,
    /// The routing key (the queue name for a publish straight to a queue).
    pub routing_key: Arc<str>,
    /// The message.
    pub message: Arc<Message>,
}

impl PublishedMessage {
    /// The event, when this message is an `E`.
    pub fn decode<E: Event>(&self) -> Option<E> {
        decode(&self.message)
    }
}

fn decode<E: Event>(message: &Message) -> Option<E> {
    (message.event_type == E::NAME).then(|| serde_json::from_slice(&message.body).ok()).flatten()
}

/// A message sitting in a queue, for inspection.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// The queue.
    pub queue: Arc<str>,
    /// The message.
    pub message: Arc<Message>,
    /// The routing key it was published with.
    pub routing_key: Arc<str>,
    /// Delivered to a consumer and not yet settled.
    pub in_flight: bool,
    /// Delivered before without being settled.
    pub redelivered: bool,
}

impl QueuedMessage {
    fn new(queue: &Arc<str>, entry: Entry, in_flight: bool) -> Self {
        Self {
            queue: Arc::clone(queue),
            message: entry.message,
            routing_key: entry.routing_key,
            in_flight,
            redelivered: entry.redelivered,
        }
    }

    /// The event, when this message is an `E` that decodes.
    pub fn decode<E: Event>(&self) -> Option<E> {
        decode(&self.message)
    }

    /// Why it was dead-lettered (for messages in dead-letter queues).
    pub fn reason(&self) -> Option<&str> {
        self.message.header_text(header::ERROR)
    }

    /// Which listener dead-lettered it (for messages in dead-letter queues).
    pub fn listener(&self) -> Option<&str> {
        self.message.header_text(header::LISTENER)
    }
}

impl fmt::Display for QueuedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.in_flight { "being handled" } else { "waiting" };
        write!(
            f,
            "{} `{}` (message {}, attempt {}) in queue `{}`",
            state, self.message.event_type, self.message.message_id, self.message.attempt, self.queue
        )?;
        if let Some(reason) = self.reason() {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

/// One queue's declaration and counts.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// How it was declared.
    pub spec: QueueSpec,
    /// Messages waiting.
    pub ready: usize,
    /// Messages delivered and not yet settled.
    pub in_flight: usize,
    /// Active consumers.
    pub consumers: usize,
}

/// [`MemoryBroker::settled`] timed out; lists what is still pending.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not settled after {timeout:?}; {} message(s) pending:{}", pending.len(), list(pending))]
pub struct SettleTimeout {
    /// How long it waited.
    pub timeout: Duration,
    /// What was still pending when it gave up.
    pub pending: Vec<QueuedMessage>,
}

fn list(messages: &[QueuedMessage]) -> String {
    messages.iter().map(|message| format!("\n  - {message}")).collect()
}

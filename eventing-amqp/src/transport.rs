//! [`AmqpTransport`]: eventing's [`Transport`] on self-healing RabbitMQ connections.
//!
//! Connections: one for publishing, declaring and operator calls, plus one per listener.
//! - Publishers apart from consumers, as RabbitMQ's documentation recommends: a resource
//!   alarm blocks connections that publish, and a consumer sharing such a connection could
//!   not even send its acks.
//! - One connection per listener, because lapin fails a whole connection when a frame does
//!   not parse (a message with invalid UTF-8 in a short-string field, see `rescue`). With a
//!   connection of its own, such a message stops only its listener, for one reconnect, and
//!   the failure names the queue that holds it; on a shared connection every listener and
//!   publish of the process would stall, and nothing would say which queue to rescue.
//!
//! The cost is one connection per listener and process (an Erlang process and some tens of
//! kB on the broker each; RabbitMQ handles thousands). Exclusive (per-process) queues are
//! declared on their listener's connection, since only the declaring connection may consume
//! them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use eventing::message::Message;
use eventing::naming::DEAD_LETTER_SUFFIX;
use eventing::transport::{
    BoxFuture, ConnectOptions, Origin, QueueLifetime, QueueRole, QueueSpec, Route, Subscription, Topology, Transport,
    TransportError,
};

use crate::acks::AckBatcher;
use crate::consume::ConsumerSlot;
use crate::link::Link;
use crate::options::AmqpOptions;
use crate::publish;
use crate::reply::Replies;
use crate::rescue::Target;
use crate::util::lock;

/// What the transport knows about a listener queue from the declared topology.
#[derive(Default)]
struct QueuePlan {
    /// Its dead-letter queue (the dead-letter queue declared after it).
    dead_letter: Option<String>,
    /// What the listener's own connection declares (again on every reconnect): the queue,
    /// its bindings and exchanges, and the non-exclusive queues that serve it.
    own: Option<Topology>,
}

/// A connection to RabbitMQ that implements eventing's [`Transport`].
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use eventing_amqp::{AmqpOptions, AmqpTransport, QueueType};
///
/// let options = AmqpOptions::default().with_queue_type(QueueType::Quorum);
/// let transport = AmqpTransport::connect("amqp://guest:guest@127.0.0.1:5672/%2f", options).await?;
/// let bus = eventing::builder().transport(transport).start().await?;
/// # bus.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct AmqpTransport {
    /// Publishes, declarations and operator calls.
    pub(crate) link: Arc<Link>,
    consumers: AtomicU64,
    /// Every subscription's pending acks, sent before the connection closes (a subscription
    /// is usually gone by then; its acks are not).
    acks: Mutex<Vec<Weak<AckBatcher>>>,
    /// One connection per listener.
    consumer_links: Mutex<Vec<Arc<Link>>>,
    /// By listener queue name.
    plans: Mutex<HashMap<String, QueuePlan>>,
    /// Requests through direct reply-to (`reply.rs`).
    replies: Replies,
}

impl AmqpTransport {
    /// Connects. A wrong host, port, vhost or password fails at once with an error that says
    /// which (the URL's password is never shown), and so does, for `amqps://`, a broker
    /// certificate that no trusted authority signed (see [`AmqpOptions::ca_file`]) or a TLS
    /// file that cannot be read. Later connection losses are healed.
    ///
    /// A cluster's nodes can be listed in the URL's authority, separated by commas:
    /// `amqp://user:pass@host1:5672,host2:5673,host3:5674/vhost`. Every connection (the
    /// publisher's and each listener's) then goes to the first node that answers, in an order
    /// shuffled once per process, and fails over to the next node when its node goes away.
    /// With several nodes, [`QueueType::Auto`](crate::QueueType::Auto) (the default)
    /// declares durable queues as quorum queues.
    pub async fn connect(url: &str, mut options: AmqpOptions) -> Result<Self, TransportError> {
        let listed = crate::endpoints::split(url);
        let cluster = options.queue_type == crate::QueueType::Auto && listed.len() > 1;
        options.queue_type = options.queue_type.resolve(listed.len());
        let endpoints = if options.shuffle_endpoints { crate::endpoints::shuffled(listed) } else { listed };
        let name = options.connection_name.clone();
        let publish_channels = options.publish_channels.max(1);
        let replies = Replies::new(url.to_owned(), format!("{name} requests"), options.clone());
        let link = Link::connect(url, endpoints, cluster, options, publish_channels).await?;
        let endpoint = link.connected_endpoint().map(eventing::transport::redact_url).unwrap_or_default();
        tracing::info!(url = %eventing::transport::redact_url(url), %endpoint, connection = %name, "connected to RabbitMQ");
        Ok(Self {
            link,
            consumers: AtomicU64::new(0),
            acks: Mutex::default(),
            consumer_links: Mutex::default(),
            plans: Mutex::default(),
            replies,
        })
    }

    /// Connects to a cluster given as a list of single-host URLs that differ only in host,
    /// port and credentials (the same as one URL listing the nodes, see [`connect`](Self::connect)).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let nodes = ["amqp://app:secret@rabbit1:5672/%2f", "amqp://app:secret@rabbit2:5672/%2f"];
    /// let transport = eventing_amqp::AmqpTransport::connect_cluster(&nodes, Default::default()).await?;
    /// let bus = eventing::builder().transport(transport).start().await?;
    /// # bus.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_cluster<S: AsRef<str>>(urls: &[S], options: AmqpOptions) -> Result<Self, TransportError> {
        let url = crate::endpoints::join(urls).map_err(|reason| TransportError::Connect {
            url: urls.iter().map(|url| eventing::transport::redact_url(url.as_ref())).collect::<Vec<_>>().join(" "),
            reason,
        })?;
        Self::connect(&url, options).await
    }

    /// The node the publishing connection is on now (a single-host URL, password hidden), or
    /// `None` while it reconnects. With several endpoints this shows failover.
    pub fn connected_endpoint(&self) -> Option<String> {
        self.link.connected_endpoint().map(eventing::transport::redact_url)
    }

    /// Whether RabbitMQ currently blocks the publishing connection (`connection.blocked`,
    /// raised by a memory or disk alarm): publishes wait for it to be unblocked, up to
    /// [`AmqpOptions::publish_timeout`]. For health checks.
    pub fn is_blocked(&self) -> bool {
        self.link.current().is_ok_and(|session| session.blocked().is_some())
    }

    /// Declares the topology on the publishing connection, except exclusive listener queues
    /// and their bindings, and remembers, per listener queue, its dead-letter queue and what
    /// its own connection declares again on every reconnect: the queue, its bindings, and
    /// the (non-exclusive) queues that serve it. A queue deleted under its consumer comes
    /// back with the consumer, and an exclusive queue belongs to the connection consuming it.
    async fn declare_topology(&self, topology: &Topology) -> Result<(), TransportError> {
        let mut shared = Topology { exchanges: topology.exchanges.clone(), ..Topology::default() };
        let mut exclusive = Vec::new();
        {
            let mut plans = lock(&self.plans);
            let mut listener: Option<&str> = None;
            for queue in &topology.queues {
                if queue.role == QueueRole::Listener {
                    listener = Some(&queue.name);
                    let bindings: Vec<_> =
                        topology.bindings.iter().filter(|binding| binding.queue == queue.name).cloned().collect();
                    let own = Topology { exchanges: topology.exchanges.clone(), queues: vec![queue.clone()], bindings };
                    plans.entry(queue.name.clone()).or_default().own = Some(own);
                    if queue.lifetime == QueueLifetime::Exclusive {
                        exclusive.push(queue.name.clone());
                        continue;
                    }
                } else if let Some(plan) = listener.and_then(|listener| plans.get_mut(listener)) {
                    if queue.role == QueueRole::DeadLetter && plan.dead_letter.is_none() {
                        plan.dead_letter = Some(queue.name.clone());
                    }
                    if queue.lifetime != QueueLifetime::Exclusive
                        && let Some(own) = plan.own.as_mut()
                    {
                        own.queues.push(queue.clone());
                    }
                }
                shared.queues.push(queue.clone());
            }
        }
        shared.bindings =
            topology.bindings.iter().filter(|binding| !exclusive.contains(&binding.queue)).cloned().collect();
        self.link.declare(&shared).await
    }

    async fn subscribe(&self, queue: &QueueSpec, prefetch: u16) -> Result<Box<dyn Subscription>, TransportError> {
        let base = &self.link.options.connection_name;
        let tag = format!("{base}#{}", self.consumers.fetch_add(1, Ordering::Relaxed));
        let (dead_letter, own) = {
            let plans = lock(&self.plans);
            let plan = plans.get(&queue.name);
            (plan.and_then(|plan| plan.dead_letter.clone()), plan.and_then(|plan| plan.own.clone()))
        };
        let connection_name = format!("{base} {}", queue.name);
        let options = AmqpOptions { connection_name: connection_name.clone(), ..self.link.options.clone() };
        let link =
            Link::connect(self.link.url(), self.link.endpoints().to_vec(), self.link.is_cluster(), options, 0).await?;
        let rescue = Target {
            url: self.link.url().to_owned(),
            connection_name: format!("{connection_name} (rescue)"),
            options: self.link.options.clone(),
            queue: queue.name.clone(),
            dead_letter_queue: dead_letter.unwrap_or_else(|| format!("{}.{DEAD_LETTER_SUFFIX}", queue.name)),
        };
        let (slot, subscription) = ConsumerSlot::new(queue.clone(), prefetch, tag, rescue);
        let started = async {
            if let Some(own) = &own {
                link.declare(own).await?;
            }
            link.add(Arc::clone(&slot) as _).await
        };
        if let Err(error) = started.await {
            let _ = link.close().await;
            return Err(error);
        }
        lock(&self.acks).push(Arc::downgrade(&slot.acks));
        lock(&self.consumer_links).push(link);
        Ok(Box::new(subscription))
    }

    async fn shut(&self) -> Result<(), TransportError> {
        let batchers: Vec<Arc<AckBatcher>> =
            std::mem::take(&mut *lock(&self.acks)).iter().filter_map(Weak::upgrade).collect();
        for batcher in batchers {
            batcher.close().await;
        }
        self.replies.close().await;
        let consumer_links = std::mem::take(&mut *lock(&self.consumer_links));
        for link in consumer_links {
            if let Err(error) = link.close().await {
                tracing::warn!(connection = %link.options.connection_name, %error, "closing a listener's connection failed");
            }
        }
        self.link.close().await
    }
}

impl Transport for AmqpTransport {
    fn declare<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.declare_topology(topology))
    }

    /// The broker applies its own flow control (TCP back-pressure, `connection.blocked`)
    /// to every publisher alike; `origin` only makes the runtime's moves `mandatory`.
    fn publish<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        origin: Origin,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { publish::publish(&self.link, route, &message, origin).await })
    }

    /// The publishing connection and every listener's connection are up.
    fn is_connected(&self) -> bool {
        self.link.current().is_ok() && lock(&self.consumer_links).iter().all(|link| link.current().is_ok())
    }

    fn is_blocked(&self) -> bool {
        AmqpTransport::is_blocked(self)
    }

    fn system(&self) -> Option<&'static str> {
        Some("rabbitmq")
    }

    fn consume<'a>(
        &'a self,
        queue: &'a QueueSpec,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>> {
        Box::pin(self.subscribe(queue, prefetch))
    }

    /// An exclusive queue on a connection of its own (see `lock.rs`).
    fn try_lock<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn eventing::transport::Lock>>, TransportError>> {
        Box::pin(crate::lock::try_lock(self.link.endpoints(), &self.link.options, name))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.shut())
    }

    /// Through direct reply-to on a connection of its own (see `reply.rs`).
    fn request<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        reply_within: Option<std::time::Duration>,
    ) -> BoxFuture<'a, Result<Option<Message>, TransportError>> {
        Box::pin(self.replies.request(route, message, reply_within))
    }

    /// Unconfirmed, on a channel of the publishing connection kept for replies: a reply's
    /// confirm would buy nothing (see the trait) and cost the broker and the server a
    /// round of acknowledgements per request.
    fn reply<'a>(&'a self, reply_to: &'a str, reply: Message) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.link.options.publish_timeout;
            let channel = self.link.session(deadline).await?.reply_channel().await?;
            crate::reply::send(&channel, reply_to, &reply).await
        })
    }
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport").field("connection", &self.link.options.connection_name).finish_non_exhaustive()
    }
}

/// The [`TransportFactory`](eventing::transport::TransportFactory) entry for `amqp://` and
/// `amqps://`: options from the environment, the connection named after service and process.
pub(crate) fn connect_from_url(
    options: ConnectOptions,
) -> BoxFuture<'static, Result<Arc<dyn Transport>, TransportError>> {
    Box::pin(async move {
        let mut amqp = AmqpOptions::from_env().map_err(|source| TransportError::Other {
            context: format!("cannot connect to {}", eventing::transport::redact_url(&options.url)),
            source: source.into(),
        })?;
        amqp.connection_name = format!("{}@{}", options.service, options.process_id);
        let transport = AmqpTransport::connect(&options.url, amqp).await?;
        Ok(Arc::new(transport) as Arc<dyn Transport>)
    })
}

//! [`AmqpTransport`]: eventing's [`Transport`] on a self-healing RabbitMQ connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use eventing::message::Message;
use eventing::transport::{
    BoxFuture, ConnectOptions, Origin, QueueSpec, Route, Subscription, Topology, Transport, TransportError,
};

use crate::acks::AckBatcher;
use crate::consume::ConsumerSlot;
use crate::link::{Link, lock};
use crate::options::AmqpOptions;
use crate::publish;

/// A connection to RabbitMQ that implements eventing's [`Transport`].
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use eventing_amqp::{AmqpOptions, AmqpTransport, QueueType};
///
/// let options = AmqpOptions { queue_type: QueueType::Quorum, ..AmqpOptions::default() };
/// let transport = AmqpTransport::connect("amqp://guest:guest@127.0.0.1:5672/%2f", options).await?;
/// let bus = eventing::builder().transport(transport).start().await?;
/// # bus.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct AmqpTransport {
    pub(crate) link: Arc<Link>,
    consumers: AtomicU64,
    /// Every subscription's pending acks, sent before the connection closes (a subscription
    /// is usually gone by then; its acks are not).
    acks: Mutex<Vec<Weak<AckBatcher>>>,
}

impl AmqpTransport {
    /// Connects. A wrong host, port, vhost or password fails at once with an error that says
    /// which (the URL's password is never shown). Later connection losses are healed.
    pub async fn connect(url: &str, options: AmqpOptions) -> Result<Self, TransportError> {
        let name = options.connection_name.clone();
        let link = Link::connect(url, options).await?;
        tracing::info!(url = %eventing::transport::redact_url(url), connection = %name, "connected to RabbitMQ");
        Ok(Self { link, consumers: AtomicU64::new(0), acks: Mutex::default() })
    }

    async fn subscribe(&self, queue: &QueueSpec, prefetch: u16) -> Result<Box<dyn Subscription>, TransportError> {
        let tag = format!("{}#{}", self.link.options.connection_name, self.consumers.fetch_add(1, Ordering::Relaxed));
        let (slot, subscription) = ConsumerSlot::new(queue.clone(), prefetch, tag);
        lock(&self.acks).push(Arc::downgrade(&slot.acks));
        self.link.add_consumer(&slot).await?;
        Ok(Box::new(subscription))
    }

    async fn shut(&self) -> Result<(), TransportError> {
        let batchers: Vec<Arc<AckBatcher>> =
            std::mem::take(&mut *lock(&self.acks)).iter().filter_map(Weak::upgrade).collect();
        for batcher in batchers {
            batcher.close().await;
        }
        self.link.close().await
    }
}

impl Transport for AmqpTransport {
    fn declare<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.link.declare(topology))
    }

    /// The broker applies its own flow control (TCP back-pressure, `connection.blocked`)
    /// to every publisher alike, so `origin` changes nothing here.
    fn publish<'a>(
        &'a self,
        route: Route<'a>,
        message: Message,
        _origin: Origin,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { publish::publish(&self.link, route, &message).await })
    }

    fn consume<'a>(
        &'a self,
        queue: &'a QueueSpec,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>> {
        Box::pin(self.subscribe(queue, prefetch))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.shut())
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
        let mut amqp = AmqpOptions::from_env()
            .map_err(|reason| TransportError::Connect { url: eventing::transport::redact_url(&options.url), reason })?;
        amqp.connection_name = format!("{}@{}", options.service, options.process_id);
        let transport = AmqpTransport::connect(&options.url, amqp).await?;
        Ok(Arc::new(transport) as Arc<dyn Transport>)
    })
}

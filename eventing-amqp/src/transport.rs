//! [`AmqpTransport`]: eventing's [`Transport`] on one lapin connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use eventing::message::Message;
use eventing::transport::{
    BindingSpec, BoxFuture, ConnectOptions, QueueSpec, Route, Subscription, Topology, Transport, TransportError,
};
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use crate::consume::AmqpSubscription;
use crate::options::AmqpOptions;
use crate::publish::{Publishers, other};
use crate::{connect, topology};

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
    connection: Connection,
    publishers: Publishers,
    options: AmqpOptions,
    /// What `declare` declared, so each consumer channel can declare its own queue again:
    /// lapin replays a channel's topology when it recovers, which re-creates exclusive
    /// queues after a broker restart.
    declared: Mutex<Declared>,
    consumers: AtomicU64,
}

#[derive(Default)]
struct Declared {
    exchanges: Vec<String>,
    bindings: HashMap<String, Vec<BindingSpec>>,
}

impl AmqpTransport {
    /// Connects with lapin's automatic recovery. A wrong host, port, vhost or password
    /// fails at once with an error that says which (the URL's password is never shown).
    pub async fn connect(url: &str, options: AmqpOptions) -> Result<Self, TransportError> {
        let connection = connect::open(url, &options.connection_name).await?;
        let publishers = Publishers::open(&connection, options.publish_channels, options.publish_timeout).await?;
        tracing::info!(url = %eventing::transport::redact_url(url), connection = %options.connection_name, "connected to RabbitMQ");
        Ok(Self { connection, publishers, options, declared: Mutex::default(), consumers: AtomicU64::new(0) })
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    fn declared(&self) -> std::sync::MutexGuard<'_, Declared> {
        self.declared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn channel(&self) -> Result<Channel, TransportError> {
        self.connection.create_channel().await.map_err(|error| other("opening a channel", error))
    }

    async fn declare_all(&self, topology: &Topology) -> Result<(), TransportError> {
        let channel = self.channel().await?;
        for exchange in &topology.exchanges {
            topology::declare_exchange(&channel, exchange).await?;
        }
        for queue in &topology.queues {
            topology::declare_queue(&channel, queue, self.options.queue_type).await?;
        }
        for binding in &topology.bindings {
            topology::bind(&channel, binding).await?;
        }
        let _ = channel.close(200, "topology declared".into()).await;
        let mut declared = self.declared();
        for exchange in &topology.exchanges {
            if !declared.exchanges.contains(exchange) {
                declared.exchanges.push(exchange.clone());
            }
        }
        for binding in &topology.bindings {
            let bindings = declared.bindings.entry(binding.queue.clone()).or_default();
            if !bindings.contains(binding) {
                bindings.push(binding.clone());
            }
        }
        Ok(())
    }

    async fn subscribe(&self, queue: &QueueSpec, prefetch: u16) -> Result<Box<dyn Subscription>, TransportError> {
        let channel = self.channel().await?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions { global: false })
            .await
            .map_err(|error| other("setting the prefetch", error))?;
        let (exchanges, bindings) = {
            let declared = self.declared();
            (declared.exchanges.clone(), declared.bindings.get(&queue.name).cloned().unwrap_or_default())
        };
        for exchange in
            exchanges.iter().filter(|exchange| bindings.iter().any(|binding| binding.exchange == **exchange))
        {
            topology::declare_exchange(&channel, exchange).await?;
        }
        topology::declare_queue(&channel, queue, self.options.queue_type).await?;
        for binding in &bindings {
            topology::bind(&channel, binding).await?;
        }
        let consumer_tag =
            format!("{}#{}", self.options.connection_name, self.consumers.fetch_add(1, Ordering::Relaxed));
        let consumer = channel
            .basic_consume(
                queue.name.as_str().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| topology::declare_error(&format!("queue `{}`", queue.name), error))?;
        Ok(Box::new(AmqpSubscription::new(channel, consumer, consumer_tag.into(), queue.name.clone())))
    }
}

impl Transport for AmqpTransport {
    fn declare<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.declare_all(topology))
    }

    fn publish<'a>(&'a self, route: Route<'a>, message: Message) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { self.publishers.publish(route, &message).await })
    }

    fn consume<'a>(
        &'a self,
        queue: &'a QueueSpec,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>> {
        Box::pin(self.subscribe(queue, prefetch))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            self.connection
                .close(200, "eventing: shutting down".into())
                .await
                .map_err(|error| other("closing the connection", error))
        })
    }
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport").field("connection", &self.options.connection_name).finish_non_exhaustive()
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

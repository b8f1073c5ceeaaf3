//! A listener's subscription: its own channel and prefetch, deliveries converted to
//! eventing's, restarted by the link on every new connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use eventing::transport::{Acker, BoxFuture, Delivery, QueueSpec, Subscription, TransportError};
use futures_util::{Stream, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::mpsc;

use crate::acks::{AckBatcher, BatchedAcker};
use crate::convert;
use crate::link::{Session, other};

type DeliverySender = mpsc::UnboundedSender<Result<Delivery, TransportError>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One consumer as the link knows it, so it can start it again on a new connection.
pub(crate) struct ConsumerSlot {
    queue: QueueSpec,
    prefetch: u16,
    tag: String,
    /// `None` once cancelled: not restarted, and the stream ends when the pump stops.
    deliveries: Mutex<Option<DeliverySender>>,
    channel: Mutex<Option<Channel>>,
    pub(crate) acks: Arc<AckBatcher>,
}

impl ConsumerSlot {
    pub(crate) fn new(queue: QueueSpec, prefetch: u16, tag: String) -> (Arc<Self>, AmqpSubscription) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let acks = Arc::new(AckBatcher::default());
        tokio::spawn(Arc::clone(&acks).run_flusher());
        let slot = Arc::new(Self {
            queue,
            prefetch,
            tag,
            deliveries: Mutex::new(Some(sender)),
            channel: Mutex::new(None),
            acks,
        });
        let subscription = AmqpSubscription { receiver, slot: Arc::clone(&slot) };
        (slot, subscription)
    }

    /// Opens a channel with this consumer's prefetch and consumes on it; a pump task
    /// forwards the deliveries until that channel or connection ends.
    pub(crate) async fn start(&self, session: &Session) -> Result<(), TransportError> {
        let Some(sender) = lock(&self.deliveries).clone() else { return Ok(()) };
        let channel = session.connection.create_channel().await.map_err(|error| other("opening a channel", error))?;
        channel
            .basic_qos(self.prefetch.max(1), BasicQosOptions { global: false })
            .await
            .map_err(|error| other("setting the prefetch", error))?;
        let consumer = channel
            .basic_consume(
                self.queue.name.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| crate::topology::declare_error(&format!("queue `{}`", self.queue.name), error))?;
        self.acks.consuming_on(channel.clone());
        *lock(&self.channel) = Some(channel);
        tokio::spawn(pump(consumer, sender, Arc::clone(&self.acks), self.queue.name.clone()));
        Ok(())
    }

    async fn cancel(&self) -> Result<(), TransportError> {
        lock(&self.deliveries).take();
        let channel = lock(&self.channel).clone();
        match channel {
            Some(channel) if channel.status().connected() => channel
                .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
                .await
                .map_err(|error| other("cancelling the consumer", error)),
            _ => Ok(()),
        }
    }
}

async fn pump(mut consumer: Consumer, sender: DeliverySender, acks: Arc<AckBatcher>, queue: String) {
    while let Some(next) = consumer.next().await {
        match next {
            Ok(delivery) => {
                if sender.send(Ok(convert_delivery(delivery, &acks))).is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(queue = %queue, %error, "consumer stopped with its connection; the link restarts it");
                return;
            }
        }
    }
}

fn convert_delivery(delivery: lapin::message::Delivery, acks: &Arc<AckBatcher>) -> Delivery {
    let message = convert::message(delivery.data, &delivery.properties, delivery.routing_key.as_str());
    let generation = acks.delivered(delivery.delivery_tag);
    Delivery {
        message: Arc::new(message),
        exchange: delivery.exchange.as_str().into(),
        routing_key: delivery.routing_key.as_str().into(),
        redelivered: delivery.redelivered,
        acker: Acker::new(
            Arc::new(BatchedAcker::new(Arc::clone(acks), generation, delivery.acker)),
            delivery.delivery_tag,
        ),
    }
}

/// The stream the runtime reads; it survives reconnects.
pub(crate) struct AmqpSubscription {
    receiver: mpsc::UnboundedReceiver<Result<Delivery, TransportError>>,
    slot: Arc<ConsumerSlot>,
}

impl Stream for AmqpSubscription {
    type Item = Result<Delivery, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl Subscription for AmqpSubscription {
    fn cancel(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.slot.cancel())
    }
}

impl Drop for AmqpSubscription {
    fn drop(&mut self) {
        // The runtime drops a subscription after its handlers finished: send their acks.
        lock(&self.slot.deliveries).take();
        let acks = Arc::clone(&self.slot.acks);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { acks.close().await });
        }
    }
}

//! A listener's subscription: its own channel and prefetch, deliveries converted to
//! eventing's, restarted by its link on every new connection (it implements the link's
//! [`Restore`]); after a connection lapin dropped on an unreadable frame, the unreadable
//! messages are dead-lettered first (`rescue`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use eventing::transport::{Acker, BoxFuture, Delivery, QueueLifetime, QueueSpec, Subscription, TransportError};
use futures_util::{Stream, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::mpsc;

use crate::acks::{AckBatcher, BatchedAcker};
use crate::convert::{self, Repeats};
use crate::link::{Restore, Resume, Session};
use crate::rescue::{self, Target};
use crate::util::{lock, other};

type DeliverySender = mpsc::UnboundedSender<Result<Delivery, TransportError>>;

/// One consumer as the link knows it, so it can start it again on a new connection.
pub(crate) struct ConsumerSlot {
    queue: QueueSpec,
    prefetch: u16,
    tag: String,
    /// Where unreadable messages of the queue go.
    rescue: Target,
    /// `None` once cancelled: not restarted, and the stream ends when the pump stops.
    deliveries: Mutex<Option<DeliverySender>>,
    channel: Mutex<Option<Channel>>,
    pub(crate) acks: Arc<AckBatcher>,
    /// Set once the runtime cancelled (or dropped) the subscription: a consumer that ends
    /// then ended on purpose.
    cancelled: Arc<AtomicBool>,
}

impl ConsumerSlot {
    pub(crate) fn new(queue: QueueSpec, prefetch: u16, tag: String, rescue: Target) -> (Arc<Self>, AmqpSubscription) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let acks = Arc::new(AckBatcher::default());
        tokio::spawn(Arc::clone(&acks).run_flusher());
        let slot = Arc::new(Self {
            queue,
            prefetch,
            tag,
            rescue,
            deliveries: Mutex::new(Some(sender)),
            channel: Mutex::new(None),
            acks,
            cancelled: Arc::default(),
        });
        let subscription = AmqpSubscription { receiver, slot: Arc::clone(&slot) };
        (slot, subscription)
    }

    /// Opens a channel with this consumer's prefetch and consumes on it; a pump task
    /// forwards the deliveries until that channel or connection ends.
    async fn start(&self, session: &Arc<Session>) -> Result<(), TransportError> {
        if lock(&self.deliveries).is_none() {
            return Ok(());
        }
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
        // Cancelled while this start was under way (a shutdown racing a reconnect), or a
        // newer connection already took over: give the new consumer up again.
        let sender = lock(&self.deliveries).clone();
        let generation = sender.as_ref().and_then(|_| self.acks.consuming_on(channel.clone(), session.generation));
        let (Some(sender), Some(generation)) = (sender, generation) else {
            let _ = channel.close(200, "consumer no longer wanted".into()).await;
            return Ok(());
        };
        *lock(&self.channel) = Some(channel);
        let pump = Pump {
            sender,
            acks: Arc::clone(&self.acks),
            generation,
            queue: self.queue.name.clone(),
            cancelled: Arc::clone(&self.cancelled),
        };
        tokio::spawn(pump.run(consumer, Arc::downgrade(session)));
        Ok(())
    }

    /// Dead-letters what lapin could not read, then consumes again on `session`.
    async fn resume(&self, session: &Arc<Session>, resume: Resume) -> Result<(), TransportError> {
        if resume == Resume::AfterUnreadableFrame && lock(&self.deliveries).is_some() {
            if self.queue.lifetime == QueueLifetime::Exclusive {
                // An exclusive queue went with the connection lapin dropped, and the message
                // with it (as everything in such a queue does on any connection loss).
                tracing::warn!(queue = %self.queue.name, "the per-process queue was deleted with its connection, the unreadable message with it");
            } else {
                // The poison was at most `prefetch` deliveries behind the head when lapin failed.
                rescue::dead_letter_unreadable(&self.rescue, usize::from(self.prefetch.max(1)) + 1).await?;
            }
        }
        self.start(session).await
    }

    async fn cancel(&self) -> Result<(), TransportError> {
        self.cancelled.store(true, Ordering::Release);
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

impl Restore for ConsumerSlot {
    fn restore<'a>(&'a self, session: &'a Arc<Session>, resume: Resume) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.resume(session, resume))
    }
}

/// Forwards one channel's deliveries to the subscription.
struct Pump {
    sender: DeliverySender,
    acks: Arc<AckBatcher>,
    generation: u64,
    queue: String,
    cancelled: Arc<AtomicBool>,
}

impl Pump {
    async fn run(self, mut consumer: Consumer, session: Weak<Session>) {
        let mut repeats = Repeats::default();
        while let Some(next) = consumer.next().await {
            match next {
                Ok(delivery) => {
                    let delivery = convert_delivery(delivery, &self.acks, self.generation, &mut repeats);
                    if self.sender.send(Ok(delivery)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::debug!(queue = %self.queue, %error, "consumer stopped with its channel");
                    break;
                }
            }
        }
        if self.cancelled.load(Ordering::Acquire) || self.sender.is_closed() {
            return;
        }
        // The consumer ended but nobody cancelled it: the connection went, or the broker
        // cancelled it (queue deleted, consumer timeout) or closed its channel. Mark the
        // connection lost: the link then reconnects, declares the topology again and restarts
        // every consumer, this one included (one recovery path for every kind of loss).
        if let Some(session) = session.upgrade().filter(|session| session.is_alive()) {
            tracing::warn!(queue = %self.queue, "a consumer ended unasked; reconnecting to restore it");
            session.mark_broken();
        }
    }
}

fn convert_delivery(
    delivery: lapin::message::Delivery,
    acks: &Arc<AckBatcher>,
    generation: u64,
    repeats: &mut Repeats,
) -> Delivery {
    let message =
        convert::message_repeating(delivery.data, &delivery.properties, delivery.routing_key.as_str(), repeats);
    acks.delivered(delivery.delivery_tag, generation);
    Delivery {
        message: Arc::new(message),
        exchange: repeats.exchange(delivery.exchange.as_str()),
        routing_key: repeats.routing_key(delivery.routing_key.as_str()),
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
        self.slot.cancelled.store(true, Ordering::Release);
        lock(&self.slot.deliveries).take();
        let acks = Arc::clone(&self.slot.acks);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { acks.close().await });
        }
    }
}

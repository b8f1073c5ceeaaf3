//! A listener's subscription: its own channel and prefetch, deliveries converted to
//! eventing's, restarted by its link on every new connection (it implements the link's
//! [`Restore`]); after a connection lapin dropped on an unreadable frame, the unreadable
//! messages are dead-lettered first (`rescue`).
//!
//! The runtime's consume loop polls lapin's consumer itself (through [`AmqpSubscription`]):
//! a delivery wakes the task that handles it, with no forwarding task in between (one task
//! hop less per delivery, as a hand-written consumer has). Each start on a new channel hands
//! the subscription its new consumer.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use eventing::transport::{Acker, BoxFuture, Delivery, QueueLifetime, QueueSpec, Subscription, TransportError};
use futures_util::Stream;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::mpsc;

use crate::acks::{AckBatcher, BatchedAcker};
use crate::convert::{self, Repeats};
use crate::link::{Restore, Resume, Session};
use crate::rescue::{self, Target};
use crate::util::{lock, other};

/// A consumer started on a channel, on its way to the subscription.
struct Started {
    consumer: Consumer,
    /// The channel's generation in the ack batcher.
    generation: u64,
    session: Weak<Session>,
}

type ConsumerSender = mpsc::UnboundedSender<Started>;

/// One consumer as the link knows it, so it can start it again on a new connection.
pub(crate) struct ConsumerSlot {
    queue: QueueSpec,
    prefetch: u16,
    tag: String,
    /// Where unreadable messages of the queue go.
    rescue: Target,
    /// `None` once cancelled: not restarted, and the stream ends with the current consumer.
    consumers: Mutex<Option<ConsumerSender>>,
    channel: Mutex<Option<Channel>>,
    pub(crate) acks: Arc<AckBatcher>,
    /// Set once the runtime cancelled (or dropped) the subscription: a consumer that ends
    /// then ended on purpose.
    cancelled: Arc<AtomicBool>,
}

impl ConsumerSlot {
    pub(crate) fn new(queue: QueueSpec, prefetch: u16, tag: String, rescue: Target) -> (Arc<Self>, AmqpSubscription) {
        let (sender, consumers) = mpsc::unbounded_channel();
        let acks = Arc::new(AckBatcher::new(prefetch));
        tokio::spawn(Arc::clone(&acks).run_flusher());
        let slot = Arc::new(Self {
            queue,
            prefetch,
            tag,
            rescue,
            consumers: Mutex::new(Some(sender)),
            channel: Mutex::new(None),
            acks,
            cancelled: Arc::default(),
        });
        let subscription =
            AmqpSubscription { consumers, current: None, repeats: Repeats::default(), slot: Arc::clone(&slot) };
        (slot, subscription)
    }

    /// Opens a channel with this consumer's prefetch, consumes on it and hands the consumer
    /// to the subscription, which reads it until that channel or connection ends.
    async fn start(&self, session: &Arc<Session>) -> Result<(), TransportError> {
        if lock(&self.consumers).is_none() {
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
        let sender = lock(&self.consumers).clone();
        let generation = sender.as_ref().and_then(|_| self.acks.consuming_on(channel.clone(), session.generation));
        let (Some(sender), Some(generation)) = (sender, generation) else {
            let _ = channel.close(200, "consumer no longer wanted".into()).await;
            return Ok(());
        };
        *lock(&self.channel) = Some(channel);
        // Fails only when the subscription is gone, which closes the channel anyway.
        let _ = sender.send(Started { consumer, generation, session: Arc::downgrade(session) });
        Ok(())
    }

    /// Dead-letters what lapin could not read, then consumes again on `session`.
    async fn resume(&self, session: &Arc<Session>, resume: Resume) -> Result<(), TransportError> {
        if resume == Resume::AfterUnreadableFrame && lock(&self.consumers).is_some() {
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
        lock(&self.consumers).take();
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
    /// Each consumer the slot starts, one per channel.
    consumers: mpsc::UnboundedReceiver<Started>,
    /// The consumer read now; `None` between a lost channel and the next start.
    current: Option<Started>,
    repeats: Repeats,
    slot: Arc<ConsumerSlot>,
}

impl AmqpSubscription {
    /// The current consumer ended: on purpose (cancelled), or because its channel or
    /// connection went, or the broker cancelled it (queue deleted, consumer timeout). In the
    /// last cases the connection is marked lost: the link then reconnects, declares the
    /// topology again and restarts every consumer, this one included (one recovery path for
    /// every kind of loss).
    fn consumer_ended(&mut self) {
        let Some(ended) = self.current.take() else { return };
        if self.slot.cancelled.load(Ordering::Acquire) {
            return;
        }
        if let Some(session) = ended.session.upgrade().filter(|session| session.is_alive()) {
            tracing::warn!(queue = %self.slot.queue.name, "a consumer ended unasked; reconnecting to restore it");
            session.mark_broken();
        }
    }
}

impl Stream for AmqpSubscription {
    type Item = Result<Delivery, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            // A newer consumer replaces the current one: the old channel is gone and the
            // broker requeued what it had delivered (its acks would be ignored anyway).
            let no_more_consumers = match this.consumers.poll_recv(cx) {
                Poll::Ready(Some(started)) => {
                    this.current = Some(started);
                    continue;
                }
                Poll::Ready(None) => true,
                Poll::Pending => false,
            };
            let Some(current) = this.current.as_mut() else {
                return if no_more_consumers || this.slot.cancelled.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            };
            match Pin::new(&mut current.consumer).poll_next(cx) {
                Poll::Ready(Some(Ok(delivery))) => {
                    let generation = current.generation;
                    let delivery = convert_delivery(delivery, &this.slot.acks, generation, &mut this.repeats);
                    return Poll::Ready(Some(Ok(delivery)));
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(queue = %this.slot.queue.name, %error, "consumer stopped with its channel");
                    this.consumer_ended();
                }
                Poll::Ready(None) => this.consumer_ended(),
                Poll::Pending => {
                    this.slot.acks.idle();
                    return Poll::Pending;
                }
            }
        }
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
        lock(&self.slot.consumers).take();
        let acks = Arc::clone(&self.slot.acks);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { acks.close().await });
        }
    }
}

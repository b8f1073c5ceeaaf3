//! One in-memory queue with RabbitMQ's consumer semantics: round-robin across consumers,
//! a prefetch bound per consumer, unsettled deliveries requeued when their channel goes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context as TaskContext, Poll};

use futures_util::Stream;
use tokio::sync::{Notify, mpsc};

use super::{Broker, Pending};
use crate::message::Message;
use crate::transport::{
    Acker, BoxFuture, Delivery, QueueRole, QueueSpec, Route, Settle, Subscription, TransportError, ready,
};

/// Locks a mutex; a panic elsewhere never leaves our state half-written, so poisoning is ignored.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A message sitting in a queue.
#[derive(Clone)]
pub(super) struct Entry {
    /// Position in the queue: a requeued message goes back to its original place.
    pub(super) seq: u64,
    pub(super) message: Arc<Message>,
    pub(super) exchange: Arc<str>,
    pub(super) routing_key: Arc<str>,
    pub(super) redelivered: bool,
}

pub(super) struct Queue {
    pub(super) spec: QueueSpec,
    /// The connection that owns an exclusive queue.
    pub(super) owner: Option<u64>,
    broker: Weak<Broker>,
    pending: Arc<Pending>,
    state: Mutex<QueueState>,
    /// Ready messages above which publishers outside handlers wait (flow control).
    flow_limit: usize,
    /// Signalled when a throttled queue has room again.
    room: Notify,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Entry>,
    consumers: Vec<ConsumerSlot>,
    cursor: usize,
    next_tag: u64,
    next_seq: u64,
    deleted: bool,
    /// A publisher waits for room.
    throttled: bool,
}

struct ConsumerSlot {
    id: u64,
    connection: u64,
    prefetch: usize,
    /// Delivered, unsettled messages by tag, in delivery order (settled mostly in order).
    unacked: VecDeque<(u64, Entry)>,
    /// `None` once cancelled: no more deliveries, but unacked ones can still be settled.
    sender: Option<mpsc::UnboundedSender<Delivery>>,
    channel: Weak<ConsumerChannel>,
}

/// A snapshot of one message for inspection.
pub(super) struct Snapshot {
    pub(super) entry: Entry,
    pub(super) in_flight: bool,
}

/// Deliveries that could not be handed over; dropped only after the queue lock is released,
/// because dropping the last acker of a channel locks the queue again.
type Leftovers = Vec<Delivery>;

static NEXT_CONSUMER: AtomicU64 = AtomicU64::new(1);

impl Queue {
    pub(super) fn new(
        spec: QueueSpec,
        owner: Option<u64>,
        broker: Weak<Broker>,
        pending: Arc<Pending>,
        flow_limit: usize,
    ) -> Self {
        Self { spec, owner, broker, pending, state: Mutex::new(QueueState::default()), flow_limit, room: Notify::new() }
    }

    /// Whether a publisher should wait before adding more: the queue is over its flow limit
    /// and has consumers to drain it (a queue nobody consumes just grows, as on RabbitMQ).
    fn is_full(&self) -> bool {
        let mut state = lock(&self.state);
        self.check_full(&mut state)
    }

    fn check_full(&self, state: &mut QueueState) -> bool {
        let full = state.ready.len() >= self.flow_limit && state.consumers.iter().any(|slot| slot.sender.is_some());
        state.throttled |= full;
        full
    }

    /// Waits until the queue is no longer [full](Self::is_full).
    pub(super) async fn room(&self) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !self.is_full() {
                return;
            }
            room.await;
        }
    }

    /// Wakes waiting publishers once the queue has drained to half its flow limit, or lost
    /// its consumers.
    fn signal_room(&self, state: &mut QueueState) {
        let drained =
            state.ready.len() <= self.flow_limit / 2 || state.consumers.iter().all(|slot| slot.sender.is_none());
        if state.throttled && drained {
            state.throttled = false;
            self.room.notify_waiters();
        }
    }

    /// Listener queues and delay tiers hold work still to do; dead letters do not.
    fn counts_as_pending(&self) -> bool {
        self.spec.role != QueueRole::DeadLetter
    }

    fn pending_added(&self, count: usize) {
        if self.counts_as_pending() && count > 0 {
            self.pending.added(count);
        }
    }

    fn pending_removed(&self, count: usize) {
        if self.counts_as_pending() && count > 0 {
            self.pending.removed(count);
        }
    }

    /// Appends a message and hands it to a consumer with room (a message for a queue deleted
    /// meanwhile is dropped, as RabbitMQ does). Returns whether the queue is now over its
    /// flow limit.
    pub(super) fn enqueue(self: &Arc<Self>, mut entry: Entry) -> bool {
        let leftovers;
        let full;
        {
            let mut state = lock(&self.state);
            if state.deleted {
                return false;
            }
            self.pending_added(1);
            entry.seq = state.next_seq;
            state.next_seq += 1;
            state.ready.push_back(entry);
            leftovers = state.dispatch();
            full = self.check_full(&mut state);
        }
        drop(leftovers);
        if let QueueRole::Delay { delay, transient } = self.spec.role {
            self.expire_later(delay, transient);
        }
        full
    }

    /// A delay tier's message-TTL: after `delay` its oldest message (all wait equally long)
    /// moves to the queue its routing key names, as RabbitMQ dead-letters an expired message
    /// through the default exchange with its own routing key. One whose queue is gone is
    /// dropped. The timer is tokio's, so tests with paused time run the delays instantly.
    fn expire_later(self: &Arc<Self>, delay: std::time::Duration, transient: bool) {
        let queue = Arc::clone(self);
        let expire = async move {
            tokio::time::sleep(delay).await;
            let Some(broker) = queue.broker.upgrade() else { return };
            // Held as pending while it moves, so the work never looks finished in between.
            queue.pending_added(1);
            if let Some(entry) = queue.take_ready(1).pop() {
                let target = Route::Queue(&entry.routing_key);
                match broker.publish(target, (*entry.message).clone()) {
                    Ok(_) => {}
                    // A per-process queue gone with its process: RabbitMQ drops it too.
                    Err(error) if transient => {
                        tracing::debug!(%error, tier = %queue.spec.name, "an expired retry's queue is gone; dropped");
                    }
                    Err(error) => {
                        tracing::error!(%error, tier = %queue.spec.name, "an expired retry could not return to its queue; dropped");
                    }
                }
            }
            queue.pending_removed(1);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(expire)),
            Err(_) => tracing::error!(queue = %self.spec.name, "a retry was queued outside a tokio runtime; it waits"),
        }
    }

    /// Adds a consumer and returns its subscription.
    pub(super) fn subscribe(
        self: &Arc<Self>,
        connection: u64,
        prefetch: u16,
    ) -> Result<MemorySubscription, TransportError> {
        let id = NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        let channel = Arc::new(ConsumerChannel { queue: Arc::clone(self), consumer: id });
        let leftovers;
        {
            let mut state = lock(&self.state);
            if state.deleted {
                return Err(TransportError::NotFound { object: format!("queue `{}`", self.spec.name) });
            }
            state.consumers.push(ConsumerSlot {
                id,
                connection,
                prefetch: usize::from(prefetch.max(1)),
                unacked: VecDeque::new(),
                sender: Some(sender),
                channel: Arc::downgrade(&channel),
            });
            leftovers = state.dispatch();
        }
        drop(leftovers);
        Ok(MemorySubscription { receiver, channel })
    }

    fn cancel(&self, consumer: u64) {
        let mut state = lock(&self.state);
        if let Some(slot) = state.consumers.iter_mut().find(|slot| slot.id == consumer) {
            slot.sender = None;
        }
        self.signal_room(&mut state);
    }

    fn settle(&self, consumer: u64, tag: u64, requeue: bool) -> Result<(), TransportError> {
        let leftovers;
        {
            let mut state = lock(&self.state);
            let slot = state.consumers.iter_mut().find(|slot| slot.id == consumer).ok_or(TransportError::Closed)?;
            let position = slot.unacked.iter().position(|(delivered, _)| *delivered == tag);
            let Some((_, mut entry)) = position.and_then(|position| slot.unacked.remove(position)) else {
                return Err(TransportError::Other {
                    context: format!("settling delivery {tag} on queue `{}`", self.spec.name),
                    source: "unknown delivery tag (already settled?)".into(),
                });
            };
            if requeue {
                entry.redelivered = true;
                state.return_to_ready(entry);
            } else {
                self.pending_removed(1);
            }
            leftovers = state.dispatch();
            self.signal_room(&mut state);
        }
        drop(leftovers);
        Ok(())
    }

    /// The consumer's channel is gone: its unsettled deliveries go back to their places in
    /// the queue; an exclusive queue without consumers is deleted.
    fn remove_consumer(&self, consumer: u64) {
        self.remove_consumers(|slot| slot.id == consumer);
    }

    /// The connection closed: its consumers go, as in [`remove_consumer`](Self::remove_consumer);
    /// later settlements from them fail with [`TransportError::Closed`].
    pub(super) fn remove_connection(&self, connection: u64) {
        self.remove_consumers(|slot| slot.connection == connection);
    }

    fn remove_consumers(&self, select: impl Fn(&ConsumerSlot) -> bool) {
        let leftovers;
        let now_unused;
        {
            let mut state = lock(&self.state);
            let before = state.consumers.len();
            let (removed, kept): (Vec<ConsumerSlot>, Vec<ConsumerSlot>) =
                std::mem::take(&mut state.consumers).into_iter().partition(|slot| select(slot));
            state.consumers = kept;
            if removed.is_empty() {
                return;
            }
            for slot in removed {
                for (_, mut entry) in slot.unacked {
                    entry.redelivered = true;
                    state.return_to_ready(entry);
                }
            }
            state.cursor = 0;
            now_unused = before > 0 && state.consumers.is_empty();
            leftovers = state.dispatch();
            self.signal_room(&mut state);
        }
        drop(leftovers);
        if now_unused && self.owner.is_some() {
            if let Some(broker) = self.broker.upgrade() {
                broker.delete_queue(&self.spec.name);
            }
        }
    }

    /// Marks the queue deleted and forgets its messages.
    pub(super) fn mark_deleted(&self) {
        let dropped;
        {
            let mut state = lock(&self.state);
            state.deleted = true;
            let mut count = state.ready.len();
            state.ready.clear();
            for slot in &mut state.consumers {
                count += slot.unacked.len();
                slot.unacked.clear();
                slot.sender = None;
            }
            dropped = count;
            self.signal_room(&mut state);
        }
        self.pending_removed(dropped);
    }

    /// Removes up to `limit` ready messages from the front (for purging and requeueing).
    pub(super) fn take_ready(&self, limit: usize) -> Vec<Entry> {
        let mut state = lock(&self.state);
        let count = limit.min(state.ready.len());
        let taken: Vec<Entry> = state.ready.drain(..count).collect();
        self.signal_room(&mut state);
        drop(state);
        self.pending_removed(taken.len());
        taken
    }

    /// Every message, ready ones first, then the ones delivered and not yet settled.
    pub(super) fn snapshot(&self) -> Vec<Snapshot> {
        let state = lock(&self.state);
        let ready = state.ready.iter().map(|entry| Snapshot { entry: entry.clone(), in_flight: false });
        let unacked = state
            .consumers
            .iter()
            .flat_map(|slot| slot.unacked.iter().map(|(_, entry)| entry))
            .map(|entry| Snapshot { entry: entry.clone(), in_flight: true });
        ready.chain(unacked).collect()
    }

    /// (ready, unacked, consumers)
    pub(super) fn counts(&self) -> (usize, usize, usize) {
        let state = lock(&self.state);
        let unacked = state.consumers.iter().map(|slot| slot.unacked.len()).sum();
        let consumers = state.consumers.iter().filter(|slot| slot.sender.is_some()).count();
        (state.ready.len(), unacked, consumers)
    }
}

impl QueueState {
    /// Puts a delivered message back at its original position.
    fn return_to_ready(&mut self, entry: Entry) {
        let position = self.ready.partition_point(|waiting| waiting.seq < entry.seq);
        self.ready.insert(position, entry);
    }

    /// Hands ready messages to consumers with room, round-robin.
    fn dispatch(&mut self) -> Leftovers {
        let mut leftovers = Vec::new();
        while !self.ready.is_empty() {
            let count = self.consumers.len();
            let Some(index) = (0..count).map(|offset| (self.cursor + offset) % count).find(|&index| {
                let slot = &self.consumers[index];
                slot.sender.is_some() && slot.unacked.len() < slot.prefetch
            }) else {
                break;
            };
            self.cursor = (index + 1) % count;
            let tag = self.next_tag;
            self.next_tag += 1;
            let slot = &mut self.consumers[index];
            let (Some(sender), Some(channel)) = (&slot.sender, slot.channel.upgrade()) else {
                slot.sender = None;
                continue;
            };
            let Some(entry) = self.ready.pop_front() else { break };
            let delivery = Delivery {
                message: Arc::clone(&entry.message),
                exchange: Arc::clone(&entry.exchange),
                routing_key: Arc::clone(&entry.routing_key),
                redelivered: entry.redelivered,
                acker: Acker::new(channel, tag),
            };
            match sender.send(delivery) {
                Ok(()) => {
                    slot.unacked.push_back((tag, entry));
                }
                Err(mpsc::error::SendError(delivery)) => {
                    slot.sender = None;
                    self.ready.push_front(entry);
                    leftovers.push(delivery);
                }
            }
        }
        leftovers
    }
}

/// One consumer's channel: settles its deliveries; when the last handle to it is gone
/// (subscription and every acker), its unsettled deliveries are requeued.
struct ConsumerChannel {
    queue: Arc<Queue>,
    consumer: u64,
}

impl Settle for ConsumerChannel {
    fn ack(&self, tag: u64) -> BoxFuture<'_, Result<(), TransportError>> {
        ready(self.queue.settle(self.consumer, tag, false))
    }

    fn requeue(&self, tag: u64) -> BoxFuture<'_, Result<(), TransportError>> {
        ready(self.queue.settle(self.consumer, tag, true))
    }
}

impl Drop for ConsumerChannel {
    fn drop(&mut self) {
        self.queue.remove_consumer(self.consumer);
    }
}

/// The stream of deliveries of one in-memory consumer.
pub(super) struct MemorySubscription {
    receiver: mpsc::UnboundedReceiver<Delivery>,
    channel: Arc<ConsumerChannel>,
}

impl Stream for MemorySubscription {
    type Item = Result<Delivery, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|delivery| delivery.map(Ok))
    }
}

impl Subscription for MemorySubscription {
    fn cancel(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.channel.queue.cancel(self.channel.consumer);
        ready(Ok(()))
    }
}

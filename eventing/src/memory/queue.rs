//! One in-memory queue with RabbitMQ's consumer semantics: round-robin across consumers,
//! a prefetch bound per consumer, unsettled deliveries requeued when their channel goes.
//!
//! Deliveries reach a consumer through an inbox in the queue's own state rather than a
//! channel: the queue already holds its lock when it assigns a message, and the consumer
//! takes everything assigned to it in one lock (a batch), so a delivery costs no atomic
//! operation of its own and no wake-up while the consumer is busy.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context as TaskContext, Poll, Waker};

use futures_util::Stream;
use tokio::sync::Notify;

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
    /// Delivered messages (also in `unacked`) that the subscription has not taken yet.
    inbox: VecDeque<(u64, Entry)>,
    /// The subscription's waker while it waits for deliveries.
    waker: Option<Waker>,
    /// False once cancelled or dropped: no more deliveries, but unacked ones can still be
    /// settled.
    active: bool,
}

impl ConsumerSlot {
    fn wake(&mut self, wakeups: &mut Wakeups) {
        if let Some(waker) = self.waker.take() {
            wakeups.0.push(waker);
        }
    }
}

/// A snapshot of one message for inspection.
pub(super) struct Snapshot {
    pub(super) entry: Entry,
    pub(super) in_flight: bool,
}

/// Subscriptions to wake once the queue's lock is released (a woken task may run at once
/// on another worker and would only wait for the lock).
#[derive(Default)]
#[must_use]
struct Wakeups(Vec<Waker>);

impl Wakeups {
    fn wake(self) {
        self.0.into_iter().for_each(Waker::wake);
    }
}

/// What a subscription found in its consumer's inbox.
enum Inbox {
    /// Deliveries, moved into the subscription's batch.
    Taken,
    /// Nothing yet; the subscription is woken when something comes.
    Empty,
    /// Nothing, and nothing more will come: cancelled, removed or deleted.
    Closed,
}

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
        let full = state.ready.len() >= self.flow_limit && state.consumers.iter().any(|slot| slot.active);
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
        let drained = state.ready.len() <= self.flow_limit / 2 || state.consumers.iter().all(|slot| !slot.active);
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
        let wakeups;
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
            wakeups = state.dispatch();
            full = self.check_full(&mut state);
        }
        wakeups.wake();
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
        let channel = Arc::new(ConsumerChannel { queue: Arc::clone(self), consumer: id });
        let wakeups;
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
                inbox: VecDeque::new(),
                waker: None,
                active: true,
            });
            wakeups = state.dispatch();
        }
        wakeups.wake();
        Ok(MemorySubscription { channel, batch: VecDeque::new() })
    }

    /// Stops deliveries to `consumer`; its subscription still takes what its inbox holds,
    /// then ends.
    fn cancel(&self, consumer: u64) {
        let mut wakeups = Wakeups::default();
        {
            let mut state = lock(&self.state);
            if let Some(slot) = state.slot(consumer) {
                slot.active = false;
                slot.wake(&mut wakeups);
            }
            self.signal_room(&mut state);
        }
        wakeups.wake();
    }

    /// Moves everything `consumer`'s inbox holds into `batch` (empty), or registers `waker`
    /// to be woken when something comes.
    fn take_inbox(&self, consumer: u64, batch: &mut VecDeque<(u64, Entry)>, waker: &Waker) -> Inbox {
        let mut state = lock(&self.state);
        let Some(slot) = state.slot(consumer) else {
            return Inbox::Closed;
        };
        if !slot.inbox.is_empty() {
            std::mem::swap(batch, &mut slot.inbox);
            return Inbox::Taken;
        }
        if !slot.active {
            return Inbox::Closed;
        }
        if slot.waker.as_ref().is_some_and(|registered| registered.will_wake(waker)) {
            return Inbox::Empty;
        }
        let replaced = slot.waker.replace(waker.clone());
        drop(state);
        // Dropped without the lock: with some executors a waker owns its task.
        drop(replaced);
        Inbox::Empty
    }

    /// The subscription is gone: no more deliveries to `consumer`, and what it had not
    /// handed out yet (`untaken`, and its inbox) goes back to the queue at once.
    fn detach(&self, consumer: u64, untaken: VecDeque<(u64, Entry)>) {
        let wakeups;
        let waker;
        {
            let mut state = lock(&self.state);
            let Some(slot) = state.slot(consumer) else { return };
            slot.active = false;
            waker = slot.waker.take();
            let inbox = std::mem::take(&mut slot.inbox);
            let returning: foldhash::HashSet<u64> = untaken.iter().chain(&inbox).map(|(tag, _)| *tag).collect();
            let (returned, kept): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut slot.unacked).into_iter().partition(|(tag, _)| returning.contains(tag));
            slot.unacked = kept;
            for (_, mut entry) in returned {
                entry.redelivered = true;
                state.return_to_ready(entry);
            }
            wakeups = state.dispatch();
            self.signal_room(&mut state);
        }
        drop(waker);
        wakeups.wake();
    }

    fn settle(&self, consumer: u64, tag: u64, requeue: bool) -> Result<(), TransportError> {
        let wakeups;
        {
            let mut state = lock(&self.state);
            let slot = state.slot(consumer).ok_or(TransportError::Closed)?;
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
            wakeups = state.dispatch();
            self.signal_room(&mut state);
        }
        wakeups.wake();
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
        let mut wakeups = Wakeups::default();
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
            for mut slot in removed {
                slot.wake(&mut wakeups);
                for (_, mut entry) in slot.unacked {
                    entry.redelivered = true;
                    state.return_to_ready(entry);
                }
            }
            state.cursor = 0;
            now_unused = before > 0 && state.consumers.is_empty();
            wakeups.0.extend(state.dispatch().0);
            self.signal_room(&mut state);
        }
        wakeups.wake();
        if now_unused && self.owner.is_some() {
            if let Some(broker) = self.broker.upgrade() {
                broker.delete_queue(&self.spec.name);
            }
        }
    }

    /// Marks the queue deleted and forgets its messages.
    pub(super) fn mark_deleted(&self) {
        let dropped;
        let mut wakeups = Wakeups::default();
        {
            let mut state = lock(&self.state);
            state.deleted = true;
            let mut count = state.ready.len();
            state.ready.clear();
            for slot in &mut state.consumers {
                count += slot.unacked.len();
                slot.unacked.clear();
                slot.inbox.clear();
                slot.active = false;
                slot.wake(&mut wakeups);
            }
            dropped = count;
            self.signal_room(&mut state);
        }
        wakeups.wake();
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
        let consumers = state.consumers.iter().filter(|slot| slot.active).count();
        (state.ready.len(), unacked, consumers)
    }
}

impl QueueState {
    /// The consumer `consumer`, unless it was removed.
    fn slot(&mut self, consumer: u64) -> Option<&mut ConsumerSlot> {
        self.consumers.iter_mut().find(|slot| slot.id == consumer)
    }

    /// Puts a delivered message back at its original position.
    fn return_to_ready(&mut self, entry: Entry) {
        let position = self.ready.partition_point(|waiting| waiting.seq < entry.seq);
        self.ready.insert(position, entry);
    }

    /// Hands ready messages to consumers with room, round-robin, into their inboxes.
    fn dispatch(&mut self) -> Wakeups {
        let mut wakeups = Wakeups::default();
        while !self.ready.is_empty() {
            let count = self.consumers.len();
            let Some(index) = (0..count).map(|offset| (self.cursor + offset) % count).find(|&index| {
                let slot = &self.consumers[index];
                slot.active && slot.unacked.len() < slot.prefetch
            }) else {
                break;
            };
            self.cursor = (index + 1) % count;
            let tag = self.next_tag;
            self.next_tag += 1;
            let Some(entry) = self.ready.pop_front() else { break };
            let slot = &mut self.consumers[index];
            slot.unacked.push_back((tag, entry.clone()));
            slot.inbox.push_back((tag, entry));
            slot.wake(&mut wakeups);
        }
        wakeups
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
    channel: Arc<ConsumerChannel>,
    /// Deliveries taken from the consumer's inbox in one lock, handed out without it.
    batch: VecDeque<(u64, Entry)>,
}

impl Stream for MemorySubscription {
    type Item = Result<Delivery, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Each delivery spends a unit of tokio's cooperative budget, as a channel's would:
        // a consumer whose own handlers keep its queue full still lets its worker's other
        // tasks (timers, the test waiting for it) run.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        if this.batch.is_empty() {
            match this.channel.queue.take_inbox(this.channel.consumer, &mut this.batch, cx.waker()) {
                Inbox::Taken => {}
                Inbox::Empty => return Poll::Pending,
                Inbox::Closed => return Poll::Ready(None),
            }
        }
        let Some((tag, entry)) = this.batch.pop_front() else { return Poll::Ready(None) };
        coop.made_progress();
        let channel: Arc<dyn Settle> = this.channel.clone();
        Poll::Ready(Some(Ok(Delivery {
            message: entry.message,
            exchange: entry.exchange,
            routing_key: entry.routing_key,
            redelivered: entry.redelivered,
            acker: Acker::new(channel, tag),
        })))
    }
}

impl Subscription for MemorySubscription {
    fn cancel(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.channel.queue.cancel(self.channel.consumer);
        ready(Ok(()))
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.channel.queue.detach(self.channel.consumer, std::mem::take(&mut self.batch));
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use futures_util::StreamExt;

    use crate::memory::MemoryBroker;
    use crate::message::Message;
    use crate::transport::{Origin, QueueLifetime, QueueRole, QueueSpec, Route, Topology, Transport};

    fn message(body: &str) -> Message {
        Message {
            body: body.as_bytes().to_vec(),
            message_id: crate::message::new_message_id(),
            correlation_id: None,
            causation_id: None,
            event_type: Cow::Borrowed("tick"),
            content_type: None,
            timestamp: SystemTime::now(),
            app_id: None,
            persistent: false,
            attempt: 1,
            headers: Default::default(),
            reply_to: None,
            expiration: None,
        }
    }

    fn queue(name: &str) -> Topology {
        let spec = QueueSpec { name: name.into(), lifetime: QueueLifetime::Durable, role: QueueRole::Listener };
        Topology { queues: vec![spec], ..Topology::default() }
    }

    #[tokio::test]
    async fn a_dropped_subscription_returns_what_it_had_not_handed_out_at_once() {
        let broker = MemoryBroker::new();
        let transport = broker.transport();
        let topology = queue("work");
        transport.declare(&topology).await.unwrap();
        for body in ["1", "2", "3"] {
            transport.publish(Route::Queue("work"), message(body), Origin::Outside).await.unwrap();
        }
        let mut subscription = transport.consume(&topology.queues[0], 10).await.unwrap();
        let first = subscription.next().await.unwrap().unwrap();
        assert_eq!(first.message.body, b"1");
        drop(subscription);
        // The delivery handed out is still the consumer's to settle; the two it never
        // handed out are ready for another consumer now, not once that one is settled.
        let info = broker.queues().into_iter().find(|info| info.spec.name == "work").unwrap();
        assert_eq!((info.ready, info.in_flight), (2, 1));
        let mut other = transport.consume(&topology.queues[0], 10).await.unwrap();
        let second = other.next().await.unwrap().unwrap();
        assert_eq!((second.message.body.as_slice(), second.redelivered), (&b"2"[..], true));
        first.acker.ack().await.unwrap();
    }

    /// A consumer whose own work keeps its queue full never waits for a delivery; it still
    /// yields its worker now and then (tokio's cooperative budget), so the other tasks of
    /// a single-threaded runtime run.
    #[test]
    fn a_consumer_that_never_runs_dry_lets_other_tasks_run() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            runtime.block_on(async {
                let transport = MemoryBroker::new().transport();
                let topology = queue("loop");
                transport.declare(&topology).await.unwrap();
                transport.publish(Route::Queue("loop"), message("0"), Origin::Outside).await.unwrap();
                let mut subscription = transport.consume(&topology.queues[0], 1).await.unwrap();
                let consumer = tokio::spawn(async move {
                    while let Some(Ok(delivery)) = subscription.next().await {
                        let again = (*delivery.message).clone();
                        transport.publish(Route::Queue("loop"), again, Origin::Handler).await.unwrap();
                        delivery.acker.ack().await.unwrap();
                    }
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
                consumer.abort();
            });
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the consumer kept its worker: the test's own task never ran again"
        );
    }
}

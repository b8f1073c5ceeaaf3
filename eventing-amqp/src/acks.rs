//! Acknowledgements batched with `multiple`, as a careful hand-written consumer does.
//!
//! A handler's `ack` only marks its delivery done; a flusher task per subscription then
//! acknowledges the longest run of done deliveries from the oldest one with a single
//! `basic.ack(multiple)`, through lapin's acker of the last delivery of the run. It flushes
//! when a quarter of the prefetch has finished unacknowledged (a hand-written consumer acks
//! every 250 of 1 000), or as soon as anything finished while the consumer has no delivery
//! waiting: under load one frame covers many deliveries, and when the queue runs dry every
//! ack goes out at once. Flushing on every finished handler sent one ack frame per ~17
//! deliveries at prefetch 1 000 (BENCHMARKS.md, 2026-12-05 afternoon). AMQP acks have no
//! reply, so nothing waits on them.
//!
//! After a recovery, deliveries of the old channel are forgotten (the broker has requeued
//! them) and their late acks are ignored: each delivery carries the generation it came in,
//! and lapin's ackers of a closed channel refuse to send.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use eventing::message::Message;
use eventing::transport::{BoxFuture, Settle, TransportError, ready};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::Notify;

use crate::util::{lock, other};

/// The acknowledgement state of one subscription.
#[derive(Default)]
pub(crate) struct AckBatcher {
    state: Mutex<State>,
    /// How many finished deliveries make a flush while more deliveries are waiting.
    batch: usize,
    flush_needed: Notify,
    /// Signalled when `batch` deliveries finished: ends an idle flush's linger early.
    batch_full: Notify,
    /// One flush at a time, so a flush that finds nothing left to take still waits for the
    /// one that is writing the last acks (before the connection closes).
    flushing: tokio::sync::Mutex<()>,
    /// Held for a whole [`close`](Self::close): the runtime's drop of a subscription and the
    /// transport's shutdown both close, and the second must not return (letting the
    /// connection close) while the first still waits for the channel's close-ok.
    closing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Bumped for every channel the consumer starts on: deliveries of older channels are
    /// not acknowledged through this batcher.
    generation: u64,
    /// The connection generation of the current channel: a start on an older connection
    /// (slow, racing a reconnect) must not take over.
    session_generation: u64,
    /// Deliveries not yet acknowledged, by tag: `Some` once their handler finished.
    outstanding: BTreeMap<u64, Option<lapin::Acker>>,
    /// How many of `outstanding` are finished.
    finished: usize,
    /// The consumer found no delivery waiting the last time it looked.
    idle: bool,
    /// The channel the deliveries came on, kept open until their acks are sent: lapin closes
    /// a channel when its last handle is dropped.
    channel: Option<lapin::Channel>,
    closed: bool,
}

impl AckBatcher {
    /// A batcher for a consumer with `prefetch` unacknowledged deliveries at most.
    pub(crate) fn new(prefetch: u16) -> Self {
        Self { batch: usize::from(prefetch / 4).max(1), ..Self::default() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Registers a delivery of the channel of `generation` as it arrives. A delivery of an
    /// older channel is not registered: its ack will be ignored and the broker has requeued
    /// it anyway.
    pub(crate) fn delivered(&self, tag: u64, generation: u64) {
        let mut state = self.state();
        state.idle = false;
        if state.generation == generation {
            state.outstanding.insert(tag, None);
        }
    }

    /// The consumer has no delivery waiting: what finished is acknowledged now, and what
    /// finishes until the next delivery at once.
    pub(crate) fn idle(&self) {
        let mut state = self.state();
        if state.idle {
            return;
        }
        state.idle = true;
        let flush = state.finished > 0;
        drop(state);
        if flush {
            self.flush_needed.notify_one();
        }
    }

    /// Deliveries now come on `channel` of connection `session_generation`: forget what an
    /// earlier channel delivered (the broker has requeued it). Returns the channel's
    /// generation, or `None` when a newer connection already took over.
    pub(crate) fn consuming_on(&self, channel: lapin::Channel, session_generation: u64) -> Option<u64> {
        let mut state = self.state();
        if session_generation < state.session_generation {
            return None;
        }
        state.session_generation = session_generation;
        state.generation += 1;
        state.outstanding.clear();
        state.finished = 0;
        state.channel = Some(channel);
        Some(state.generation)
    }

    /// What can be acknowledged now: the acker of the last delivery of the run of finished
    /// deliveries at the front (one `multiple` ack for the run), and the finished deliveries
    /// behind a delivery still being handled (acked one by one, so a slow handler does not
    /// hold the others' prefetch slots).
    fn next_batch(&self) -> (Option<lapin::Acker>, Vec<lapin::Acker>) {
        let mut state = self.state();
        let mut front = None;
        while let Some(entry) = state.outstanding.first_entry() {
            if entry.get().is_none() {
                break;
            }
            front = entry.remove();
        }
        let behind: Vec<u64> =
            state.outstanding.iter().filter(|(_, acker)| acker.is_some()).map(|(tag, _)| *tag).collect();
        let singles: Vec<lapin::Acker> =
            behind.into_iter().filter_map(|tag| state.outstanding.remove(&tag).flatten()).collect();
        // Every finished delivery is in `front`'s run or in `singles` now.
        state.finished = 0;
        (front, singles)
    }

    /// Sends every ack that can be sent now.
    pub(crate) async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        loop {
            let (front, singles) = self.next_batch();
            if front.is_none() && singles.is_empty() {
                return;
            }
            if let Some(acker) = front {
                report(bounded(acker.ack(BasicAckOptions { multiple: true })).await);
            }
            for acker in singles {
                report(bounded(acker.ack(BasicAckOptions { multiple: false })).await);
            }
        }
    }

    /// Flushes whenever enough handlers finished, or the consumer ran dry, until
    /// [`close`](Self::close). A flush because the consumer ran dry lingers for
    /// [`ACK_LINGER`] first, unless a batch fills meanwhile: under load the next deliveries
    /// come within microseconds and join the same ack.
    ///
    /// The flusher only flushes when told to: had it flushed when it first ran, a flusher
    /// task scheduled late (a busy machine) would acknowledge handlers that finished before
    /// it ran, a partial batch while deliveries were waiting. A notification while it is
    /// flushing is not lost: `notify_one` leaves a permit for the next wait.
    pub(crate) async fn run_flusher(self: Arc<Self>) {
        loop {
            self.flush_needed.notified().await;
            let full = self.batch_full.notified();
            tokio::pin!(full);
            full.as_mut().enable();
            if self.state().finished < self.batch {
                let _ = tokio::time::timeout(ACK_LINGER, full).await;
            }
            self.flush().await;
            if self.state().closed {
                return;
            }
        }
    }

    /// Stops the flusher after a last flush.
    ///
    /// Then closes the consumer's channel and waits for the broker's close-ok: a channel
    /// merely dropped is closed by lapin in the background, and when the connection closes
    /// at the same moment lapin logs a connection error ("invalid channel state: Closing")
    /// on every graceful shutdown. A second call waits until the first has finished.
    pub(crate) async fn close(&self) {
        let _one_close = self.closing.lock().await;
        self.flush().await;
        let channel = {
            let mut state = self.state();
            state.closed = true;
            state.channel.take()
        };
        self.flush_needed.notify_one();
        if let Some(channel) = channel.filter(|channel| channel.status().connected()) {
            // Acks go out before the close on the same channel, so the broker has them all.
            let closing = channel.close(200, "eventing: consumer done".into());
            if let Ok(Err(error)) = tokio::time::timeout(SETTLE_TIMEOUT, closing).await {
                tracing::debug!(%error, "closing a consumer's channel failed; the connection close ends it");
            }
        }
    }

    /// The channel the deliveries of `generation` came on, while it is open and current.
    fn channel_of(&self, generation: u64) -> Option<lapin::Channel> {
        let state = self.state();
        let channel = state.channel.as_ref().filter(|_| state.generation == generation && !state.closed)?;
        channel.status().connected().then(|| channel.clone())
    }

    fn finished(&self, generation: u64, tag: u64, acker: lapin::Acker) {
        let flush = {
            let mut state = self.state();
            if state.generation != generation {
                return;
            }
            let Some(slot) = state.outstanding.get_mut(&tag) else { return };
            *slot = Some(acker);
            state.finished += 1;
            let full = state.finished >= self.batch;
            if full {
                self.batch_full.notify_one();
            }
            state.idle || full
        };
        if flush {
            self.flush_needed.notify_one();
        }
    }

    fn forget(&self, generation: u64, tag: u64) {
        let mut state = self.state();
        if state.generation == generation && state.outstanding.remove(&tag).flatten().is_some() {
            state.finished -= 1;
        }
        drop(state);
        // Removing a delivery can complete the run in front of it.
        self.flush_needed.notify_one();
    }
}

/// How long a flush waits for more deliveries to finish once the consumer ran dry: an ack
/// holds a delivery's prefetch slot at most this much longer.
const ACK_LINGER: Duration = Duration::from_millis(2);

/// How long one ack or nack may take. On a connection that died without lapin noticing, an
/// ack's promise can stay pending for ever; waiting on it would stop every later ack.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// `settle`, or `Ok(false)` (not sent: the broker redelivers) when it takes too long.
async fn bounded(settle: impl Future<Output = lapin::Result<bool>>) -> lapin::Result<bool> {
    tokio::time::timeout(SETTLE_TIMEOUT, settle).await.unwrap_or(Ok(false))
}

fn report(result: lapin::Result<bool>) {
    match result {
        Ok(true) => {}
        Ok(false) => tracing::debug!("the channel closed before the ack; the broker redelivers"),
        Err(error) => tracing::warn!(%error, "acknowledging failed; the broker redelivers"),
    }
}

/// Settles one delivery: acks go through the batcher, requeues go out at once.
pub(crate) struct BatchedAcker {
    batcher: Arc<AckBatcher>,
    generation: u64,
    acker: Mutex<Option<lapin::Acker>>,
}

impl BatchedAcker {
    pub(crate) fn new(batcher: Arc<AckBatcher>, generation: u64, acker: lapin::Acker) -> Self {
        Self { batcher, generation, acker: Mutex::new(Some(acker)) }
    }

    fn take(&self) -> Option<lapin::Acker> {
        lock(&self.acker).take()
    }
}

impl Settle for BatchedAcker {
    fn ack(&self, tag: u64) -> BoxFuture<'_, Result<(), TransportError>> {
        match self.take() {
            Some(acker) if acker.usable() => {
                self.batcher.finished(self.generation, tag, acker);
                ready(Ok(()))
            }
            _ => ready(Err(TransportError::Closed)),
        }
    }

    fn requeue(&self, tag: u64) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let Some(acker) = self.take() else { return Err(TransportError::Closed) };
            let result = bounded(acker.nack(BasicNackOptions { requeue: true, multiple: false })).await;
            self.batcher.forget(self.generation, tag);
            match result {
                Ok(true) => Ok(()),
                Ok(false) => Err(TransportError::Closed),
                Err(error) => Err(other("returning a delivery", error)),
            }
        })
    }

    /// On the consuming channel, as a hand-written server replies: the reply leaves through
    /// the socket the request came in on, with no other connection's task in between. Under a
    /// memory alarm the broker blocks this connection once it publishes (its acks wait with
    /// it); a reply could not go out on any connection then, and nothing is lost. A channel
    /// that is gone (a reconnect since the delivery) leaves the reply to the transport.
    fn reply<'a>(&'a self, reply_to: &'a str, reply: &'a Message) -> Option<BoxFuture<'a, Result<(), TransportError>>> {
        let channel = self.batcher.channel_of(self.generation)?;
        Some(Box::pin(async move {
            tokio::time::timeout(SETTLE_TIMEOUT, crate::reply::send(&channel, reply_to, reply)).await.unwrap_or_else(
                |_| {
                    Err(TransportError::Other {
                        context: format!("publishing a reply to `{reply_to}`"),
                        source: "not written within 5 s (is the connection blocked by a resource alarm?)".into(),
                    })
                },
            )
        }))
    }
}

#[cfg(test)]
#[allow(
    clippy::print_stderr,
    reason = "a skipped RabbitMQ test says so on the test's output, as the tests package does"
)]
mod tests {
    use super::*;

    /// The test broker, or `None` (loudly) on a laptop without one; in CI (`CI` set) a
    /// missing broker fails the test.
    #[allow(clippy::print_stderr)] // the loud skip message, as every broker test prints it
    async fn connection() -> Option<lapin::Connection> {
        let url =
            std::env::var("EVENTING_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        match crate::connect::open(&url, "eventing-amqp acks test", &crate::AmqpOptions::default()).await {
            Ok(connection) => Some(connection),
            Err(error) if std::env::var_os("CI").is_some() => panic!("CI must run the RabbitMQ tests: {error}"),
            Err(error) => {
                eprintln!("\n!!! SKIPPED: RabbitMQ is not reachable ({error}) !!!\n");
                None
            }
        }
    }

    /// How many messages are ready in `queue` (not delivered, or returned unacknowledged).
    async fn ready_in(channel: &lapin::Channel, queue: &str) -> u32 {
        use lapin::options::QueueDeclareOptions;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("the queue exists")
            .message_count()
    }

    /// Acks are batched as a hand-written consumer batches them (issue 14): while deliveries
    /// are waiting nothing is acknowledged before a quarter of the prefetch finished; then
    /// one flush acknowledges them all; once the consumer ran dry, what finishes is
    /// acknowledged within the linger. Before, every finished handler woke the flusher: one
    /// ack frame per ~17 deliveries at prefetch 1 000. What the broker got is read back by
    /// closing the consuming channel: the unacknowledged deliveries return to the queue.
    #[tokio::test]
    async fn acks_wait_for_a_batch_while_deliveries_are_waiting() {
        use futures_util::StreamExt;
        use lapin::options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;

        let Some(connection) = connection().await else { return };
        let admin = connection.create_channel().await.expect("a channel");
        let queue = admin
            .queue_declare(
                "".into(),
                // Exclusive: gone with the connection; not auto-delete, so it outlives its consumer.
                QueueDeclareOptions { exclusive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("a queue")
            .name()
            .to_string();
        for _ in 0..10 {
            admin
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    b"{}",
                    Default::default(),
                )
                .await
                .expect("publishing");
        }
        let consuming = connection.create_channel().await.expect("a channel");
        consuming.basic_qos(16, BasicQosOptions::default()).await.expect("prefetch");
        let mut consumer = consuming
            .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .expect("consuming");
        let batcher = Arc::new(AckBatcher::new(16));
        let generation = batcher.consuming_on(consuming.clone(), 1).expect("the current channel");
        tokio::spawn(Arc::clone(&batcher).run_flusher());
        let mut ackers = Vec::new();
        for _ in 0..10 {
            let delivery = consumer.next().await.expect("a delivery").expect("readable");
            batcher.delivered(delivery.delivery_tag, generation);
            ackers.push((delivery.delivery_tag, BatchedAcker::new(Arc::clone(&batcher), generation, delivery.acker)));
        }
        let settled = |batcher: &AckBatcher| 10 - batcher.state().outstanding.len();

        for (tag, acker) in &ackers[..3] {
            acker.ack(*tag).await.expect("marked done");
        }
        tokio::time::sleep(ACK_LINGER * 10).await;
        assert_eq!(settled(&batcher), 0, "3 of a batch of 4 were acknowledged while deliveries were waiting");

        let (tag, acker) = &ackers[3];
        acker.ack(*tag).await.expect("marked done");
        tokio::time::sleep(ACK_LINGER * 10).await;
        assert_eq!(settled(&batcher), 4, "a full batch was not acknowledged");

        batcher.idle();
        let (tag, acker) = &ackers[4];
        acker.ack(*tag).await.expect("marked done");
        tokio::time::sleep(ACK_LINGER * 10).await;
        assert_eq!(settled(&batcher), 5, "a delivery finished after the consumer ran dry was not acknowledged");

        // What the broker got: closing the consuming channel returns the five unacknowledged.
        consuming.close(200, "test done".into()).await.expect("closing the channel");
        assert_eq!(ready_in(&admin, &queue).await, 5);
        connection.close(200, "test done".into()).await.expect("closing the connection");
    }

    /// The runtime's drop of a subscription and the transport's shutdown both close the
    /// batcher. The second close returned at once while the first still waited for the
    /// channel's close-ok, so the connection closed under it and lapin logged
    /// `Connection error error=invalid channel: N` (issue 12).
    #[tokio::test(flavor = "current_thread")]
    async fn a_second_close_returns_only_once_the_channel_is_closed() {
        let Some(connection) = connection().await else { return };
        let channel = connection.create_channel().await.expect("a channel");
        let batcher = Arc::new(AckBatcher::new(1));
        assert!(batcher.consuming_on(channel.clone(), 1).is_some());

        let first = tokio::spawn({
            let batcher = Arc::clone(&batcher);
            async move { batcher.close().await }
        });
        // On this one thread the first close runs until it waits for the close-ok.
        tokio::task::yield_now().await;
        assert!(channel.status().closing(), "the first close has sent channel.close");

        batcher.close().await;
        let status = channel.status();
        let closed = !status.connected() && !status.closing();
        first.await.expect("the first close");
        connection.close(200, "test done".into()).await.expect("closing the connection");
        assert!(closed, "the second close returned while the channel was still closing");
    }

    /// A request handler's reply goes out on the channel its request came on, as a
    /// hand-written server replies (issue 10: the reply through another connection cost a
    /// socket and a task more per round trip); once that channel is gone the reply is left
    /// to the transport.
    #[tokio::test]
    async fn a_reply_goes_out_on_the_channel_the_request_came_on() {
        use futures_util::StreamExt;
        use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;

        let Some(connection) = connection().await else { return };
        let server = connection.create_channel().await.expect("a channel");
        let queue = server
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("a server queue");
        let mut requests = server
            .basic_consume(queue.name().clone(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .expect("consuming the requests");
        let batcher = Arc::new(AckBatcher::new(1));
        let generation = batcher.consuming_on(server.clone(), 1).expect("the current channel");

        let client = connection.create_channel().await.expect("a channel");
        let mut replies = client
            .basic_consume(
                crate::reply::DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("consuming direct reply-to");
        let properties = lapin::BasicProperties::default()
            .with_reply_to(crate::reply::DIRECT_REPLY_TO.into())
            .with_correlation_id("call-1".into());
        client
            .basic_publish("".into(), queue.name().clone(), BasicPublishOptions::default(), b"{}", properties)
            .await
            .expect("publishing a request");

        let delivery = requests.next().await.expect("a request").expect("a readable request");
        let reply_to = delivery.properties.reply_to().as_ref().expect("a reply_to").to_string();
        batcher.delivered(delivery.delivery_tag, generation);
        let acker = BatchedAcker::new(Arc::clone(&batcher), generation, delivery.acker);
        let reply = crate::convert::message(
            b"{\"answer\":2}".to_vec(),
            &lapin::BasicProperties::default().with_correlation_id("call-1".into()),
            &reply_to,
        );
        let sending = acker.reply(&reply_to, &reply).expect("the consuming channel takes the reply");
        sending.await.expect("the reply went out");
        let answer = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .expect("the reply in time")
            .expect("a reply")
            .expect("a readable reply");
        assert_eq!(answer.data, b"{\"answer\":2}");
        assert_eq!(answer.properties.correlation_id().as_ref().map(|id| id.as_str()), Some("call-1"));

        batcher.close().await;
        assert!(acker.reply(&reply_to, &reply).is_none(), "a closed channel leaves the reply to the transport");
        connection.close(200, "test done".into()).await.expect("closing the connection");
    }
}

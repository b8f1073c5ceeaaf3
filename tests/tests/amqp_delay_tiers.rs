//! Shared delay tiers on RabbitMQ: what the broker does with them (dead-lettering with the
//! routing key a message was published with; what at-least-once dead-lettering does with a
//! retry whose queue is gone).

mod support;

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use support::broker::reachable_amqp_url;

/// Retries for a queue that is gone: more than the 32 dead letters a quorum queue's
/// at-least-once dead-letter worker holds unconfirmed (with 10 the tier still moves on).
const GONE: usize = 40;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A raw connection with a confirming channel, and what it declared, to delete at the end.
struct Raw {
    connection: Connection,
    channel: Channel,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Raw {
    async fn open(url: &str) -> Self {
        let connection = Connection::connect(url, ConnectionProperties::default()).await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        Self { connection, channel, queues: Vec::new(), exchanges: Vec::new() }
    }

    async fn queue(&mut self, name: &str, arguments: FieldTable) {
        self.channel
            .queue_declare(name.into(), QueueDeclareOptions { durable: true, ..Default::default() }, arguments)
            .await
            .unwrap_or_else(|error| panic!("declare {name}: {error}"));
        self.queues.push(name.to_owned());
    }

    /// A tier: a quorum queue whose messages expire after `ttl` into the default exchange
    /// with no dead-letter routing key of its own, behind a topic exchange of the same name
    /// that takes every routing key (`#`).
    async fn tier(&mut self, name: &str, ttl: Duration, at_least_once: bool) {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl.as_millis() as i64));
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        if at_least_once {
            arguments.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
            arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
        }
        self.queue(name, arguments).await;
        self.channel
            .exchange_declare(
                name.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        self.exchanges.push(name.to_owned());
        self.channel
            .queue_bind(name.into(), name.into(), "#".into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .expect("bind");
    }

    async fn publish(&self, exchange: &str, routing_key: &str) {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                b"{}",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(matches!(confirm, Confirmation::Ack(None)), "{exchange} {routing_key}: {confirm:?}");
    }

    async fn count(&self, queue: &str) -> u32 {
        let options = QueueDeclareOptions { passive: true, ..Default::default() };
        self.channel.queue_declare(queue.into(), options, FieldTable::default()).await.expect("count").message_count()
    }

    /// Polls until `queue` holds `expected` messages; its count at the deadline otherwise.
    async fn wait_count(&self, queue: &str, expected: u32, within: Duration) -> u32 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let count = self.count(queue).await;
            if count == expected || tokio::time::Instant::now() >= deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn delete(self) {
        for queue in &self.queues {
            self.channel.queue_delete(queue.as_str().into(), Default::default()).await.expect("delete queue");
        }
        for exchange in &self.exchanges {
            self.channel.exchange_delete(exchange.as_str().into(), Default::default()).await.expect("delete exchange");
        }
        self.connection.close(200, "done".into()).await.expect("close");
    }
}

/// The ground the tiers stand on: a message published to a tier's exchange with a listener
/// queue's name as routing key waits the tier's TTL, then RabbitMQ dead-letters it through
/// the default exchange with that same routing key (the tier sets no
/// `x-dead-letter-routing-key`), so it lands in that queue and in no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_dead_lettered_with_the_routing_key_it_was_published_with() {
    let Some(url) = reachable_amqp_url() else { return };
    let prefix = unique("tier-key");
    let mut raw = Raw::open(&url).await;
    let tier = format!("{prefix}.delay.300ms");
    let (a, b) = (format!("{prefix}.a"), format!("{prefix}.b"));
    raw.tier(&tier, Duration::from_millis(300), true).await;
    raw.queue(&a, FieldTable::default()).await;
    raw.queue(&b, FieldTable::default()).await;
    raw.publish(&tier, &a).await;
    assert_eq!(raw.count(&a).await, 0, "it waits first");
    assert_eq!(raw.wait_count(&a, 1, Duration::from_secs(5)).await, 1, "then it lands in `{a}`");
    assert_eq!(raw.count(&b).await, 0, "and only there");
    assert_eq!(raw.count(&tier).await, 0);
    raw.delete().await;
}

/// Why a retry for a queue that may vanish (a per-process queue, the expiring queue of a
/// non-durable event) must not wait in an at-least-once tier: RabbitMQ keeps an expired
/// message it cannot route, retrying it, and once 32 such messages are held the tier moves
/// nothing more, so one dead process's retries would stall every retry of the service. An
/// at-most-once tier drops them, as the default exchange drops any unroutable message, and
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_tiers_stall_behind_retries_for_missing_queues_and_at_most_once_tiers_drop_them() {
    let Some(url) = reachable_amqp_url() else { return };
    let prefix = unique("tier-gone");
    let mut raw = Raw::open(&url).await;
    let (safe, lossy) = (format!("{prefix}.delay.100ms"), format!("{prefix}.delay.100ms.transient"));
    let (gone, alive) = (format!("{prefix}.gone"), format!("{prefix}.alive"));
    raw.tier(&safe, Duration::from_millis(100), true).await;
    raw.tier(&lossy, Duration::from_millis(100), false).await;
    raw.queue(&alive, FieldTable::default()).await;
    for tier in [&safe, &lossy] {
        for _ in 0..GONE {
            raw.publish(tier, &gone).await;
        }
        raw.publish(tier, &alive).await;
    }
    assert_eq!(raw.wait_count(&alive, 1, Duration::from_secs(5)).await, 1, "the at-most-once tier delivered");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(raw.count(&alive).await, 1, "the at-least-once tier is stuck behind the retries for `{gone}`");
    assert_eq!(raw.count(&lossy).await, 0, "the at-most-once tier dropped them");
    raw.delete().await;
}

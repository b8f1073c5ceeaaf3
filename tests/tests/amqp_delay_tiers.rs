//! Shared delay tiers on RabbitMQ: what the broker does with them (dead-lettering with the
//! routing key a message was published with; what at-least-once dead-lettering does with a
//! retry whose queue is gone), and what eventing declares and does with them.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventing::{Context, FromState, HandlerError, Listener, MissingState, RetryPolicy, State, event, event_listener};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use support::broker::{delete_scope, reachable_amqp_url, unique};

/// Retries for a queue that is gone: more than the 32 dead letters a quorum queue's
/// at-least-once dead-letter worker holds unconfirmed (with 10 the tier still moves on).
const GONE: usize = 40;

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

/// A durable event with three listeners.
#[event(name = "tiers.order_placed", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub n: u64,
    /// `ReserveStock` fails every attempt up to this one.
    pub fail_until: u32,
}

/// A non-durable event with a per-process and a competing listener.
#[event(name = "tiers.cart_touched")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CartTouched {
    pub n: u64,
    /// Both listeners fail every attempt up to this one.
    pub fail_until: u32,
}

/// One delivery a listener saw: listener, event number, attempt, when.
type Delivery = (&'static str, u64, u32, Instant);

/// Every delivery the listeners saw.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Delivery>>>);

impl Seen {
    fn note(&self, listener: &'static str, n: u64, ctx: &Context) {
        self.0.lock().expect("lock").push((listener, n, ctx.attempt(), Instant::now()));
    }

    fn of(&self, listener: &str) -> Vec<(u64, u32, Instant)> {
        let seen = self.0.lock().expect("lock");
        seen.iter().filter(|(name, ..)| *name == listener).map(|(_, n, attempt, at)| (*n, *attempt, *at)).collect()
    }

    /// Polls until `done` holds; panics after `within`.
    async fn wait(&self, within: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

macro_rules! recording_listener {
    ($type:ident, $event:ident, $name:literal, $fails:expr $(, $attribute:ident)?) => {
        #[derive(Debug)]
        pub struct $type {
            seen: Seen,
        }

        impl FromState for $type {
            fn from_state(state: &State) -> Result<Self, MissingState> {
                Ok(Self { seen: state.get::<Seen>()?.clone() })
            }
        }

        #[event_listener(name = $name $(, $attribute)?)]
        impl Listener<$event> for $type {
            async fn on(&self, event: $event, ctx: &Context) -> Result<(), HandlerError> {
                self.seen.note($name, event.n, ctx);
                let fails: bool = $fails;
                if fails && ctx.attempt() <= event.fail_until {
                    return Err(HandlerError::msg(format!("{} fails attempt {}", $name, ctx.attempt())));
                }
                Ok(())
            }
        }
    };
}

recording_listener!(ReserveStock, OrderPlaced, "reserve_stock", true);
recording_listener!(BillOrder, OrderPlaced, "bill_order", false);
recording_listener!(NotifyWarehouse, OrderPlaced, "notify_warehouse", false);
recording_listener!(ForgetCart, CartTouched, "forget_cart", true, per_process);
recording_listener!(RecountCart, CartTouched, "recount_cart", true);

/// `rabbitmqctl list_<what> <columns>`, rows whose name starts with `prefix`, sorted.
fn list(what: &str, columns: &[&str], prefix: &str) -> Vec<String> {
    let output = Command::new("rabbitmqctl")
        .args([&format!("list_{what}"), "--quiet", "--no-table-headers"])
        .args(columns)
        .output()
        .expect("rabbitmqctl runs");
    let mut rows: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    rows.sort();
    rows
}

fn bus(url: &str, service: &str, exchange: &str, listener: &'static str) -> eventing::Builder {
    eventing::builder()
        .url(url.to_owned())
        .service(service.to_owned())
        .exchange(exchange.to_owned())
        .listeners(move |info| listener.split(',').any(|name| name == info.name))
}

/// Issue 13, item 5: with the default policy (waits of 1, 2, 4 and 8 s) a service of three
/// listeners declares its three queues, three dead-letter queues and four delay tiers it
/// shares, not four retry queues per listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_listeners_share_the_four_delay_tiers_of_their_service() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("tiers-count");
    let exchange = unique("tiers-count-exchange");
    let seen = Seen::default();
    let bus = bus(&url, &service, &exchange, "reserve_stock,bill_order,notify_warehouse")
        .state(seen.clone())
        .start()
        .await
        .expect("start");
    let queues = list("queues", &["name"], &service);
    let listener = |name: &str| format!("{service}.tiers.order_placed.{name}");
    let mut expected = vec![
        format!("{service}.delay.1000ms"),
        format!("{service}.delay.2000ms"),
        format!("{service}.delay.4000ms"),
        format!("{service}.delay.8000ms"),
    ];
    for name in ["reserve_stock", "bill_order", "notify_warehouse"] {
        expected.push(listener(name));
        expected.push(format!("{}.dead_letter", listener(name)));
    }
    expected.sort();
    assert_eq!(queues, expected, "3 listener queues, 3 dead-letter queues, 4 shared tiers");

    // A tier of durable queues: a quorum queue whose messages expire through the default
    // exchange with their own routing key (no fixed dead-letter routing key), at least once.
    let tier = list("queues", &["name", "type", "arguments"], &format!("{service}.delay.1000ms"));
    let [tier] = tier.as_slice() else { panic!("{tier:?}") };
    assert!(tier.contains(" quorum "), "{tier}");
    for argument in [
        "{\"x-message-ttl\",1000}",
        "{\"x-dead-letter-exchange\",[]}",
        "{\"x-dead-letter-strategy\",\"at-least-once\"}",
        "{\"x-overflow\",\"reject-publish\"}",
    ] {
        assert!(tier.contains(argument), "{argument} in {tier}");
    }
    assert!(!tier.contains("x-dead-letter-routing-key"), "{tier}");
    // Each tier is reached through an exchange of its name that takes every routing key.
    let exchanges = list("exchanges", &["name", "type"], &service);
    assert_eq!(
        exchanges,
        [1000, 2000, 4000, 8000].map(|ms| format!("{service}.delay.{ms}ms topic")).to_vec(),
        "one exchange per tier"
    );
    bus.shutdown().await.expect("shutdown");
    delete_scope(&url, &service, &exchange).await;
}

/// A retry goes back to the listener that failed, and to no other listener of the event,
/// after the policy's wait: 500 ms, then 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_after_its_wait_to_the_listener_that_failed_and_no_other() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("tiers-route");
    let exchange = unique("tiers-route-exchange");
    let seen = Seen::default();
    let bus = bus(&url, &service, &exchange, "reserve_stock,bill_order,notify_warehouse")
        .retry_policy(RetryPolicy::exponential(3, Duration::from_millis(500)))
        .state(seen.clone())
        .start()
        .await
        .expect("start");
    bus.publish(&OrderPlaced { n: 1, fail_until: 2 }).await.expect("publish");
    seen.wait(Duration::from_secs(20), "the third attempt", |seen| seen.of("reserve_stock").len() >= 3).await;
    // Time for a stray retry to reach another listener.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reserve = seen.of("reserve_stock");
    assert_eq!(reserve.iter().map(|(n, attempt, _)| (*n, *attempt)).collect::<Vec<_>>(), [(1, 1), (1, 2), (1, 3)]);
    for (waited, (before, after)) in
        [Duration::from_millis(500), Duration::from_secs(1)].into_iter().zip(reserve.iter().zip(&reserve[1..]))
    {
        let gap = after.2 - before.2;
        assert!(gap >= waited && gap < waited + Duration::from_secs(3), "waited {gap:?} for a {waited:?} tier");
    }
    for other in ["bill_order", "notify_warehouse"] {
        let deliveries: Vec<(u64, u32)> = seen.of(other).iter().map(|(n, attempt, _)| (*n, *attempt)).collect();
        assert_eq!(deliveries, [(1, 1)], "{other} saw the event once, and none of reserve_stock's retries");
    }
    bus.shutdown().await.expect("shutdown");
    for tier in ["500ms", "1000ms"] {
        assert_eq!(list("queues", &["name", "messages"], &format!("{service}.delay.{tier}")).len(), 1);
    }
    delete_scope(&url, &service, &exchange).await;
}

/// A per-process queue is gone with its process, and the retries waiting for it expire into
/// nothing: they are dropped (as RabbitMQ drops any message the default exchange cannot
/// route), and the retries queued behind them in the same tier still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_for_a_per_process_queue_that_is_gone_are_dropped_and_hold_up_no_other() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("tiers-gone");
    let exchange = unique("tiers-gone-exchange");
    let policy = RetryPolicy::fixed(3, Duration::from_secs(1));
    let seen = Seen::default();
    let gone = bus(&url, &service, &exchange, "forget_cart")
        .process_id("gone")
        .retry_policy(policy)
        .state(seen.clone())
        .start()
        .await
        .expect("start the process that goes");
    for n in 0..GONE as u64 {
        gone.publish(&CartTouched { n, fail_until: 3 }).await.expect("publish");
    }
    seen.wait(Duration::from_secs(20), "every first attempt", |seen| seen.of("forget_cart").len() >= GONE).await;
    gone.shutdown().await.expect("shutdown");

    let alive = bus(&url, &service, &exchange, "recount_cart")
        .process_id("alive")
        .retry_policy(policy)
        .state(seen.clone())
        .start()
        .await
        .expect("start");
    alive.publish(&CartTouched { n: 1000, fail_until: 1 }).await.expect("publish");
    seen.wait(Duration::from_secs(15), "recount_cart's retry", |seen| {
        seen.of("recount_cart").iter().any(|(n, attempt, _)| (*n, *attempt) == (1000, 2))
    })
    .await;
    alive.shutdown().await.expect("shutdown");
    let tiers: Vec<String> = list("queues", &["name", "messages"], &format!("{service}.delay."));
    assert!(tiers.iter().all(|row| row.ends_with(" 0")), "the tiers hold nothing: {tiers:?}");
    delete_scope(&url, &service, &exchange).await;
}

/// The shared queue of a non-durable event expires after it was idle (30 minutes by
/// default); a queue nobody consumes is idle however many messages pass through it, so
/// retry queues declared along with it expired while the service ran, and its retries were
/// then refused (returned to the listener's queue again and again, never retried). The
/// shared tiers are durable and never expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_a_non_durable_event_still_work_after_the_idle_expiry() {
    let Some(url) = reachable_amqp_url() else { return };
    let service = unique("tiers-idle");
    let exchange = unique("tiers-idle-exchange");
    let seen = Seen::default();
    let bus = bus(&url, &service, &exchange, "recount_cart")
        .idle_queue_expiry(Duration::from_secs(1))
        .retry_policy(RetryPolicy::fixed(2, Duration::from_millis(200)))
        .state(seen.clone())
        .start()
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    bus.publish(&CartTouched { n: 1, fail_until: 1 }).await.expect("publish");
    seen.wait(Duration::from_secs(10), "the retry", |seen| seen.of("recount_cart").iter().any(|(_, a, _)| *a == 2))
        .await;
    bus.shutdown().await.expect("shutdown");
    delete_scope(&url, &service, &exchange).await;
}

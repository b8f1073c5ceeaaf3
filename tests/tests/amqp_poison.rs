//! Poison frames on RabbitMQ: a message with invalid UTF-8 in a short-string field (a header
//! name, `type`, `message_id`), which lapin's frame parser rejects, published with a raw
//! AMQP client among 50 good ones. The good ones are handled, the poison ends in the
//! listener's dead-letter queue with a reason, another listener of the same bus keeps
//! consuming and publishes keep succeeding. On classic and quorum queues.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use eventing::message::header;
use eventing::{Context, Event, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use eventing_amqp::{AmqpOptions, AmqpTransport, QueueType};
use serde::{Deserialize, Serialize};
use support::broker::{reachable_amqp_url, scope};
use support::logs::init_logs;
use tokio::sync::Notify;

#[event(name = "poison.order_placed", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub n: u64,
}

#[event(name = "poison.parcel_shipped", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParcelShipped {
    pub n: u64,
}

#[event(name = "poison.door_opened")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoorOpened {
    pub n: u64,
}

/// What a listener handled, by event number.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    numbers: Arc<Mutex<BTreeSet<u64>>>,
    changed: Arc<Notify>,
}

impl Seen {
    fn insert(&self, n: u64) {
        self.numbers.lock().expect("lock").insert(n);
        self.changed.notify_waiters();
    }

    fn snapshot(&self) -> BTreeSet<u64> {
        self.numbers.lock().expect("lock").clone()
    }

    async fn wait_for(&self, expected: &BTreeSet<u64>, timeout: Duration) -> Result<(), BTreeSet<u64>> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if expected.is_subset(&self.snapshot()) {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| expected.difference(&self.snapshot()).copied().collect())
    }
}

/// State: what each listener saw.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    orders: Seen,
    parcels: Seen,
    doors: Seen,
}

#[derive(Debug)]
pub struct PackOrder {
    ledger: Ledger,
}

impl FromState for PackOrder {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { ledger: state.get::<Ledger>()?.clone() })
    }
}

#[event_listener(concurrency = 4)]
impl Listener<OrderPlaced> for PackOrder {
    async fn on(&self, event: OrderPlaced, _ctx: &Context) -> Result<(), HandlerError> {
        self.ledger.orders.insert(event.n);
        Ok(())
    }
}

#[derive(Debug)]
pub struct TrackParcel {
    ledger: Ledger,
}

impl FromState for TrackParcel {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { ledger: state.get::<Ledger>()?.clone() })
    }
}

#[event_listener(concurrency = 4)]
impl Listener<ParcelShipped> for TrackParcel {
    async fn on(&self, event: ParcelShipped, _ctx: &Context) -> Result<(), HandlerError> {
        self.ledger.parcels.insert(event.n);
        Ok(())
    }
}

#[derive(Debug)]
pub struct WatchDoor {
    ledger: Ledger,
}

impl FromState for WatchDoor {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { ledger: state.get::<Ledger>()?.clone() })
    }
}

#[event_listener(per_process)]
impl Listener<DoorOpened> for WatchDoor {
    async fn on(&self, event: DoorOpened, _ctx: &Context) -> Result<(), HandlerError> {
        self.ledger.doors.insert(event.n);
        Ok(())
    }
}

/// Which short-string field of the poison message is not UTF-8.
#[derive(Debug, Clone, Copy)]
enum Field {
    HeaderName,
    Type,
    MessageId,
}

impl Field {
    /// The poison's properties (with `~` placeholders), the bytes that replace them, and what
    /// the dead letter's `x-eventing-error` must mention.
    fn poison(self) -> (BasicProperties, &'static [u8], &'static str) {
        let base = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(1_700_000_000);
        match self {
            Field::HeaderName => {
                let mut headers = FieldTable::default();
                headers.insert("x-~~".into(), AMQPValue::LongString("v".into()));
                let properties = base.with_headers(headers).with_message_id("poison-header".into());
                (properties, b"\xff\xfe", "name of a field in headers")
            }
            Field::Type => {
                (base.with_type("probe.~".into()).with_message_id("poison-type".into()), b"\xff", "the `type` property")
            }
            Field::MessageId => (base.with_message_id("~(".into()), b"\xc3", "the `message_id` property"),
        }
    }
}

/// The poison ID of the event number the handler must never see.
const POISON_N: u64 = 999_999;

async fn poison_among_good_messages(field: Field, queue_type: QueueType) {
    let Some(url) = reachable_amqp_url() else { return };
    init_logs();
    let (service, exchange) = scope(&format!("poison-{field:?}-{queue_type:?}").to_lowercase());
    let ledger = Ledger::default();
    let options = AmqpOptions::default().with_queue_type(queue_type);
    let transport = AmqpTransport::connect(&url, options).await.expect("connect");
    let bus = eventing::builder()
        .transport(transport)
        .service(service.clone())
        .exchange(exchange.clone())
        .state(ledger.clone())
        .start()
        .await
        .expect("start");

    for n in 0..25 {
        bus.publish(&OrderPlaced { n }).await.expect("publish a good order");
    }
    let (properties, replacement, mentioned) = field.poison();
    let body = format!(r#"{{"n":{POISON_N}}}"#);
    let raw_url = url.clone();
    let raw_exchange = exchange.clone();
    tokio::task::spawn_blocking(move || {
        support::raw_publish::publish(
            &raw_url,
            &raw_exchange,
            OrderPlaced::NAME,
            properties,
            body.as_bytes(),
            replacement,
        );
    })
    .await
    .expect("raw publish");
    for n in 25..50 {
        bus.publish(&OrderPlaced { n }).await.expect("publish a good order");
    }

    // Meanwhile the other listener keeps consuming and publishes keep succeeding.
    let mut parcels = BTreeSet::new();
    for n in 0..20 {
        bus.publish(&ParcelShipped { n }).await.expect("a publish while the poison is handled");
        parcels.insert(n);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(missing) = ledger.parcels.wait_for(&parcels, Duration::from_secs(30)).await {
        panic!("the other listener stalled: parcels {missing:?} not handled");
    }
    let orders: BTreeSet<u64> = (0..50).collect();
    if let Err(missing) = ledger.orders.wait_for(&orders, Duration::from_secs(60)).await {
        panic!("the poison stalled its listener: orders {missing:?} not handled");
    }
    assert!(!ledger.orders.snapshot().contains(&POISON_N), "the poison reached the handler");

    let dead_letter_queue = eventing::naming::dead_letter_queue(&service, OrderPlaced::NAME, "pack_order");
    let admin = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("admin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = admin.peek(&dead_letter_queue, 10).await.expect("peek the dead-letter queue");
        if !dead.is_empty() || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 1, "one dead letter: {dead:#?}");
    let reason = dead[0].header_text(header::ERROR).unwrap_or_default();
    assert!(reason.contains(mentioned) && reason.contains("not valid UTF-8"), "reason: {reason}");
    let listener_queue = eventing::naming::listener_queue(&service, OrderPlaced::NAME, "pack_order");
    assert_eq!(dead[0].header_text(header::ORIGINAL_QUEUE), Some(listener_queue.as_str()));
    assert_eq!(dead[0].body, format!(r#"{{"n":{POISON_N}}}"#).into_bytes(), "the body is kept");
    assert_eq!(admin.message_count(&listener_queue).await.expect("count"), 0, "the listener's queue is drained");

    bus.shutdown().await.expect("shutdown");
    eventing::transport::Transport::close(&admin).await.expect("close admin");
    support::broker::delete_scope(&url, &service, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_dead_lettered_on_a_classic_queue() {
    poison_among_good_messages(Field::HeaderName, QueueType::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_that_is_not_utf8_is_dead_lettered_on_a_classic_queue() {
    poison_among_good_messages(Field::Type, QueueType::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_that_is_not_utf8_is_dead_lettered_on_a_classic_queue() {
    poison_among_good_messages(Field::MessageId, QueueType::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_dead_lettered_on_a_quorum_queue() {
    poison_among_good_messages(Field::HeaderName, QueueType::Quorum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_that_is_not_utf8_is_dead_lettered_on_a_quorum_queue() {
    poison_among_good_messages(Field::Type, QueueType::Quorum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_that_is_not_utf8_is_dead_lettered_on_a_quorum_queue() {
    poison_among_good_messages(Field::MessageId, QueueType::Quorum).await;
}

/// `eventing dlq list` and `dlq requeue` (AmqpTransport::peek and requeue_dead_letters) on a
/// dead-letter queue holding a message lapin cannot parse: shown escaped, requeued readable,
/// never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_and_requeue_read_a_message_lapin_cannot_parse() {
    use eventing::transport::{QueueLifetime, QueueRole, QueueSpec, Topology, Transport};
    let Some(url) = reachable_amqp_url() else { return };
    init_logs();
    let (service, _) = scope("poison-peek");
    let target = format!("{service}.order_placed.pack_order");
    let dead_letters = format!("{target}.dead_letter");
    let admin = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("admin");
    let queue = |name: &str, role| QueueSpec { name: name.to_owned(), lifetime: QueueLifetime::Durable, role };
    let topology = Topology {
        queues: vec![queue(&target, QueueRole::Listener), queue(&dead_letters, QueueRole::DeadLetter)],
        ..Topology::default()
    };
    admin.declare(&topology).await.expect("declare");

    let mut headers = FieldTable::default();
    headers.insert(header::ORIGINAL_QUEUE.into(), AMQPValue::LongString(target.as_str().into()));
    let properties = BasicProperties::default().with_message_id("~(".into()).with_headers(headers);
    let (raw_url, queue_name) = (url.clone(), dead_letters.clone());
    tokio::task::spawn_blocking(move || {
        support::raw_publish::publish(&raw_url, "", &queue_name, properties, br#"{"n":1}"#, b"\xc3");
    })
    .await
    .expect("raw publish");

    let listed = tokio::time::timeout(Duration::from_secs(20), admin.peek(&dead_letters, 10))
        .await
        .expect("peek does not hang")
        .expect("peek");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].message_id, "\\xc3(");
    let unreadable = listed[0].headers.get(eventing_amqp::UNREADABLE).and_then(|value| value.as_str());
    assert!(unreadable.is_some_and(|text| text.contains("`message_id`") && text.contains("c3 28")), "{unreadable:?}");

    let moved = tokio::time::timeout(Duration::from_secs(20), admin.requeue_dead_letters(&dead_letters, 10))
        .await
        .expect("requeue does not hang")
        .expect("requeue");
    assert_eq!(moved, 1);
    let requeued = admin.peek(&target, 10).await.expect("peek the listener queue");
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].message_id, "\\xc3(", "requeued readable, escaped");
    assert!(!requeued[0].headers.contains_key(eventing_amqp::UNREADABLE));
    assert_eq!(admin.message_count(&dead_letters).await.expect("count"), 0);

    admin.delete_queue(&target).await.expect("delete");
    admin.delete_queue(&dead_letters).await.expect("delete");
    admin.close().await.expect("close admin");
}

/// A per-process (exclusive) queue goes with its connection when lapin drops it, the poison
/// with it: its listener consumes again on a fresh queue, and the others never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_on_a_per_process_queue_does_not_stop_its_listener() {
    let Some(url) = reachable_amqp_url() else { return };
    init_logs();
    let (service, exchange) = scope("poison-per-process");
    let ledger = Ledger::default();
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .state(ledger.clone())
        .start()
        .await
        .expect("start");
    bus.publish(&DoorOpened { n: 1 }).await.expect("publish");
    ledger.doors.wait_for(&[1].into(), Duration::from_secs(10)).await.expect("the first door");

    let (properties, replacement, _) = Field::Type.poison();
    let (raw_url, raw_exchange) = (url.clone(), exchange.clone());
    tokio::task::spawn_blocking(move || {
        support::raw_publish::publish(&raw_url, &raw_exchange, DoorOpened::NAME, properties, b"{}", replacement);
    })
    .await
    .expect("raw publish");

    // Until the listener's connection is back (its queue is declared again), events to it
    // are unroutable: publish until one is handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 2;
    loop {
        bus.publish(&DoorOpened { n }).await.expect("publish during the recovery");
        bus.publish(&ParcelShipped { n }).await.expect("publish during the recovery");
        if ledger.doors.wait_for(&[n].into(), Duration::from_millis(300)).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the per-process listener never came back");
        n += 1;
    }
    let parcels: BTreeSet<u64> = (2..=n).collect();
    ledger.parcels.wait_for(&parcels, Duration::from_secs(10)).await.expect("the shared listener went on");
    bus.shutdown().await.expect("shutdown");
    support::broker::delete_scope(&url, &service, &exchange).await;
}

/// A routing key is a short string too: with a `#` binding any bytes reach the queue, and
/// lapin fails on the delivery itself. Through the transport API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_key_that_is_not_utf8_is_dead_lettered() {
    use eventing::transport::{BindingSpec, Origin, QueueLifetime, QueueRole, QueueSpec, Route, Topology, Transport};
    use futures_util::StreamExt;
    let Some(url) = reachable_amqp_url() else { return };
    init_logs();
    let (service, exchange) = scope("poison-routing-key");
    let queue = format!("{service}.audit");
    let dead_letters = format!("{queue}.dead_letter");
    let transport = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("connect");
    let spec = |name: &str, role| QueueSpec { name: name.to_owned(), lifetime: QueueLifetime::Durable, role };
    let topology = Topology {
        exchanges: vec![exchange.clone()],
        queues: vec![spec(&queue, QueueRole::Listener), spec(&dead_letters, QueueRole::DeadLetter)],
        bindings: vec![BindingSpec { exchange: exchange.clone(), pattern: "#".into(), queue: queue.clone() }],
    };
    transport.declare(&topology).await.expect("declare");
    let mut subscription = transport.consume(&topology.queues[0], 4).await.expect("consume");

    let good = |n: u32| eventing::message::Message {
        body: format!(r#"{{"n":{n}}}"#).into_bytes(),
        message_id: format!("good-{n}"),
        correlation_id: None,
        causation_id: None,
        event_type: "door.opened".into(),
        content_type: Some(eventing::message::JSON.into()),
        timestamp: std::time::SystemTime::now(),
        app_id: None,
        persistent: true,
        attempt: 1,
        headers: Default::default(),
        reply_to: None,
        expiration: None,
    };
    let route = Route::Exchange { exchange: &exchange, routing_key: "door.opened" };
    transport.publish(route, good(1), Origin::Outside).await.expect("publish");
    let (raw_url, raw_exchange) = (url.clone(), exchange.clone());
    tokio::task::spawn_blocking(move || {
        let properties = BasicProperties::default().with_message_id("poison-routing-key".into());
        support::raw_publish::publish(&raw_url, &raw_exchange, "door.~", properties, b"{}", b"\xff");
    })
    .await
    .expect("raw publish");
    transport.publish(route, good(2), Origin::Outside).await.expect("publish");

    let mut handled = BTreeSet::new();
    while handled.len() < 2 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .expect("the good messages arrive")
            .expect("the stream goes on")
            .expect("a delivery");
        let id = delivery.message.message_id.clone();
        // A delivery of the connection the poison dropped cannot be acked: it comes again.
        if delivery.acker.ack().await.is_ok() {
            handled.insert(id);
        }
    }
    assert_eq!(handled, ["good-1".to_owned(), "good-2".to_owned()].into());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = transport.peek(&dead_letters, 10).await.expect("peek");
        if !dead.is_empty() || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let reason = dead[0].header_text(header::ERROR).unwrap_or_default();
    assert!(reason.contains("the routing key is not valid UTF-8") && reason.contains("ff"), "{reason}");
    assert_eq!(dead[0].header_text(header::ORIGINAL_ROUTING_KEY), Some("door.\\xff"));

    subscription.cancel().await.expect("cancel");
    drop(subscription);
    transport.delete_queue(&queue).await.expect("delete");
    transport.delete_queue(&dead_letters).await.expect("delete");
    transport.delete_exchange(&exchange).await.expect("delete");
    transport.close().await.expect("close");
}

/// The lenient reader reports what lapin's did: a missing queue is `NotFound`, another
/// connection's exclusive queue `Locked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_names_a_missing_or_locked_queue() {
    use eventing::transport::{Transport, TransportError};
    let Some(url) = reachable_amqp_url() else { return };
    init_logs();
    let (service, exchange) = scope("poison-locked");
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .process_id("p1")
        .state(Ledger::default())
        .start()
        .await
        .expect("start");
    let admin = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("admin");
    let exclusive = eventing::naming::per_process_queue(&service, DoorOpened::NAME, "watch_door", "p1");
    match admin.peek(&exclusive, 1).await {
        Err(TransportError::Locked { queue }) => assert_eq!(queue, exclusive),
        other => panic!("expected Locked, got {other:?}"),
    }
    match admin.peek(&format!("{service}.no_such_queue"), 1).await {
        Err(TransportError::NotFound { object }) => assert!(object.contains("no_such_queue"), "{object}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    admin.close().await.expect("close admin");
    bus.shutdown().await.expect("shutdown");
    support::broker::delete_scope(&url, &service, &exchange).await;
}

/// Two processes compete for the listener's queue: whichever meets the poison dead-letters
/// it (once), every good message is handled. Also the connection cost: one connection for
/// publishing plus one per listener, per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_between_two_competing_processes_is_dead_lettered_once() {
    let Some(url) = reachable_amqp_url() else { return };
    init_logs();
    let (service, exchange) = scope("poison-competing");
    let ledger = Ledger::default();
    let start = |process: &'static str| {
        eventing::builder()
            .url(url.clone())
            .service(service.clone())
            .exchange(exchange.clone())
            .process_id(process)
            .state(ledger.clone())
            .start()
    };
    let (a, b) = tokio::join!(start("a"), start("b"));
    let (a, b) = (a.expect("start a"), b.expect("start b"));
    let output = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "--quiet", "--no-table-headers", "client_properties"])
        .output()
        .expect("rabbitmqctl");
    let connections = String::from_utf8_lossy(&output.stdout).lines().filter(|line| line.contains(&service)).count();
    assert_eq!(connections, 2 * (1 + 3), "per process: one publishing connection and one per listener (3)");

    for n in 0..25 {
        a.publish(&OrderPlaced { n }).await.expect("publish");
    }
    let (properties, replacement, _) = Field::MessageId.poison();
    let (raw_url, raw_exchange) = (url.clone(), exchange.clone());
    tokio::task::spawn_blocking(move || {
        let body = format!(r#"{{"n":{POISON_N}}}"#);
        support::raw_publish::publish(
            &raw_url,
            &raw_exchange,
            OrderPlaced::NAME,
            properties,
            body.as_bytes(),
            replacement,
        );
    })
    .await
    .expect("raw publish");
    for n in 25..50 {
        b.publish(&OrderPlaced { n }).await.expect("publish");
    }
    let orders: BTreeSet<u64> = (0..50).collect();
    if let Err(missing) = ledger.orders.wait_for(&orders, Duration::from_secs(60)).await {
        panic!("orders {missing:?} not handled");
    }
    let dead_letter_queue = eventing::naming::dead_letter_queue(&service, OrderPlaced::NAME, "pack_order");
    let admin = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("admin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin.message_count(&dead_letter_queue).await.expect("count") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the poison never reached the dead-letter queue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a second rescue, if any, finish before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(admin.message_count(&dead_letter_queue).await.expect("count"), 1, "dead-lettered once");
    let listener_queue = eventing::naming::listener_queue(&service, OrderPlaced::NAME, "pack_order");
    assert_eq!(admin.message_count(&listener_queue).await.expect("count"), 0);
    eventing::transport::Transport::close(&admin).await.expect("close admin");
    a.shutdown().await.expect("shutdown a");
    b.shutdown().await.expect("shutdown b");
    support::broker::delete_scope(&url, &service, &exchange).await;
}

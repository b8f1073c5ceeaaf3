//! The test harness and the in-memory broker's RabbitMQ semantics.

use std::time::Duration;

use eventing::memory::MemoryBroker;
use eventing::testing::TestBus;
use eventing::transport::{BindingSpec, QueueLifetime, QueueRole, QueueSpec, Topology, Transport};
use eventing::{Context, Event, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use eventing_tests::recorder::{Gate, Recorder};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: u64,
    pub items: u32,
}

#[event(name = "stock.reserved")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReserved {
    pub order: u64,
    pub item: u32,
}

#[event(name = "shipping.label_printed")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelPrinted {
    pub order: u64,
    pub item: u32,
}

#[event(durable)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    pub n: u64,
}

/// OrderPlaced -> one StockReserved per item.
#[derive(Debug, Default)]
pub struct ReserveStock;

#[event_listener]
impl Listener<OrderPlaced> for ReserveStock {
    async fn on(&self, order: OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
        for item in 0..order.items {
            tokio::task::yield_now().await;
            ctx.publish(&StockReserved { order: order.order, item }).await?;
        }
        Ok(())
    }
}

/// StockReserved -> LabelPrinted.
#[derive(Debug, Default)]
pub struct PrintLabel;

#[event_listener(concurrency = 3)]
impl Listener<StockReserved> for PrintLabel {
    async fn on(&self, stock: StockReserved, ctx: &Context) -> Result<(), HandlerError> {
        tokio::task::yield_now().await;
        ctx.publish(&LabelPrinted { order: stock.order, item: stock.item }).await?;
        Ok(())
    }
}

/// Waits at the gate when there is one; records either way.
#[derive(Debug)]
pub struct Blocker {
    gate: Option<Gate>,
    recorder: Option<Recorder>,
}

impl FromState for Blocker {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { gate: state.get::<Gate>().ok().cloned(), recorder: state.get::<Recorder>().ok().cloned() })
    }
}

#[event_listener(concurrency = 2, prefetch = 5)]
impl Listener<Blocked> for Blocker {
    async fn on(&self, event: Blocked, ctx: &Context) -> Result<(), HandlerError> {
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        if let Some(recorder) = &self.recorder {
            recorder.record(event.n, ctx);
        }
        Ok(())
    }
}

/// This file's listeners only: the conformance suite's, linked through `eventing_tests`,
/// register in this binary too (as a library's listeners do in every binary using it).
fn local() -> eventing::Builder {
    eventing::builder().listeners(|info| info.rust_type.starts_with("harness::"))
}

fn without_blocker() -> eventing::Builder {
    eventing::builder().listeners(|info| info.rust_type.starts_with("harness::") && info.event != Blocked::NAME)
}

#[tokio::test]
async fn settle_waits_for_the_whole_causal_chain() {
    let bus = TestBus::start_with(without_blocker()).await.unwrap();
    bus.publish(&OrderPlaced { order: 1, items: 3 }).await.unwrap();
    bus.publish(&OrderPlaced { order: 2, items: 2 }).await.unwrap();
    bus.settle().await.unwrap();
    // Three hops, fanned out: every label is printed by the time settle returns.
    let mut labels = bus.published::<LabelPrinted>();
    labels.sort_by_key(|label| (label.order, label.item));
    let expected: Vec<LabelPrinted> = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]
        .into_iter()
        .map(|(order, item)| LabelPrinted { order, item })
        .collect();
    assert_eq!(labels, expected);
    assert_eq!(bus.broker().pending(), 0);
    // Every message of a chain shares the first message's correlation id.
    let published = bus.published_messages();
    let first =
        published.iter().find(|m| m.decode::<OrderPlaced>() == Some(OrderPlaced { order: 1, items: 3 })).unwrap();
    let chain: Vec<_> = published.iter().filter(|m| m.message.chain_id() == first.message.message_id).collect();
    assert_eq!(chain.len(), 1 + 3 + 3);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn settle_timeout_lists_what_is_still_pending() {
    let gate = Gate::default();
    let bus = TestBus::start_with(local().state(gate.clone())).await.unwrap();
    bus.publish(&Blocked { n: 1 }).await.unwrap();
    gate.entered(1).await;
    let error = bus.settle_within(Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(error.pending.len(), 1);
    let text = error.to_string();
    assert!(text.contains("1 message(s) pending"), "{text}");
    assert!(text.contains("being handled `blocked`"), "{text}");
    assert!(text.contains("queue `eventing_tests.blocked.blocker`"), "{text}");
    gate.release(1);
    bus.settle().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_without_a_consumer_keeps_the_broker_unsettled() {
    let broker = MemoryBroker::new();
    let declare = TestBus::start_on(broker.clone(), local()).await.unwrap();
    declare.shutdown().await.unwrap();
    let publisher = TestBus::start_on(broker.clone(), eventing::builder().listeners(|_| false)).await.unwrap();
    publisher.publish(&Blocked { n: 7 }).await.unwrap();
    let error = publisher.settle_within(Duration::from_millis(20)).await.unwrap_err();
    assert!(error.to_string().contains("waiting `blocked`"), "{error}");
    publisher.shutdown().await.unwrap();
}

#[tokio::test]
async fn prefetch_bounds_what_a_consumer_holds() {
    let gate = Gate::default();
    let bus = TestBus::start_with(local().state(gate.clone())).await.unwrap();
    for n in 0..20 {
        bus.publish(&Blocked { n }).await.unwrap();
    }
    gate.entered(2).await; // concurrency = 2
    let queue = bus.broker().queues().into_iter().find(|q| q.spec.name == "eventing_tests.blocked.blocker").unwrap();
    assert_eq!((queue.in_flight, queue.ready), (5, 15), "prefetch = 5 delivered, the rest waits");
    gate.release(20);
    bus.settle().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn unfinished_deliveries_return_to_the_queue_when_shutdown_gives_up() {
    let broker = MemoryBroker::new();
    let gate = Gate::default();
    let stuck =
        TestBus::start_on(broker.clone(), local().state(gate.clone()).shutdown_timeout(Duration::from_millis(10)))
            .await
            .unwrap();
    stuck.publish(&Blocked { n: 1 }).await.unwrap();
    gate.entered(1).await;
    stuck.shutdown().await.unwrap();
    let waiting = broker.messages("eventing_tests.blocked.blocker").unwrap();
    assert_eq!(waiting.len(), 1);
    assert!(!waiting[0].in_flight && waiting[0].redelivered, "{waiting:?}");

    let recorder = Recorder::default();
    let next = TestBus::start_on(broker.clone(), local().state(recorder.clone())).await.unwrap();
    next.settle().await.unwrap();
    assert_eq!(recorder.records().len(), 1);
    next.shutdown().await.unwrap();
    gate.release(1);
}

#[test]
fn a_crashed_process_has_its_unacknowledged_messages_redelivered() {
    let broker = MemoryBroker::new();
    let gate = Gate::default();
    {
        // A process that dies mid-handling: its runtime goes away without a shutdown.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let bus = local().transport(broker.transport()).state(gate.clone()).start().await.unwrap();
            bus.publish(&Blocked { n: 9 }).await.unwrap();
            gate.entered(1).await;
        });
    }
    let waiting = broker.messages("eventing_tests.blocked.blocker").unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(waiting[0].redelivered && !waiting[0].in_flight);
}

#[tokio::test]
async fn an_exclusive_queue_belongs_to_one_connection() {
    let broker = MemoryBroker::new();
    let spec =
        QueueSpec { name: "cache.x.host-1".into(), lifetime: QueueLifetime::Exclusive, role: QueueRole::Listener };
    let topology = Topology { queues: vec![spec.clone()], ..Topology::default() };
    let owner = broker.transport();
    owner.declare(&topology).await.unwrap();
    let other = broker.transport();
    let error = other.declare(&topology).await.unwrap_err();
    assert!(error.to_string().contains("`cache.x.host-1` is exclusive"), "{error}");
    assert!(other.consume(&spec, 1).await.is_err());
    drop(owner); // the connection closes: its exclusive queue goes
    assert!(broker.messages("cache.x.host-1").is_none());
    other.declare(&topology).await.unwrap();
}

#[tokio::test]
async fn redeclaring_a_queue_with_other_arguments_is_a_conflict() {
    let broker = MemoryBroker::new();
    let transport = broker.transport();
    let durable = QueueSpec { name: "q".into(), lifetime: QueueLifetime::Durable, role: QueueRole::Listener };
    transport.declare(&Topology { queues: vec![durable.clone()], ..Topology::default() }).await.unwrap();
    transport.declare(&Topology { queues: vec![durable.clone()], ..Topology::default() }).await.unwrap();
    let expiring = QueueSpec { lifetime: QueueLifetime::Expiring { idle: Duration::from_secs(1) }, ..durable };
    let error = transport.declare(&Topology { queues: vec![expiring], ..Topology::default() }).await.unwrap_err();
    assert!(error.to_string().contains("queue `q` exists with different arguments"), "{error}");
}

#[tokio::test]
async fn wildcard_bindings_select_a_family_of_events() {
    let broker = MemoryBroker::new();
    broker.record_published();
    let family =
        QueueSpec { name: "audit.stock".into(), lifetime: QueueLifetime::Durable, role: QueueRole::DeadLetter };
    let everything = QueueSpec { name: "audit.all".into(), ..family.clone() };
    let bind = |queue: &QueueSpec, pattern: &str| BindingSpec {
        exchange: "eventing".into(),
        pattern: pattern.into(),
        queue: queue.name.clone(),
    };
    let transport = broker.transport();
    transport
        .declare(&Topology {
            exchanges: vec!["eventing".into()],
            queues: vec![family.clone(), everything.clone()],
            bindings: vec![bind(&family, "stock.*"), bind(&everything, "#")],
        })
        .await
        .unwrap();
    let bus = TestBus::start_on(broker.clone(), without_blocker()).await.unwrap();
    bus.publish(&OrderPlaced { order: 5, items: 2 }).await.unwrap();
    bus.settle().await.unwrap();
    let names = |queue: &str| -> Vec<String> {
        broker.messages(queue).unwrap().iter().map(|m| m.message.event_type.to_string()).collect()
    };
    assert_eq!(names("audit.stock"), vec!["stock.reserved", "stock.reserved"]);
    assert_eq!(names("audit.all").len(), 1 + 2 + 2);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn publishing_after_shutdown_is_an_error() {
    let bus = TestBus::start_with(without_blocker()).await.unwrap();
    bus.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
    let error = bus.publish(&OrderPlaced { order: 1, items: 0 }).await.unwrap_err();
    assert!(matches!(error, eventing::Error::ShutDown), "{error}");
}

#[event(name = "chaos.ping")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosPing {
    pub n: u64,
}

#[event(name = "chaos.exempt")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosExempt {
    pub n: u64,
}

/// Records pings and exempt events (when a recorder was given: the other tests of this file
/// start it too).
#[derive(Debug)]
pub struct ChaosSink {
    recorder: Option<Recorder>,
}

impl FromState for ChaosSink {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { recorder: state.get::<Recorder>().ok().cloned() })
    }
}

#[event_listener]
impl Listener<ChaosPing> for ChaosSink {
    async fn on(&self, ping: ChaosPing, ctx: &Context) -> Result<(), HandlerError> {
        if let Some(recorder) = &self.recorder {
            recorder.record(ping.n, ctx);
        }
        Ok(())
    }
}

#[event_listener(name = "chaos_exempt_sink")]
impl Listener<ChaosExempt> for ChaosSink {
    async fn on(&self, event: ChaosExempt, ctx: &Context) -> Result<(), HandlerError> {
        if let Some(recorder) = &self.recorder {
            recorder.record(event.n, ctx);
        }
        Ok(())
    }
}

fn chaos_bus(chaos: eventing::Chaos, recorder: &Recorder) -> eventing::Builder {
    eventing::builder()
        .listeners(|info| info.event.starts_with("chaos."))
        .retry_policy(eventing::RetryPolicy::fixed(3, Duration::from_millis(1)))
        .state(recorder.clone())
        .chaos(chaos)
}

#[tokio::test(start_paused = true)]
async fn chaos_fails_handlers_but_spares_exempt_events() {
    let recorder = Recorder::default();
    let chaos = eventing::Chaos::default().with_fail_share(1.0).with_exempt_events(["chaos.exempt"]);
    let bus = TestBus::start_with(chaos_bus(chaos, &recorder)).await.unwrap();
    bus.publish(&ChaosPing { n: 1 }).await.unwrap();
    bus.publish(&ChaosExempt { n: 2 }).await.unwrap();
    bus.settle().await.unwrap();
    // The exempt event was handled; the ping failed every attempt by injection.
    assert_eq!(recorder.records().iter().map(|record| record.n).collect::<Vec<_>>(), vec![2]);
    let dead = bus.dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason().unwrap_or_default().starts_with("chaos: injected failure"), "{dead:?}");
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn chaos_nacks_return_deliveries_that_are_handled_later() {
    let recorder = Recorder::default();
    let chaos = eventing::Chaos::parse("nack=0.5").unwrap();
    let bus = TestBus::start_with(chaos_bus(chaos, &recorder)).await.unwrap();
    for n in 0..40 {
        bus.publish(&ChaosPing { n }).await.unwrap();
    }
    bus.settle().await.unwrap();
    let mut handled: Vec<u64> = recorder.records().iter().map(|record| record.n).collect();
    handled.sort_unstable();
    assert_eq!(handled, (0..40).collect::<Vec<_>>(), "each event handled exactly once, nacks or not");
    assert!(bus.dead_letters().is_empty());
    bus.shutdown().await.unwrap();
}

#[test]
fn chaos_settings_are_checked() {
    use eventing::ChaosError;
    assert!(matches!(eventing::Chaos::parse("fail=1.5"), Err(ChaosError::ShareOutOfRange { .. })));
    assert!(matches!(eventing::Chaos::parse("delay=50..10ms"), Err(ChaosError::BackwardsRange { .. })));
    assert!(matches!(eventing::Chaos::parse("explode=1"), Err(ChaosError::UnknownSetting { key }) if key == "explode"));
    assert!(!eventing::Chaos::parse("").unwrap().is_active());
}

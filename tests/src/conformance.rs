//! One conformance suite for every transport: the same test bodies run on the in-memory
//! broker and on RabbitMQ, so both show the same semantics. A transport's test binary
//! implements [`Backend`] and expands [`conformance_suite!`](crate::conformance_suite).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use eventing::message::HeaderValue;
use eventing::message::{Headers, Message};
use eventing::transport::{BindingSpec, Origin, QueueLifetime, QueueRole, QueueSpec, Route, Topology, Transport};
use eventing::{
    Builder, Context, Envelope, Error, Event, FromState, HandlerError, Interceptor, Listener, ListenerInfo,
    MissingState, Next, RawEvent, RetryPolicy, State, event, event_listener,
};
use serde::{Deserialize, Serialize};

use crate::recorder::{Gate, Recorder};

/// How long a test waits for deliveries before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The wait between attempts in the suite: 3 attempts, this long apart.
pub const RETRY_DELAY: Duration = Duration::from_millis(150);

/// A transport under test.
pub trait Backend: Send + Sync + 'static {
    /// A builder whose `start` opens a new connection to this backend's broker.
    fn builder(&self) -> Builder;
    /// A raw connection, to publish crafted messages.
    fn transport(&self) -> impl Future<Output = Arc<dyn Transport>> + Send;
    /// The messages in `queue`, left in place.
    fn queue_messages(&self, queue: &str) -> impl Future<Output = Vec<Message>> + Send;
    /// Deletes what a test declared (queues of `scope`, its exchanges).
    fn cleanup(&self, scope: &Scope) -> impl Future<Output = ()> + Send;
}

/// Unique names for one test, so tests run in parallel on one broker. Clones share the
/// lists of what to clean up.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The service: the first part of every queue name of the test.
    pub service: String,
    /// The exchange.
    pub exchange: String,
    /// The events (or patterns) whose listeners the test started, for cleaning up their queues.
    events: Arc<std::sync::Mutex<Vec<&'static str>>>,
    /// Queues the test declared itself.
    declared: Arc<std::sync::Mutex<Vec<String>>>,
}

tokio::task_local! {
    /// The scopes a running case created, for [`Created::cleanup`] after a panic.
    static CREATED: Created;
}

/// The scopes one conformance case creates, so that a case that panics half-way still
/// leaves nothing on the broker (the cases clean up after themselves when they pass).
#[derive(Debug, Clone, Default)]
pub struct Created(Arc<std::sync::Mutex<Vec<Scope>>>);

impl Created {
    /// Runs `case`, recording every [`Scope`] it creates.
    pub async fn track<F: Future>(&self, case: F) -> F::Output {
        CREATED.scope(self.clone(), case).await
    }

    /// Deletes what every recorded scope declared.
    pub async fn cleanup(&self, backend: &impl Backend) {
        let scopes = std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for scope in &scopes {
            backend.cleanup(scope).await;
        }
    }
}

impl Scope {
    /// Names for the test `name`, unique in this process and across runs.
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
        );
        let scope = Self {
            service: format!("conf-{name}-{unique}"),
            exchange: format!("conf-{name}-{unique}"),
            events: Arc::default(),
            declared: Arc::default(),
        };
        let _outside_a_tracked_case = CREATED.try_with(|created| {
            created.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(scope.clone());
        });
        scope
    }

    /// The scope's delay tiers (the suite's policy has one wait): the one of durable
    /// queues and the one of transient queues. Each is a queue and an exchange.
    pub fn delay_tiers(&self) -> [String; 2] {
        [
            eventing::naming::delay_tier(&self.service, RETRY_DELAY),
            eventing::naming::transient_delay_tier(&self.service, RETRY_DELAY),
        ]
    }

    /// The exchanges the scope's buses declare: its exchange and its delay tiers'.
    pub fn exchanges(&self) -> Vec<String> {
        std::iter::once(self.exchange.clone()).chain(self.delay_tiers()).collect()
    }

    /// The queue of a competing listener in this scope.
    pub fn queue(&self, event: &str, listener: &str) -> String {
        eventing::naming::listener_queue(&self.service, event, listener)
    }

    /// The queue of a competing pattern listener in this scope.
    pub fn pattern_queue(&self, listener: &str) -> String {
        eventing::naming::pattern_listener_queue(&self.service, listener)
    }

    /// The dead-letter queue of a pattern listener in this scope.
    pub fn pattern_dead_letter_queue(&self, listener: &str) -> String {
        eventing::naming::pattern_dead_letter_queue(&self.service, listener)
    }

    /// Records a queue the test declares itself, so cleanup deletes it.
    pub fn declared(&self, queue: &str) -> String {
        self.declared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(queue.to_owned());
        queue.to_owned()
    }

    /// Every shared and dead-letter queue the scope's listeners declared (per-process
    /// queues go with their connection), the delay tiers, and those the test declared itself.
    pub fn queues(&self) -> Vec<String> {
        let events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Ok(registry) = eventing::Registry::collect() else { return Vec::new() };
        let mut queues: Vec<String> = registry
            .listeners()
            .filter(|info| events.contains(&info.event))
            .flat_map(|info| {
                let (queue, dead_letter) = match info.pattern {
                    Some(_) => (self.pattern_queue(info.name), self.pattern_dead_letter_queue(info.name)),
                    None => (self.queue(info.event, info.name), self.dead_letter_queue(info.event, info.name)),
                };
                [queue, dead_letter]
            })
            .collect();
        queues.extend(self.delay_tiers());
        queues.extend(self.declared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned());
        queues
    }

    /// The dead-letter queue of a listener in this scope.
    pub fn dead_letter_queue(&self, event: &str, listener: &str) -> String {
        eventing::naming::dead_letter_queue(&self.service, event, listener)
    }

    /// `backend`'s builder with this scope's names, starting only the listeners of `events`.
    pub fn builder(&self, backend: &impl Backend, events: &'static [&'static str]) -> Builder {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(events);
        backend
            .builder()
            .service(self.service.clone())
            .exchange(self.exchange.clone())
            .retry_policy(RetryPolicy::fixed(3, RETRY_DELAY))
            .listeners(move |info: &ListenerInfo| events.contains(&info.event))
    }
}

/// A plain event.
#[event(name = "conformance.ping")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    /// Its number.
    pub n: u64,
    /// Whether the handler publishes a [`Pong`].
    pub chain: bool,
}

/// The follow-up of a [`Ping`].
#[event(name = "conformance.pong")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's number.
    pub n: u64,
}

/// A durable event.
#[event(name = "conformance.stored", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// Its number.
    pub n: u64,
}

/// An event with a competing and a per-process listener.
#[event(name = "conformance.broadcast")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Broadcast {
    /// Its number.
    pub n: u64,
}

/// An event whose handler fails as told.
#[event(name = "conformance.risky")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Risky {
    /// Its number.
    pub n: u64,
    /// `ok`, `error`, `permanent`, `panic`, or `flaky` (fails on attempts 1 and 2).
    pub outcome: String,
}

/// An event handled one at a time.
#[event(name = "conformance.sequenced")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sequenced {
    /// Its number.
    pub n: u64,
}

/// An event with three listeners, two of which fail their first attempt.
#[event(name = "conformance.shared_retry")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedRetry {
    /// Its number.
    pub n: u64,
}

/// An event whose handler waits at a [`Gate`].
#[event(name = "conformance.slow", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    /// Its number.
    pub n: u64,
}

/// An event whose listener accepts only even numbers.
#[event(name = "conformance.filtered")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filtered {
    /// Its number.
    pub n: u64,
}

/// The first event of a two-hop chain.
#[event(name = "conformance.first_hop")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FirstHop {
    /// Its number.
    pub n: u64,
}

/// The second event of a two-hop chain, published by the first's handler.
#[event(name = "conformance.second_hop")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondHop {
    /// Its number.
    pub n: u64,
}

tokio::task_local! {
    /// The tenant of the work in progress, carried across the bus by [`TenantPropagation`].
    pub static TENANT: String;
}

/// The interceptor of DESIGN.md, given to the builder: the publisher's [`TENANT`] travels
/// in a header and is scoped again around the handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct TenantPropagation;

impl Interceptor for TenantPropagation {
    fn send(&self, envelope: &mut Envelope) {
        if let Ok(tenant) = TENANT.try_with(|t| t.clone()) {
            envelope.set("tenant", tenant);
        }
    }

    async fn handle(&self, envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
        let tenant = envelope.get("tenant").unwrap_or("none").to_owned();
        TENANT.scope(tenant, next.run()).await
    }
}

/// Defines a listener struct that takes a [`Recorder`] (and more state) from the builder.
macro_rules! recording_listener {
    ($(#[$meta:meta])* $name:ident $(, $field:ident: $ty:ty)*) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            recorder: Recorder,
            $($field: $ty,)*
        }

        impl FromState for $name {
            fn from_state(state: &State) -> Result<Self, MissingState> {
                Ok(Self { recorder: state.get::<Recorder>()?.clone(), $($field: state.get::<$ty>()?.clone(),)* })
            }
        }
    };
}

recording_listener!(
    /// Records pings and answers chained ones with a pong.
    Echo
);

#[event_listener]
impl Listener<Ping> for Echo {
    async fn on(&self, ping: Ping, ctx: &Context) -> Result<(), HandlerError> {
        if ping.chain {
            ctx.publish(&Pong { n: ping.n }).await?;
        }
        self.recorder.record(ping.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Records pongs.
    PongSink
);

#[event_listener]
impl Listener<Pong> for PongSink {
    async fn on(&self, pong: Pong, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(pong.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Records durable events.
    StoredSink
);

#[event_listener]
impl Listener<Stored> for StoredSink {
    async fn on(&self, stored: Stored, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(stored.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Competing consumer of broadcasts.
    Worker
);

#[event_listener]
impl Listener<Broadcast> for Worker {
    async fn on(&self, event: Broadcast, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Per-process consumer of broadcasts.
    LocalCache
);

#[event_listener(per_process)]
impl Listener<Broadcast> for LocalCache {
    async fn on(&self, event: Broadcast, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Fails as the event says.
    Gambler
);

#[event_listener]
impl Listener<Risky> for Gambler {
    async fn on(&self, event: Risky, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.n, ctx);
        match event.outcome.as_str() {
            "error" => Err(std::io::Error::other(format!("disk full while handling {}", event.n)))?,
            "permanent" => Err(HandlerError::permanent_msg(format!("risky {} can never succeed", event.n))),
            "panic" => panic!("gambler lost on {}", event.n),
            "flaky" if ctx.attempt() < 3 => {
                Err(HandlerError::msg(format!("flaky {} on attempt {}", event.n, ctx.attempt())))
            }
            _ => Ok(()),
        }
    }
}

recording_listener!(
    /// Fails every first attempt (a competing listener).
    FirstTimeFailing
);

#[event_listener(name = "first_time_failing")]
impl Listener<SharedRetry> for FirstTimeFailing {
    async fn on(&self, event: SharedRetry, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.n, ctx);
        if ctx.attempt() == 1 { Err(HandlerError::msg("first attempts fail")) } else { Ok(()) }
    }
}

recording_listener!(
    /// Fails every first attempt, in every process.
    FirstTimeFailingEverywhere
);

#[event_listener(name = "first_time_failing_everywhere", per_process)]
impl Listener<SharedRetry> for FirstTimeFailingEverywhere {
    async fn on(&self, event: SharedRetry, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.n, ctx);
        if ctx.attempt() == 1 { Err(HandlerError::msg("first attempts fail here too")) } else { Ok(()) }
    }
}

recording_listener!(
    /// Never fails.
    NeverFailing
);

#[event_listener(name = "never_failing")]
impl Listener<SharedRetry> for NeverFailing {
    async fn on(&self, event: SharedRetry, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Handles one message at a time.
    InOrder
);

#[event_listener(concurrency = 1)]
impl Listener<Sequenced> for InOrder {
    async fn on(&self, event: Sequenced, ctx: &Context) -> Result<(), HandlerError> {
        tokio::task::yield_now().await;
        self.recorder.record(event.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Waits at the gate, then records.
    Sluggish, gate: Gate
);

#[event_listener(concurrency = 4)]
impl Listener<Slow> for Sluggish {
    async fn on(&self, event: Slow, ctx: &Context) -> Result<(), HandlerError> {
        self.gate.pass().await;
        self.recorder.record(event.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Takes even numbers only, one at a time (so the last even number is handled after
    /// every odd one before it was declined).
    Picky
);

#[event_listener(concurrency = 1)]
impl Listener<Filtered> for Picky {
    fn accepts(&self, event: &Filtered, _ctx: &Context) -> bool {
        event.n % 2 == 0
    }

    async fn on(&self, event: Filtered, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Notes the tenant it runs under and publishes the second hop.
    FirstHopper
);

#[event_listener]
impl Listener<FirstHop> for FirstHopper {
    async fn on(&self, event: FirstHop, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record_noted(event.n, ctx, TENANT.try_with(Clone::clone).ok());
        ctx.publish_with(&SecondHop { n: event.n }, [("hop", "2")]).await?;
        Ok(())
    }
}

recording_listener!(
    /// Notes the tenant it runs under.
    SecondHopper
);

#[event_listener]
impl Listener<SecondHop> for SecondHopper {
    async fn on(&self, event: SecondHop, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record_noted(event.n, ctx, TENANT.try_with(Clone::clone).ok());
        Ok(())
    }
}

/// The body of the raw events the pattern cases publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Numbered {
    /// Its number.
    pub n: u64,
    /// What a gambling listener does with it (`error` fails every time).
    #[serde(default)]
    pub outcome: String,
}

/// `{"n": n}` as a raw body.
pub fn numbered(n: u64) -> Vec<u8> {
    serde_json::to_vec(&Numbered { n, outcome: String::new() }).expect("encode")
}

recording_listener!(
    /// Takes every billing event, noting each one's name.
    AuditTrail
);

#[event_listener(pattern = "billing.#", concurrency = 1)]
impl Listener<RawEvent> for AuditTrail {
    async fn on(&self, event: RawEvent, ctx: &Context) -> Result<(), HandlerError> {
        let body: Numbered = event.decode()?;
        self.recorder.record_noted(body.n, ctx, Some(event.name().to_owned()));
        Ok(())
    }
}

recording_listener!(
    /// Takes every event: the catch-all store.
    EventStore
);

#[event_listener(pattern = "#")]
impl Listener<RawEvent> for EventStore {
    async fn on(&self, event: RawEvent, ctx: &Context) -> Result<(), HandlerError> {
        let body: Numbered = event.decode()?;
        self.recorder.record_noted(body.n, ctx, Some(event.name().to_owned()));
        Ok(())
    }
}

recording_listener!(
    /// Each process takes every `fanout.*` event.
    LocalFeed
);

#[event_listener(pattern = "fanout.*", per_process)]
impl Listener<RawEvent> for LocalFeed {
    async fn on(&self, event: RawEvent, ctx: &Context) -> Result<(), HandlerError> {
        self.recorder.record(event.decode::<Numbered>()?.n, ctx);
        Ok(())
    }
}

recording_listener!(
    /// Fails `gamble.#` events as their body says.
    RawGambler
);

#[event_listener(pattern = "gamble.#")]
impl Listener<RawEvent> for RawGambler {
    async fn on(&self, event: RawEvent, ctx: &Context) -> Result<(), HandlerError> {
        let body: Numbered = event.decode()?;
        self.recorder.record(body.n, ctx);
        match body.outcome.as_str() {
            "error" => Err(HandlerError::msg(format!("raw gamble {} lost", body.n))),
            _ => Ok(()),
        }
    }
}

/// Published events are handled once each, as a new chain.
pub async fn publish_and_handle(backend: &impl Backend) {
    let scope = Scope::new("publish");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Ping::NAME]).state(recorder.clone()).start().await.expect("start");
    for n in 0..5 {
        bus.publish(&Ping { n, chain: false }).await.expect("publish");
    }
    let records = recorder.wait_until(WAIT, |records| records.len() >= 5).await;
    let mut seen: Vec<u64> = records.iter().map(|record| record.n).collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    for record in &records {
        assert_eq!(record.attempt, 1);
        assert_eq!(record.correlation_id, record.message_id, "a published event starts a chain");
        assert_eq!(record.causation_id, None);
    }
    bus.shutdown().await.expect("shutdown");
    let left = backend.queue_messages(&scope.queue(Ping::NAME, "echo")).await;
    assert!(left.is_empty(), "every handled message was acknowledged before shutdown returned: {left:?}");
    backend.cleanup(&scope).await;
}

/// A follow-up published through `ctx` carries the chain's correlation id and its cause.
pub async fn chaining_through_context(backend: &impl Backend) {
    let scope = Scope::new("chain");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Ping::NAME, Pong::NAME]).state(recorder.clone()).start().await.expect("start");
    bus.publish(&Ping { n: 42, chain: true }).await.expect("publish");
    recorder.wait_until(WAIT, |records| records.len() >= 2).await;
    let ping = &recorder.of("echo")[0];
    let pong = &recorder.of("pong_sink")[0];
    assert_eq!(pong.n, 42);
    assert_eq!(pong.correlation_id, ping.correlation_id);
    assert_eq!(pong.causation_id.as_deref(), Some(ping.message_id.as_str()));
    assert_ne!(pong.message_id, ping.message_id);
    bus.shutdown().await.expect("shutdown");
    for (event, listener) in [(Ping::NAME, "echo"), (Pong::NAME, "pong_sink")] {
        let left = backend.queue_messages(&scope.queue(event, listener)).await;
        assert!(left.is_empty(), "{listener} acknowledged everything before shutdown returned: {left:?}");
    }
    backend.cleanup(&scope).await;
}

/// Two buses: the competing listener sees each event once across both (and both get
/// work); the per-process listener sees every event on each bus.
pub async fn competing_and_per_process(backend: &impl Backend) {
    let scope = Scope::new("fanout");
    let recorder = Recorder::default();
    let first = scope
        .builder(backend, &[Broadcast::NAME])
        .state(recorder.labeled("first"))
        .process_id("first")
        .prefetch(1)
        .concurrency(1)
        .start()
        .await
        .expect("start first");
    let second = scope
        .builder(backend, &[Broadcast::NAME])
        .state(recorder.labeled("second"))
        .process_id("second")
        .prefetch(1)
        .concurrency(1)
        .start()
        .await
        .expect("start second");
    const COUNT: u64 = 40;
    for n in 0..COUNT {
        first.publish(&Broadcast { n }).await.expect("publish");
    }
    let records = recorder.wait_until(WAIT, |records| records.len() as u64 >= 3 * COUNT).await;
    let worker: Vec<_> = records.iter().filter(|record| record.listener == "worker").collect();
    let mut handled: Vec<u64> = worker.iter().map(|record| record.n).collect();
    handled.sort_unstable();
    assert_eq!(handled, (0..COUNT).collect::<Vec<_>>(), "each event once across both buses");
    for bus in ["first", "second"] {
        assert!(worker.iter().any(|record| &*record.bus == bus), "bus {bus} got no competing work");
        let mut local: Vec<u64> = records
            .iter()
            .filter(|record| record.listener == "local_cache" && &*record.bus == bus)
            .map(|r| r.n)
            .collect();
        local.sort_unstable();
        assert_eq!(local, (0..COUNT).collect::<Vec<_>>(), "bus {bus} missed per-process events");
    }
    first.shutdown().await.expect("shutdown first");
    second.shutdown().await.expect("shutdown second");
    backend.cleanup(&scope).await;
}

/// Durable events wait in their queue while no consumer runs, then are all handled.
pub async fn durable_events_wait_for_their_consumer(backend: &impl Backend) {
    let scope = Scope::new("durable");
    let recorder = Recorder::default();
    let declare = scope.builder(backend, &[Stored::NAME]).state(recorder.clone()).start().await.expect("declare");
    declare.shutdown().await.expect("shutdown");
    let publisher = scope.builder(backend, &[]).start().await.expect("publisher");
    for n in 0..10 {
        publisher.publish(&Stored { n }).await.expect("publish");
    }
    publisher.shutdown().await.expect("shutdown publisher");
    let waiting = backend.queue_messages(&scope.queue(Stored::NAME, "stored_sink")).await;
    assert_eq!(waiting.len(), 10, "the events wait in the durable queue");
    assert!(waiting.iter().all(|message| message.persistent), "durable events are persistent");
    assert!(recorder.records().is_empty());
    let consumer = scope.builder(backend, &[Stored::NAME]).state(recorder.clone()).start().await.expect("consumer");
    let records = recorder.wait_until(WAIT, |records| records.len() >= 10).await;
    let mut seen: Vec<u64> = records.iter().map(|record| record.n).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    consumer.shutdown().await.expect("shutdown consumer");
    backend.cleanup(&scope).await;
}

/// Failing and panicking handlers are retried up to the policy's attempts, then dead-lettered
/// with the reason and the attempts; a permanent error is dead-lettered after one call; the
/// bus keeps working and nothing loops.
pub async fn failing_handlers_dead_letter_and_the_bus_goes_on(backend: &impl Backend) {
    let scope = Scope::new("failing");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Risky::NAME]).state(recorder.clone()).start().await.expect("start");
    for (n, outcome) in [(1, "error"), (2, "panic"), (3, "permanent"), (4, "ok")] {
        bus.publish(&Risky { n, outcome: outcome.into() }).await.expect("publish");
    }
    let dead_letter_queue = scope.dead_letter_queue(Risky::NAME, "gambler");
    let dead = wait_for_messages(backend, &dead_letter_queue, 3).await;
    let header = |n: u64, name: &str| {
        dead.iter()
            .find(|message| serde_json::from_slice::<Risky>(&message.body).ok().map(|risky| risky.n) == Some(n))
            .and_then(|message| message.headers.get(name).cloned())
            .unwrap_or_else(|| panic!("risky {n} has no {name}: {dead:?}"))
    };
    let reason = |n: u64| header(n, eventing::message::header::ERROR).as_str().unwrap_or_default().to_owned();
    assert!(reason(1).contains("disk full while handling 1"), "{}", reason(1));
    assert!(reason(2).contains("gambler lost on 2"), "{}", reason(2));
    assert!(reason(3).contains("can never succeed"), "{}", reason(3));
    let attempts = |n: u64| header(n, eventing::message::header::ATTEMPTS).as_int();
    assert_eq!((attempts(1), attempts(2), attempts(3)), (Some(3), Some(3), Some(1)));
    for message in &dead {
        assert_eq!(message.header_text(eventing::message::header::LISTENER), Some("gambler"));
        assert_eq!(message.header_text(eventing::message::header::ORIGINAL_ROUTING_KEY), Some(Risky::NAME));
        assert_eq!(message.header_text(eventing::message::header::ORIGINAL_EXCHANGE), Some(scope.exchange.as_str()));
        assert!(message.headers.contains_key(eventing::message::header::FIRST_FAILURE_AT));
    }
    bus.publish(&Risky { n: 5, outcome: "ok".into() }).await.expect("publish after failures");
    let records = recorder.wait_until(WAIT, |records| records.iter().any(|record| record.n == 5)).await;
    let calls = |n: u64| records.iter().filter(|record| record.n == n).count();
    assert_eq!((calls(1), calls(2), calls(3), calls(4), calls(5)), (3, 3, 1, 1, 1), "{records:#?}");
    bus.shutdown().await.expect("shutdown");
    backend.cleanup(&scope).await;
}

/// A handler that fails twice and then succeeds is called three times, with attempts 1, 2
/// and 3, the policy's delay apart, and nothing is dead-lettered.
pub async fn retries_until_the_handler_succeeds(backend: &impl Backend) {
    let scope = Scope::new("retry");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Risky::NAME]).state(recorder.clone()).start().await.expect("start");
    let started = tokio::time::Instant::now();
    bus.publish(&Risky { n: 7, outcome: "flaky".into() }).await.expect("publish");
    let records = recorder.wait_until(WAIT, |records| records.len() >= 3).await;
    let attempts: Vec<u32> = records.iter().map(|record| record.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(
        started.elapsed() >= RETRY_DELAY * 2,
        "two retries wait at least two delays ({:?} passed)",
        started.elapsed()
    );
    assert!(records.iter().all(|record| record.correlation_id == records[0].correlation_id));
    bus.shutdown().await.expect("shutdown");
    assert!(backend.queue_messages(&scope.dead_letter_queue(Risky::NAME, "gambler")).await.is_empty());
    backend.cleanup(&scope).await;
}

/// The retries of the listeners of a service wait in tiers they share, yet each goes back
/// to the listener that failed only: the listener that did not fail sees each event once,
/// and each failing one (competing or per-process) sees it twice.
pub async fn retries_return_to_the_failing_listener_only(backend: &impl Backend) {
    let scope = Scope::new("sharedretry");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[SharedRetry::NAME]).state(recorder.clone()).start().await.expect("start");
    const COUNT: u64 = 5;
    for n in 0..COUNT {
        bus.publish(&SharedRetry { n }).await.expect("publish");
    }
    recorder.wait_until(WAIT, |records| records.len() as u64 >= 5 * COUNT).await;
    // Time for a stray retry to arrive where it should not.
    tokio::time::sleep(RETRY_DELAY * 3).await;
    let records = recorder.records();
    for (listener, attempts) in
        [("never_failing", vec![1]), ("first_time_failing", vec![1, 2]), ("first_time_failing_everywhere", vec![1, 2])]
    {
        for n in 0..COUNT {
            let mut seen: Vec<u32> = records
                .iter()
                .filter(|record| record.listener == listener && record.n == n)
                .map(|record| record.attempt)
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, attempts, "{listener} on event {n}: {records:#?}");
        }
    }
    bus.shutdown().await.expect("shutdown");
    // A non-durable event's queues (expiring, per-process) share the transient tier.
    let [_, tier] = scope.delay_tiers();
    let left = backend.queue_messages(&tier).await;
    assert!(left.is_empty(), "`{tier}` holds {left:?}");
    backend.cleanup(&scope).await;
}

/// A body that is not the event's JSON never reaches the handler: it is dead-lettered with
/// the decode error.
pub async fn undecodable_payloads_are_dead_lettered(backend: &impl Backend) {
    let scope = Scope::new("undecodable");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Ping::NAME]).state(recorder.clone()).start().await.expect("start");
    let raw = backend.transport().await;
    let message = Message {
        body: b"this is not json".to_vec(),
        message_id: "raw-1".into(),
        correlation_id: None,
        causation_id: None,
        event_type: Cow::Borrowed(Ping::NAME),
        content_type: Some(Cow::Borrowed("text/plain")),
        timestamp: SystemTime::now(),
        app_id: None,
        persistent: false,
        attempt: 1,
        headers: Headers::new(),
        reply_to: None,
        expiration: None,
    };
    raw.publish(Route::Exchange { exchange: &scope.exchange, routing_key: Ping::NAME }, message, Origin::Outside)
        .await
        .expect("raw publish");
    let dead = wait_for_messages(backend, &scope.dead_letter_queue(Ping::NAME, "echo"), 1).await;
    let reason = dead[0].header_text(eventing::message::header::ERROR).unwrap_or_default().to_owned();
    assert!(reason.contains("does not decode"), "{reason}");
    assert_eq!(dead[0].body, b"this is not json");
    bus.publish(&Ping { n: 1, chain: false }).await.expect("publish");
    let records = recorder.wait_until(WAIT, |records| !records.is_empty()).await;
    assert_eq!(records.len(), 1, "the handler never saw the bad payload");
    raw.close().await.expect("close raw");
    bus.shutdown().await.expect("shutdown");
    backend.cleanup(&scope).await;
}

/// Shutdown waits for handlers in flight, which finish and are acknowledged: a new bus
/// does not get them again.
pub async fn shutdown_drains_in_flight_handlers(backend: &impl Backend) {
    let scope = Scope::new("drain");
    let recorder = Recorder::default();
    let gate = Gate::default();
    let bus =
        scope.builder(backend, &[Slow::NAME]).state(recorder.clone()).state(gate.clone()).start().await.expect("start");
    for n in 0..3 {
        bus.publish(&Slow { n }).await.expect("publish");
    }
    gate.entered(3).await;
    let mut shutdown = tokio::spawn({
        let bus = bus.clone();
        async move { bus.shutdown().await }
    });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut shutdown).await;
    assert!(early.is_err(), "shutdown returned while handlers were still running");
    gate.release(3);
    shutdown.await.expect("join").expect("shutdown");
    assert_eq!(recorder.records().len(), 3, "in-flight handlers finished before shutdown returned");
    assert!(backend.queue_messages(&scope.queue(Slow::NAME, "sluggish")).await.is_empty(), "all acknowledged");
    backend.cleanup(&scope).await;
}

/// With concurrency 1, events are handled in the order they were published.
pub async fn concurrency_one_keeps_order(backend: &impl Backend) {
    let scope = Scope::new("order");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Sequenced::NAME]).state(recorder.clone()).start().await.expect("start");
    for n in 0..50 {
        bus.publish(&Sequenced { n }).await.expect("publish");
    }
    let records = recorder.wait_until(WAIT, |records| records.len() >= 50).await;
    let order: Vec<u64> = records.iter().map(|record| record.n).collect();
    assert_eq!(order, (0..50).collect::<Vec<_>>());
    bus.shutdown().await.expect("shutdown");
    backend.cleanup(&scope).await;
}

/// Headers given to `publish_with` reach the handler; reserved names are refused and
/// nothing is sent.
pub async fn headers_reach_the_handler(backend: &impl Backend) {
    let scope = Scope::new("headers");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Ping::NAME]).state(recorder.clone()).start().await.expect("start");
    for reserved in ["x-eventing-attempt", "X-Eventing-Anything"] {
        let refused = bus.publish_with(&Ping { n: 0, chain: false }, [(reserved, "9")]).await;
        assert!(matches!(refused, Err(Error::ReservedHeader { ref name }) if name == reserved), "{refused:?}");
    }
    // AMQP carries header names in short strings of at most 255 bytes (lapin panicked).
    let too_long = "h".repeat(256);
    let refused = bus.publish_with(&Ping { n: 0, chain: false }, [(too_long.as_str(), "v")]).await;
    assert!(matches!(refused, Err(Error::InvalidHeader { ref name, .. }) if *name == too_long), "{refused:?}");
    bus.publish_with(&Ping { n: 1, chain: false }, [("tenant", HeaderValue::from("acme")), ("priority", 5_i64.into())])
        .await
        .expect("publish with headers");
    bus.publish(&Ping { n: 2, chain: false }).await.expect("publish");
    let records = recorder.wait_until(WAIT, |records| records.len() >= 2).await;
    let first = records.iter().find(|record| record.n == 1).expect("the first ping");
    assert_eq!(first.headers.get("tenant").and_then(HeaderValue::as_str), Some("acme"));
    assert_eq!(first.headers.get("priority").and_then(HeaderValue::as_int), Some(5));
    let second = records.iter().find(|record| record.n == 2).expect("the second ping");
    assert!(!second.headers.contains_key("tenant"), "{second:?}");
    bus.shutdown().await.expect("shutdown");
    assert_eq!(recorder.records().len(), 2, "the refused publishes sent nothing: {:?}", recorder.records());
    backend.cleanup(&scope).await;
}

/// Declined deliveries are acknowledged, never reach `on`, and are neither retried nor
/// dead-lettered.
pub async fn filters_decline_without_retrying(backend: &impl Backend) {
    let scope = Scope::new("filter");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Filtered::NAME]).state(recorder.clone()).start().await.expect("start");
    for n in 0..7 {
        bus.publish(&Filtered { n }).await.expect("publish");
    }
    let records = recorder.wait_until(WAIT, |records| records.len() >= 4).await;
    let seen: Vec<u64> = records.iter().map(|record| record.n).collect();
    assert_eq!(seen, vec![0, 2, 4, 6]);
    bus.shutdown().await.expect("shutdown");
    assert_eq!(recorder.records().len(), 4, "no odd number reached the handler");
    for queue in [
        scope.queue(Filtered::NAME, "picky"),
        scope.dead_letter_queue(Filtered::NAME, "picky"),
        scope.delay_tiers()[1].clone(),
    ] {
        let left = backend.queue_messages(&queue).await;
        assert!(left.is_empty(), "`{queue}` holds {left:?}");
    }
    backend.cleanup(&scope).await;
}

/// A tenant in a task-local of the publisher reaches the handler's task-local, and the
/// follow-up it publishes, through the interceptor's `send` and `handle`.
pub async fn interceptors_carry_a_task_local_through_a_chain(backend: &impl Backend) {
    let scope = Scope::new("intercept");
    let recorder = Recorder::default();
    let bus = scope
        .builder(backend, &[FirstHop::NAME, SecondHop::NAME])
        .interceptor(TenantPropagation)
        .state(recorder.clone())
        .start()
        .await
        .expect("start");
    TENANT.scope("acme".to_owned(), bus.publish(&FirstHop { n: 1 })).await.expect("publish as acme");
    bus.publish(&FirstHop { n: 2 }).await.expect("publish with no tenant");
    let records = recorder.wait_until(WAIT, |records| records.len() >= 4).await;
    let noted = |listener: &str, n: u64| {
        let record = records.iter().find(|record| record.listener == listener && record.n == n).expect("record");
        (record.note.clone(), record.headers.get("tenant").and_then(HeaderValue::as_str).map(str::to_owned))
    };
    assert_eq!(noted("first_hopper", 1), (Some("acme".into()), Some("acme".into())));
    assert_eq!(noted("second_hopper", 1), (Some("acme".into()), Some("acme".into())));
    assert_eq!(noted("first_hopper", 2), (Some("none".into()), None));
    assert_eq!(noted("second_hopper", 2), (Some("none".into()), Some("none".into())), "the handler scoped \"none\"");
    let second = records.iter().find(|record| record.listener == "second_hopper").expect("second hop");
    assert_eq!(second.headers.get("hop").and_then(HeaderValue::as_str), Some("2"), "ctx.publish_with's header");
    bus.shutdown().await.expect("shutdown");
    backend.cleanup(&scope).await;
}

/// An attempt header beyond the retry policy (an outside publisher's 999999) does not skip
/// the retries: the delivery counts as a first attempt.
pub async fn outside_attempt_headers_do_not_skip_retries(backend: &impl Backend) {
    let scope = Scope::new("attempt");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &[Risky::NAME]).state(recorder.clone()).start().await.expect("start");
    let raw = backend.transport().await;
    let body = serde_json::to_vec(&Risky { n: 7, outcome: "flaky".into() }).expect("encode");
    let message = Message {
        body,
        message_id: "outside-attempt".into(),
        correlation_id: None,
        causation_id: None,
        event_type: Cow::Borrowed(Risky::NAME),
        content_type: Some(Cow::Borrowed("application/json")),
        timestamp: SystemTime::now(),
        app_id: None,
        persistent: false,
        attempt: 999_999,
        headers: Headers::new(),
        reply_to: None,
        expiration: None,
    };
    raw.publish(Route::Exchange { exchange: &scope.exchange, routing_key: Risky::NAME }, message, Origin::Outside)
        .await
        .expect("raw publish");
    let records = recorder.wait_until(WAIT, |records| records.len() >= 3).await;
    let attempts: Vec<u32> = records.iter().map(|record| record.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3], "flaky fails twice, then succeeds on attempt 3");
    bus.shutdown().await.expect("shutdown");
    assert!(backend.queue_messages(&scope.dead_letter_queue(Risky::NAME, "gambler")).await.is_empty());
    backend.cleanup(&scope).await;
}

/// A pattern listener takes a family of events, published by name, and nothing else;
/// `publish_raw` reaches typed listeners, and refuses bad names and bodies.
pub async fn pattern_listeners_take_a_family(backend: &impl Backend) {
    let scope = Scope::new("family");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &["billing.#", Ping::NAME]).state(recorder.clone()).start().await.expect("start");
    let refused = bus.publish_raw(Ping::NAME, b"{not json".to_vec()).await;
    assert!(matches!(refused, Err(Error::InvalidJson { .. })), "{refused:?}");
    // Longer than 255 bytes: AMQP carries event names in short strings (lapin panicked).
    let too_long = format!("billing.{}", "x".repeat(250));
    for bad in ["billing.*", "billing..paid", "", "billing paid", too_long.as_str()] {
        let refused = bus.publish_raw(bad, numbered(0)).await;
        assert!(matches!(refused, Err(Error::InvalidName { .. })), "`{bad}`: {refused:?}");
    }
    for (n, name) in
        [(1, "crm.lead_created"), (2, "billing.invoice_paid"), (3, "billing.refund.issued"), (4, "billing")]
    {
        bus.publish_raw(name, numbered(n)).await.expect("publish_raw");
    }
    bus.publish_raw(Ping::NAME, br#"{"n":5,"chain":false}"#.to_vec()).await.expect("publish_raw a typed event");
    let records = recorder.wait_until(WAIT, |records| records.len() >= 4).await;
    let mut audited: Vec<(u64, String)> = records
        .iter()
        .filter(|record| record.listener == "audit_trail")
        .map(|record| (record.n, record.note.clone().unwrap_or_default()))
        .collect();
    audited.sort();
    let expected: Vec<(u64, String)> =
        [(2, "billing.invoice_paid"), (3, "billing.refund.issued"), (4, "billing")].map(|(n, s)| (n, s.into())).into();
    assert_eq!(audited, expected, "billing.# takes the billing family and not crm.lead_created");
    let echo: Vec<u64> = records.iter().filter(|record| record.listener == "echo").map(|record| record.n).collect();
    assert_eq!(echo, vec![5], "the typed listener got the raw publish, and nothing refused was sent");
    bus.shutdown().await.expect("shutdown");
    backend.cleanup(&scope).await;
}

/// `#` takes every event exactly once, typed or raw.
pub async fn hash_takes_every_event_once(backend: &impl Backend) {
    let scope = Scope::new("store");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &["#"]).state(recorder.clone()).start().await.expect("start");
    bus.publish_raw("anything.at.all", numbered(1)).await.expect("publish_raw");
    bus.publish_raw("x", numbered(2)).await.expect("publish_raw");
    bus.publish(&Stored { n: 3 }).await.expect("publish typed");
    recorder.wait_until(WAIT, |records| records.len() >= 3).await;
    bus.shutdown().await.expect("shutdown");
    let mut stored: Vec<(u64, String)> =
        recorder.records().into_iter().map(|record| (record.n, record.note.unwrap_or_default())).collect();
    stored.sort();
    let expected: Vec<(u64, String)> =
        [(1, "anything.at.all"), (2, "x"), (3, Stored::NAME)].map(|(n, s)| (n, s.into())).into();
    assert_eq!(stored, expected, "each event once");
    backend.cleanup(&scope).await;
}

/// A `per_process` pattern listener gets every matching event in every process.
pub async fn per_process_pattern_listeners_fan_out(backend: &impl Backend) {
    let scope = Scope::new("feed");
    let recorder = Recorder::default();
    let mut buses = Vec::new();
    for label in ["first", "second"] {
        let bus = scope
            .builder(backend, &["fanout.*"])
            .state(recorder.labeled(label))
            .process_id(label)
            .start()
            .await
            .expect("start");
        buses.push(bus);
    }
    for n in 0..3 {
        buses[0].publish_raw("fanout.news", numbered(n)).await.expect("publish_raw");
    }
    buses[0].publish_raw("fanout.too.deep", numbered(9)).await.expect("publish_raw");
    let records = recorder.wait_until(WAIT, |records| records.len() >= 6).await;
    for label in ["first", "second"] {
        let mut seen: Vec<u64> = records.iter().filter(|record| &*record.bus == label).map(|record| record.n).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2], "bus {label}: `*` is one word, so fanout.too.deep is not taken");
    }
    for bus in buses {
        bus.shutdown().await.expect("shutdown");
    }
    backend.cleanup(&scope).await;
}

/// A failing pattern listener is retried and dead-lettered like any other.
pub async fn failing_pattern_listeners_retry_then_dead_letter(backend: &impl Backend) {
    let scope = Scope::new("rawfail");
    let recorder = Recorder::default();
    let bus = scope.builder(backend, &["gamble.#"]).state(recorder.clone()).start().await.expect("start");
    let body = serde_json::to_vec(&Numbered { n: 1, outcome: "error".into() }).expect("encode");
    bus.publish_raw("gamble.now", body.clone()).await.expect("publish_raw");
    let dead = wait_for_messages(backend, &scope.pattern_dead_letter_queue("raw_gambler"), 1).await;
    assert_eq!(dead[0].body, body);
    assert_eq!(dead[0].event_type, "gamble.now");
    assert_eq!(dead[0].header_text(eventing::message::header::ERROR), Some("raw gamble 1 lost"));
    let attempts: Vec<u32> = recorder.records().iter().map(|record| record.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3], "three attempts, then the dead-letter queue");
    bus.shutdown().await.expect("shutdown");
    backend.cleanup(&scope).await;
}

/// Topic matching, including the seed's own examples, `#` alone, `a.#.b` and empty words,
/// gives the same result on every transport as on RabbitMQ (where an empty routing key
/// has no words, so `*` does not take it, and `a..b` has an empty one that `*` takes).
pub async fn topic_patterns_match_as_on_rabbitmq(backend: &impl Backend) {
    let scope = Scope::new("topic");
    let patterns = ["pylabs.event.crm.*.cancel.#", "pylabs.event.crm.lead.#", "#", "a.#.b", "a.*.b", "*", "a.#", "#.b"];
    let queue_of = |index: usize| format!("{}.pattern{index}", scope.service);
    let topology = Topology {
        exchanges: vec![scope.exchange.clone()],
        queues: (0..patterns.len())
            .map(|index| QueueSpec {
                name: scope.declared(&queue_of(index)),
                lifetime: QueueLifetime::Durable,
                role: QueueRole::Listener,
            })
            .collect(),
        bindings: patterns
            .iter()
            .enumerate()
            .map(|(index, pattern)| BindingSpec {
                exchange: scope.exchange.clone(),
                pattern: (*pattern).to_owned(),
                queue: queue_of(index),
            })
            .collect(),
    };
    let raw = backend.transport().await;
    raw.declare(&topology).await.expect("declare");
    let keys = [
        "pylabs.event.crm.operation.cancel",
        "pylabs.event.crm.operation.cancel.by.user",
        "pylabs.event.crm.user.operation.cancel",
        "pylabs.event.crm.cancel.operation.confirmed",
        "pylabs.event.crm.lead",
        "a.b",
        "a.x.y.b",
        "a..b",
        "a",
        "b",
        "",
    ];
    for key in keys {
        let message = Message {
            body: format!("{key:?}").into_bytes(),
            message_id: format!("key-{key}"),
            correlation_id: None,
            causation_id: None,
            event_type: Cow::Owned(key.to_owned()),
            content_type: Some(Cow::Borrowed("application/json")),
            timestamp: SystemTime::now(),
            app_id: None,
            persistent: false,
            attempt: 1,
            headers: Headers::new(),
            reply_to: None,
            expiration: None,
        };
        raw.publish(Route::Exchange { exchange: &scope.exchange, routing_key: key }, message, Origin::Outside)
            .await
            .expect("publish");
    }
    let expected: [&[&str]; 8] = [
        &["pylabs.event.crm.operation.cancel", "pylabs.event.crm.operation.cancel.by.user"],
        &["pylabs.event.crm.lead"],
        &keys,
        &["a.b", "a.x.y.b", "a..b"],
        &["a..b"],
        &["a", "b"],
        &["a.b", "a.x.y.b", "a..b", "a"],
        &["a.b", "a.x.y.b", "a..b", "b"],
    ];
    let mut mismatches = Vec::new();
    for (index, pattern) in patterns.iter().enumerate() {
        let mut got: Vec<String> = backend
            .queue_messages(&queue_of(index))
            .await
            .into_iter()
            .map(|message| message.message_id.trim_start_matches("key-").to_owned())
            .collect();
        got.sort();
        let mut want: Vec<String> = expected[index].iter().map(|key| (*key).to_owned()).collect();
        want.sort();
        if got != want {
            mismatches.push(format!("`{pattern}`: got {got:?}, want {want:?}"));
        }
    }
    raw.close().await.expect("close");
    backend.cleanup(&scope).await;
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// Polls a queue until it holds `count` messages (dead-letter queues have no consumer to
/// wait on), then returns them.
pub async fn wait_for_messages(backend: &impl Backend, queue: &str, count: usize) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let messages = backend.queue_messages(queue).await;
        if messages.len() >= count {
            return messages;
        }
        assert!(tokio::time::Instant::now() < deadline, "queue `{queue}` has {} of {count} messages", messages.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on the backend that the async
/// function `$backend` returns (`None` skips the case: a laptop without a broker).
#[macro_export]
macro_rules! conformance_suite {
    ($backend:path) => {
        $crate::conformance_suite!(@cases $backend;
            publish_and_handle,
            chaining_through_context,
            competing_and_per_process,
            durable_events_wait_for_their_consumer,
            failing_handlers_dead_letter_and_the_bus_goes_on,
            retries_until_the_handler_succeeds,
            retries_return_to_the_failing_listener_only,
            undecodable_payloads_are_dead_lettered,
            shutdown_drains_in_flight_handlers,
            concurrency_one_keeps_order,
            headers_reach_the_handler,
            filters_decline_without_retrying,
            interceptors_carry_a_task_local_through_a_chain,
            outside_attempt_headers_do_not_skip_retries,
            pattern_listeners_take_a_family,
            hash_takes_every_event_once,
            per_process_pattern_listeners_fan_out,
            failing_pattern_listeners_retry_then_dead_letter,
            topic_patterns_match_as_on_rabbitmq,
        );
    };
    (@cases $backend:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(backend) = $backend().await else { return };
                let created = $crate::conformance::Created::default();
                let case = std::panic::AssertUnwindSafe(created.track($crate::conformance::$case(&backend)));
                // A failed case leaves nothing behind on the broker either.
                if let Err(panic) = futures_util::FutureExt::catch_unwind(case).await {
                    created.cleanup(&backend).await;
                    std::panic::resume_unwind(panic);
                }
            }
        )*
    };
}

//! The DESIGN.md contract, unchanged, compiled and exercised on the in-memory transport.

use std::sync::Mutex;
use std::time::Duration;

use eventing::memory::MemoryBroker;
use eventing::testing::TestBus;
use eventing::{Context, Event, HandlerError, Listener, event, event_listener};
use serde::{Deserialize, Serialize};

#[event] // name "user_created", not durable
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
    pub email: String,
}

#[event(name = "billing.invoice_paid", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvoicePaid {
    pub invoice: String,
}

#[derive(Debug, Default)]
pub struct SendWelcomeMail;

#[event_listener] // name "send_welcome_mail", competing consumers
impl Listener<UserCreated> for SendWelcomeMail {
    async fn on(&self, event: UserCreated, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&InvoicePaid { invoice: format!("welcome-{}", event.user_id) }).await?;
        Ok(())
    }
}

/// The emails whose cache entry was invalidated, by every bus of this test binary (tests
/// run in parallel: each counts only its own users).
static INVALIDATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Debug, Default)]
pub struct InvalidateCache;

#[event_listener(per_process)] // every running process gets every event
impl Listener<UserCreated> for InvalidateCache {
    async fn on(&self, event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        INVALIDATED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event.email);
        Ok(())
    }
}

/// Records every invoice with the context it arrived with.
#[derive(Debug, Default)]
pub struct RecordInvoice {
    seen: Mutex<Vec<(String, String, Option<String>)>>,
}

#[event_listener]
impl Listener<InvoicePaid> for RecordInvoice {
    async fn on(&self, event: InvoicePaid, ctx: &Context) -> Result<(), HandlerError> {
        if event.invoice == "broken" {
            std::fs::read("/definitely/not/here")?; // io::Error through `?`
        }
        let mut seen = self.seen.lock().map_err(|_| HandlerError::msg("poisoned"))?;
        seen.push((event.invoice, ctx.correlation_id().to_owned(), ctx.causation_id().map(str::to_owned)));
        Ok(())
    }
}

fn is_durable<E: Event>() -> bool {
    E::DURABLE
}

#[test]
fn names_and_durability_follow_the_attributes() {
    assert_eq!(UserCreated::NAME, "user_created");
    assert!(!is_durable::<UserCreated>());
    assert_eq!(InvoicePaid::NAME, "billing.invoice_paid");
    assert!(is_durable::<InvoicePaid>());
}

#[tokio::test]
async fn queues_are_named_and_declared_as_the_table_says() {
    let bus = TestBus::start_with(
        eventing::builder().process_id("host-1").retry_policy(eventing::RetryPolicy::fixed(3, Duration::from_secs(1))),
    )
    .await
    .unwrap();
    let names: Vec<(String, eventing::transport::QueueLifetime)> =
        bus.broker().queues().into_iter().map(|queue| (queue.spec.name, queue.spec.lifetime)).collect();
    use eventing::transport::QueueLifetime::*;
    let expiring = Expiring { idle: Duration::from_secs(1800) };
    assert_eq!(
        names,
        vec![
            ("eventing_tests.billing.invoice_paid.record_invoice".to_owned(), Durable),
            ("eventing_tests.billing.invoice_paid.record_invoice.dead_letter".to_owned(), Durable),
            // The service's delay tiers, shared by its listeners: of durable queues, and of
            // the others (a per-process queue, a non-durable event's expiring queue).
            ("eventing_tests.delay.1000ms".to_owned(), Durable),
            ("eventing_tests.delay.1000ms.transient".to_owned(), Durable),
            ("eventing_tests.user_created.invalidate_cache.dead_letter".to_owned(), Durable),
            ("eventing_tests.user_created.invalidate_cache.host-1".to_owned(), Exclusive),
            ("eventing_tests.user_created.send_welcome_mail".to_owned(), expiring),
            ("eventing_tests.user_created.send_welcome_mail.dead_letter".to_owned(), Durable),
        ]
    );
    bus.shutdown().await.unwrap();
    let left: Vec<String> = bus.broker().queues().into_iter().map(|queue| queue.spec.name).collect();
    assert!(!left.iter().any(|name| name.ends_with("host-1")), "per-process queue left behind: {left:?}");
}

#[tokio::test]
async fn a_handler_publishes_follow_ups_that_continue_the_chain() {
    let bus = TestBus::start().await.unwrap();
    bus.publish(&UserCreated { user_id: 7, email: "a@example.com".into() }).await.unwrap();
    bus.settle().await.unwrap();
    let published = bus.published_messages();
    assert_eq!(published.len(), 2, "{published:?}");
    let (created, paid) = (&published[0].message, &published[1].message);
    assert_eq!(paid.event_type, "billing.invoice_paid");
    assert_eq!(paid.correlation_id.as_deref(), Some(created.message_id.as_str()));
    assert_eq!(paid.causation_id.as_deref(), Some(created.message_id.as_str()));
    assert!(paid.persistent && !created.persistent);
    assert_eq!(bus.published::<InvoicePaid>()[0].invoice, "welcome-7");
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_buses_share_competing_work_and_both_get_per_process_events() {
    let broker = MemoryBroker::new();
    let first = TestBus::start_on(broker.clone(), eventing::builder().process_id("first")).await.unwrap();
    let second = TestBus::start_on(broker.clone(), eventing::builder().process_id("second")).await.unwrap();
    for user_id in 0..10 {
        first.publish(&UserCreated { user_id, email: format!("{user_id}@fanout.example") }).await.unwrap();
    }
    first.settle().await.unwrap();
    // Competing: each UserCreated handled once across both buses -> one invoice each.
    let mut invoices: Vec<String> = first.published::<InvoicePaid>().into_iter().map(|paid| paid.invoice).collect();
    invoices.sort();
    let mut expected: Vec<String> = (0..10).map(|id| format!("welcome-{id}")).collect();
    expected.sort();
    assert_eq!(invoices, expected);
    // Per process: both buses invalidated for every event.
    let invalidated = INVALIDATED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert_eq!(invalidated.iter().filter(|email| email.ends_with("@fanout.example")).count(), 20);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

/// Paused time: the retries' waits (1 s, 2 s, 4 s, 8 s by default) pass instantly.
#[tokio::test(start_paused = true)]
async fn an_io_error_through_question_mark_is_retried_then_dead_lettered_and_the_bus_keeps_working() {
    let bus = TestBus::start().await.unwrap();
    bus.publish(&InvoicePaid { invoice: "broken".into() }).await.unwrap();
    bus.publish(&InvoicePaid { invoice: "fine".into() }).await.unwrap();
    bus.settle().await.unwrap();
    let dead = bus.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].queue.as_ref(), "eventing_tests.billing.invoice_paid.record_invoice.dead_letter");
    assert_eq!(dead[0].listener(), Some("record_invoice"));
    assert!(dead[0].reason().unwrap().contains("No such file"), "{:?}", dead[0].reason());
    assert_eq!(dead[0].message.headers.get(eventing::message::header::ATTEMPTS).and_then(|v| v.as_int()), Some(5));
    assert_eq!(dead[0].decode::<InvoicePaid>().unwrap().invoice, "broken");
    bus.publish(&InvoicePaid { invoice: "after".into() }).await.unwrap();
    bus.settle().await.unwrap();
    assert_eq!(bus.dead_letters().len(), 1);
    bus.shutdown().await.unwrap();
}

//! DESIGN.md part 2, "Envelope interceptors", compiled unchanged, and the order in which
//! registered and given interceptors run, on the in-memory transport.

use std::sync::Mutex;

use eventing::testing::TestBus;
use eventing::{
    Context, Envelope, Event, HandlerError, Interceptor, Listener, Next, event, event_listener, interceptor,
};
use serde::{Deserialize, Serialize};

tokio::task_local! {
    static TENANT: String;
}

// ---- the DESIGN.md example, unchanged ----

#[derive(Debug, Default)]
pub struct TenantPropagation;

#[interceptor] // applies to every publish and every delivery
impl Interceptor for TenantPropagation {
    fn send(&self, envelope: &mut Envelope) {
        // default: nothing
        if let Ok(tenant) = TENANT.try_with(|t| t.clone()) {
            envelope.set("tenant", tenant);
        }
    }
    async fn handle(&self, envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
        let tenant = envelope.get("tenant").unwrap_or("none").to_owned(); // default: next.run()
        TENANT.scope(tenant, next.run()).await
    }
}

// ---- the program around it ----

/// What ran, in order.
static TRACE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn trace(step: impl Into<String>) {
    TRACE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(step.into());
}

fn take_trace() -> Vec<String> {
    std::mem::take(&mut *TRACE.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

#[event(name = "intercepted.order_placed")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

#[event(name = "intercepted.order_confirmed")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub id: u64,
    pub tenant: String,
}

#[derive(Debug, Default)]
pub struct ConfirmOrder;

#[event_listener]
impl Listener<OrderPlaced> for ConfirmOrder {
    async fn on(&self, order: OrderPlaced, _ctx: &Context) -> Result<(), HandlerError> {
        let tenant = TENANT.try_with(Clone::clone).unwrap_or_default();
        trace(format!("handler {tenant}"));
        _ctx.publish(&OrderConfirmed { id: order.id, tenant }).await?;
        Ok(())
    }
}

/// Runs outside the tenant interceptor (lower order).
#[derive(Debug, Default)]
pub struct Outermost;

#[interceptor(order = -5)]
impl Interceptor for Outermost {
    fn send(&self, envelope: &mut Envelope) {
        trace(format!("outermost send {}", envelope.event_name()));
        // Reserved: refused with a logged error, the message goes on without it.
        envelope.set("x-eventing-attempt", 99_i64);
    }
    async fn handle(&self, envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
        trace(format!("outermost handle {} in {}", envelope.event_name(), envelope.listener().unwrap_or("?")));
        let result = next.run().await;
        trace("outermost done");
        result
    }
}

/// Given to the builder: runs inside every registered interceptor of order 0 or less.
struct Innermost;

impl Interceptor for Innermost {
    async fn handle(&self, envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
        trace(format!("innermost handle attempt {}", envelope.attempt()));
        next.run().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interceptors_wrap_publish_and_handle_in_order() {
    let bus = TestBus::start_with(eventing::builder().interceptor(Innermost)).await.expect("start");
    TENANT.scope("acme".to_owned(), bus.publish(&OrderPlaced { id: 1 })).await.expect("publish");
    bus.settle().await.expect("settle");
    assert_eq!(bus.published::<OrderConfirmed>(), vec![OrderConfirmed { id: 1, tenant: "acme".into() }]);
    let placed = bus
        .broker()
        .published()
        .into_iter()
        .find(|published| published.message.event_type == OrderPlaced::NAME)
        .expect("published");
    assert_eq!(placed.message.header_text("tenant"), Some("acme"));
    assert_eq!(placed.message.attempt, 1, "an interceptor cannot set x-eventing-* headers");
    assert!(!placed.message.headers.contains_key("x-eventing-attempt"));
    let trace = take_trace();
    let expected_prefix = [
        "outermost send intercepted.order_placed",
        "outermost handle intercepted.order_placed in confirm_order",
        "innermost handle attempt 1",
        "handler acme",
        "outermost send intercepted.order_confirmed",
        "outermost done",
    ];
    assert_eq!(&trace[..expected_prefix.len()], expected_prefix, "{trace:#?}");
    bus.shutdown().await.expect("shutdown");
}

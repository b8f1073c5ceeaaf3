//! Two pattern listeners with one name would share a queue: start fails naming both types.

use eventing::{Context, HandlerError, Listener, RawEvent, event_listener};

#[derive(Debug, Default)]
pub struct Audit;

#[event_listener(pattern = "billing.#")]
impl Listener<RawEvent> for Audit {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct CrmAudit;

#[event_listener(name = "audit", pattern = "crm.#")]
impl Listener<RawEvent> for CrmAudit {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn pattern_listeners_with_one_name_fail_at_start_naming_both_types() {
    let error = eventing::builder().service("shop").start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::DuplicateListener { .. }), "{text}");
    assert!(text.contains("queue `shop.audit`"), "{text}");
    assert!(text.contains("duplicate_pattern_listeners::Audit"), "{text}");
    assert!(text.contains("duplicate_pattern_listeners::CrmAudit"), "{text}");
}

#[tokio::test]
async fn the_topology_binds_each_pattern() {
    let topology = eventing::builder()
        .service("shop")
        .listeners(|info| info.rust_type.ends_with("::Audit"))
        .topology()
        .expect("topology");
    let binding = topology.bindings.iter().find(|binding| binding.queue == "shop.audit").expect("a binding");
    assert_eq!(binding.pattern, "billing.#");
    let names: Vec<&str> = topology.queues.iter().map(|queue| queue.name.as_str()).collect();
    assert!(names.contains(&"shop.audit.dead_letter"), "{names:?}");
    assert!(names.contains(&"shop.delay.1000ms"), "the service's delay tier: {names:?}");
}

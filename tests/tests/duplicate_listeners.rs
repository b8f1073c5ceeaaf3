//! Two listener types that would share one queue: start fails naming both Rust types.

use eventing::{Context, HandlerError, Listener, event, event_listener};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[derive(Debug, Default)]
pub struct Store;

#[event_listener]
impl Listener<UserCreated> for Store {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Archive;

#[event_listener(name = "store", per_process)]
impl Listener<UserCreated> for Archive {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn duplicate_listener_names_fail_at_start_naming_both_types() {
    let error = eventing::builder().start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::DuplicateListener { .. }), "{text}");
    assert!(text.contains("eventing_tests.user_created.store"), "{text}");
    assert!(text.contains("duplicate_listeners::Store"), "{text}");
    assert!(text.contains("duplicate_listeners::Archive"), "{text}");
}

#[tokio::test]
async fn a_different_service_per_listener_is_still_one_queue_each() {
    // Filtering one of them out removes the clash: only the registrations that start count.
    let bus = eventing::builder()
        .url("memory://duplicate-listeners")
        .listeners(|info| !info.rust_type.ends_with("Archive"))
        .start()
        .await
        .unwrap();
    bus.shutdown().await.unwrap();
}

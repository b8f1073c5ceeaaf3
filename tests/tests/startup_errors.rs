//! What fails at start, and how it names the culprit.

use eventing::{Context, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[derive(Clone)]
pub struct DatabasePool {
    pub url: String,
}

pub struct StoreUser {
    pool: DatabasePool,
}

impl FromState for StoreUser {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { pool: state.get::<DatabasePool>()?.clone() })
    }
}

#[event_listener]
impl Listener<UserCreated> for StoreUser {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        assert!(!self.pool.url.is_empty());
        Ok(())
    }
}

#[tokio::test]
async fn a_missing_listener_dependency_names_the_listener_and_the_type() {
    let error = eventing::builder().url("memory://startup-missing").start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::MissingState { .. }), "{text}");
    assert!(text.contains("startup_errors::StoreUser"), "{text}");
    assert!(text.contains("startup_errors::DatabasePool"), "{text}");
}

#[tokio::test]
async fn state_given_to_the_builder_builds_the_listener() {
    let bus = eventing::builder()
        .url("memory://startup-state")
        .state(DatabasePool { url: "postgres://localhost/test".into() })
        .start()
        .await
        .unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_scheme_lists_the_known_ones_and_hides_the_password() {
    let error = eventing::builder()
        .url("kafka://user:hunter2@localhost:9092")
        .state(DatabasePool { url: String::new() })
        .start()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::UnknownScheme { .. }), "{text}");
    assert!(text.contains("`kafka`") && text.contains("known schemes: memory"), "{text}");
    assert!(!text.contains("hunter2") && text.contains("user:***@localhost"), "{text}");
}

#[tokio::test]
async fn a_url_without_a_scheme_is_invalid() {
    let error =
        eventing::builder().url("localhost:5672").state(DatabasePool { url: String::new() }).start().await.unwrap_err();
    assert!(matches!(error, eventing::Error::InvalidUrl { .. }), "{error}");
}

#[tokio::test]
async fn invalid_configured_names_fail_naming_the_setting() {
    for (builder, kind) in [
        (eventing::builder().service("my service"), "service"),
        (eventing::builder().process_id("a.b"), "process id"),
        (eventing::builder().exchange("events.*"), "exchange"),
    ] {
        let error = builder.url("memory://startup-names").start().await.unwrap_err();
        assert!(matches!(error, eventing::Error::InvalidName { kind: k, .. } if k == kind), "{error}");
    }
}

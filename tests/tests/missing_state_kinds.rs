//! A start that misses state names what cannot be built as what it is: the error said "a
//! listener" for an interceptor, a request handler or a recurring item too. Its own binary:
//! the registrations here would fail every other test's start.

use eventing::{
    Context, Envelope, FromState, HandlerError, Interceptor, Listener, MissingState, Next, State, event,
    event_listener, interceptor,
};
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct AuditSink;

#[derive(Debug)]
pub struct Audit;

impl FromState for Audit {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        state.get::<AuditSink>()?;
        Ok(Self)
    }
}

#[interceptor]
impl Interceptor for Audit {
    async fn handle(&self, _envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
        next.run().await
    }
}

#[event(name = "kinds.thing_done")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThingDone;

#[derive(Debug, Default)]
pub struct Ignore;

#[event_listener]
impl Listener<ThingDone> for Ignore {
    async fn on(&self, _event: ThingDone, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_missing_interceptor_dependency_is_not_called_a_listener() {
    let error = eventing::builder().url("memory://missing-state-kinds").start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::MissingState { .. }), "{text}");
    assert!(text.contains("`missing_state_kinds::Audit` needs `missing_state_kinds::AuditSink`"), "{text}");
    assert!(!text.contains("listener"), "an interceptor is not a listener: {text}");
}

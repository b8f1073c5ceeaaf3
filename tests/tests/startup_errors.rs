//! What fails at start, how it names the culprit, and what a start says about itself:
//! the service name it runs as and a warning when it has no listener.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use eventing::testing::TestBus;
use eventing::transport::{
    BoxError, BoxFuture, QueueSpec, Route, Subscription, Topology, Transport, TransportError, ready,
};
use eventing::{Builder, Context, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[derive(Debug, Clone)]
pub struct DatabasePool {
    pub url: String,
}

#[derive(Debug)]
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

#[derive(Debug, Clone)]
pub struct Mailer;

/// Optional: its absence is no reason to fail.
#[derive(Debug, Clone)]
pub struct AuditLog;

/// Needs two values, and asks for both before its first `?`.
#[derive(Debug)]
pub struct SendReceipt {
    pool: DatabasePool,
    audit: Option<AuditLog>,
}

impl FromState for SendReceipt {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        let (mailer, pool) = (state.get::<Mailer>(), state.get::<DatabasePool>());
        let audit = state.try_get::<AuditLog>().cloned();
        mailer?;
        Ok(Self { pool: pool?.clone(), audit })
    }
}

#[event_listener]
impl Listener<UserCreated> for SendReceipt {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        assert!(!self.pool.url.is_empty() && self.audit.is_none());
        Ok(())
    }
}

/// `on` written without `async`, returning `impl Future`, as the trait allows: the macro
/// accepts it (a missing `async` is an error only when `on` returns nothing or a `Result`).
#[derive(Debug, Default)]
pub struct CountUsers;

#[event_listener]
impl Listener<UserCreated> for CountUsers {
    #[allow(clippy::manual_async_fn, reason = "this form is what the test is about")]
    fn on(
        &self,
        event: UserCreated,
        _ctx: &Context,
    ) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send {
        async move {
            assert!(event.user_id > 0);
            Ok(())
        }
    }
}

/// A builder with every value the listeners of this file need.
fn with_state(builder: Builder) -> Builder {
    builder.state(DatabasePool { url: "postgres://localhost/test".into() }).state(Mailer)
}

#[tokio::test]
async fn a_missing_listener_dependency_names_every_listener_and_every_type() {
    let error = eventing::builder().url("memory://startup-missing").start().await.unwrap_err();
    let text = error.to_string();
    let eventing::Error::MissingState { missing } = &error else { panic!("not MissingState: {text}") };
    assert_eq!(
        missing,
        &[
            ("startup_errors::SendReceipt", vec!["startup_errors::Mailer", "startup_errors::DatabasePool"]),
            ("startup_errors::StoreUser", vec!["startup_errors::DatabasePool"]),
        ],
        "{text}"
    );
    assert!(
        text.contains("`startup_errors::SendReceipt` needs `startup_errors::Mailer`, `startup_errors::DatabasePool`")
    );
    assert!(text.contains("`startup_errors::StoreUser` needs `startup_errors::DatabasePool`"), "{text}");
    assert!(text.contains("eventing::builder().state(...)") && !text.contains("AuditLog"), "{text}");
}

#[tokio::test]
async fn state_given_to_the_builder_builds_the_listener() {
    let bus = with_state(eventing::builder()).url("memory://startup-state").start().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_scheme_lists_the_known_ones_and_hides_the_password() {
    let error = with_state(eventing::builder()).url("kafka://user:hunter2@localhost:9092").start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::UnknownScheme { .. }), "{text}");
    assert!(text.contains("`kafka`") && text.contains("known schemes: memory"), "{text}");
    assert!(!text.contains("hunter2") && text.contains("user:***@localhost"), "{text}");
}

#[tokio::test]
async fn a_url_without_a_scheme_is_invalid() {
    let error = with_state(eventing::builder()).url("localhost:5672").start().await.unwrap_err();
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

/// `fn main() -> Result<(), eventing::Error>` prints the error's `Debug`: the advice, not a
/// struct dump.
#[tokio::test]
async fn main_returning_the_error_prints_the_message_not_the_struct() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventing-test-run"))
        .env("EVENTING_URL", "kafka://user:hunter2@localhost:9092")
        .stdout(Stdio::null())
        .output()
        .await
        .expect("the program runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("Error: no transport for scheme `kafka`"), "{stderr}");
    assert!(stderr.contains("add the `eventing-amqp` dependency and `use eventing_amqp as _;`"), "{stderr}");
    assert!(!stderr.contains("UnknownScheme") && !stderr.contains("hunter2"), "{stderr}");
}

/// An error whose text leaves out its cause, as many library errors do.
#[derive(Debug)]
struct Layer {
    text: &'static str,
    source: Option<Box<Layer>>,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text)
    }
}

impl std::error::Error for Layer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|layer| layer as _)
    }
}

/// A transport whose declare fails with a chain of causes.
struct FailingDeclare;

impl Transport for FailingDeclare {
    fn declare<'a>(&'a self, _: &'a Topology) -> BoxFuture<'a, Result<(), TransportError>> {
        let os = Layer { text: "os error 104", source: None };
        let reset = Layer { text: "connection reset by peer", source: Some(Box::new(os)) };
        let handshake = Layer { text: "TLS handshake failed", source: Some(Box::new(reset)) };
        let source: BoxError = Box::new(handshake);
        ready(Err(TransportError::Other { context: "opening a channel".into(), source }))
    }

    fn publish<'a>(
        &'a self,
        _: Route<'a>,
        _: eventing::message::Message,
        _: eventing::transport::Origin,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        ready(Err(TransportError::Closed))
    }

    fn consume<'a>(&'a self, _: &'a QueueSpec, _: u16) -> BoxFuture<'a, Result<Box<dyn Subscription>, TransportError>> {
        Box::pin(std::future::ready(Err(TransportError::Closed)))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        ready(Ok(()))
    }
}

#[tokio::test]
async fn debug_of_an_error_shows_the_message_then_the_causes_it_does_not_already_say() {
    let error = with_state(eventing::builder()).transport(FailingDeclare).start().await.unwrap_err();
    assert!(matches!(error, eventing::Error::Declare { .. }), "{error}");
    assert_eq!(
        format!("{error:?}"),
        "declaring the topology failed: opening a channel: TLS handshake failed\n\n\
         Caused by:\n    0: connection reset by peer\n    1: os error 104"
    );
    let eventing::Error::Declare { source } = &error else { unreachable!() };
    assert_eq!(
        format!("{source:?}"),
        "opening a channel: TLS handshake failed\n\nCaused by:\n    0: connection reset by peer\n    1: os error 104"
    );
    let missing = State::default().get::<Mailer>().map(|_| ()).unwrap_err();
    assert_eq!(format!("{missing:?}"), missing.to_string());
}

/// Without a configured service, the bus is named after its listeners' crate, like its
/// queues: `app_id` of what it publishes (and the connection name) and queue names agree.
#[tokio::test]
async fn the_bus_is_named_after_its_listeners_crate_when_no_service_is_configured() {
    let bus = TestBus::start_with(with_state(eventing::builder())).await.unwrap();
    bus.publish(&UserCreated { user_id: 1 }).await.unwrap();
    bus.settle().await.unwrap();
    let app_ids: Vec<_> = bus.published_messages().iter().map(|published| published.message.app_id.clone()).collect();
    assert_eq!(app_ids, [Some("eventing_tests".into())]);
    let queues = &bus.bus().topology().queues;
    assert!(queues.iter().all(|queue| queue.name.starts_with("eventing_tests.")), "{queues:?}");
    bus.shutdown().await.unwrap();

    let bus = TestBus::start_with(with_state(eventing::builder()).service("shop")).await.unwrap();
    bus.publish(&UserCreated { user_id: 2 }).await.unwrap();
    assert_eq!(bus.published_messages()[0].message.app_id.as_deref(), Some("shop"));
    bus.shutdown().await.unwrap();

    // No listener to take a crate from: the executable, in snake case like every name.
    let bus = TestBus::start_with(eventing::builder().listeners(|_| false)).await.unwrap();
    bus.publish(&UserCreated { user_id: 3 }).await.unwrap();
    let app_id = bus.published_messages()[0].message.app_id.clone().expect("an app id");
    assert!(app_id.starts_with("startup_errors_") && !app_id.contains('-'), "{app_id}");
    bus.shutdown().await.unwrap();
}

/// Log lines written while it is alive, through a `tracing` subscriber of this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_bus_without_listeners_warns_and_names_the_filter() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = with_state(eventing::builder()).url("memory://startup-warn").start().await.unwrap();
    bus.shutdown().await.unwrap();
    assert!(!logs.text().contains("WARN"), "{}", logs.text());

    let bus = eventing::builder().url("memory://startup-warn").listeners(|_| false).start().await.unwrap();
    bus.shutdown().await.unwrap();
    let text = logs.text();
    assert!(text.contains("WARN") && text.contains("`.listeners(...)` excluded every one of the"), "{text}");
    assert!(text.contains("so this bus only publishes"), "{text}");
}

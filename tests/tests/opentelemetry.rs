//! The `opentelemetry` feature: one trace from the first publish through a two-hop chain
//! (publish A → handle A → publish B → handle B), on the in-memory transport and on
//! RabbitMQ, recorded by the SDK's in-memory exporter; and a retried delivery's attempts
//! both continue the publisher's trace; a request's caller and handler are one trace too.
//!
//! One subscriber and one exporter serve the whole binary (both are global); each test
//! runs on its own exchange and picks its spans by `messaging.destination.name`.

mod support;

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use eventing::memory::MemoryBroker;
use eventing::{
    Builder, Context, HandlerError, Listener, ListenerInfo, Request as _, RequestHandler, event, event_listener,
    request, request_handler,
};
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use support::broker::{delete_scope, reachable_amqp_url, unique};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[event(name = "otel.order_placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The test run (its exchange), carried through the chain.
    pub run: String,
}

#[event(name = "otel.order_shipped")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderShipped {
    pub run: String,
}

#[derive(Debug, Default)]
pub struct ShipOrder;

#[event_listener]
impl Listener<OrderPlaced> for ShipOrder {
    async fn on(&self, order: OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&OrderShipped { run: order.run }).await?;
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct NotifyCustomer;

#[event_listener]
impl Listener<OrderShipped> for NotifyCustomer {
    async fn on(&self, shipped: OrderShipped, _ctx: &Context) -> Result<(), HandlerError> {
        DONE.lock().unwrap_or_else(PoisonError::into_inner).insert(shipped.run);
        Ok(())
    }
}

#[event(name = "otel.flaky")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flaky {
    pub run: String,
}

#[derive(Debug, Default)]
pub struct FailOnce;

#[event_listener]
impl Listener<Flaky> for FailOnce {
    async fn on(&self, flaky: Flaky, ctx: &Context) -> Result<(), HandlerError> {
        if ctx.attempt() == 1 {
            return Err(HandlerError::msg("first attempt fails"));
        }
        DONE.lock().unwrap_or_else(PoisonError::into_inner).insert(flaky.run);
        Ok(())
    }
}

/// Not `otel.`: the event chain's buses leave it alone.
#[request(name = "otel_request.lookup", reply = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookup {
    pub key: u64,
}

#[derive(Debug, Default)]
pub struct Directory;

#[request_handler]
impl RequestHandler<Lookup> for Directory {
    async fn on(&self, lookup: Lookup, _ctx: &Context) -> Result<u64, HandlerError> {
        tracing::info_span!("look up").in_scope(|| Ok(lookup.key + 1))
    }
}

/// How long each step may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// The runs whose chain reached its end.
static DONE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The binary's tracer provider and exporter, installed once with the W3C propagator.
fn telemetry() -> &'static (SdkTracerProvider, InMemorySpanExporter) {
    static TELEMETRY: OnceLock<(SdkTracerProvider, InMemorySpanExporter)> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("eventing-tests"));
        tracing_subscriber::registry().with(layer).try_init().expect("the only subscriber of this binary");
        (provider, exporter)
    })
}

fn only_this_chain(info: &ListenerInfo) -> bool {
    info.event.starts_with("otel.")
}

/// Publishes A on `builder`'s bus, waits until B was handled, shuts the bus down (which
/// ends every span) and returns the spans of this run's exchange.
async fn run_chain(builder: Builder, exchange: &str) -> Vec<SpanData> {
    let (provider, exporter) = telemetry();
    let bus = tokio::time::timeout(WAIT, builder.exchange(exchange).listeners(only_this_chain).start())
        .await
        .expect("started within the deadline")
        .expect("start");
    tokio::time::timeout(WAIT, bus.publish(&OrderPlaced { run: exchange.to_owned() }))
        .await
        .expect("published within the deadline")
        .expect("publish");
    let deadline = Instant::now() + WAIT;
    while !DONE.lock().unwrap_or_else(PoisonError::into_inner).contains(exchange) {
        assert!(Instant::now() < deadline, "the chain did not reach its end within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(WAIT, bus.shutdown()).await.expect("shut down within the deadline").expect("shutdown");
    provider.force_flush().expect("flush");
    let destination = Value::from(exchange.to_owned());
    exporter
        .get_finished_spans()
        .expect("finished spans")
        .into_iter()
        .filter(|span| attribute(span, "messaging.destination.name") == Some(&destination))
        .collect()
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|KeyValue { key: k, .. }| k.as_str() == key).map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key).map(|value| value.as_str().into_owned()).unwrap_or_default()
}

/// One trace, and parents publish A → handle A → publish B → handle B.
fn assert_one_trace(spans: &[SpanData], system: &str) {
    let find = |name: &str| {
        let found: Vec<&SpanData> = spans.iter().filter(|span| span.name == name).collect();
        assert_eq!(found.len(), 1, "expected one `{name}` span in {spans:#?}");
        found[0]
    };
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let publish_a = find("publish otel.order_placed");
    let handle_a = find("process otel.order_placed");
    let publish_b = find("publish otel.order_shipped");
    let handle_b = find("process otel.order_shipped");

    let trace = publish_a.span_context.trace_id();
    for span in spans {
        assert_eq!(span.span_context.trace_id(), trace, "`{}` is in another trace", span.name);
        assert_eq!(text(span, "messaging.system"), system, "{span:#?}");
    }
    assert_eq!(publish_a.parent_span_id, SpanId::INVALID, "the first publish starts the trace");
    assert_eq!(handle_a.parent_span_id, publish_a.span_context.span_id(), "handle A continues publish A");
    assert!(handle_a.parent_span_is_remote, "handle A's parent came through the message headers");
    assert_eq!(publish_b.parent_span_id, handle_a.span_context.span_id(), "publish B is inside handle A");
    assert_eq!(handle_b.parent_span_id, publish_b.span_context.span_id(), "handle B continues publish B");
    assert!(handle_b.parent_span_is_remote);

    for publish in [publish_a, publish_b] {
        assert_eq!(publish.span_kind, SpanKind::Producer);
        assert_eq!(text(publish, "messaging.operation.type"), "send");
        assert_eq!(text(publish, "messaging.operation.name"), "publish");
    }
    for handle in [handle_a, handle_b] {
        assert_eq!(handle.span_kind, SpanKind::Consumer);
        assert_eq!(text(handle, "messaging.operation.type"), "process");
        assert!(text(handle, "messaging.destination.subscription.name").contains(".otel.order_"), "{handle:#?}");
    }
    // The message ids and the conversation (correlation) id travel with the messages.
    assert_eq!(text(handle_a, "messaging.message.id"), text(publish_a, "messaging.message.id"));
    assert_eq!(text(handle_b, "messaging.message.id"), text(publish_b, "messaging.message.id"));
    let conversation = text(publish_a, "messaging.message.id");
    for span in spans {
        assert_eq!(text(span, "messaging.message.conversation_id"), conversation, "{span:#?}");
    }
    if system == "rabbitmq" {
        assert_eq!(text(publish_a, "messaging.rabbitmq.destination.routing_key"), "otel.order_placed");
        assert_eq!(text(handle_b, "messaging.rabbitmq.destination.routing_key"), "otel.order_shipped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_through_a_two_hop_chain_on_memory() {
    let exchange = unique("otel-memory");
    let builder = eventing::builder().transport(MemoryBroker::new().transport()).service("otel");
    let spans = run_chain(builder, &exchange).await;
    assert_one_trace(&spans, "memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_through_a_two_hop_chain_on_rabbitmq() {
    let Some(url) = reachable_amqp_url() else { return };
    let name = unique("otel-rabbit");
    let builder = eventing::builder().url(url.clone()).service(name.clone());
    let chain = tokio::spawn({
        let name = name.clone();
        async move { run_chain(builder, &name).await }
    })
    .await;
    delete_scope(&url, &name, &name).await;
    match chain {
        Ok(spans) => assert_one_trace(&spans, "rabbitmq"),
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_delivery_continues_the_trace() {
    let (provider, exporter) = telemetry();
    let exchange = unique("otel-retry");
    let bus = eventing::builder()
        .transport(MemoryBroker::new().transport())
        .service("otel")
        .exchange(exchange.clone())
        .retry_policy(eventing::RetryPolicy::fixed(2, Duration::from_millis(20)))
        .listeners(only_this_chain)
        .start()
        .await
        .expect("start");
    bus.publish(&Flaky { run: exchange.clone() }).await.expect("publish");
    let deadline = Instant::now() + WAIT;
    while !DONE.lock().unwrap_or_else(PoisonError::into_inner).contains(&exchange) {
        assert!(Instant::now() < deadline, "the second attempt did not succeed within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.shutdown().await.expect("shutdown");
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("finished spans");
    let destination = Value::from(exchange.clone());
    let publish = spans
        .iter()
        .find(|span| {
            span.name == "publish otel.flaky" && attribute(span, "messaging.destination.name") == Some(&destination)
        })
        .expect("the publish span");
    let attempts: Vec<&SpanData> = spans
        .iter()
        .filter(|span| {
            span.name == "process otel.flaky" && span.span_context.trace_id() == publish.span_context.trace_id()
        })
        .collect();
    assert_eq!(attempts.len(), 2, "both attempts are in the publisher's trace: {spans:#?}");
    for attempt in attempts {
        assert_eq!(attempt.parent_span_id, publish.span_context.span_id(), "{attempt:#?}");
    }
}

/// Calls `Lookup` from one bus to another on `builder`'s transport, inside a caller span,
/// shuts both down and returns the spans of this run's trace.
async fn run_request(builder: impl Fn() -> Builder, exchange: &str) -> Vec<SpanData> {
    let (provider, exporter) = telemetry();
    let start =
        |serves: bool| builder().exchange(exchange).listeners(move |info| serves && info.event == Lookup::NAME).start();
    let server = tokio::time::timeout(WAIT, start(true)).await.expect("started in time").expect("server");
    let caller = tokio::time::timeout(WAIT, start(false)).await.expect("started in time").expect("caller");
    let checkout = tracing::info_span!("checkout");
    let reply = tokio::time::timeout(WAIT, caller.request(&Lookup { key: 41 }).instrument(checkout.clone()))
        .await
        .expect("replied in time")
        .expect("reply");
    assert_eq!(reply, 42);
    let trace = checkout.context().span().span_context().trace_id();
    drop(checkout);
    tokio::time::timeout(WAIT, caller.shutdown()).await.expect("in time").expect("shutdown");
    tokio::time::timeout(WAIT, server.shutdown()).await.expect("in time").expect("shutdown");
    provider.force_flush().expect("flush");
    exporter
        .get_finished_spans()
        .expect("finished spans")
        .into_iter()
        .filter(|span| span.span_context.trace_id() == trace)
        .collect()
}

/// checkout → publish (the request, producer) → process (the handler, consumer, through
/// the message headers) → the handler's own span.
fn assert_request_trace(spans: &[SpanData], system: &str, exchange: &str) {
    let find = |name: &str| {
        let found: Vec<&SpanData> = spans.iter().filter(|span| span.name == name).collect();
        assert_eq!(found.len(), 1, "expected one `{name}` span in {spans:#?}");
        found[0]
    };
    let checkout = find("checkout");
    let publish = find("publish otel_request.lookup");
    let process = find("process otel_request.lookup");
    let inner = find("look up");
    assert_eq!(publish.parent_span_id, checkout.span_context.span_id(), "the request is sent inside the caller's span");
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(process.parent_span_id, publish.span_context.span_id(), "the handler continues the request");
    assert!(process.parent_span_is_remote, "through the request's headers");
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(inner.parent_span_id, process.span_context.span_id(), "the handler's span is inside `process`");
    for span in [publish, process] {
        assert_eq!(text(span, "messaging.system"), system, "{span:#?}");
        assert_eq!(text(span, "messaging.destination.name"), exchange, "{span:#?}");
    }
    assert_eq!(text(process, "listener"), "directory");
    assert_eq!(text(process, "messaging.destination.subscription.name"), "request.otel_request.lookup");
    assert_eq!(text(process, "messaging.message.id"), text(publish, "messaging.message.id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_a_request_to_its_handler_on_memory() {
    let exchange = unique("otel-request-memory");
    let broker = MemoryBroker::new();
    let spans = run_request(|| eventing::builder().transport(broker.transport()).service("otel"), &exchange).await;
    assert_request_trace(&spans, "memory", &exchange);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_a_request_to_its_handler_on_rabbitmq() {
    let Some(url) = reachable_amqp_url() else { return };
    let name = unique("otel-request-rabbit");
    let spans = tokio::spawn({
        let (url, name) = (url.clone(), name.clone());
        async move { run_request(|| eventing::builder().url(url.clone()).service(name.clone()), &name).await }
    })
    .await;
    delete_scope(&url, &format!("request.{}", Lookup::NAME), &name).await;
    match spans {
        Ok(spans) => assert_request_trace(&spans, "rabbitmq", &name),
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    }
}

//! The `opentelemetry` feature when the subscriber filters out debug spans (a common
//! `info` setting), so the `publish` spans do not exist: the trace context then comes
//! from the current span, and a chain is still one trace, request → handle A → handle B.

use std::time::Duration;

use eventing::testing::TestBus;
use eventing::{Context, HandlerError, Listener, event, event_listener};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[event(name = "filtered.order_placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

#[event(name = "filtered.order_shipped")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderShipped {
    pub id: u64,
}

#[derive(Debug, Default)]
pub struct ShipOrder;

#[event_listener]
impl Listener<OrderPlaced> for ShipOrder {
    async fn on(&self, order: OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
        ctx.publish(&OrderShipped { id: order.id }).await?;
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct NotifyCustomer;

#[event_listener]
impl Listener<OrderShipped> for NotifyCustomer {
    async fn on(&self, _shipped: OrderShipped, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_publish_spans_the_current_span_carries_the_trace() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("eventing-tests"));
    tracing_subscriber::registry().with(layer.with_filter(LevelFilter::INFO)).init();

    let bus = TestBus::start().await.expect("start");
    bus.publish(&OrderPlaced { id: 1 }).instrument(tracing::info_span!("request")).await.expect("publish");
    tokio::time::timeout(Duration::from_secs(20), bus.settle()).await.expect("in time").expect("settle");
    bus.shutdown().await.expect("shutdown");
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let find = |name: &str| {
        spans.iter().find(|span| span.name == name).unwrap_or_else(|| panic!("no `{name}` span in {spans:#?}"))
    };
    assert!(!spans.iter().any(|span| span.name.starts_with("publish")), "publish spans are debug: {spans:#?}");
    let request = find("request");
    let handle_a = find("process filtered.order_placed");
    let handle_b = find("process filtered.order_shipped");
    let trace = request.span_context.trace_id();
    for span in [request, handle_a, handle_b] {
        assert_eq!(span.span_context.trace_id(), trace, "`{}` is in another trace", span.name);
    }
    assert_eq!(request.parent_span_id, SpanId::INVALID);
    assert_eq!(handle_a.parent_span_id, request.span_context.span_id(), "handle A continues the request");
    assert_eq!(handle_b.parent_span_id, handle_a.span_context.span_id(), "handle B continues handle A");
}

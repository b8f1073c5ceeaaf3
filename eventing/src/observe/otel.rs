//! The `opentelemetry` feature: the `publish` and `handle` spans with the messaging
//! semantic conventions' fields, the trace context injected into a message's headers on
//! publish and extracted from them on delivery (see the parent module for why this lives in
//! the stacks and not in an interceptor).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::message::{HeaderValue, Headers, Message};

/// The `publish` span of one message: today's span with the semantic conventions' fields.
pub(crate) fn publish_span(
    event: &str,
    message_id: &str,
    conversation_id: &str,
    exchange: &str,
    system: &'static str,
) -> Span {
    let span = tracing::debug_span!(
        "publish",
        event = %event,
        "otel.name" = %format_args!("publish {event}"),
        "otel.kind" = "producer",
        "messaging.system" = system,
        "messaging.operation.type" = "send",
        "messaging.operation.name" = "publish",
        "messaging.destination.name" = exchange,
        "messaging.rabbitmq.destination.routing_key" = tracing::field::Empty,
        "messaging.message.id" = message_id,
        "messaging.message.conversation_id" = conversation_id,
    );
    if system == "rabbitmq" {
        span.record("messaging.rabbitmq.destination.routing_key", event);
    }
    span
}

/// `headers` with the trace context of `span` (of the current span when the subscriber
/// disabled `span`) written by the global propagator; unchanged when there is no valid
/// OpenTelemetry span to continue.
pub(crate) fn inject(span: &Span, mut headers: Headers) -> Headers {
    let cx = if span.is_disabled() { Span::current().context() } else { span.context() };
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut HeaderInjector(&mut headers));
        });
    }
    headers
}

/// Where a delivery came from and who handles it, for the `handle` span.
pub(crate) struct Handling<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) routing_key: &'a str,
    pub(crate) queue: &'a str,
    pub(crate) listener: &'static str,
    pub(crate) system: &'static str,
}

/// The `handle` span of one delivery, a child of the trace context its headers carry.
pub(crate) fn handle_span(message: &Message, handling: &Handling<'_>) -> Span {
    let span = tracing::info_span!(
        "handle",
        event = %message.event_type,
        listener = handling.listener,
        attempt = message.attempt,
        "otel.name" = %format_args!("process {}", message.event_type),
        "otel.kind" = "consumer",
        "messaging.system" = handling.system,
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "process",
        "messaging.destination.name" = handling.exchange,
        "messaging.rabbitmq.destination.routing_key" = tracing::field::Empty,
        "messaging.destination.subscription.name" = handling.queue,
        "messaging.message.id" = %message.message_id,
        "messaging.message.conversation_id" = message.chain_id(),
    );
    if handling.system == "rabbitmq" && !handling.routing_key.is_empty() {
        span.record("messaging.rabbitmq.destination.routing_key", handling.routing_key);
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(&message.headers))
    });
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed or the span is disabled:
        // then there is no OpenTelemetry span to give a parent.
        let _ = span.set_parent(parent);
    }
    span
}

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), HeaderValue::Text(value));
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

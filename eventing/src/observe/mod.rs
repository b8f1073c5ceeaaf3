//! Observability behind cargo features: OpenTelemetry trace propagation (`opentelemetry`)
//! and metrics through the [`metrics`](https://docs.rs/metrics) facade (`metrics`).
//!
//! Both are built into the send and handle stacks rather than being
//! [`Interceptor`](crate::Interceptor)s: the `handle` span is opened by the consumer
//! outside every interceptor (it covers the settle decision too), so the trace context
//! has to be extracted where that span is created; and the metrics' outcomes (`retried`,
//! `dead_lettered`) are only known to the settle decision, after the interceptors ran.
//! With a feature off, its hooks are compiled out: no header is read or written, no
//! counter touched.
//!
//! # `opentelemetry`
//!
//! On every publish (the application's and handlers' follow-ups) the context of the
//! `publish` span — or, when that span is disabled by the subscriber's filter, of the
//! current span — is injected into the message headers through the **global text map
//! propagator** (W3C `traceparent` / `tracestate` with
//! `opentelemetry_sdk::propagation::TraceContextPropagator`; the OpenTelemetry
//! specification asks instrumentation to use the configured propagator, so baggage or B3
//! work too). On delivery it is extracted the same way and becomes the parent of the
//! `handle` span, so the handler's own spans and everything it publishes continue the
//! publisher's trace. Retry and dead-letter moves keep the message's headers, so a
//! retried delivery continues the same trace. A request is injected the same way (its
//! `publish` span lasts until the reply came) and its handler's `handle` span continues it.
//! Set the propagator and a
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) layer at start-up:
//!
//! ```rust,ignore
//! opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
//! tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)).init();
//! ```
//!
//! Span fields follow the OpenTelemetry messaging semantic conventions:
//! `messaging.system` (`rabbitmq`, `memory`: [`Transport::system`](crate::transport::Transport::system)),
//! `messaging.operation.type` (`send` on publish — the current name of what older
//! conventions called `publish` — and `process` on handle), `messaging.operation.name`
//! (`publish`, `process`), `messaging.destination.name` (the exchange, empty for a message
//! moved through the default exchange), `messaging.rabbitmq.destination.routing_key` (on
//! RabbitMQ), `messaging.destination.subscription.name` (the queue, on handle),
//! `messaging.message.id`, `messaging.message.conversation_id` (the correlation id), and
//! `otel.kind` (`producer`, `consumer`). `event`, `listener` and `attempt` stay as they are
//! without the feature.
//!
//! # `metrics`
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `eventing_published_total` | counter | `event` | messages the application and handlers published (confirmed); retry and dead-letter moves are not counted here |
//! | `eventing_handled_total` | counter | `event`, `listener`, `outcome` | deliveries settled, `outcome` one of `ok`, `retried`, `dead_lettered`, `declined` (a delivery chaos returned unhandled is not counted); for requests `ok`, `failed`, `expired` |
//! | `eventing_handle_duration_seconds` | histogram | `event`, `listener` | time from the start of the handle stack to its outcome (settling excluded) |
//! | `eventing_handlers_in_flight` | gauge | `listener` | deliveries being handled or settled now |
//! | `eventing_reconnects_total` | counter | | connections recovered by the transport ([`connection_recovered`]) |
//!
//! A request handler counts like a listener: the request name is `event`, the handler's
//! name `listener`. Requests are not counted in `eventing_published_total`.
//!
//! Handles are looked up on each use, so the recorder may be installed before or after
//! the bus starts.

#[cfg(feature = "metrics")]
pub(crate) mod metrics;
#[cfg(feature = "opentelemetry")]
pub(crate) mod otel;

/// A transport calls this after it recovered a lost connection (and resumed consuming):
/// with the `metrics` feature it increments `eventing_reconnects_total`; without it, it
/// does nothing and costs nothing.
#[inline]
pub fn connection_recovered() {
    #[cfg(feature = "metrics")]
    metrics::reconnected();
}

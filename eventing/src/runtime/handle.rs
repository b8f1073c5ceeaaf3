//! The handle stack: what happens to one delivery between the consume loop and the
//! settle decision, as layers from the outside in:
//!
//! 1. the `handle` tracing span (event, listener, message id, attempt; with the
//!    `opentelemetry` feature a child of the trace context the message carries) — opened by
//!    the consumer around this stack and the settle decision alike ([`span`], which request
//!    handlers' deliveries get too);
//! 2. chaos, when configured: a random delay, a returned delivery or an injected failure;
//! 3. correlation: the [`Context`] whose publishes continue the delivery's causal chain;
//! 4. panic capture, around everything inside;
//! 5. the interceptors' `handle`, outermost first (skipped when there are none);
//! 6. decoding, the listener's filter ([`Listener::accepts`](crate::Listener::accepts)) and
//!    the handler.
//!
//! The result is an [`Outcome`]; `settle.rs` decides what the broker hears of it.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;

use super::publisher::Publisher;
use crate::chaos::Injected;
use crate::envelope::Envelope;
use crate::interceptor::{Inner, Next};
use crate::message::Message;
use crate::registry::{ErasedHandler, Handling};
use crate::transport::Delivery;
use crate::{Chaos, Context, HandlerError, ListenerInfo};

/// The `handle` span of `delivery` from `queue` to `listener`: event, listener, message id
/// and attempt; with the `opentelemetry` feature also the messaging conventions' fields,
/// and a child of the trace context the message's headers carry.
#[cfg_attr(not(feature = "opentelemetry"), allow(unused_variables))]
pub(crate) fn span(delivery: &Delivery, listener: &'static str, queue: &str, publisher: &Publisher) -> tracing::Span {
    let message = &delivery.message;
    #[cfg(not(feature = "opentelemetry"))]
    let span = tracing::info_span!(
        "handle",
        event = %message.event_type,
        listener,
        message_id = %message.message_id,
        attempt = message.attempt,
    );
    #[cfg(feature = "opentelemetry")]
    let span = crate::observe::otel::handle_span(
        message,
        &crate::observe::otel::Handling {
            exchange: &delivery.exchange,
            routing_key: &delivery.routing_key,
            queue,
            listener,
            system: publisher.system(),
        },
    );
    span
}

/// What handling one delivery came to.
pub(crate) enum Outcome {
    /// The handler returned `Ok` (or an interceptor settled it without the handler).
    Handled,
    /// The listener's filter declined the event.
    Declined,
    /// Handling failed.
    Failed(Failure),
    /// Chaos returns the delivery to its queue unhandled.
    Returned,
}

/// Why a delivery was not handled.
pub(crate) enum Failure {
    /// Worth trying again (a handler error or panic).
    Retryable(String),
    /// Never worth trying again (a permanent error, a payload that does not decode).
    Permanent(String),
}

impl From<HandlerError> for Failure {
    fn from(error: HandlerError) -> Self {
        if error.is_permanent() { Self::Permanent(error.to_string()) } else { Self::Retryable(error.to_string()) }
    }
}

/// What the innermost step saw that its `Result` cannot say, for the settle decision.
enum Verdict {
    Declined,
    /// Why the payload does not decode.
    Undecodable(String),
}

/// Everything one listener's deliveries pass through before they are settled.
pub(crate) struct HandleStack {
    pub(crate) info: ListenerInfo,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) publisher: Arc<Publisher>,
    /// Faults to inject; `None` when chaos is off.
    pub(crate) chaos: Option<Arc<Chaos>>,
}

impl HandleStack {
    /// Runs layers 2 to 6 for `message`.
    pub(crate) async fn run(&self, message: &Arc<Message>, redelivered: bool) -> Outcome {
        if let Some(chaos) = &self.chaos {
            match chaos.inject(&message.event_type).await {
                Injected::Nothing => {}
                Injected::Nack => {
                    tracing::warn!("chaos: returning the delivery to its queue unhandled");
                    return Outcome::Returned;
                }
                Injected::Fail => {
                    return Outcome::Failed(Failure::Retryable(
                        "chaos: injected failure (EVENTING_CHAOS or Builder::chaos)".into(),
                    ));
                }
            }
        }
        let ctx = Context::new(Arc::clone(&self.publisher), Arc::clone(message), self.info.name, redelivered);
        let handled = if self.publisher.interceptors().is_empty() {
            AssertUnwindSafe(self.direct(message, ctx)).catch_unwind().await
        } else {
            // Boxed: the interceptor path's state stays out of every delivery's future
            // when no interceptor is registered.
            AssertUnwindSafe(Box::pin(self.intercepted(message, ctx))).catch_unwind().await
        };
        handled.unwrap_or_else(|panic| {
            Outcome::Failed(Failure::Retryable(format!("handler panicked: {}", panic_message(panic.as_ref()))))
        })
    }

    /// Decode, filter, handle: the stack without interceptors.
    async fn direct(&self, message: &Arc<Message>, ctx: Context) -> Outcome {
        match self.handler.call(message, ctx) {
            Handling::Undecodable(error) => Outcome::Failed(Failure::Permanent(self.undecodable(&error))),
            Handling::Declined => Outcome::Declined,
            Handling::Run(handling) => match handling.await {
                Ok(()) => Outcome::Handled,
                Err(error) => Outcome::Failed(error.into()),
            },
        }
    }

    /// The interceptors' `handle` around decode, filter, handle.
    async fn intercepted(&self, message: &Arc<Message>, ctx: Context) -> Outcome {
        let verdict: Mutex<Option<Verdict>> = Mutex::new(None);
        let envelope = Envelope::incoming(Arc::clone(message), self.info.name);
        let inner: Inner<'_> = Box::new(|| {
            let (seen, handling) = match self.handler.call(message, ctx) {
                Handling::Undecodable(error) => {
                    let reason = self.undecodable(&error);
                    let failed = HandlerError::permanent_msg(&reason);
                    (Verdict::Undecodable(reason), Box::pin(std::future::ready(Err(failed))) as _)
                }
                Handling::Declined => (Verdict::Declined, Box::pin(std::future::ready(Ok(()))) as _),
                Handling::Run(handling) => return handling,
            };
            *verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(seen);
            handling
        });
        let result = Next::new(self.publisher.interceptors(), &envelope, inner).run().await;
        match (verdict.into_inner().unwrap_or_else(PoisonError::into_inner), result) {
            // A payload that does not decode is dead-lettered whatever an interceptor made
            // of the error: no handler can ever take it.
            (Some(Verdict::Undecodable(reason)), _) => Outcome::Failed(Failure::Permanent(reason)),
            (Some(Verdict::Declined), Ok(())) => Outcome::Declined,
            (None, Ok(())) => Outcome::Handled,
            (_, Err(error)) => Outcome::Failed(error.into()),
        }
    }

    fn undecodable(&self, error: &serde_json::Error) -> String {
        format!("payload does not decode as `{}`: {error}", self.info.event_type)
    }
}

/// The text of a panic payload (`&str` or `String`, as `panic!` produces).
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-text panic payload")
}

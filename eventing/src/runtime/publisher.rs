//! Turns events into messages and publishes them with confirms.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tracing::Instrument;

use crate::message::{Headers, JSON, Message};
use crate::transport::{Route, Transport};
use crate::{Error, Event};

/// Publishes events to the bus's exchange; shared by the [`Bus`](crate::Bus) and every
/// handler's [`Context`](crate::Context).
pub(crate) struct Publisher {
    transport: Arc<dyn Transport>,
    exchange: String,
    app_id: Arc<str>,
    closed: AtomicBool,
}

impl Publisher {
    pub(crate) fn new(transport: Arc<dyn Transport>, exchange: String, app_id: Arc<str>) -> Self {
        Self { transport, exchange, app_id, closed: AtomicBool::new(false) }
    }

    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Publishes `event`; with a `cause`, the message continues the cause's chain.
    /// Returns once the broker confirmed it.
    pub(crate) async fn publish<E: Event>(&self, event: &E, cause: Option<&Message>) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        let body = serde_json::to_vec(event).map_err(|source| Error::Encode { event: E::NAME, source })?;
        let message_id = uuid::Uuid::new_v4().to_string();
        // A message that starts a chain is its own correlation: `Message::chain_id` (and the
        // wire encoding) use its message id.
        let correlation_id = cause.map(|cause| cause.chain_id().to_owned());
        let span = tracing::debug_span!(
            "publish",
            event = E::NAME,
            message_id = %message_id,
            correlation_id = correlation_id.as_deref().unwrap_or(&message_id),
        );
        let message = Message {
            body,
            message_id,
            correlation_id,
            causation_id: cause.map(|cause| cause.message_id.clone()),
            event_type: Cow::Borrowed(E::NAME),
            content_type: Some(Cow::Borrowed(JSON)),
            timestamp: SystemTime::now(),
            app_id: Some(Arc::clone(&self.app_id)),
            persistent: E::DURABLE,
            attempt: 1,
            headers: Headers::new(),
        };
        let route = Route::Exchange { exchange: &self.exchange, routing_key: E::NAME };
        self.transport
            .publish(route, message)
            .instrument(span)
            .await
            .map_err(|source| Error::Publish { event: E::NAME.to_owned(), source })
    }
}

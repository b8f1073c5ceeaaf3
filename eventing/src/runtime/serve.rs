//! Serving one request handler: what happens to each request delivered from
//! `request.<name>`, driven by the consume loop (`consumer.rs`) like a listener's
//! deliveries, through the same layers as far as a request allows:
//!
//! 1. the `handle` span ([`handle::span`]: the request name as `event`, the handler as
//!    `listener`, message id, attempt; with `opentelemetry` the caller's trace continues);
//! 2. an expired request (its caller gave up) is dropped unhandled;
//! 3. the [`Context`], whose publishes and requests continue the caller's chain;
//! 4. panic capture, around everything inside;
//! 5. the interceptors' `handle`, outermost first (skipped when there are none);
//! 6. decoding and the handler;
//!
//! then the reply (or the error) goes to the caller's `reply_to` and the request is
//! acknowledged: requests are never retried, so there is no settle decision to make. With
//! `metrics`, `eventing_handled_total` counts `ok`, `failed` and `expired`.
//!
//! The reply is the answer to a delivery, not a publish: it goes straight to the transport
//! (on the request's own channel where the transport can, [`Acker::reply`](crate::transport::Acker::reply), else
//! [`Transport::reply`](crate::transport::Transport::reply): best effort, unconfirmed on
//! RabbitMQ), without the interceptors' `send`, so its wire form is exactly the README's.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use futures_util::FutureExt;
use tracing::Instrument;

use super::Publisher;
use super::consumer::Handles;
use super::handle::{self, panic_message};
use crate::envelope::Envelope;
use crate::interceptor::{Inner, Next};
use crate::message::{HeaderValue, Headers, JSON, Message, header, unix_millis};
use crate::request::ErasedRequestHandler;
use crate::transport::Delivery;
use crate::{Context, HandlerError, ListenerInfo};

/// One request handler with what its deliveries need.
pub(crate) struct Server {
    /// The handler as a listener: its name, and the request name as `event`.
    pub(crate) info: ListenerInfo,
    pub(crate) handler: Arc<dyn ErasedRequestHandler>,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) queue: String,
    pub(crate) concurrency: u16,
}

/// What handling one request came to: the reply's JSON, or the error text for the caller.
type Answer = Result<Vec<u8>, String>;

impl Handles for Server {
    fn listener(&self) -> &'static str {
        self.info.name
    }

    fn queue(&self) -> &str {
        &self.queue
    }

    fn concurrency(&self) -> u16 {
        self.concurrency
    }

    async fn handle(&self, delivery: Delivery) {
        let message = Arc::clone(&delivery.message);
        let span = handle::span(&delivery, self.info.name, &self.queue, &self.publisher);
        async {
            if let Some(late_ms) = expired_by(&message) {
                tracing::warn!(late_ms, "dropping an expired request unhandled: its caller gave up");
                #[cfg(feature = "metrics")]
                crate::observe::metrics::handled(
                    &self.info,
                    &message.event_type,
                    crate::observe::metrics::Handled::Expired,
                );
                ack(delivery).await;
                return;
            }
            #[cfg(feature = "metrics")]
            let _in_flight = crate::observe::metrics::InFlight::start(self.info.name);
            #[cfg(feature = "metrics")]
            let started = std::time::Instant::now();
            let answer = self.answer(&message, delivery.redelivered).await;
            #[cfg(feature = "metrics")]
            {
                use crate::observe::metrics::{Handled, handle_duration, handled};
                handle_duration(&self.info, &message.event_type, started.elapsed());
                let outcome = if answer.is_ok() { Handled::Ok } else { Handled::Failed };
                handled(&self.info, &message.event_type, outcome);
            }
            match &message.reply_to {
                Some(reply_to) => self.reply(reply_to, &delivery, answer).await,
                None => {
                    if let Err(error) = answer {
                        tracing::error!(%error, "a sent request failed; sends are not retried and nobody waits for a reply");
                    }
                }
            }
            ack(delivery).await;
        }
        .instrument(span)
        .await;
    }
}

impl Server {
    /// Layers 3 to 6: the context, panic capture, the interceptors, decoding and the handler.
    async fn answer(&self, message: &Arc<Message>, redelivered: bool) -> Answer {
        // Follow-ups continue the caller's chain, not the request's own correlation.
        let for_handler = match message.header_text(header::CHAIN_ID) {
            Some(chain) => {
                let mut copy = (**message).clone();
                copy.correlation_id = Some(chain.to_owned());
                Arc::new(copy)
            }
            None => Arc::clone(message),
        };
        let ctx = Context::new(Arc::clone(&self.publisher), for_handler, self.info.name, redelivered);
        let answered = if self.publisher.interceptors().is_empty() {
            AssertUnwindSafe(self.direct(message, ctx)).catch_unwind().await
        } else {
            // Boxed, as in the handle stack: the interceptor path's state stays out of every
            // request's future when no interceptor is registered.
            AssertUnwindSafe(Box::pin(self.intercepted(message, ctx))).catch_unwind().await
        };
        answered.unwrap_or_else(|panic| Err(format!("handler panicked: {}", panic_message(panic.as_ref()))))
    }

    /// Decode and handle: the stack without interceptors.
    async fn direct(&self, message: &Message, ctx: Context) -> Answer {
        match self.handler.call(message, ctx) {
            Ok(running) => running.await.map_err(|error| error.chain_text()),
            Err(undecodable) => Err(undecodable),
        }
    }

    /// The interceptors' `handle` around decode and handle. The reply's JSON leaves the
    /// chain beside it (the chain's result says only whether handling succeeded).
    async fn intercepted(&self, message: &Arc<Message>, ctx: Context) -> Answer {
        let reply: Mutex<Option<Vec<u8>>> = Mutex::new(None);
        let envelope = Envelope::incoming(Arc::clone(message), self.info.name);
        let inner: Inner<'_> = Box::new(|| match self.handler.call(message, ctx) {
            Ok(running) => Box::pin(async {
                let body = running.await?;
                *reply.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
                Ok(())
            }),
            Err(undecodable) => Box::pin(std::future::ready(Err(HandlerError::permanent_msg(undecodable)))),
        });
        let result = Next::new(self.publisher.interceptors(), &envelope, inner).run().await;
        match (result, reply.into_inner().unwrap_or_else(PoisonError::into_inner)) {
            (Ok(()), Some(body)) => Ok(body),
            (Ok(()), None) => {
                Err("an interceptor returned without running the request handler: there is no reply".into())
            }
            (Err(error), _) => Err(error.chain_text()),
        }
    }

    /// Sends `answer` to the caller: the reply's JSON, or `{"error": "..."}` with the text
    /// also in `x-eventing-error`; on the channel the request came on where the transport
    /// can, else through [`Transport::reply`](crate::transport::Transport::reply).
    async fn reply(&self, reply_to: &str, delivery: &Delivery, answer: Answer) {
        let request = &*delivery.message;
        let mut headers = Headers::new();
        let body = match answer {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "request failed; replying with the error");
                let body = serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default();
                headers.insert(header::ERROR.to_owned(), HeaderValue::Text(error));
                body
            }
        };
        let reply = Message {
            body,
            message_id: crate::message::new_message_id(),
            // The caller matches on this: the request's correlation id (its message id when
            // it had none, as a plain AMQP client may send).
            correlation_id: Some(request.chain_id().to_owned()),
            causation_id: Some(request.message_id.clone()),
            event_type: Cow::Borrowed(self.info.event),
            content_type: Some(Cow::Borrowed(JSON)),
            timestamp: SystemTime::now(),
            app_id: Some(Arc::clone(self.publisher.app_id())),
            persistent: false,
            attempt: 1,
            headers,
            reply_to: None,
            expiration: None,
        };
        let on_its_channel = match delivery.acker.reply(reply_to, &reply) {
            Some(sending) => Some(sending.await),
            None => None,
        };
        let sent = match on_its_channel {
            Some(sent) => sent,
            None => self.publisher.transport().reply(reply_to, reply).await,
        };
        if let Err(error) = sent {
            tracing::warn!(%error, reply_to, "the reply could not be sent (has the caller gone?)");
        }
    }
}

/// How many milliseconds past its `x-eventing-deadline` the request is, when it is.
fn expired_by(message: &Message) -> Option<i64> {
    let deadline = message.headers.get(header::DEADLINE).and_then(HeaderValue::as_int)?;
    let late = unix_millis(SystemTime::now()) - deadline;
    (late > 0).then_some(late)
}

/// Requests are never retried: every delivery is acknowledged once answered or dropped.
async fn ack(delivery: Delivery) {
    if let Err(error) = delivery.acker.ack().await {
        tracing::warn!(%error, "acknowledging a request failed; it may be delivered again");
    }
}

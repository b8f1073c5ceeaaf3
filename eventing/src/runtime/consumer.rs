//! One listener's consume loop: bounded concurrency, decode, handle, settle, and the
//! failure path to the dead-letter queue.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::publisher::Publisher;
use crate::chaos::Injected;
use crate::message::{HeaderValue, header, unix_millis};
use crate::registry::ErasedHandler;
use crate::transport::{Delivery, Route, Subscription};
use crate::{Chaos, Context, ListenerInfo, RetryPolicy};

/// How long to wait before returning a failed message that could not be moved to its retry
/// or dead-letter queue, so a broken queue never turns into a hot loop.
const MOVE_FAILED_DELAY: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// Set while a handler runs, so transports can tell follow-up publishes (which must
    /// never wait on flow control: the chain would block itself) from outside ones.
    static HANDLING: ();
}

/// Whether the current task is running a handler.
pub(crate) fn is_handling() -> bool {
    HANDLING.try_with(|()| ()).is_ok()
}

/// Everything one listener's deliveries need.
pub(crate) struct Consumer {
    pub(crate) info: ListenerInfo,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) queue: String,
    pub(crate) dead_letter_queue: String,
    pub(crate) concurrency: u16,
    pub(crate) retry: RetryPolicy,
    /// The retry queue of each delay of the policy.
    pub(crate) retry_queues: Vec<(Duration, String)>,
    /// Faults to inject; `None` when chaos is off.
    pub(crate) chaos: Option<Arc<Chaos>>,
}

/// Why a delivery was not handled.
enum Failure {
    /// Worth trying again (a handler error or panic).
    Retryable(String),
    /// Never worth trying again (a permanent error, a payload that does not decode).
    Permanent(String),
}

impl Consumer {
    /// Consumes until `stop` is cancelled, then stops taking deliveries, returns the ones
    /// not started to the queue and waits (up to `drain_timeout`) for the ones in flight.
    ///
    /// Up to `concurrency` handlers run at once, polled by this task (as
    /// `for_each_concurrent` does): no task spawn per delivery, and with a concurrency of 1
    /// deliveries are handled strictly one after another, in queue order.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut subscription: Box<dyn Subscription>,
        stop: CancellationToken,
        drain_timeout: Duration,
    ) {
        let mut in_flight = FuturesUnordered::new();
        let cancelled = stop.cancelled();
        tokio::pin!(cancelled);
        loop {
            let room = in_flight.len() < usize::from(self.concurrency);
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                next = subscription.next(), if room => match next {
                    Some(Ok(delivery)) => in_flight.push(self.handle(delivery)),
                    Some(Err(error)) => {
                        tracing::error!(listener = self.info.name, queue = %self.queue, %error, "consuming failed");
                    }
                    None => {
                        tracing::error!(listener = self.info.name, queue = %self.queue, "the broker ended the subscription");
                        break;
                    }
                },
            }
        }
        if tokio::time::timeout(drain_timeout, self.return_unstarted(&mut subscription)).await.is_err() {
            tracing::warn!(
                listener = self.info.name,
                queue = %self.queue,
                "the subscription did not end within the shutdown deadline; its deliveries are redelivered later"
            );
        }
        let finish = async { while in_flight.next().await.is_some() {} };
        if tokio::time::timeout(drain_timeout, finish).await.is_err() {
            tracing::warn!(
                listener = self.info.name,
                queue = %self.queue,
                in_flight = in_flight.len(),
                timeout = ?drain_timeout,
                "handlers still running at the shutdown deadline; their messages will be redelivered"
            );
        }
    }

    /// Cancels the subscription and returns what it had delivered but no handler started.
    async fn return_unstarted(&self, subscription: &mut Box<dyn Subscription>) {
        if let Err(error) = subscription.cancel().await {
            tracing::warn!(listener = self.info.name, queue = %self.queue, %error, "cancelling the consumer failed");
        }
        while let Some(next) = subscription.next().await {
            if let Ok(delivery) = next {
                if let Err(error) = delivery.acker.requeue().await {
                    tracing::warn!(listener = self.info.name, queue = %self.queue, %error, "returning an unstarted delivery failed");
                }
            }
        }
    }

    async fn handle(&self, delivery: Delivery) {
        let message = Arc::clone(&delivery.message);
        let span = tracing::info_span!(
            "handle",
            event = %message.event_type,
            listener = self.info.name,
            message_id = %message.message_id,
            attempt = message.attempt,
        );
        async {
            let injected = match &self.chaos {
                Some(chaos) => chaos.inject(&message.event_type).await,
                None => Injected::Nothing,
            };
            if matches!(injected, Injected::Nack) {
                tracing::warn!("chaos: returning the delivery to its queue unhandled");
                if let Err(error) = delivery.acker.requeue().await {
                    tracing::error!(%error, "chaos: returning the delivery failed");
                }
                return;
            }
            let ctx = Context::new(Arc::clone(&self.publisher), Arc::clone(&message), self.info.name, delivery.redelivered);
            let failure = match self.handler.call(&message.body, ctx) {
                Ok(_) if matches!(injected, Injected::Fail) => {
                    Some(Failure::Retryable("chaos: injected failure (EVENTING_CHAOS or Builder::chaos)".into()))
                }
                Err(error) => {
                    Some(Failure::Permanent(format!("payload does not decode as `{}`: {error}", self.info.event_type)))
                }
                Ok(handling) => match HANDLING.scope((), AssertUnwindSafe(handling).catch_unwind()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) if error.is_permanent() => Some(Failure::Permanent(error.to_string())),
                    Ok(Err(error)) => Some(Failure::Retryable(error.to_string())),
                    Err(panic) => Some(Failure::Retryable(format!("handler panicked: {}", panic_message(panic.as_ref())))),
                },
            };
            let attempt = message.attempt;
            match failure {
                None => {
                    tracing::debug!("handled");
                    if let Err(error) = delivery.acker.ack().await {
                        tracing::warn!(%error, "acknowledging failed; the broker delivers the message again");
                    }
                }
                Some(Failure::Retryable(reason)) if self.retry.retries_after(attempt) => {
                    let delay = self.retry.delay_before(attempt + 1);
                    tracing::warn!(%reason, ?delay, next_attempt = attempt + 1, "handling failed; retrying later");
                    self.fail(delivery, reason, FailedTo::Retry(delay)).await;
                }
                Some(Failure::Retryable(reason) | Failure::Permanent(reason)) => {
                    tracing::error!(%reason, attempts = attempt, dead_letter_queue = %self.dead_letter_queue, "handling failed; dead-lettering");
                    self.fail(delivery, reason, FailedTo::DeadLetter).await;
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Moves a failed message on: to the retry queue of `delay` (attempt + 1), or to the
    /// dead-letter queue, with the failure in headers; only after the broker confirmed that
    /// is the original acknowledged.
    async fn fail(&self, delivery: Delivery, reason: String, to: FailedTo) {
        let now = HeaderValue::Int(unix_millis(SystemTime::now()));
        let mut message = (*delivery.message).clone();
        let headers = &mut message.headers;
        headers.insert(header::ERROR.into(), reason.into());
        headers.insert(header::LISTENER.into(), self.info.name.into());
        headers.insert(header::ATTEMPTS.into(), i64::from(message.attempt).into());
        headers.insert(header::ORIGINAL_QUEUE.into(), self.queue.as_str().into());
        if !headers.contains_key(header::ORIGINAL_EXCHANGE) {
            // A retried message arrives through the default exchange: keep where it began.
            headers.insert(header::ORIGINAL_EXCHANGE.into(), (*delivery.exchange).into());
            headers.insert(header::ORIGINAL_ROUTING_KEY.into(), (*delivery.routing_key).into());
        }
        headers.entry(header::FIRST_FAILURE_AT.into()).or_insert_with(|| now.clone());
        headers.insert(header::LAST_FAILURE_AT.into(), now);
        let queue = match to {
            FailedTo::DeadLetter => {
                message.persistent = true;
                self.dead_letter_queue.as_str()
            }
            FailedTo::Retry(delay) => {
                message.attempt += 1;
                match self.retry_queues.iter().find(|(tier, _)| *tier == delay) {
                    Some((_, queue)) => queue.as_str(),
                    None => self.dead_letter_queue.as_str(),
                }
            }
        };
        match self.publisher.transport().publish(Route::Queue(queue), message).await {
            Ok(()) => {
                if let Err(error) = delivery.acker.ack().await {
                    tracing::warn!(%error, "acknowledging a failed message failed; the broker delivers it again");
                }
            }
            Err(error) => {
                tracing::error!(%error, queue, "moving the failed message failed; returning it to its queue");
                tokio::time::sleep(MOVE_FAILED_DELAY).await;
                if let Err(error) = delivery.acker.requeue().await {
                    tracing::error!(%error, "returning the message failed; the broker redelivers it when the channel closes");
                }
            }
        }
    }
}

/// Where a failed message goes.
enum FailedTo {
    /// The retry queue of this delay.
    Retry(Duration),
    /// The dead-letter queue.
    DeadLetter,
}

/// The text of a panic payload (`&str` or `String`, as `panic!` produces).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-text panic payload")
}

//! The settle decision: what the broker hears of one handled delivery. Handled and
//! declined deliveries are acknowledged; failed ones go to a delay tier of the service or
//! to the dead-letter queue (through the send stack), and only then is the original
//! acknowledged.

use std::time::{Duration, SystemTime};

use super::handle::{Failure, Outcome};
use super::publisher::Publisher;
use crate::message::{HeaderValue, header, unix_millis};
#[cfg(feature = "metrics")]
use crate::observe::metrics::Handled;
use crate::transport::{Delivery, Origin, Route};
use crate::{ListenerInfo, RetryPolicy};

/// How long to wait before returning a failed message that could not be moved to its delay
/// tier or dead-letter queue, so a broken queue never turns into a hot loop.
const MOVE_FAILED_DELAY: Duration = Duration::from_secs(1);

/// One listener's queues and retry policy.
pub(crate) struct Settler {
    pub(crate) info: ListenerInfo,
    pub(crate) queue: String,
    pub(crate) dead_letter_queue: String,
    pub(crate) retry: RetryPolicy,
    /// The delay tier of each wait of the policy (an exchange and a queue of this name).
    pub(crate) retry_tiers: Vec<(Duration, String)>,
}

/// Where a failed message goes.
enum FailedTo {
    /// The delay tier of this wait.
    Retry(Duration),
    /// The dead-letter queue.
    DeadLetter,
}

impl Settler {
    /// Acknowledges, retries, dead-letters or returns `delivery` as `outcome` says.
    pub(crate) async fn settle(&self, publisher: &Publisher, delivery: Delivery, outcome: Outcome) {
        let attempt = delivery.message.attempt;
        match outcome {
            Outcome::Handled => {
                tracing::debug!("handled");
                #[cfg(feature = "metrics")]
                self.count(&delivery, Handled::Ok);
                self.ack(delivery).await;
            }
            Outcome::Declined => {
                tracing::debug!("declined by the listener's filter");
                #[cfg(feature = "metrics")]
                self.count(&delivery, Handled::Declined);
                self.ack(delivery).await;
            }
            Outcome::Returned => {
                if let Err(error) = delivery.acker.requeue().await {
                    tracing::error!(%error, "returning the delivery failed");
                }
            }
            Outcome::Failed(Failure::Retryable(reason)) if self.retry.retries_after(attempt) => {
                let delay = self.retry.delay_before(attempt + 1);
                tracing::warn!(%reason, ?delay, next_attempt = attempt + 1, "handling failed; retrying later");
                #[cfg(feature = "metrics")]
                self.count(&delivery, Handled::Retried);
                Box::pin(self.fail(publisher, delivery, reason, FailedTo::Retry(delay))).await;
            }
            Outcome::Failed(Failure::Retryable(reason) | Failure::Permanent(reason)) => {
                tracing::error!(%reason, attempts = attempt, dead_letter_queue = %self.dead_letter_queue, "handling failed; dead-lettering");
                #[cfg(feature = "metrics")]
                self.count(&delivery, Handled::DeadLettered);
                Box::pin(self.fail(publisher, delivery, reason, FailedTo::DeadLetter)).await;
            }
        }
    }

    /// `eventing_handled_total` for this listener, counted where the decision is made.
    #[cfg(feature = "metrics")]
    fn count(&self, delivery: &Delivery, outcome: Handled) {
        crate::observe::metrics::handled(&self.info, &delivery.message.event_type, outcome);
    }

    async fn ack(&self, delivery: Delivery) {
        if let Err(error) = delivery.acker.ack().await {
            tracing::warn!(%error, "acknowledging failed; the broker delivers the message again");
        }
    }

    /// Moves a failed message on (called boxed: its state stays out of the future of every
    /// delivery that succeeds): to the delay tier of `delay` (attempt + 1), published to the
    /// tier's exchange with this listener's queue as routing key, so that it expires back into
    /// this queue only; or to the dead-letter queue; with the failure in headers. Only after
    /// the broker confirmed that is the original acknowledged. The message keeps its id, so a
    /// handler that sees it again can tell.
    async fn fail(&self, publisher: &Publisher, delivery: Delivery, reason: String, to: FailedTo) {
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
        let route = match to {
            FailedTo::DeadLetter => {
                message.persistent = true;
                Route::Queue(&self.dead_letter_queue)
            }
            FailedTo::Retry(delay) => {
                message.attempt += 1;
                match self.retry_tiers.iter().find(|(wait, _)| *wait == delay) {
                    Some((_, tier)) => Route::Exchange { exchange: tier, routing_key: &self.queue },
                    None => Route::Queue(&self.dead_letter_queue),
                }
            }
        };
        let queue = match route {
            Route::Exchange { exchange, .. } => exchange,
            Route::Queue(queue) => queue,
        };
        match publisher.send(route, message, Origin::Runtime).await {
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

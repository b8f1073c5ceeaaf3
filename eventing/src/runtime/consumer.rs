//! The consume loop, one per listener and per request handler: bounded concurrency,
//! shutdown and drain. What happens to each delivery is the [`Handles`] implementation's:
//! for a listener ([`Consumer`]) the handle stack (`handle.rs`) followed by the settle
//! decision (`settle.rs`); for a request handler the serving stack (`serve.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handle::{self, HandleStack};
use super::settle::Settler;
use crate::transport::{Delivery, Subscription};

/// How many turns a busy consume loop takes between two looks at its stop token.
const STOP_CHECK_INTERVAL: u32 = 64;

/// What the consume loop drives: the whole handling of one delivery, settling included.
pub(crate) trait Handles: Send + Sync + 'static {
    /// The listener's (or request handler's) name, for the loop's logs.
    fn listener(&self) -> &'static str;
    /// The queue consumed, for the loop's logs.
    fn queue(&self) -> &str;
    /// How many deliveries are handled at once.
    fn concurrency(&self) -> u16;
    /// Handles `delivery` and settles it with the broker.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = ()> + Send;
}

/// Consumes until `stop` is cancelled, then stops taking deliveries, returns the ones not
/// started to the queue and waits (up to `drain_timeout`) for the ones in flight.
///
/// Up to `concurrency` deliveries are handled at once, polled by this task (as
/// `for_each_concurrent` does): no task spawn per delivery, and with a concurrency of 1
/// deliveries are handled strictly one after another, in queue order. Each delivery's
/// handling is polled once as it arrives ([`poll_once`]).
pub(crate) async fn run<H: Handles>(
    handler: Arc<H>,
    mut subscription: Box<dyn Subscription>,
    stop: CancellationToken,
    drain_timeout: Duration,
) {
    let (listener, concurrency) = (handler.listener(), usize::from(handler.concurrency().max(1)));
    let mut in_flight = FuturesUnordered::new();
    // The box of the last handling that finished in its first poll, for the next delivery.
    let mut spare = None;
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    let mut since_stop_checked = 0_u32;
    loop {
        // Asking the token takes its mutex: a busy loop asks every so often, an idle one
        // is woken by it (the last branch below, polled only when nothing else is ready).
        since_stop_checked += 1;
        if since_stop_checked == STOP_CHECK_INTERVAL {
            since_stop_checked = 0;
            if stop.is_cancelled() {
                break;
            }
        }
        let room = in_flight.len() < concurrency;
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            next = subscription.next(), if room => match next {
                Some(Ok(delivery)) => {
                    let mut slot: Slot<_> = spare.take().unwrap_or_else(|| Box::pin(None));
                    slot.set(Some(handler.handle(delivery)));
                    let mut handling = InSlot(slot);
                    if poll_once(Pin::new(&mut handling)).await.is_pending() {
                        in_flight.push(handling);
                    } else {
                        let InSlot(mut slot) = handling;
                        slot.set(None);
                        spare = Some(slot);
                    }
                }
                Some(Err(error)) => {
                    tracing::error!(listener, queue = %handler.queue(), %error, "consuming failed");
                }
                None => {
                    tracing::error!(listener, queue = %handler.queue(), "the broker ended the subscription");
                    break;
                }
            },
            () = &mut cancelled => break,
        }
    }
    if tokio::time::timeout(drain_timeout, return_unstarted(&*handler, &mut subscription)).await.is_err() {
        tracing::warn!(
            listener,
            queue = %handler.queue(),
            "the subscription did not end within the shutdown deadline; its deliveries are redelivered later"
        );
    }
    let finish = async { while in_flight.next().await.is_some() {} };
    if tokio::time::timeout(drain_timeout, finish).await.is_err() {
        tracing::warn!(
            listener,
            queue = %handler.queue(),
            in_flight = in_flight.len(),
            timeout = ?drain_timeout,
            "handlers still running at the shutdown deadline; their messages will be redelivered"
        );
    }
}

/// The heap place of one delivery's handling: a handling that finishes in its first poll
/// leaves its box for the next delivery, so the common case allocates nothing.
type Slot<F> = Pin<Box<Option<F>>>;

/// A handling in its slot, polled in place: first once by the consume loop ([`poll_once`]),
/// then, while it waits, by the `FuturesUnordered` with its own waker.
struct InSlot<F>(Slot<F>);

impl<F: Future> Future for InSlot<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        match self.0.as_mut().as_pin_mut() {
            Some(handling) => handling.poll(cx),
            None => unreachable!("a slot is polled only while it holds a handling"),
        }
    }
}

/// Polls `handling` once with the consume loop's own waker. A handler that finishes
/// without waiting (most in-memory ones, and any that only decodes and updates state) is
/// done here and never enters the `FuturesUnordered`, whose insertion, ready queue and
/// release were a tenth of the in-memory path's instructions; one that waits is pushed
/// there and polled again with its own waker.
async fn poll_once<F: Future>(mut handling: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await
}

/// Cancels the subscription and returns what it had delivered but no handler started.
async fn return_unstarted(handler: &impl Handles, subscription: &mut Box<dyn Subscription>) {
    let (listener, queue) = (handler.listener(), handler.queue());
    if let Err(error) = subscription.cancel().await {
        tracing::warn!(listener, queue, %error, "cancelling the consumer failed");
    }
    while let Some(next) = subscription.next().await {
        if let Ok(delivery) = next {
            if let Err(error) = delivery.acker.requeue().await {
                tracing::warn!(listener, queue, %error, "returning an unstarted delivery failed");
            }
        }
    }
}

/// Everything one listener's deliveries need.
pub(crate) struct Consumer {
    pub(crate) stack: HandleStack,
    pub(crate) settler: Settler,
    pub(crate) concurrency: u16,
}

impl Handles for Consumer {
    fn listener(&self) -> &'static str {
        self.stack.info.name
    }

    fn queue(&self) -> &str {
        &self.settler.queue
    }

    fn concurrency(&self) -> u16 {
        self.concurrency
    }

    async fn handle(&self, delivery: Delivery) {
        let delivery = self.checked_attempt(delivery);
        let message = Arc::clone(&delivery.message);
        let span = handle::span(&delivery, self.stack.info.name, &self.settler.queue, &self.stack.publisher);
        async {
            #[cfg(feature = "metrics")]
            let _in_flight = crate::observe::metrics::InFlight::start(self.stack.info.name);
            #[cfg(feature = "metrics")]
            let started = std::time::Instant::now();
            let outcome = self.stack.run(&message, delivery.redelivered).await;
            #[cfg(feature = "metrics")]
            if !matches!(outcome, handle::Outcome::Returned) {
                crate::observe::metrics::handle_duration(&self.stack.info, &message.event_type, started.elapsed());
            }
            self.settler.settle(&self.stack.publisher, delivery, outcome).await;
        }
        .instrument(span)
        .await;
    }
}

impl Consumer {
    /// A delivery whose attempt header is beyond what the retry policy allows came from
    /// outside (our own retries never exceed it): it is treated as a first attempt rather
    /// than skipping every retry, and logged.
    fn checked_attempt(&self, mut delivery: Delivery) -> Delivery {
        let attempt = delivery.message.attempt;
        if attempt == 0 || attempt > self.settler.retry.max_attempts.max(1) {
            tracing::warn!(
                listener = self.stack.info.name,
                message_id = %delivery.message.message_id,
                attempt,
                max_attempts = self.settler.retry.max_attempts,
                "a delivery's x-eventing-attempt is outside the retry policy; treating it as attempt 1"
            );
            let mut message = (*delivery.message).clone();
            message.attempt = 1;
            delivery.message = Arc::new(message);
        }
        delivery
    }
}

//! Requests through RabbitMQ's direct reply-to: one connection per transport (opened at the
//! first request, opened again after it is lost) publishes the requests, `mandatory`, with
//! `reply_to = amq.rabbitmq.reply-to`, and consumes `amq.rabbitmq.reply-to` with no-ack on
//! that same channel (RabbitMQ's rule). Replies are matched to callers by correlation id. No
//! queue is declared, per request or per client.
//!
//! Requests that wait for a reply go without publisher confirms: the reply proves the request
//! arrived, and a confirm cost every round trip about 10 % on this project's benchmark
//! machine (BENCHMARKS.md, 2026-12-05). What a confirm also carried, the `basic.return` of a
//! request no queue takes (`NoHandler`), lapin 4 reports outside confirm mode only to
//! whoever calls `wait_for_confirms` (no event, no callback), so the reply task drains it
//! every [`RETURN_POLL`] while callers wait: this polling is written by hand because lapin
//! offers nothing to await. Sends (no reply) go on a second, confirming channel of the same
//! connection: for them the confirm is the only proof.
//!
//! A plain AMQP client calls a request the same way; a plain server replies to the
//! request's `reply_to` through the default exchange with its correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventing::message::Message;
use eventing::transport::{Route, TransportError};
use futures_util::StreamExt;
use lapin::message::BasicReturnMessage;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, Consumer};
use tokio::sync::{Notify, oneshot};

use crate::convert;
use crate::options::AmqpOptions;
use crate::util::{lock, other};

/// The pseudo-queue of direct reply-to.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// AMQP reply code of a mandatory message no queue takes.
const NO_ROUTE: u16 = 312;

/// How often the reply task asks lapin for returned requests while callers wait: a request
/// nobody serves fails within about this long after the broker returned it.
const RETURN_POLL: Duration = Duration::from_millis(5);

/// What ends a caller's wait.
enum Answer {
    Reply(Message),
    Returned(TransportError),
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>;

/// The request side of one transport.
pub(crate) struct Replies {
    url: String,
    connection_name: String,
    /// For the TLS settings.
    options: AmqpOptions,
    current: tokio::sync::Mutex<Option<Arc<ReplyChannel>>>,
}

/// A connection with a channel that publishes requests and receives their replies, and a
/// confirming channel for sends.
struct ReplyChannel {
    connection: Connection,
    requests: Channel,
    sends: Channel,
    waiting: Waiting,
    /// Wakes the reply task when a caller starts waiting, so it polls for returns.
    watch: Arc<Notify>,
    alive: Arc<AtomicBool>,
}

/// Forgets a caller however its call ends: a reply that comes later is dropped.
struct Forget<'a> {
    waiting: &'a Waiting,
    key: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.waiting).remove(&self.key);
    }
}

impl Replies {
    pub(crate) fn new(url: String, connection_name: String, options: AmqpOptions) -> Self {
        Self { url, connection_name, options, current: tokio::sync::Mutex::new(None) }
    }

    /// The live channel, opened on first use and after a loss.
    async fn channel(&self) -> Result<Arc<ReplyChannel>, TransportError> {
        let mut current = self.current.lock().await;
        if let Some(channel) = current.as_ref()
            && channel.alive.load(Ordering::Acquire)
            && channel.requests.status().connected()
        {
            return Ok(Arc::clone(channel));
        }
        let connection = crate::connect::open(&self.url, &self.connection_name, &self.options).await?;
        let requests =
            connection.create_channel().await.map_err(|error| other("opening the request channel", error))?;
        let sends = connection.create_channel().await.map_err(|error| other("opening the send channel", error))?;
        sends
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| other("enabling confirms on the send channel", error))?;
        let consumer = requests
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "eventing-replies".into(),
                BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await
            .map_err(|error| other("consuming amq.rabbitmq.reply-to", error))?;
        let waiting: Waiting = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let watch = Arc::new(Notify::new());
        tokio::spawn(receive_replies(
            consumer,
            requests.clone(),
            Arc::clone(&waiting),
            Arc::clone(&watch),
            Arc::clone(&alive),
        ));
        let fresh = Arc::new(ReplyChannel { connection, requests, sends, waiting, watch, alive });
        *current = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// See [`Transport::request`](eventing::transport::Transport::request).
    pub(crate) async fn request(
        &self,
        route: Route<'_>,
        mut message: Message,
        reply_within: Option<Duration>,
    ) -> Result<Option<Message>, TransportError> {
        let (exchange, routing_key) = match route {
            Route::Exchange { exchange, routing_key } => (exchange, routing_key),
            Route::Queue(queue) => ("", queue),
        };
        let rpc = self.channel().await?;
        let Some(within) = reply_within else {
            return rpc.send(exchange, routing_key, &message).await.map(|()| None);
        };
        let key = message.chain_id().to_owned();
        message.reply_to = Some(DIRECT_REPLY_TO.to_owned());
        let (sender, answer) = oneshot::channel();
        lock(&rpc.waiting).insert(key.clone(), sender);
        let _forget = Forget { waiting: &rpc.waiting, key };
        rpc.watch.notify_one();
        let published = rpc
            .requests
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &message.body,
                convert::properties(&message),
            )
            .await;
        match published {
            // Without confirms this resolves at once; awaited so lapin does not keep it.
            Ok(unconfirmed) => drop(unconfirmed.await),
            Err(error) => {
                rpc.alive.store(false, Ordering::Release);
                return Err(other("publishing a request", error));
            }
        }
        match tokio::time::timeout(within, answer).await {
            Ok(Ok(Answer::Reply(reply))) => Ok(Some(reply)),
            Ok(Ok(Answer::Returned(error))) => Err(error),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Ok(None),
        }
    }

    /// Closes the request connection, failing the callers still waiting.
    pub(crate) async fn close(&self) {
        if let Some(rpc) = self.current.lock().await.take() {
            rpc.alive.store(false, Ordering::Release);
            lock(&rpc.waiting).clear();
            let _ = rpc.connection.close(200, "bye".into()).await;
        }
    }
}

impl ReplyChannel {
    /// Publishes a send (no reply), `mandatory`, and waits for the broker's confirm.
    async fn send(&self, exchange: &str, routing_key: &str, message: &Message) -> Result<(), TransportError> {
        let confirmed = match self
            .sends
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &message.body,
                convert::properties(message),
            )
            .await
        {
            Ok(confirm) => confirm.await,
            Err(error) => Err(error),
        };
        match confirmed {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(returned))) => Err(returned_error(&returned)),
            Ok(Confirmation::Nack(_)) => Err(TransportError::Rejected { reason: "negatively confirmed (nack)".into() }),
            Ok(Confirmation::NotRequested) => {
                Err(TransportError::Rejected { reason: "confirms are not enabled".into() })
            }
            Err(error) => {
                self.alive.store(false, Ordering::Release);
                Err(other("publishing a send", error))
            }
        }
    }
}

/// The error for a message the broker returned.
fn returned_error(returned: &BasicReturnMessage) -> TransportError {
    let reason = format!(
        "returned by the broker: {} {} (routing key `{}` on exchange `{}`)",
        returned.reply_code, returned.reply_text, returned.delivery.routing_key, returned.delivery.exchange
    );
    if returned.reply_code == NO_ROUTE {
        TransportError::Unroutable { reason }
    } else {
        TransportError::Rejected { reason }
    }
}

/// The reply task of one request channel: hands each reply to its caller and, while callers
/// wait, each returned request to its caller. When the channel is gone, fails the callers
/// still waiting as closed.
async fn receive_replies(
    mut consumer: Consumer,
    requests: Channel,
    waiting: Waiting,
    watch: Arc<Notify>,
    alive: Arc<AtomicBool>,
) {
    let mut poll = tokio::time::interval(RETURN_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let watching = !lock(&waiting).is_empty();
        tokio::select! {
            biased;
            next = consumer.next() => {
                let Some(Ok(delivery)) = next else { break };
                let Some(key) = delivery.properties.correlation_id().as_ref().map(ToString::to_string) else {
                    tracing::debug!("a reply without a correlation id; dropped");
                    continue;
                };
                let reply = convert::message(delivery.data, &delivery.properties, delivery.routing_key.as_str());
                answer(&waiting, &key, Answer::Reply(reply));
            }
            _ = poll.tick(), if watching => {
                // On a channel without confirms this waits for nothing: it takes what the
                // broker returned since the last call.
                let Ok(returned) = requests.wait_for_confirms().await else { break };
                for message in returned {
                    let Some(key) = message.properties.correlation_id().as_ref().map(ToString::to_string) else {
                        continue;
                    };
                    answer(&waiting, &key, Answer::Returned(returned_error(&message)));
                }
            }
            () = watch.notified(), if !watching => {}
        }
    }
    alive.store(false, Ordering::Release);
    lock(&waiting).clear();
}

/// Ends the wait of the caller of `key`, if it still waits.
fn answer(waiting: &Waiting, key: &str, answer: Answer) {
    match lock(waiting).remove(key) {
        Some(caller) => {
            let _ = caller.send(answer);
        }
        None => tracing::debug!(correlation_id = %key, "an answer came after its caller gave up; dropped"),
    }
}

/// Sends `reply` to a request's `reply_to` through the default exchange on `channel`, which
/// has no publisher confirms: a reply is best effort (see
/// [`Transport::reply`](eventing::transport::Transport::reply)).
pub(crate) async fn send(channel: &Channel, reply_to: &str, reply: &Message) -> Result<(), TransportError> {
    let sent = channel
        .basic_publish(
            "".into(),
            reply_to.into(),
            BasicPublishOptions::default(),
            &reply.body,
            convert::reply_properties(reply),
        )
        .await
        .map_err(|error| other("publishing a reply", error))?;
    // Without confirms this resolves at once; awaited so lapin does not keep it for
    // `wait_for_confirms`.
    let _ = sent.await;
    Ok(())
}

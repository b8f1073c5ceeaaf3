//! Requests through RabbitMQ's direct reply-to: one connection and one channel per
//! transport (opened at the first request, opened again after it is lost) publish the
//! requests, `mandatory` and confirmed, with `reply_to = amq.rabbitmq.reply-to`, and consume
//! `amq.rabbitmq.reply-to` with no-ack on that same channel (RabbitMQ's rule). Replies are
//! matched to callers by correlation id. No queue is declared, per request or per client.
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
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection};
use tokio::sync::oneshot;

use crate::convert;
use crate::options::AmqpOptions;
use crate::util::{lock, other};

/// The pseudo-queue of direct reply-to.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// AMQP reply code of a mandatory message no queue takes.
const NO_ROUTE: u16 = 312;

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Message>>>>;

/// The request side of one transport.
pub(crate) struct Replies {
    url: String,
    connection_name: String,
    /// For the TLS settings.
    options: AmqpOptions,
    current: tokio::sync::Mutex<Option<Arc<ReplyChannel>>>,
}

/// A connection and channel that publish requests and receive their replies.
struct ReplyChannel {
    connection: Connection,
    channel: Channel,
    waiting: Waiting,
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
            && channel.channel.status().connected()
        {
            return Ok(Arc::clone(channel));
        }
        let connection = crate::connect::open(&self.url, &self.connection_name, &self.options).await?;
        let channel = connection.create_channel().await.map_err(|error| other("opening the request channel", error))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| other("enabling confirms on the request channel", error))?;
        let mut consumer = channel
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
        {
            let waiting = Arc::clone(&waiting);
            let alive = Arc::clone(&alive);
            tokio::spawn(async move {
                while let Some(next) = consumer.next().await {
                    let Ok(delivery) = next else { break };
                    let Some(key) = delivery.properties.correlation_id().as_ref().map(ToString::to_string) else {
                        tracing::debug!("a reply without a correlation id; dropped");
                        continue;
                    };
                    let reply = convert::message(delivery.data, &delivery.properties, delivery.routing_key.as_str());
                    match lock(&waiting).remove(&key) {
                        Some(caller) => {
                            let _ = caller.send(reply);
                        }
                        None => {
                            tracing::debug!(correlation_id = %key, "a reply came after its caller gave up; dropped")
                        }
                    }
                }
                // The channel is gone: callers waiting on it fail as closed.
                alive.store(false, Ordering::Release);
                lock(&waiting).clear();
            });
        }
        let fresh = Arc::new(ReplyChannel { connection, channel, waiting, alive });
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
        let mut receiver = None;
        let mut _forget = None;
        if reply_within.is_some() {
            let key = message.chain_id().to_owned();
            message.reply_to = Some(DIRECT_REPLY_TO.to_owned());
            let (sender, reply) = oneshot::channel();
            lock(&rpc.waiting).insert(key.clone(), sender);
            _forget = Some(Forget { waiting: &rpc.waiting, key });
            receiver = Some(reply);
        }
        let confirm = rpc
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &message.body,
                convert::properties(&message),
            )
            .await;
        let confirmed = match confirm {
            Ok(confirm) => confirm.await,
            Err(error) => Err(error),
        };
        match confirmed {
            Ok(Confirmation::Ack(None)) => {}
            Ok(Confirmation::Ack(Some(returned))) => {
                let reason = format!(
                    "returned by the broker: {} {} (routing key `{routing_key}` on exchange `{exchange}`)",
                    returned.reply_code, returned.reply_text
                );
                return Err(if returned.reply_code == NO_ROUTE {
                    TransportError::Unroutable { reason }
                } else {
                    TransportError::Rejected { reason }
                });
            }
            Ok(Confirmation::Nack(_)) => {
                return Err(TransportError::Rejected { reason: "negatively confirmed (nack)".into() });
            }
            Ok(Confirmation::NotRequested) => {
                return Err(TransportError::Rejected { reason: "confirms are not enabled".into() });
            }
            Err(error) => {
                rpc.alive.store(false, Ordering::Release);
                return Err(other("publishing a request", error));
            }
        }
        let (Some(within), Some(receiver)) = (reply_within, receiver) else { return Ok(None) };
        match tokio::time::timeout(within, receiver).await {
            Ok(Ok(reply)) => Ok(Some(reply)),
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
            convert::properties(reply),
        )
        .await
        .map_err(|error| other("publishing a reply", error))?;
    // Without confirms this resolves at once; awaited so lapin does not keep it for
    // `wait_for_confirms`.
    let _ = sent.await;
    Ok(())
}

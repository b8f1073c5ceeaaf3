//! Operator access to queues: read messages without consuming them, delete what a test or
//! an operator no longer needs. Messages are read through the lenient reader (`raw`), so a
//! message lapin cannot parse is shown and requeued instead of hanging the call.

use eventing::message::{HeaderValue, Message, header};
use eventing::transport::{Origin, QueueLifetime, QueueRole, QueueSpec, Route, TransportError, redact_url};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use crate::AmqpTransport;
use crate::QueueType;
use crate::convert;
use crate::raw::{Fetched, RawClient, RawError};
use crate::topology::{declare_error, queue_arguments};
use crate::util::other;

/// The header [`AmqpTransport::peek`] adds to a message lapin could not have read: which
/// fields were not UTF-8, with their bytes in hex.
pub const UNREADABLE: &str = "x-eventing-unreadable";

impl AmqpTransport {
    /// A short-lived channel on the current connection.
    async fn admin_channel(&self) -> Result<Channel, TransportError> {
        self.link.current()?.connection.create_channel().await.map_err(|error| other("opening a channel", error))
    }

    /// Up to `limit` messages of `queue`, left in the queue: they are fetched without
    /// acknowledging and return when the reading connection closes (marked redelivered).
    ///
    /// Read leniently on a short-lived connection of its own: a message lapin cannot parse (a
    /// short-string field that is not UTF-8) is returned with the bad bytes escaped as
    /// `\xNN` and an [`UNREADABLE`](crate::UNREADABLE) header saying which field it was,
    /// instead of failing (or hanging) the call.
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<Message>, TransportError> {
        let client = self.raw_client().await?;
        let name = queue.to_owned();
        let fetched = client
            .run(move |connection| {
                let mut fetched = Vec::new();
                while fetched.len() < limit {
                    let Some(message) = connection.get(&name)? else { break };
                    fetched.push(message);
                }
                Ok(fetched)
            })
            .await;
        client.close().await;
        Ok(fetched.map_err(|error| raw_error(queue, error))?.into_iter().map(readable).collect())
    }

    /// A short-lived lenient reader on a connection of its own.
    async fn raw_client(&self) -> Result<RawClient, TransportError> {
        let name = format!("{} (operator)", self.link.options.connection_name);
        RawClient::open(self.link.url(), &name, &self.link.options)
            .await
            .map_err(|error| TransportError::Connect { url: redact_url(self.link.url()), reason: error.to_string() })
    }

    /// How many messages `queue` holds; an error naming the queue when it does not exist.
    pub async fn message_count(&self, queue: &str) -> Result<u32, TransportError> {
        let channel = self.admin_channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(queue.into(), options, FieldTable::default()).await;
        let _ = channel.close(200, "count done".into()).await;
        declared.map(|queue| queue.message_count()).map_err(|error| declare_error(&format!("queue `{queue}`"), error))
    }

    /// Removes every message of `queue`; returns how many there were.
    pub async fn purge(&self, queue: &str) -> Result<u32, TransportError> {
        self.message_count(queue).await?;
        let channel = self.admin_channel().await?;
        let purged = channel.queue_purge(queue.into(), QueuePurgeOptions::default()).await;
        let _ = channel.close(200, "purge done".into()).await;
        purged.map_err(|error| other(&format!("purging queue `{queue}`"), error))
    }

    /// Moves up to `limit` dead letters of `dead_letter_queue` back to the queue each came
    /// from, as [`requeue_dead_letters_once`](Self::requeue_dead_letters_once) does.
    pub async fn requeue_dead_letters(&self, dead_letter_queue: &str, limit: usize) -> Result<usize, TransportError> {
        self.requeue_dead_letters_once(dead_letter_queue, limit, |_, _| {}).await
    }

    /// Deletes a queue and its messages; a queue that does not exist is not an error.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        let channel = self.admin_channel().await?;
        let deleted = channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
        let _ = channel.close(200, "queue deleted".into()).await;
        deleted.map(drop).map_err(|error| other(&format!("deleting queue `{queue}`"), error))
    }

    /// Deletes an exchange; one that does not exist is not an error.
    pub async fn delete_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        let channel = self.admin_channel().await?;
        let deleted = channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()).await;
        let _ = channel.close(200, "exchange deleted".into()).await;
        deleted.map_err(|error| other(&format!("deleting exchange `{exchange}`"), error))
    }
}

/// Operator primitives that check before they act, for `eventing dlq` and
/// `eventing topology delete`: who consumes a queue, a requeue bounded by a count taken
/// first, and deleting an exchange only once nothing is bound to it.
impl AmqpTransport {
    /// How many consumers `queue` has (a passive declare); an error naming the queue when it
    /// does not exist, [`TransportError::Locked`] when it is exclusive to another connection.
    /// Eventing never consumes a dead-letter queue: one with consumers is a live queue.
    pub async fn consumer_count(&self, queue: &str) -> Result<u32, TransportError> {
        let channel = self.admin_channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(queue.into(), options, FieldTable::default()).await;
        let _ = channel.close(200, "count done".into()).await;
        declared.map(|queue| queue.consumer_count()).map_err(|error| declare_error(&format!("queue `{queue}`"), error))
    }

    /// Whether the existing `queue` was declared as eventing declares dead-letter queues:
    /// durable, with no TTL, expiry, dead-lettering or length limit, classic or quorum. An
    /// AMQP client cannot read a queue's arguments, so this redeclares it with the
    /// dead-letter arguments and lets the broker's equivalence check answer; RabbitMQ
    /// refuses (and this returns `false`) for a transient queue, an expiring listener queue
    /// or a delay tier. An error naming the queue when it does not exist (checked first, so
    /// the redeclaration does not create it), [`TransportError::Locked`] when it is
    /// exclusive to another connection.
    pub async fn has_dead_letter_shape(&self, queue: &str) -> Result<bool, TransportError> {
        self.message_count(queue).await?;
        let spec = QueueSpec { name: queue.to_owned(), lifetime: QueueLifetime::Durable, role: QueueRole::DeadLetter };
        for queue_type in [QueueType::Classic, QueueType::Quorum] {
            // A refused declaration closes its channel: one channel per try.
            let channel = self.admin_channel().await?;
            let (options, arguments) = queue_arguments(&spec, queue_type);
            let declared = channel.queue_declare(queue.into(), options, arguments).await;
            match declared.map_err(|error| declare_error(&format!("queue `{queue}`"), error)) {
                Ok(_) => {
                    let _ = channel.close(200, "shape checked".into()).await;
                    return Ok(true);
                }
                Err(TransportError::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(false)
    }

    /// Moves dead letters of `dead_letter_queue` back to the queue each came from (its
    /// `x-eventing-original-queue` header), as first attempts, calling `on_moved` with each
    /// message and its destination once it moved. Returns how many moved.
    ///
    /// Each message moves at most once per call: the queue's message count is taken first
    /// and at most that many (and at most `limit`) are moved, so messages that arrive
    /// meanwhile, or come back, wait for the next call. A message is never moved onto
    /// `dead_letter_queue` itself or onto any other dead-letter queue: the call stops with an
    /// error at such a message, as at one without the header, and leaves it where it was.
    /// Each move is published with a confirm before the dead letter is removed, so a call
    /// that stops on an error loses nothing (at worst the message it stopped at is requeued
    /// twice); `on_moved` has then seen every message that moved before the error.
    pub async fn requeue_dead_letters_once(
        &self,
        dead_letter_queue: &str,
        limit: usize,
        mut on_moved: impl FnMut(&Message, &str) + Send,
    ) -> Result<usize, TransportError> {
        let count = self.message_count(dead_letter_queue).await?;
        let budget = usize::try_from(count).unwrap_or(usize::MAX).min(limit);
        // Read leniently (see `peek`): an unreadable dead letter is requeued readable.
        let client = self.raw_client().await?;
        let dead_letter_suffix = format!(".{}", eventing::naming::DEAD_LETTER_SUFFIX);
        let mut moved = 0;
        let outcome = async {
            while moved < budget {
                let name = dead_letter_queue.to_owned();
                let fetched = client.run(move |connection| connection.get(&name)).await;
                let Some(fetched) = fetched.map_err(|error| raw_error(dead_letter_queue, error))? else { break };
                let tag = fetched.delivery_tag;
                let mut message = readable(fetched);
                message.headers.remove(UNREADABLE);
                let refuse = |why: String| TransportError::Other {
                    context: format!("requeueing message {} from `{dead_letter_queue}`", message.message_id),
                    source: why.into(),
                };
                let original = match message.header_text(header::ORIGINAL_QUEUE) {
                    None => {
                        return Err(refuse(
                            "it has no x-eventing-original-queue header: not an eventing dead letter".into(),
                        ));
                    }
                    Some(original) if original == dead_letter_queue => {
                        return Err(refuse(format!(
                            "its x-eventing-original-queue names the queue it is read from (`{original}`): it was left there"
                        )));
                    }
                    Some(original) if original.ends_with(&dead_letter_suffix) => {
                        return Err(refuse(format!(
                            "its x-eventing-original-queue `{original}` is a dead-letter queue: it was left where it was"
                        )));
                    }
                    Some(original) => original.to_owned(),
                };
                message.attempt = 1;
                message.headers.remove(header::ATTEMPTS);
                crate::publish::publish(&self.link, Route::Queue(&original), &message, Origin::Runtime).await?;
                client
                    .run(move |connection| connection.ack(tag))
                    .await
                    .map_err(|error| raw_error(dead_letter_queue, error))?;
                moved += 1;
                on_moved(&message, &original);
            }
            Ok::<(), TransportError>(())
        }
        .await;
        // Closing the connection returns a message the loop stopped at to the dead-letter queue.
        client.close().await;
        outcome?;
        Ok(moved)
    }

    /// Whether `exchange` exists (a passive declare).
    pub async fn exchange_exists(&self, exchange: &str) -> Result<bool, TransportError> {
        let channel = self.admin_channel().await?;
        let options = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
        let declared =
            channel.exchange_declare(exchange.into(), ExchangeKind::Topic, options, FieldTable::default()).await;
        let _ = channel.close(200, "exchange checked".into()).await;
        match declared.map_err(|error| declare_error(&format!("exchange `{exchange}`"), error)) {
            Ok(()) => Ok(true),
            Err(TransportError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deletes `exchange` unless a queue or exchange is still bound to it (AMQP `if-unused`):
    /// `Ok(true)` when it was deleted (or did not exist), `Ok(false)` when bindings kept it.
    /// For an exchange that several services share.
    pub async fn delete_exchange_if_unused(&self, exchange: &str) -> Result<bool, TransportError> {
        let channel = self.admin_channel().await?;
        let options = ExchangeDeleteOptions { if_unused: true, ..ExchangeDeleteOptions::default() };
        let deleted = channel.exchange_delete(exchange.into(), options).await;
        let _ = channel.close(200, "exchange deleted".into()).await;
        match deleted.map_err(|error| declare_error(&format!("exchange `{exchange}`"), error)) {
            Ok(()) => Ok(true),
            Err(TransportError::Conflict { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// A fetched message as eventing's, with [`UNREADABLE`] when some field was not UTF-8.
fn readable(fetched: Fetched) -> Message {
    let mut message = convert::message(fetched.body, &fetched.header.properties, &fetched.routing_key);
    if !fetched.header.problems.is_empty() {
        message.headers.insert(UNREADABLE.into(), HeaderValue::Text(fetched.header.problems.join("; ")));
    }
    message
}

/// A raw client's error as the transport's, naming the queue (a missing queue is `NotFound`,
/// an exclusive queue of another connection `Locked`, as for lapin's errors).
fn raw_error(queue: &str, error: RawError) -> TransportError {
    match error {
        RawError::Closed { code: 404, text, .. } => {
            TransportError::NotFound { object: format!("queue `{queue}` ({text})") }
        }
        RawError::Closed { code: 405, .. } => TransportError::Locked { queue: queue.to_owned() },
        error => TransportError::Other { context: format!("reading queue `{queue}`"), source: Box::new(error) },
    }
}

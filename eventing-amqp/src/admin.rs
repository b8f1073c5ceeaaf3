//! Operator access to queues: read messages without consuming them, delete what a test or
//! an operator no longer needs. Messages are read through the lenient reader (`raw`), so a
//! message lapin cannot parse is shown and requeued instead of hanging the call.

use eventing::message::{HeaderValue, Message, header};
use eventing::transport::{Route, TransportError, redact_url};
use lapin::Channel;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions};
use lapin::types::FieldTable;

use crate::AmqpTransport;
use crate::convert;
use crate::raw::{Fetched, RawClient, RawError};
use crate::topology::declare_error;
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
        RawClient::open(self.link.url(), &name)
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
    /// from (its `x-eventing-original-queue` header), as a first attempt again. Each one is
    /// published with a confirm and only then removed from the dead-letter queue, so an
    /// interrupted requeue loses nothing (at worst a message is requeued twice). Returns how
    /// many moved.
    pub async fn requeue_dead_letters(&self, dead_letter_queue: &str, limit: usize) -> Result<usize, TransportError> {
        self.message_count(dead_letter_queue).await?;
        // Read leniently (see `peek`): an unreadable dead letter is requeued readable.
        let client = self.raw_client().await?;
        let moved = self.requeue_with(&client, dead_letter_queue, limit).await;
        client.close().await;
        moved
    }

    async fn requeue_with(
        &self,
        client: &RawClient,
        dead_letter_queue: &str,
        limit: usize,
    ) -> Result<usize, TransportError> {
        let mut moved = 0;
        while moved < limit {
            let name = dead_letter_queue.to_owned();
            let fetched = client.run(move |connection| connection.get(&name)).await;
            let Some(fetched) = fetched.map_err(|error| raw_error(dead_letter_queue, error))? else { break };
            let tag = fetched.delivery_tag;
            let mut message = readable(fetched);
            message.headers.remove(crate::UNREADABLE);
            let Some(original) = message.header_text(header::ORIGINAL_QUEUE).map(str::to_owned) else {
                return Err(TransportError::Other {
                    context: format!("requeueing message {} from `{dead_letter_queue}`", message.message_id),
                    source: "it has no x-eventing-original-queue header: not an eventing dead letter".into(),
                });
            };
            message.attempt = 1;
            message.headers.remove(header::ATTEMPTS);
            crate::publish::publish(&self.link, Route::Queue(&original), &message).await?;
            client
                .run(move |connection| connection.ack(tag))
                .await
                .map_err(|error| raw_error(dead_letter_queue, error))?;
            moved += 1;
        }
        Ok(moved)
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

/// A fetched message as eventing's, with [`UNREADABLE`] when some field was not UTF-8.
fn readable(fetched: Fetched) -> Message {
    let mut message = convert::message(fetched.body, &fetched.header.properties, &fetched.routing_key);
    if !fetched.header.problems.is_empty() {
        message.headers.insert(UNREADABLE.into(), HeaderValue::Text(fetched.header.problems.join("; ")));
    }
    message
}

/// A raw client's error as the transport's, naming the queue (a missing queue is `NotFound`).
fn raw_error(queue: &str, error: RawError) -> TransportError {
    match error {
        RawError::Closed { code: 404, text, .. } => {
            TransportError::NotFound { object: format!("queue `{queue}` ({text})") }
        }
        error => TransportError::Other { context: format!("reading queue `{queue}`"), source: Box::new(error) },
    }
}

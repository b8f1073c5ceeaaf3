//! Operator access to queues: read messages without consuming them, delete what a test or
//! an operator no longer needs.

use eventing::message::{Message, header};
use eventing::transport::{QueueLifetime, QueueRole, QueueSpec, Route, TransportError};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use crate::AmqpTransport;
use crate::QueueType;
use crate::convert;
use crate::link::other;
use crate::topology::{declare_error, queue_arguments};

impl AmqpTransport {
    /// A short-lived channel on the current connection.
    async fn admin_channel(&self) -> Result<Channel, TransportError> {
        self.link.current()?.connection.create_channel().await.map_err(|error| other("opening a channel", error))
    }

    /// Up to `limit` messages of `queue`, left in the queue: they are fetched without
    /// acknowledging and return when the channel closes (marked redelivered).
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<Message>, TransportError> {
        let channel = self.admin_channel().await?;
        let mut messages = Vec::new();
        while messages.len() < limit {
            let fetched = channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|error| declare_error(&format!("queue `{queue}`"), error))?;
            let Some(fetched) = fetched else { break };
            let delivery = fetched.delivery;
            messages.push(convert::message(delivery.data, &delivery.properties, delivery.routing_key.as_str()));
        }
        channel.close(200, "peek done".into()).await.map_err(|error| other("closing the peek channel", error))?;
        Ok(messages)
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
        let channel = self.admin_channel().await?;
        let mut moved = 0;
        while moved < limit {
            let fetched = channel
                .basic_get(dead_letter_queue.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|error| declare_error(&format!("queue `{dead_letter_queue}`"), error))?;
            let Some(fetched) = fetched else { break };
            let delivery = fetched.delivery;
            let mut message = convert::message(delivery.data, &delivery.properties, delivery.routing_key.as_str());
            let Some(original) = message.header_text(header::ORIGINAL_QUEUE).map(str::to_owned) else {
                let _ = channel.close(200, "requeue stopped".into()).await;
                return Err(TransportError::Other {
                    context: format!("requeueing message {} from `{dead_letter_queue}`", message.message_id),
                    source: "it has no x-eventing-original-queue header: not an eventing dead letter".into(),
                });
            };
            message.attempt = 1;
            message.headers.remove(header::ATTEMPTS);
            crate::publish::publish(&self.link, Route::Queue(&original), &message).await?;
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|error| other("removing a requeued dead letter", error))?;
            moved += 1;
        }
        channel.close(200, "requeue done".into()).await.map_err(|error| other("closing the requeue channel", error))?;
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
    /// or a retry queue. An error naming the queue when it does not exist (checked first, so
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
        let channel = self.admin_channel().await?;
        let dead_letter_suffix = format!(".{}", eventing::naming::DEAD_LETTER_SUFFIX);
        let mut moved = 0;
        let outcome = async {
            while moved < budget {
                let fetched = channel
                    .basic_get(dead_letter_queue.into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(|error| declare_error(&format!("queue `{dead_letter_queue}`"), error))?;
                let Some(fetched) = fetched else { break };
                let delivery = fetched.delivery;
                let mut message = convert::message(delivery.data, &delivery.properties, delivery.routing_key.as_str());
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
                crate::publish::publish(&self.link, Route::Queue(&original), &message).await?;
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|error| other("removing a requeued dead letter", error))?;
                moved += 1;
                on_moved(&message, &original);
            }
            Ok::<(), TransportError>(())
        }
        .await;
        // Closing the channel returns a message the loop stopped at to the dead-letter queue.
        let closed = channel.close(200, "requeue done".into()).await;
        outcome?;
        closed.map_err(|error| other("closing the requeue channel", error))?;
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

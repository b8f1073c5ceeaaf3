//! Operator access to queues: read messages without consuming them, delete what a test or
//! an operator no longer needs.

use eventing::message::{Message, header};
use eventing::transport::{Route, TransportError};
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;

use crate::AmqpTransport;
use crate::convert;
use crate::topology::declare_error;
use crate::util::other;

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

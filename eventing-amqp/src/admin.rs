//! Operator access to queues: read messages without consuming them, delete what a test or
//! an operator no longer needs.

use eventing::message::Message;
use eventing::transport::TransportError;
use lapin::Channel;
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};

use crate::AmqpTransport;
use crate::convert;
use crate::link::other;
use crate::topology::declare_error;

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

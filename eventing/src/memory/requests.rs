//! Requests on the in-memory broker, as RabbitMQ's direct reply-to does them: the caller's
//! connection has a reply address (`amq.rabbitmq.reply-to.memory-<connection>`) that is no
//! queue; a reply published to it goes straight to the caller waiting for that correlation
//! id, or nowhere when the caller gave up. Waiting callers count as pending work, so
//! [`MemoryBroker::settled`](super::MemoryBroker::settled) waits for replies too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::queue::lock;
use super::{Broker, topic};
use crate::message::Message;
use crate::transport::{Route, TransportError};

/// The prefix of reply addresses, as on RabbitMQ.
pub(crate) const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to";

/// Callers waiting for a reply, by (reply address, correlation id).
#[derive(Default)]
pub(crate) struct Replies {
    waiting: Mutex<HashMap<(String, String), oneshot::Sender<Message>>>,
}

/// The reply address `route` publishes to, when it is one (and no queue).
pub(super) fn reply_address_of(route: Route<'_>) -> Option<&str> {
    match route {
        Route::Queue(address) if address.starts_with(REPLY_TO_PREFIX) => Some(address),
        _ => None,
    }
}

/// Takes a reply published to a reply address to its caller.
pub(super) fn take_reply(broker: &Broker, address: &str, message: Message) {
    let key = (address.to_owned(), message.chain_id().to_owned());
    match lock(&broker.replies.waiting).remove(&key) {
        Some(caller) => {
            // The caller may have dropped its receiver just now: the reply is then dropped.
            let _ = caller.send(message);
        }
        None => tracing::debug!(
            reply_to = address,
            correlation_id = %key.1,
            "a reply came for a caller that gave up (or never asked); dropped"
        ),
    }
}

/// Forgets the callers of a closing connection: their requests fail as closed.
pub(super) fn close_connection(broker: &Broker, connection: u64) {
    let address = reply_address(connection);
    lock(&broker.replies.waiting).retain(|(to, _), _| *to != address);
}

fn reply_address(connection: u64) -> String {
    format!("{REPLY_TO_PREFIX}.memory-{connection}")
}

/// Whether `route` reaches at least one queue now.
fn routable(broker: &Broker, route: Route<'_>) -> bool {
    match route {
        Route::Exchange { exchange, routing_key } => lock(&broker.exchanges)
            .get(exchange)
            .is_some_and(|exchange| exchange.bindings.iter().any(|(pattern, _)| topic::matches(pattern, routing_key))),
        Route::Queue(name) => lock(&broker.queues).contains_key(name),
    }
}

/// Removes a waiting caller and its pending count, however the call ends.
struct Waiting<'a> {
    broker: &'a Broker,
    key: (String, String),
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.broker.replies.waiting).remove(&self.key);
        self.broker.pending.removed(1);
    }
}

pub(super) async fn request(
    broker: &Arc<Broker>,
    connection: u64,
    route: Route<'_>,
    mut message: Message,
    reply_within: Option<Duration>,
) -> Result<Option<Message>, TransportError> {
    if !routable(broker, route) {
        let reason = match route {
            Route::Exchange { exchange, routing_key } => {
                format!("routing key `{routing_key}` on exchange `{exchange}` reaches no queue")
            }
            Route::Queue(name) => format!("queue `{name}` does not exist"),
        };
        return Err(TransportError::Unroutable { reason });
    }
    let Some(within) = reply_within else {
        broker.publish(route, message)?;
        return Ok(None);
    };
    let address = reply_address(connection);
    let key = (address.clone(), message.chain_id().to_owned());
    message.reply_to = Some(address);
    let (sender, receiver) = oneshot::channel();
    lock(&broker.replies.waiting).insert(key.clone(), sender);
    broker.pending.added(1);
    let _waiting = Waiting { broker, key };
    broker.publish(route, message)?;
    match tokio::time::timeout(within, receiver).await {
        Ok(Ok(reply)) => Ok(Some(reply)),
        Ok(Err(_)) => Err(TransportError::Closed),
        Err(_) => Ok(None),
    }
}

//! Dead-lettering messages lapin cannot read.
//!
//! A message with invalid UTF-8 in a short-string field (a header *name*, `type`,
//! `message_id`, the routing key, ...) is accepted by RabbitMQ, but lapin's frame parser
//! rejects the frame and drops the whole connection; on reconnect the broker delivers the same message
//! again, for ever. Why not let the broker stop it: a quorum queue's `x-delivery-limit` would
//! dead-letter it after a few redeliveries, but only on quorum queues (classic queues have
//! no delivery limit), with one dropped connection per redelivery, and the dead letter would
//! still be unreadable by lapin (the operator's `dlq list` would fail on it). So the fix is
//! in the parsing path, the same on every queue type:
//!
//! - each listener consumes on a connection of its own (see `transport`), so a parse failure
//!   names its queue;
//! - when the link reports that its connection died of a parse failure, the consumer, before
//!   consuming again, runs [`dead_letter_unreadable`]: on a short-lived connection of its own
//!   ([`crate::raw`], which parses content headers leniently) it fetches the messages at the
//!   head of the queue with `basic.get`, publishes a readable copy of each unreadable one (the
//!   bytes escaped as `\xNN`) to the listener's dead-letter queue with a confirm and
//!   `x-eventing-error` saying which field was not UTF-8 and its bytes in hex, and only then
//!   acknowledges the original;
//! - readable messages it fetched are never acknowledged: closing the rescue connection puts
//!   them back where they were. It fetches up to the consumer's prefetch plus one, because
//!   the poison was at most that far from the head when lapin failed on it (the deliveries
//!   before it in the same prefetch window return to the queue when the connection drops).

use std::time::{SystemTime, UNIX_EPOCH};

use eventing::message::header;
use eventing::transport::{TransportError, redact_url};
use lapin::types::AMQPValue;

use crate::options::AmqpOptions;
use crate::raw::{Fetched, RawClient, RawConnection, RawError, text};

/// What to rescue: a listener's queue and where its dead letters go.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The broker URL (with credentials: never log it).
    pub(crate) url: String,
    /// The name of the rescue connection, as the management UI shows it.
    pub(crate) connection_name: String,
    /// For the TLS settings.
    pub(crate) options: AmqpOptions,
    /// The listener's queue.
    pub(crate) queue: String,
    /// The listener's dead-letter queue.
    pub(crate) dead_letter_queue: String,
}

/// Moves every unreadable message among the first `limit` of the queue to the dead-letter
/// queue; returns how many moved. Readable messages are left where they were.
pub(crate) async fn dead_letter_unreadable(target: &Target, limit: usize) -> Result<usize, TransportError> {
    let failed = |error: RawError| TransportError::Other {
        context: format!(
            "dead-lettering unreadable messages of queue `{}` into `{}` (via {})",
            target.queue,
            target.dead_letter_queue,
            redact_url(&target.url)
        ),
        source: Box::new(error),
    };
    let client = RawClient::open(&target.url, &target.connection_name, &target.options).await.map_err(failed)?;
    let job = target.clone();
    let moved = client.run(move |connection| rescue(connection, &job, limit)).await;
    client.close().await;
    let moved = moved.map_err(failed)?;
    if moved == 0 {
        tracing::warn!(queue = %target.queue, "no unreadable message found at the head of the queue (another consumer may have taken it); consuming again");
    }
    Ok(moved)
}

fn rescue(connection: &mut RawConnection, target: &Target, limit: usize) -> Result<usize, RawError> {
    let mut moved = 0;
    for _ in 0..limit {
        let Some(fetched) = connection.get(&target.queue)? else { break };
        if fetched.header.problems.is_empty() {
            continue;
        }
        let reason = format!("unreadable message: {}", fetched.header.problems.join("; "));
        tracing::error!(queue = %target.queue, dead_letter_queue = %target.dead_letter_queue, %reason, "dead-lettering a message lapin cannot read");
        let tag = fetched.delivery_tag;
        let (properties, body) = dead_letter(fetched, &target.queue, reason);
        connection.publish_confirmed(&target.dead_letter_queue, properties, &body)?;
        connection.ack(tag)?;
        moved += 1;
    }
    Ok(moved)
}

/// The readable copy of `fetched` for the dead-letter queue: its escaped properties, the
/// failure headers the runtime writes on dead letters, persistent.
fn dead_letter(fetched: Fetched, queue: &str, reason: String) -> (lapin::BasicProperties, Vec<u8>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
    let now = AMQPValue::LongLongInt(i64::try_from(now).unwrap_or(i64::MAX));
    let properties = fetched.header.properties;
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(header::ERROR.into(), text(reason));
    headers.insert(header::ORIGINAL_QUEUE.into(), text(queue));
    if !headers.inner().contains_key(header::ORIGINAL_EXCHANGE) {
        headers.insert(header::ORIGINAL_EXCHANGE.into(), text(fetched.exchange));
        headers.insert(header::ORIGINAL_ROUTING_KEY.into(), text(fetched.routing_key));
    }
    headers.insert(header::ATTEMPTS.into(), AMQPValue::LongLongInt(1));
    if !headers.inner().contains_key(header::FIRST_FAILURE_AT) {
        headers.insert(header::FIRST_FAILURE_AT.into(), now.clone());
    }
    headers.insert(header::LAST_FAILURE_AT.into(), now);
    (properties.with_headers(headers).with_delivery_mode(2), fetched.body)
}

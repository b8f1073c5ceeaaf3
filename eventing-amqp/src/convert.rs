//! Between eventing's [`Message`] and AMQP properties, headers and body.
//!
//! The body is the event's JSON and nothing else. Message id, correlation id, type (the
//! event name), timestamp, app id, content type and delivery mode are AMQP properties;
//! the causation id and the attempt travel in `x-eventing-*` headers.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use eventing::message::{HeaderValue, Headers, JSON, Message, header};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// AMQP delivery mode of persistent messages.
const PERSISTENT: u8 = 2;
/// AMQP delivery mode of transient messages.
const TRANSIENT: u8 = 1;

/// The properties to publish `message` with.
pub(crate) fn properties(message: &Message) -> BasicProperties {
    let mut headers = header_table(&message.headers);
    if let Some(causation) = &message.causation_id {
        headers.insert(header::CAUSATION_ID.into(), AMQPValue::LongString(causation.as_str().into()));
    }
    if message.attempt > 1 {
        // Absent means 1: first deliveries carry no attempt header.
        headers.insert(header::ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(message.attempt)));
    }
    let timestamp = message.timestamp.duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    let mut properties = BasicProperties::default()
        .with_message_id(message.message_id.as_str().into())
        .with_correlation_id(message.chain_id().into())
        .with_type(message.event_type.as_ref().into())
        .with_timestamp(timestamp)
        .with_delivery_mode(if message.persistent { PERSISTENT } else { TRANSIENT });
    if !headers.inner().is_empty() {
        properties = properties.with_headers(headers);
    }
    if let Some(content_type) = &message.content_type {
        properties = properties.with_content_type(content_type.as_ref().into());
    }
    if let Some(app_id) = &message.app_id {
        properties = properties.with_app_id(app_id.as_ref().into());
    }
    if let Some(reply_to) = &message.reply_to {
        properties = properties.with_reply_to(reply_to.as_str().into());
    }
    if let Some(expiration) = message.expiration {
        // AMQP wants whole milliseconds as text; at least 1 (0 would mean "now or never").
        properties = properties.with_expiration(expiration.as_millis().max(1).to_string().into());
    }
    properties
}

/// The properties of a reply: what a caller reads and nothing more (the correlation id it
/// matches on, the content type, and the error header of a failed request). A reply is
/// never routed, retried or dead-lettered, so the event's metadata would only cost the
/// broker and both clients a property table per round trip.
pub(crate) fn reply_properties(reply: &Message) -> BasicProperties {
    let mut properties = BasicProperties::default().with_correlation_id(reply.chain_id().into());
    if let Some(content_type) = &reply.content_type {
        properties = properties.with_content_type(content_type.as_ref().into());
    }
    if !reply.headers.is_empty() {
        properties = properties.with_headers(header_table(&reply.headers));
    }
    properties
}

/// A message's headers as an AMQP table.
fn header_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(name.as_str().into(), to_amqp(value));
    }
    table
}

/// Values that repeat from one delivery of a consumer to the next, kept so each is
/// allocated once rather than per delivery.
#[derive(Default)]
pub(crate) struct Repeats {
    app_id: Option<Arc<str>>,
    exchange: Option<Arc<str>>,
    routing_key: Option<Arc<str>>,
}

impl Repeats {
    /// The exchange a delivery came through, shared with the previous delivery's.
    pub(crate) fn exchange(&mut self, text: &str) -> Arc<str> {
        shared(&mut self.exchange, text)
    }

    /// The routing key of a delivery, shared with the previous delivery's.
    pub(crate) fn routing_key(&mut self, text: &str) -> Arc<str> {
        shared(&mut self.routing_key, text)
    }
}

/// `text` as an `Arc<str>`: the one in `seen` when it holds the same text.
fn shared(seen: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match seen {
        Some(seen) if seen.as_ref() == text => Arc::clone(seen),
        _ => Arc::clone(seen.insert(Arc::from(text))),
    }
}

/// The message carried by an AMQP delivery (from us or from any other AMQP client).
pub(crate) fn message(body: Vec<u8>, properties: &BasicProperties, routing_key: &str) -> Message {
    message_repeating(body, properties, routing_key, &mut Repeats::default())
}

/// [`message`], for one of a consumer's deliveries: what repeats is taken from `repeats`.
pub(crate) fn message_repeating(
    body: Vec<u8>,
    properties: &BasicProperties,
    routing_key: &str,
    repeats: &mut Repeats,
) -> Message {
    let mut headers = Headers::new();
    let mut causation_id = None;
    let mut attempt = 1;
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            match name.as_str() {
                header::CAUSATION_ID => causation_id = text(value),
                header::ATTEMPT => attempt = integer(value).and_then(|n| u32::try_from(n).ok()).unwrap_or(1).max(1),
                other => {
                    if let Some(value) = from_amqp(value) {
                        headers.insert(other.to_owned(), value);
                    }
                }
            }
        }
    }
    let message_id = properties.message_id().as_ref().map(ShortString::to_string).unwrap_or_default();
    let correlation_id = properties
        .correlation_id()
        .as_ref()
        .filter(|correlation| correlation.as_str() != message_id)
        .map(ShortString::to_string);
    Message {
        body,
        message_id,
        correlation_id,
        causation_id,
        // A plain client may leave `type` unset: the routing key is the event name then.
        event_type: Cow::Owned(
            properties.kind().as_ref().map_or_else(|| routing_key.to_owned(), ShortString::to_string),
        ),
        content_type: properties.content_type().as_ref().map(|content_type| match content_type.as_str() {
            JSON => Cow::Borrowed(JSON),
            other => Cow::Owned(other.to_owned()),
        }),
        timestamp: properties.timestamp().map_or(UNIX_EPOCH, |seconds| UNIX_EPOCH + Duration::from_secs(seconds)),
        app_id: properties.app_id().as_ref().map(|app_id| shared(&mut repeats.app_id, app_id.as_str())),
        persistent: *properties.delivery_mode() == Some(PERSISTENT),
        attempt,
        headers,
        reply_to: properties.reply_to().as_ref().map(ShortString::to_string),
        expiration: properties
            .expiration()
            .as_ref()
            .and_then(|millis| millis.as_str().parse::<u64>().ok())
            .map(Duration::from_millis),
    }
}

fn to_amqp(value: &HeaderValue) -> AMQPValue {
    match value {
        HeaderValue::Text(text) => AMQPValue::LongString(LongString::from(text.as_str())),
        HeaderValue::Int(n) => AMQPValue::LongLongInt(*n),
        HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
    }
}

fn from_amqp(value: &AMQPValue) -> Option<HeaderValue> {
    match value {
        AMQPValue::Boolean(b) => Some(HeaderValue::Bool(*b)),
        AMQPValue::Timestamp(seconds) => i64::try_from(*seconds).ok().map(HeaderValue::Int),
        other => integer(other).map(HeaderValue::Int).or_else(|| text(other).map(HeaderValue::Text)),
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::ShortString(text) => Some(text.to_string()),
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(message_id: &str, correlation_id: &str) -> BasicProperties {
        BasicProperties::default()
            .with_message_id(message_id.into())
            .with_correlation_id(correlation_id.into())
            .with_content_type(JSON.into())
            .with_app_id("shop@1".into())
    }

    #[test]
    fn what_repeats_across_a_consumers_deliveries_is_shared_not_copied() {
        let mut repeats = Repeats::default();
        let first = message_repeating(b"{}".to_vec(), &delivered("a", "a"), "shop.order_placed", &mut repeats);
        let second = message_repeating(b"{}".to_vec(), &delivered("b", "a"), "shop.order_placed", &mut repeats);
        let (Some(first_app), Some(second_app)) = (&first.app_id, &second.app_id) else { panic!("app ids") };
        assert!(Arc::ptr_eq(first_app, second_app), "one app id for both");
        assert!(matches!(first.content_type, Some(Cow::Borrowed(JSON))));
        assert_eq!(first.correlation_id, None, "a chain's first message is its own correlation");
        assert_eq!(second.correlation_id.as_deref(), Some("a"));
        assert!(Arc::ptr_eq(&repeats.routing_key("shop.order_placed"), &repeats.routing_key("shop.order_placed")));
        let other =
            message_repeating(b"{}".to_vec(), &delivered("c", "c").with_app_id("crm@2".into()), "x", &mut repeats);
        assert_eq!(other.app_id.as_deref(), Some("crm@2"));
    }
}

//! The transport-neutral message: the event's JSON body and its metadata.
//!
//! On AMQP the metadata travels in message properties (message id, correlation id,
//! type, timestamp, app id) and in the headers named in [`header`]; the body is the
//! event's JSON and nothing else.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// Names of the headers eventing itself writes; all start with [`header::RESERVED_PREFIX`].
pub mod header {
    /// The prefix of eventing's own headers: applications cannot publish headers with it.
    pub const RESERVED_PREFIX: &str = "x-eventing-";
    /// The message id of the message whose handler published this one.
    pub const CAUSATION_ID: &str = "x-eventing-causation-id";
    /// Delivery attempt, 1 on first delivery (our own count: `x-death` is unreliable).
    pub const ATTEMPT: &str = "x-eventing-attempt";
    /// Why a message was dead-lettered: the error text and its source chain.
    pub const ERROR: &str = "x-eventing-error";
    /// How many attempts were made when the message failed last.
    pub const ATTEMPTS: &str = "x-eventing-attempts";
    /// Which listener dead-lettered the message.
    pub const LISTENER: &str = "x-eventing-listener";
    /// The queue the message was consumed from before it was dead-lettered.
    pub const ORIGINAL_QUEUE: &str = "x-eventing-original-queue";
    /// The exchange the message was first published to.
    pub const ORIGINAL_EXCHANGE: &str = "x-eventing-original-exchange";
    /// The routing key the message was first published with.
    pub const ORIGINAL_ROUTING_KEY: &str = "x-eventing-original-routing-key";
    /// When the first delivery failed (milliseconds since the Unix epoch).
    pub const FIRST_FAILURE_AT: &str = "x-eventing-first-failure-at";
    /// When the last delivery failed (milliseconds since the Unix epoch).
    pub const LAST_FAILURE_AT: &str = "x-eventing-last-failure-at";
    /// On a request sent from a handler: the caller's causal chain (the request's own
    /// correlation id matches its reply, so the chain travels here).
    pub const CHAIN_ID: &str = "x-eventing-chain-id";
    /// On a request: when the caller gives up (milliseconds since the Unix epoch); a
    /// request delivered later is dropped unhandled.
    pub const DEADLINE: &str = "x-eventing-deadline";
}

/// Whether `name` is one of eventing's own headers (`x-eventing-*`, in any case), which
/// applications and interceptors cannot set.
pub fn is_reserved_header(name: &str) -> bool {
    name.get(..header::RESERVED_PREFIX.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(header::RESERVED_PREFIX))
}

/// The content type of every body eventing publishes.
pub const JSON: &str = "application/json";

/// A header value: the subset of AMQP field values other languages' clients read easily.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// UTF-8 text.
    Text(String),
    /// A signed integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl HeaderValue {
    /// The value as text, when it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The value as an integer, when it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(value) => Some(*value),
            _ => None,
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<i64> for HeaderValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<bool> for HeaderValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

/// Message headers, ordered by name.
pub type Headers = BTreeMap<String, HeaderValue>;

/// One message as the transports carry it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The event's JSON.
    pub body: Vec<u8>,
    /// Unique id of this message.
    pub message_id: String,
    /// Id shared by every message of one causal chain: the first message's id. `None` on
    /// the first message itself (see [`chain_id`](Self::chain_id)).
    pub correlation_id: Option<String>,
    /// Id of the message whose handler published this one.
    pub causation_id: Option<String>,
    /// The event name (AMQP `type`).
    pub event_type: Cow<'static, str>,
    /// The body's content type; `application/json` for everything eventing publishes.
    pub content_type: Option<Cow<'static, str>>,
    /// When the message was published.
    pub timestamp: SystemTime,
    /// The publishing service (AMQP `app_id`).
    pub app_id: Option<Arc<str>>,
    /// Whether the message is written to disk by the broker (durable events).
    pub persistent: bool,
    /// Delivery attempt, starting at 1.
    pub attempt: u32,
    /// Headers other than the ones mapped to the fields above.
    pub headers: Headers,
    /// Where the reply to a request goes (AMQP `reply_to`); `None` on events and sends.
    pub reply_to: Option<String>,
    /// How long the broker keeps the message before dropping it (AMQP `expiration`);
    /// set on requests to their timeout.
    pub expiration: Option<std::time::Duration>,
}

impl Message {
    /// The id that groups this message's causal chain: the correlation id, or the
    /// message's own id for a message that starts a chain.
    pub fn chain_id(&self) -> &str {
        self.correlation_id.as_deref().unwrap_or(&self.message_id)
    }

    /// A header's text value.
    pub fn header_text(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(HeaderValue::as_str)
    }
}

/// Milliseconds since the Unix epoch, for timestamp headers.
pub(crate) fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random (v4) message id.
///
/// The random bits come from `fastrand` rather than uuid's own source, which makes a
/// `getrandom` system call for every id: that call was about a tenth of the in-memory
/// publish path's time. Message ids must be unique, not unpredictable. The text is
/// encoded into a stack buffer and copied once: `to_string` goes through `fmt` and grows
/// its `String` several times, which cost as many instructions as routing the message.
pub(crate) fn new_message_id() -> String {
    let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut text = [0_u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut text).to_owned()
}

#[cfg(test)]
mod message_id_tests {
    use super::new_message_id;

    #[test]
    fn message_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_message_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }
}

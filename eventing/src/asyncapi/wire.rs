//! What eventing puts on the wire besides the body, as AsyncAPI pieces: the AMQP
//! properties and `x-eventing-*` headers of events, requests and replies, and the servers
//! of a URL.

use serde_json::{Value, json};

use crate::message::{JSON, header};

/// The AMQP bindings' version this document follows.
pub(super) const AMQP_BINDING_VERSION: &str = "0.3.0";

/// RabbitMQ's direct reply-to pseudo-queue, which callers consume replies from.
pub(super) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Where a message's correlation id is (the AMQP `correlation_id` property).
pub(super) const CORRELATION_ID_LOCATION: &str = "$message.header#/correlation_id";

/// Where a request's reply address is (the AMQP `reply_to` property).
pub(super) const REPLY_TO_LOCATION: &str = "$message.header#/reply_to";

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn integer(description: &str) -> Value {
    json!({ "type": "integer", "description": description })
}

/// The properties every message eventing publishes carries.
fn common(kind: &str) -> serde_json::Map<String, Value> {
    let mut properties = serde_json::Map::new();
    properties.insert(
        "message_id".into(),
        text(&format!("AMQP property: the {kind}'s unique id, kept by retries, dead-lettering and requeues")),
    );
    properties
        .insert("content_type".into(), json!({ "type": "string", "const": JSON, "description": "AMQP property" }));
    properties.insert("type".into(), text(&format!("AMQP property: the {kind} name")));
    properties.insert("timestamp".into(), integer("AMQP property: when it was published (Unix time)"));
    properties.insert("app_id".into(), text("AMQP property: the publishing service"));
    properties
}

/// The headers schema of an event: AMQP properties and eventing's own headers; the
/// application's headers (`publish_with`) travel beside them.
pub(super) fn event_headers() -> Value {
    let mut properties = common("event");
    properties.insert(
        "correlation_id".into(),
        text("AMQP property: the causal chain (the id of the first message of the chain, kept by follow-ups)"),
    );
    properties.insert(
        "delivery_mode".into(),
        json!({ "type": "integer", "enum": [1, 2], "description": "AMQP property: 2 (persistent) for durable events" }),
    );
    for (name, description) in [
        (header::CAUSATION_ID, "the message id of the message whose handler published this one"),
        (header::ERROR, "dead letters: why the message failed, with the error's source chain"),
        (header::LISTENER, "dead letters: the listener that failed"),
        (header::ORIGINAL_QUEUE, "dead letters: the queue the message failed in"),
        (header::ORIGINAL_EXCHANGE, "dead letters: the exchange the message was first published to"),
        (header::ORIGINAL_ROUTING_KEY, "dead letters: the routing key the message was first published with"),
    ] {
        properties.insert(name.into(), text(&format!("AMQP header: {description}")));
    }
    for (name, description) in [
        (header::ATTEMPT, "the delivery attempt, 1 on the first (absent means 1)"),
        (header::ATTEMPTS, "dead letters: how many attempts were made"),
        (header::FIRST_FAILURE_AT, "dead letters: when the first attempt failed (milliseconds since the Unix epoch)"),
        (header::LAST_FAILURE_AT, "dead letters: when the last attempt failed (milliseconds since the Unix epoch)"),
    ] {
        properties.insert(name.into(), integer(&format!("AMQP header: {description}")));
    }
    json!({
        "type": "object",
        "description": "AMQP properties and headers of an event. Headers named `x-eventing-*` are eventing's own; \
                        other headers are the application's (`publish_with`).",
        "required": ["message_id", "correlation_id", "type"],
        "properties": properties,
        "additionalProperties": true,
    })
}

/// The headers schema of a request.
pub(super) fn request_headers() -> Value {
    let mut properties = common("request");
    properties.insert("correlation_id".into(), text("AMQP property: unique per call; the reply carries the same"));
    properties.insert(
        "reply_to".into(),
        text(&format!("AMQP property: where the reply goes (`{DIRECT_REPLY_TO}` on RabbitMQ); absent for a send")),
    );
    properties.insert(
        "expiration".into(),
        text("AMQP property: the caller's timeout in milliseconds; the broker drops the request after it"),
    );
    properties.insert(
        header::DEADLINE.into(),
        integer(
            "AMQP header: when the caller gives up (milliseconds since the Unix epoch); later it is dropped unhandled",
        ),
    );
    properties.insert(
        header::CHAIN_ID.into(),
        text("AMQP header: on a request sent from a handler, the caller's causal chain"),
    );
    json!({
        "type": "object",
        "description": "AMQP properties and headers of a request.",
        "required": ["message_id", "correlation_id", "type"],
        "properties": properties,
        "additionalProperties": true,
    })
}

/// The headers schema of a reply.
pub(super) fn reply_headers() -> Value {
    json!({
        "type": "object",
        "description": "AMQP properties and headers of a reply. On failure the body is `{\"error\": \"...\"}` instead \
                        of the reply, and the text is also in `x-eventing-error`.",
        "required": ["correlation_id"],
        "properties": {
            "correlation_id": text("AMQP property: the request's correlation id"),
            "content_type": { "type": "string", "const": JSON, "description": "AMQP property" },
            (header::ERROR): text("AMQP header: the handler's error text with its source chain, when it failed"),
        },
        "additionalProperties": true,
    })
}

/// The servers of a URL: one per endpoint of an `amqp://` or `amqps://` URL (a cluster
/// lists several), without user or password; none for other transports (`memory://`).
pub(super) fn servers(url: &str) -> serde_json::Map<String, Value> {
    let mut servers = serde_json::Map::new();
    let Some((scheme, rest)) = url.split_once("://") else { return servers };
    if scheme != "amqp" && scheme != "amqps" {
        return servers;
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let pathname = path.split('?').next().unwrap_or_default();
    let hosts: Vec<&str> = authority
        .split(',')
        .map(|endpoint| endpoint.rsplit_once('@').map_or(endpoint, |(_, host)| host))
        .filter(|host| !host.is_empty())
        .collect();
    for (index, host) in hosts.iter().enumerate() {
        let id = if hosts.len() == 1 { "rabbitmq".to_owned() } else { format!("rabbitmq_{}", index + 1) };
        let mut server = json!({
            "host": host,
            "protocol": scheme,
            "protocolVersion": "0.9.1",
            "title": "RabbitMQ",
            "description": format!("From the bus's URL `{}`.", crate::transport::redact_url(url)),
        });
        if !pathname.is_empty() && pathname != "/" {
            server["pathname"] = pathname.into();
        }
        servers.insert(id, server);
    }
    servers
}

/// The virtual host of an AMQP URL (`/` when it names none), for bindings.
pub(super) fn vhost(url: Option<&str>) -> String {
    let path = url
        .and_then(|url| url.split_once("://"))
        .map(|(_, rest)| rest.find('/').map_or("", |start| &rest[start + 1..]))
        .unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() { "/".into() } else { percent_decode(path) }
}

/// `%2f` → `/`; anything that is not a valid escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes
            .get(index + 1..index + 3)
            .filter(|_| bytes[index] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{servers, vhost};

    #[test]
    fn servers_leave_out_the_credentials() {
        let found = servers("amqp://guest:secret@rabbit:5672/%2f");
        let server = &found["rabbitmq"];
        assert_eq!(server["host"], "rabbit:5672");
        assert_eq!(server["protocol"], "amqp");
        assert_eq!(server["pathname"], "/%2f");
        assert!(!server.to_string().contains("secret"), "{server}");
        let cluster = servers("amqps://u:p@a:5671,u:p@b:5671/shop");
        assert_eq!(cluster["rabbitmq_2"]["host"], "b:5671");
        assert_eq!(cluster["rabbitmq_1"]["protocol"], "amqps");
        assert!(servers("memory://").is_empty());
    }

    #[test]
    fn the_vhost_is_decoded() {
        assert_eq!(vhost(Some("amqp://guest:guest@127.0.0.1:5672/%2f")), "/");
        assert_eq!(vhost(Some("amqp://h/shop")), "shop");
        assert_eq!(vhost(Some("amqp://h")), "/");
        assert_eq!(vhost(None), "/");
    }
}

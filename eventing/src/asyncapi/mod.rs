//! An [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
//! document of what a service's binary links in: every event, request and reply as a
//! channel on the exchange, every listener's and request handler's queue with a `receive`
//! operation (requests with their `reply`), dead-letter queues, recurring items' locks,
//! the RabbitMQ servers of the URL, and messages with the headers eventing puts on the wire
//! and the payload's JSON Schema.
//!
//! Payload schemas come from [`schemars`](https://docs.rs/schemars) when eventing's
//! `schemars` feature is on and the type derives `schemars::JsonSchema` (schemars 1.x);
//! `#[event]` and `#[request]` notice the derive by themselves. Otherwise the payload
//! schema accepts any JSON and its description says what is missing.
//!
//! The registry knows which events exist and who listens, not who publishes: the document
//! describes every registered event as a channel, and its operations are the ones the
//! registry knows — a `receive` per listener and request handler (with the `reply` of a
//! request), and the runtime's `send` of failed deliveries to dead-letter queues.
//!
//! ```rust,standalone_crate
//! use eventing::asyncapi::Info;
//! # use serde::{Deserialize, Serialize};
//!
//! #[eventing::event(name = "orders.placed", durable)]
//! #[derive(Serialize, Deserialize)]
//! pub struct OrderPlaced { pub order_id: u64 }
//!
//! # fn main() -> Result<(), eventing::Error> {
//! // The same builder the service starts with, so the document names its queues.
//! let builder = eventing::builder().service("shop").url("amqp://guest:guest@rabbit:5672/%2f");
//! let document = builder.asyncapi(&Info::new(env!("CARGO_PKG_VERSION")))?;
//! let json = document.to_value();
//! assert_eq!(json["asyncapi"], "3.0.0");
//! assert_eq!(json["channels"]["event.orders.placed"]["address"], "orders.placed");
//! assert_eq!(json["servers"]["rabbitmq"]["host"], "rabbit:5672"); // no user, no password
//! println!("{}", document.to_json_pretty());
//! # Ok(())
//! # }
//! ```

mod schemas;
mod wire;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use self::schemas::Schemas;
use self::wire::{AMQP_BINDING_VERSION, CORRELATION_ID_LOCATION, DIRECT_REPLY_TO, REPLY_TO_LOCATION};
use crate::message::JSON;
use crate::runtime::{DescribedListener, DescribedRequest, Description};
use crate::transport::{QueueLifetime, QueueSpec};
use crate::{Builder, Error, EventInfo, ListenerMode};

/// The AsyncAPI version the document follows.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// What the document says of the application (AsyncAPI's `info` object). The title
/// defaults to the service name.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Info {
    /// The application's title (default: the service name).
    pub title: Option<String>,
    /// The application's version, e.g. `env!("CARGO_PKG_VERSION")`.
    pub version: String,
    /// A description (CommonMark); default: what the document covers and what it cannot know.
    pub description: Option<String>,
}

impl Info {
    /// An `info` with this version, the service name as title and the default description.
    #[must_use]
    pub fn new(version: impl Into<String>) -> Self {
        Self { title: None, version: version.into(), description: None }
    }

    /// Sets the title.
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// An AsyncAPI 3.0 document. Serialise it with any serde format (its fields keep
/// AsyncAPI's order); [`to_json_pretty`](Self::to_json_pretty) and
/// [`to_value`](Self::to_value) are at hand.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    asyncapi: &'static str,
    info: Value,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    servers: serde_json::Map<String, Value>,
    default_content_type: &'static str,
    channels: BTreeMap<String, Value>,
    operations: BTreeMap<String, Value>,
    components: Components,
}

#[derive(Debug, Clone, Serialize)]
struct Components {
    schemas: BTreeMap<String, Value>,
    messages: BTreeMap<String, Value>,
}

impl Document {
    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        // A document holds only maps, strings, numbers and booleans: it always serialises.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether it describes nothing: no event, request, listener or recurring item is
    /// linked into this binary.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The document as indented JSON text.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The document of the registry linked into this binary, with the names `eventing::run()`
/// would use (the environment and `eventing.toml` apply): `eventing::builder().asyncapi(info)`.
pub fn document(info: &Info) -> Result<Document, Error> {
    crate::builder().asyncapi(info)
}

impl Builder {
    /// The AsyncAPI document of what this builder would start: its service, exchange, URL
    /// (password left out), listeners and their queues, requests, recurring items. It
    /// connects to nothing. Errors are those [`start`](Self::start) would report for the
    /// registry and configuration (duplicate names, a bad `eventing.toml`).
    pub fn asyncapi(&self, info: &Info) -> Result<Document, Error> {
        Ok(Renderer::new(self.describe()?).render(info))
    }
}

/// Builds a document from a [`Description`].
struct Renderer {
    description: Description,
    vhost: String,
    schemas: Schemas,
    channels: BTreeMap<String, Value>,
    operations: BTreeMap<String, Value>,
    messages: BTreeMap<String, Value>,
}

impl Renderer {
    fn new(description: Description) -> Self {
        let vhost = wire::vhost(description.url.as_deref());
        Self {
            description,
            vhost,
            schemas: Schemas::default(),
            channels: BTreeMap::new(),
            operations: BTreeMap::new(),
            messages: BTreeMap::new(),
        }
    }

    fn render(mut self, info: &Info) -> Document {
        for (id, headers) in [
            (EVENT_HEADERS, wire::event_headers()),
            (REQUEST_HEADERS, wire::request_headers()),
            (REPLY_HEADERS, wire::reply_headers()),
        ] {
            self.schemas.components.insert(id.into(), headers);
        }
        for event in self.description.events.clone() {
            self.event(&event);
        }
        let listeners = std::mem::take(&mut self.description.listeners);
        for listener in &listeners {
            self.listener(listener);
        }
        let requests = std::mem::take(&mut self.description.requests);
        for request in &requests {
            self.request(request);
        }
        self.recurring();
        let description = &self.description;
        let info = json!({
            "title": info.title.clone().unwrap_or_else(|| description.service.clone()),
            "version": info.version,
            "description": info.description.clone().unwrap_or_else(|| default_description(description)),
        });
        let servers = description.url.as_deref().map(wire::servers).unwrap_or_default();
        Document {
            asyncapi: ASYNCAPI_VERSION,
            info,
            servers,
            default_content_type: JSON,
            channels: self.channels,
            operations: self.operations,
            components: Components { schemas: self.schemas.components, messages: self.messages },
        }
    }

    /// The AMQP binding of a channel whose address is a routing key on the exchange.
    fn routing_key_binding(&self) -> Value {
        json!({ "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": self.description.exchange,
                "type": "topic",
                "durable": true,
                "autoDelete": false,
                "vhost": self.vhost,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }})
    }

    /// The AMQP binding of a channel whose address is a queue.
    fn queue_binding(&self, name: &str, lifetime: QueueLifetime) -> Value {
        let (durable, exclusive, auto_delete) = match lifetime {
            QueueLifetime::Durable | QueueLifetime::Expiring { .. } => (true, false, false),
            QueueLifetime::Exclusive => (false, true, true),
        };
        json!({ "amqp": {
            "is": "queue",
            "queue": { "name": name, "durable": durable, "exclusive": exclusive, "autoDelete": auto_delete, "vhost": self.vhost },
            "bindingVersion": AMQP_BINDING_VERSION,
        }})
    }

    /// A registered event: its message and its channel, the routing key on the exchange.
    fn event(&mut self, event: &EventInfo) {
        let message_id = format!("event.{}", event.name);
        let schema = crate::registry::event_schema(event.name)
            .unwrap_or_else(|| Err(format!("schema not available for `{}`", event.rust_type)));
        let payload = self.schemas.payload(schema);
        let durability = if event.durable {
            "Durable: persistent messages, durable queues."
        } else {
            "Not durable: transient messages; shared queues expire when idle."
        };
        self.messages.insert(
            key(&message_id),
            message(
                event.name,
                event.rust_type,
                &format!("The event `{}` (`{}`). {durability}", event.name, event.rust_type),
                payload,
                EVENT_HEADERS,
            ),
        );
        let channel = json!({
            "address": event.name,
            "title": format!("event {}", event.name),
            "description": format!(
                "Events `{}` are published to the exchange `{}` with the routing key `{}`. The registry records \
                 the events linked into this binary, not which of them it publishes: any service may publish it.",
                event.name, self.description.exchange, event.name
            ),
            "messages": { key(event.name): reference("messages", &message_id) },
            "bindings": self.routing_key_binding(),
        });
        self.channels.insert(key(&message_id), channel);
    }

    /// A listener: its queue and dead-letter queue as channels, the `receive` from the
    /// queue, and the runtime's `send` to the dead-letter queue.
    fn listener(&mut self, listener: &DescribedListener) {
        let info = &listener.info;
        let events: Vec<&'static str> = match info.pattern {
            Some(_) => self
                .description
                .events
                .iter()
                .filter(|event| crate::memory::topic::matches(&listener.binding, event.name))
                .map(|event| event.name)
                .collect(),
            None => vec![info.event],
        };
        let channel_messages: serde_json::Map<String, Value> =
            events.iter().map(|event| (key(event), reference("messages", &format!("event.{event}")))).collect();
        let address = self.queue_address(&listener.queue);
        // `queue.shop.price_changed.refresh.process_id` for a per-process queue.
        let queue_channel = format!("queue.{}", address.replace(['{', '}'], ""));
        let taken = match info.pattern {
            Some(_) => format!(
                "every event whose name matches `{}` (the registered ones are listed; others arrive as they were published)",
                listener.binding
            ),
            None => format!("the event `{}`", info.event),
        };
        let mode = match info.mode {
            ListenerMode::Competing => "shared by every process of the service (competing consumers)",
            ListenerMode::PerProcess => "one per process, exclusive (every process gets every event)",
        };
        let mut channel = json!({
            "address": address,
            "title": format!("queue of listener {}", info.name),
            "description": format!(
                "The queue of listener `{}` (`{}`), {mode}; bound to the exchange `{}` with `{}`, it takes {taken}.{}",
                info.name,
                info.rust_type,
                self.description.exchange,
                listener.binding,
                lifetime_text(listener.queue.lifetime),
            ),
            "messages": channel_messages,
            "bindings": self.queue_binding(&address, listener.queue.lifetime),
            "x-eventing-binding": { "exchange": self.description.exchange, "routingKey": listener.binding },
        });
        if info.mode == ListenerMode::PerProcess {
            channel["parameters"] = json!({ "process_id": { "description": "The process id (`EVENTING_PROCESS_ID`, default `<host>-<pid>`)." } });
        }
        self.channels.insert(key(&queue_channel), channel);

        let dead_letter = &listener.dead_letter.name;
        let dead_letter_channel = format!("queue.{dead_letter}");
        self.channels.insert(
            key(&dead_letter_channel),
            json!({
                "address": dead_letter,
                "title": format!("dead letters of listener {}", info.name),
                "description": format!(
                    "Deliveries listener `{}` failed for good, with the error in `x-eventing-error`. Nothing consumes \
                     it: `eventing dlq list|requeue|purge {dead_letter}` does.",
                    info.name
                ),
                "messages": channel_messages,
                "bindings": self.queue_binding(dead_letter, listener.dead_letter.lifetime),
            }),
        );

        let operation_messages: Vec<Value> = channel_messages
            .keys()
            .map(|message| json!({ "$ref": format!("#/channels/{}/messages/{message}", key(&queue_channel)) }))
            .collect();
        let retry = &listener.retry;
        self.operations.insert(
            key(&format!("receive.{}", address.replace(['{', '}'], ""))),
            json!({
                "action": "receive",
                "channel": reference("channels", &queue_channel),
                "title": format!("listener {}", info.name),
                "summary": format!("`{}` handles {taken}.", info.rust_type),
                "description": format!(
                    "Acknowledged once the handler returned `Ok`. A failure is retried up to {} attempts in all \
                     (waiting in {}), then moved to `{dead_letter}`; a body that does not decode goes there at once.",
                    retry.max_attempts,
                    if listener.retry_tiers.is_empty() {
                        "no delay tier".to_owned()
                    } else {
                        let tiers: Vec<String> = listener.retry_tiers.iter().map(|tier| format!("`{tier}`")).collect();
                        format!("the service's delay tiers {}", tiers.join(", "))
                    },
                ),
                "messages": operation_messages,
                "bindings": { "amqp": { "ack": true, "bindingVersion": AMQP_BINDING_VERSION } },
            }),
        );
        let dead_letter_messages: Vec<Value> = channel_messages
            .keys()
            .map(|message| json!({ "$ref": format!("#/channels/{}/messages/{message}", key(&dead_letter_channel)) }))
            .collect();
        self.operations.insert(
            key(&format!("dead_letter.{dead_letter}")),
            json!({
                "action": "send",
                "channel": reference("channels", &dead_letter_channel),
                "title": format!("dead letters of listener {}", info.name),
                "summary": "The runtime moves a delivery here after its last attempt, for a permanent error, or when \
                            its body does not decode.",
                "messages": dead_letter_messages,
                "bindings": { "amqp": { "deliveryMode": 2, "bindingVersion": AMQP_BINDING_VERSION } },
            }),
        );
    }

    /// A per-process queue's name with the process id as the channel parameter
    /// `{process_id}`; other queues' names as they are.
    fn queue_address(&self, queue: &QueueSpec) -> String {
        let suffix = format!(".{}", self.description.process_id);
        match (queue.lifetime, queue.name.strip_suffix(&suffix)) {
            (QueueLifetime::Exclusive, Some(shared)) => format!("{shared}.{{process_id}}"),
            _ => queue.name.clone(),
        }
    }

    /// A request: its message and reply, the request's routing key and the direct
    /// reply-to as channels, and, when a handler is linked in, its queue and the `receive`
    /// with its `reply`.
    fn request(&mut self, request: &DescribedRequest) {
        let descriptor = request.descriptor;
        let name = descriptor.name;
        let (rust_type, reply_type) = ((descriptor.rust_type)(), (descriptor.reply_type)());
        let (request_id, reply_id) = (format!("request.{name}"), format!("reply.{name}"));
        let payload = self.schemas.payload((descriptor.schema)());
        self.messages.insert(
            key(&request_id),
            message(
                name,
                rust_type,
                &format!("The request `{name}` (`{rust_type}`); handled once, never retried."),
                payload,
                REQUEST_HEADERS,
            ),
        );
        let reply_payload = self.schemas.payload((descriptor.reply_schema)());
        self.messages.insert(
            key(&reply_id),
            message(
                &format!("{name}.reply"),
                reply_type,
                &format!("The reply to `{name}` (`{reply_type}`)."),
                reply_payload,
                REPLY_HEADERS,
            ),
        );
        self.channels.insert(
            key(&request_id),
            json!({
                "address": name,
                "title": format!("request {name}"),
                "description": format!(
                    "Requests `{name}` are published to the exchange `{}` with the routing key `{name}`, mandatory, \
                     with `reply_to` and an `expiration` equal to the caller's timeout (a send has no `reply_to`). \
                     The registry does not record who calls it.",
                    self.description.exchange
                ),
                "messages": { key(name): reference("messages", &request_id) },
                "bindings": self.routing_key_binding(),
            }),
        );
        self.channels.insert(
            key(&reply_id),
            json!({
                "address": null,
                "title": format!("reply to {name}"),
                "description": format!(
                    "Replies travel through RabbitMQ's direct reply-to: the caller consumes `{DIRECT_REPLY_TO}` and \
                     the handler publishes to the default exchange with the request's `reply_to` as routing key and \
                     its `correlation_id`."
                ),
                "messages": { "reply": reference("messages", &reply_id) },
                "bindings": { "amqp": {
                    "is": "queue",
                    "queue": { "name": DIRECT_REPLY_TO, "durable": false, "exclusive": true, "autoDelete": true, "vhost": self.vhost },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }},
            }),
        );
        let Some(handler) = request.handler else { return };
        let queue = format!("{}{name}", crate::request::REQUEST_QUEUE_PREFIX);
        let queue_channel = format!("queue.{queue}");
        self.channels.insert(
            key(&queue_channel),
            json!({
                "address": queue,
                "title": format!("queue of request {name}"),
                "description": format!(
                    "Every handler of `{name}`, in every service and process, consumes this queue, so each request \
                     is handled once; bound to the exchange `{}` with `{name}`.",
                    self.description.exchange
                ),
                "messages": { key(name): reference("messages", &request_id) },
                "bindings": self.queue_binding(&queue, QueueLifetime::Durable),
                "x-eventing-binding": { "exchange": self.description.exchange, "routingKey": name },
            }),
        );
        self.operations.insert(
            key(&format!("handle.{name}")),
            json!({
                "action": "receive",
                "channel": reference("channels", &queue_channel),
                "title": format!("request handler of {name}"),
                "summary": format!("`{handler}` answers `{name}` with `{reply_type}`."),
                "description": "Never retried; a request that arrives after its caller gave up is dropped unhandled. \
                                A failure (error, panic, undecodable request) is replied as `{\"error\": \"...\"}`.",
                "messages": [{ "$ref": format!("#/channels/{}/messages/{}", key(&queue_channel), key(name)) }],
                "reply": {
                    "address": {
                        "location": REPLY_TO_LOCATION,
                        "description": format!("The request's `reply_to` property: the caller's `{DIRECT_REPLY_TO}` address."),
                    },
                    "channel": reference("channels", &reply_id),
                    "messages": [{ "$ref": format!("#/channels/{}/messages/reply", key(&reply_id)) }],
                },
                "bindings": { "amqp": { "ack": true, "bindingVersion": AMQP_BINDING_VERSION } },
            }),
        );
    }

    /// Each recurring item's lock queue as a channel: no message travels on it.
    fn recurring(&mut self) {
        let items = std::mem::take(&mut self.description.recurring);
        for item in items {
            let channel = format!("lock.{}", item.lock);
            let value = json!({
                "address": item.lock,
                "title": format!("recurring {}", item.name),
                "description": format!(
                    "The lock of recurring item `{}` (`{}`, {}): the process holding this exclusive queue runs it, \
                     once per period per service. No message travels on it; what a run publishes goes to the event \
                     channels, with the correlation id `{}@<period start>`.",
                    item.name, item.rust_type, item.schedule, item.name
                ),
                "bindings": self.queue_binding(&item.lock, QueueLifetime::Exclusive),
                "x-eventing-recurring": {
                    "name": item.name,
                    "rust_type": item.rust_type,
                    "schedule": item.schedule.to_string(),
                },
            });
            self.channels.insert(key(&channel), value);
        }
    }
}

const EVENT_HEADERS: &str = "eventing.event_headers";
const REQUEST_HEADERS: &str = "eventing.request_headers";
const REPLY_HEADERS: &str = "eventing.reply_headers";

/// A message object.
fn message(name: &str, rust_type: &str, summary: &str, payload: Value, headers: &str) -> Value {
    json!({
        "name": name,
        "title": rust_type.rsplit("::").next().unwrap_or(rust_type),
        "summary": summary,
        "contentType": JSON,
        "headers": reference("schemas", headers),
        "payload": payload,
        "correlationId": {
            "description": "The AMQP `correlation_id` property.",
            "location": CORRELATION_ID_LOCATION,
        },
        "bindings": { "amqp": { "messageType": name, "bindingVersion": AMQP_BINDING_VERSION } },
        "x-eventing-rust-type": rust_type,
    })
}

/// `{"$ref": "#/<section>/<id>"}` for a channel, message or schema of this document.
fn reference(section: &str, id: &str) -> Value {
    let prefix = match section {
        "channels" => "#/channels/",
        "messages" => "#/components/messages/",
        _ => "#/components/schemas/",
    };
    json!({ "$ref": format!("{prefix}{}", key(id)) })
}

/// A map key AsyncAPI accepts (`^[\w\d.\-_]+$`): other characters become `_`. Keys hold
/// no `~` or `/`, so a key is also its own JSON pointer segment in references.
fn key(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

fn lifetime_text(lifetime: QueueLifetime) -> String {
    match lifetime {
        QueueLifetime::Durable => " Durable.".into(),
        QueueLifetime::Expiring { idle } => {
            format!(" Durable, deleted after {} idle (its event is not durable).", humantime::format_duration(idle))
        }
        QueueLifetime::Exclusive => " Exclusive to its process's connection, deleted with it.".into(),
    }
}

fn default_description(description: &Description) -> String {
    format!(
        "Events, requests and listeners of the service `{}` on the exchange `{}`, from the eventing registry linked \
         into its binary. The registry knows which events exist and who listens, not who publishes: every event is a \
         channel, and the operations are the ones the registry knows (each listener's and request handler's \
         `receive`, and the runtime's moves to dead-letter queues). Bodies are JSON; metadata travels in AMQP \
         properties and `x-eventing-*` headers.",
        description.service, description.exchange
    )
}

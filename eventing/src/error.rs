//! [`Error`]: everything that can fail outside a handler.

use std::fmt;

use crate::transport::TransportError;

/// What can go wrong when configuring, starting, publishing or shutting down.
///
/// `Debug` shows the message and its causes, as `anyhow` does, so that
/// `fn main() -> Result<(), eventing::Error>` prints advice rather than a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL's scheme names no transport linked into this program.
    #[error(
        "no transport for scheme `{scheme}` in `{url}`; known schemes: {known} \
         (for amqp:// add the `eventing-amqp` dependency and `use eventing_amqp as _;`)"
    )]
    UnknownScheme {
        /// The scheme.
        scheme: String,
        /// The redacted URL.
        url: String,
        /// The schemes that are available, comma separated.
        known: String,
    },
    /// The URL could not be read.
    #[error("invalid transport URL `{url}`: {reason}")]
    InvalidUrl {
        /// The redacted URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two event types share one name.
    #[error("event name `{name}` is used by both `{first}` and `{second}`; rename one with #[event(name = \"...\")]")]
    DuplicateEvent {
        /// The name.
        name: String,
        /// One Rust type.
        first: &'static str,
        /// The other Rust type.
        second: &'static str,
    },
    /// Two listeners would consume the same queue.
    #[error(
        "listeners `{first}` and `{second}` both register as `{listener}` on event `{event}` \
         (queue `{queue}`); rename one with #[event_listener(name = \"...\")]"
    )]
    DuplicateListener {
        /// The listener name.
        listener: String,
        /// The event name.
        event: String,
        /// The queue they would share.
        queue: String,
        /// One Rust type.
        first: &'static str,
        /// The other Rust type.
        second: &'static str,
    },
    /// A request and an event have the same name (both would be routed by it).
    #[error(
        "the name `{name}` is used by both the event `{event}` and the request `{request}`; rename one with \
         #[event(name = \"...\")] or #[request(name = \"...\")]"
    )]
    RequestNameClash {
        /// The name.
        name: String,
        /// The event's Rust type.
        event: &'static str,
        /// The request's Rust type.
        request: &'static str,
    },
    /// Two request types have the same name.
    #[error(
        "request name `{name}` is used by both `{first}` and `{second}`; rename one with #[request(name = \"...\")]"
    )]
    DuplicateRequest {
        /// The name.
        name: String,
        /// One Rust type.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// Two handler types for one request in one program: each request is handled once,
    /// by one handler type.
    #[error(
        "request `{request}` has two handlers in this program, `{first}` and `{second}`; a request is handled \
         once, by one handler type: remove one #[request_handler]"
    )]
    DuplicateRequestHandler {
        /// The request name.
        request: String,
        /// One handler's Rust type.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// A name that cannot be used on the wire.
    #[error("invalid {kind} name `{name}` (from `{rust_type}`): {reason}")]
    InvalidName {
        /// `event`, `listener`, `service`, `exchange` or `process id`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Where it came from.
        rust_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Listeners, request handlers, interceptors or recurring items could not be built
    /// because state they ask for was not given. Every one is tried, so one start names
    /// everything that is missing.
    #[error("{}", missing_state(missing))]
    MissingState {
        /// Each type that cannot be built (its Rust type), with every type it asked
        /// [`State::get`](crate::State::get) for and was not given, in the order asked.
        missing: Vec<(&'static str, Vec<&'static str>)>,
    },
    /// A listener's configuration is unusable.
    #[error("listener `{listener}` on `{event}`: {reason}")]
    InvalidListenerConfig {
        /// The listener's Rust type.
        listener: &'static str,
        /// The event name.
        event: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The configuration file (`eventing.toml`) has a mistake.
    #[error("{file}:{line}: `{key}`: {reason}")]
    Config {
        /// The file's path.
        file: String,
        /// The 1-based line (0 when the file cannot be read).
        line: usize,
        /// The dotted key, e.g. `listeners.send_welcome_mail.concurrency`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `EVENTING_CHAOS` could not be read.
    #[error("invalid EVENTING_CHAOS: {source}")]
    InvalidChaos {
        /// What is wrong, naming the part at fault.
        #[source]
        source: crate::ChaosError,
    },
    /// An event could not be serialized.
    #[error("event `{event}` could not be encoded as JSON: {source}")]
    Encode {
        /// The event name.
        event: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A body given to `publish_raw` is not JSON.
    #[error("the body given for event `{event}` is not JSON; nothing was sent: {source}")]
    InvalidJson {
        /// The event name.
        event: String,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A header given to `publish_with` uses eventing's own prefix.
    #[error("header `{name}` is reserved: names starting with `x-eventing-` are eventing's own; nothing was sent")]
    ReservedHeader {
        /// The header name.
        name: String,
    },
    /// A header given to `publish_with` cannot be sent.
    #[error("header `{name}` cannot be sent: {reason}; nothing was sent")]
    InvalidHeader {
        /// The header name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker did not confirm a publish.
    #[error("publishing `{event}` failed: {source}")]
    Publish {
        /// The event name.
        event: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// Declaring the topology failed.
    #[error("declaring the topology failed: {source}")]
    Declare {
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// Starting a consumer failed.
    #[error("listener `{listener}` cannot consume queue `{queue}`: {source}")]
    Consume {
        /// The listener's Rust type.
        listener: &'static str,
        /// The queue.
        queue: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// Any other transport failure (connect, close).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The bus was shut down.
    #[error("the bus is shut down")]
    ShutDown,
    /// Waiting for the shutdown signal failed.
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(#[source] std::io::Error),
}

/// One line naming everything that cannot be built and every type it lacks.
fn missing_state(missing: &[(&'static str, Vec<&'static str>)]) -> String {
    let each: Vec<String> = missing
        .iter()
        .map(|(listener, types)| {
            let types: Vec<String> = types.iter().map(|name| format!("`{name}`")).collect();
            format!("`{listener}` needs {}", types.join(", "))
        })
        .collect();
    format!(
        "state was not given to build what this program registers: {}; pass each value with \
         `eventing::builder().state(...)`",
        each.join("; ")
    )
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::report::report(self, f)
    }
}

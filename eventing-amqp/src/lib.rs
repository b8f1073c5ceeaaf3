//! The RabbitMQ transport of [`eventing`], on [`lapin`]: `amqp://` and `amqps://` URLs.
//!
//! Depend on this crate and name it once so the linker keeps its registration; the
//! scheme of `EVENTING_URL` (or `builder().url(...)`) then selects it:
//!
//! ```no_run
//! use eventing_amqp as _;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), eventing::Error> {
//!     // EVENTING_URL=amqp://guest:guest@127.0.0.1:5672/%2f
//!     eventing::run().await
//! }
//! ```
//!
//! What it does on the broker:
//! - declares a durable topic exchange, one queue per listener (names and flags as in
//!   `eventing::naming`), a durable dead-letter queue per listener, and the bindings;
//!   a queue that exists with other arguments is a start error naming it;
//! - publishes with publisher confirms (always; `publish` returns after the broker's ack),
//!   pipelined over shared channels (one by default: it measured fastest here); a publish
//!   that gets no confirm in time fails with `TransportError::Unconfirmed` (it may still be
//!   delivered: do not blindly publish it again), any other failure means it was not taken;
//! - opens one connection for publishing and one per listener (so a listener's trouble
//!   never stalls the others or the publishers: see the `transport` module);
//! - consumes each listener on its own channel with its own prefetch (never global QoS),
//!   acknowledging only what its handler finished;
//! - dead-letters a message lapin cannot parse (invalid UTF-8 in a header name, `type`,
//!   `message_id`, ...) with the reason in `x-eventing-error`, instead of reconnecting to it
//!   for ever (see the `rescue` module); [`AmqpTransport::peek`] shows such a message
//!   escaped, with an [`UNREADABLE`] header;
//! - waits, bounded by the publish timeout, while RabbitMQ blocks the connection (memory
//!   or disk alarm), logs it, and reports it in [`AmqpTransport::is_blocked`];
//! - heals a lost connection: reconnects with jittered backoff, declares the topology again
//!   and restarts every consumer; publishes during the outage wait (bounded by the publish
//!   timeout) and return only after the broker confirmed them. (lapin's own recovery hangs
//!   on a reset connection, see the `link` module.)
//!
//! - takes a cluster's nodes in one URL, `amqp://user:pass@host1:5672,host2:5673/vhost`:
//!   every connection goes to the first node that answers, in an order shuffled per process,
//!   and fails over to the next node with jittered backoff; durable queues are then quorum
//!   queues (see [`QueueType`]).
//!
//! - speaks TLS on `amqps://` URLs, with peer verification: the platform's certificate
//!   authorities plus [`AmqpOptions::ca_file`], and a [`ClientIdentity`] for brokers that ask
//!   for a client certificate. The TLS library is a cargo feature: `rustls-aws-lc` (the
//!   default), `rustls-ring` or `native-tls`.
//!
//! For settings the URL cannot carry (queue type, publish timeout, TLS files) connect in code
//! with [`AmqpTransport::connect`] and hand it to `eventing::builder().transport(...)`, or set
//! them in the environment (see [`AmqpOptions::from_env`]).
#![warn(missing_docs, unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod acks;
mod admin;
mod connect;
mod consume;
mod convert;
mod endpoints;
mod lenient;
mod link;
mod lock;
mod options;
mod publish;
mod raw;
mod reply;
mod rescue;
mod tls;
mod topology;
mod transport;
mod util;

pub use admin::UNREADABLE;
pub use options::{AmqpOptions, OptionsError, QueueType};
pub use tls::{ClientIdentity, TlsError};
pub use transport::AmqpTransport;

inventory::submit! {
    eventing::transport::TransportFactory::new(&["amqp", "amqps"], transport::connect_from_url)
}

//! Declarative domain events for Rust services.
//!
//! Annotate a serde type with [`#[event]`](event) and an `impl Listener<E> for T` with
//! [`#[event_listener]`](event_listener), then call [`run`]: the runtime collects every
//! registration, derives routing keys and queue names, declares the topology on the
//! transport and starts consuming. The same program runs on the in-memory transport
//! (`memory://`, the default) and on RabbitMQ (`amqp://`, through `eventing-amqp`).
//!
//! ```rust,standalone_crate
//! use eventing::{event, event_listener, Context, HandlerError, Listener};
//! use serde::{Deserialize, Serialize};
//!
//! #[event]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct UserCreated { pub user_id: u64 }
//!
//! #[derive(Default)]
//! pub struct SendWelcomeMail;
//!
//! #[event_listener]
//! impl Listener<UserCreated> for SendWelcomeMail {
//!     async fn on(&self, event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
//!         assert!(event.user_id > 0);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = eventing::testing::TestBus::start().await?;
//! bus.publish(&UserCreated { user_id: 7 }).await?;
//! bus.settle().await?;
//! bus.shutdown().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod asyncapi;
mod chaos;
mod config;
mod context;
mod envelope;
mod error;
mod event;
mod handler_error;
mod health;
mod interceptor;
mod listener;
pub mod memory;
pub mod message;
pub mod naming;
pub mod observe;
mod raw;
pub mod recurring;
mod registry;
mod report;
pub mod request;
mod retry;
mod runtime;
mod schema;
mod state;
pub mod testing;
pub mod transport;

#[doc(hidden)]
pub mod __private;

pub use chaos::{Chaos, ChaosError};
pub use context::Context;
pub use envelope::Envelope;
pub use error::Error;
pub use event::{Event, Payload};
pub use eventing_macros::{event, event_listener, interceptor, recurring, request, request_handler};
pub use handler_error::HandlerError;
pub use health::Health;
pub use interceptor::{Interceptor, Next};
pub use listener::{FromState, Listener};
pub use raw::{DecodeError, RawEvent, Receivable};
pub use recurring::Recurring;
pub use registry::{EventInfo, ListenerInfo, ListenerMode, Registry, RetryOverride};
pub use request::{Request, RequestError, RequestHandler};
pub use retry::{Backoff, RetryPolicy};
#[cfg(feature = "signal")]
pub use runtime::run;
pub use runtime::{Builder, Bus, DEFAULT_CONCURRENCY, ListenerSettings, RecurringSettings, builder};
pub use state::{MissingState, State};

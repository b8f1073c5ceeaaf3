//! Request/response and fire-and-forget sends: the [`Request`] trait that `#[request]`
//! implements, the [`RequestHandler`] trait that `#[request_handler]` registers, and
//! [`RequestError`].
//!
//! A request is published to the bus's exchange with its name as routing key; every handler
//! of it, in every service, consumes the one durable queue `request.<name>`, so each request
//! is handled once. It is never retried: a failing handler replies with its error.

use std::any::type_name;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::message::Message;
use crate::schema::SchemaFn;
use crate::transport::{BoxFuture, TransportError};
use crate::{Context, FromState, HandlerError, MissingState, State};

/// The prefix of every request queue: `request.<name>`.
pub const REQUEST_QUEUE_PREFIX: &str = "request.";

/// The default time [`Bus::request`](crate::Bus::request) waits for a reply.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a reply must be: JSON both ways. Implemented for every type that derives
/// `Serialize` and `Deserialize` (and for `()`, the default reply).
#[diagnostic::on_unimplemented(
    message = "`{Self}` must derive `Serialize` and `Deserialize` to be a reply",
    label = "a reply travels as JSON",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait ReplyPayload: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> ReplyPayload for T {}

/// A request: a serde type with a routing name and a reply type, implemented by
/// [`#[request]`](macro@crate::request). The reply defaults to `()` (JSON `null`).
///
/// ```
/// use eventing::Request;
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// pub struct Sum { pub answer: i64 }
///
/// #[eventing::request(name = "math.add", reply = Sum)]
/// #[derive(Serialize, Deserialize)]
/// pub struct Add { pub x: i64, pub y: i64 }
///
/// assert_eq!(Add::NAME, "math.add");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request",
    label = "not a `#[request]` type",
    note = "add `#[eventing::request]` (or `#[eventing::request(reply = T)]`) to the definition of `{Self}`"
)]
pub trait Request: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The request's name: its routing key and the end of its queue's name (`request.<name>`).
    const NAME: &'static str;
    /// What a handler answers.
    type Reply: ReplyPayload;
}

/// Handles one request type; registered with [`#[request_handler]`](crate::request_handler).
/// Write `on` as an `async fn`; its future must be `Send`. The value is built once at start
/// (`Default` or [`FromState`]). An `Err` (or a panic) goes back to the caller as
/// [`RequestError::Failed`]; requests are never retried.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle `{R}`",
    note = "implement `eventing::RequestHandler<{R}>` for `{Self}` and register it with `#[eventing::request_handler]`"
)]
pub trait RequestHandler<R: Request>: Send + Sync + 'static {
    /// Answers one request.
    fn on(&self, request: R, ctx: &Context) -> impl Future<Output = Result<R::Reply, HandlerError>> + Send;
}

/// A request call failed. Every variant names the request. `Debug` shows the causes.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The handler returned an error or panicked, or the request did not decode as the
    /// handler's type: `error` is the handler's error text with its source chain.
    #[error("request `{request}` failed: {error}")]
    Failed {
        /// The request name.
        request: String,
        /// The error text sent back by the handler's side.
        error: String,
    },
    /// No reply came within the timeout (the request expires on the broker then).
    #[error("request `{request}` got no reply within {timeout:?}")]
    Timeout {
        /// The request name.
        request: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// No queue takes the request: no handler of it was ever started on this exchange.
    #[error("request `{request}` has no handler: no queue `request.{request}` is bound on the exchange")]
    NoHandler {
        /// The request name.
        request: String,
    },
    /// The bus was shut down before the reply came.
    #[error("request `{request}` was abandoned: the bus is shut down")]
    ShutDown {
        /// The request name.
        request: String,
    },
    /// The request could not be encoded, or the reply did not decode as the reply type.
    #[error("request `{request}`: {reason}")]
    Codec {
        /// The request name.
        request: String,
        /// What did not encode or decode.
        reason: String,
    },
    /// The transport failed to send the request.
    #[error("request `{request}` could not be sent: {source}")]
    Transport {
        /// The request name.
        request: String,
        /// The cause.
        #[source]
        source: TransportError,
    },
}

impl RequestError {
    /// The request's name.
    pub fn request(&self) -> &str {
        match self {
            Self::Failed { request, .. }
            | Self::Timeout { request, .. }
            | Self::NoHandler { request }
            | Self::ShutDown { request }
            | Self::Codec { request, .. }
            | Self::Transport { request, .. } => request,
        }
    }
}

impl std::fmt::Debug for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::report::report(self, f)
    }
}

/// Registered by `#[request]`.
#[doc(hidden)]
pub struct RequestDescriptor {
    pub(crate) name: &'static str,
    pub(crate) rust_type: fn() -> &'static str,
    pub(crate) reply_type: fn() -> &'static str,
    pub(crate) schema: SchemaFn,
    pub(crate) reply_schema: SchemaFn,
}

impl RequestDescriptor {
    /// Describes request type `R` (without schemas until [`with_schemas`](Self::with_schemas)).
    pub const fn new<R: Request>() -> Self {
        Self {
            name: R::NAME,
            rust_type: type_name::<R>,
            reply_type: type_name::<R::Reply>,
            schema: crate::schema::unavailable::<R>,
            reply_schema: crate::schema::unavailable::<R::Reply>,
        }
    }

    /// The schema functions of the request and of its reply, from the macro's
    /// [`SchemaProbe`](crate::schema::SchemaProbe)s.
    #[must_use]
    pub const fn with_schemas(mut self, request: SchemaFn, reply: SchemaFn) -> Self {
        self.schema = request;
        self.reply_schema = reply;
        self
    }
}

impl std::fmt::Debug for RequestDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestDescriptor")
            .field("name", &self.name)
            .field("rust_type", &(self.rust_type)())
            .field("reply_type", &(self.reply_type)())
            .finish_non_exhaustive()
    }
}

inventory::collect!(RequestDescriptor);

/// Builds a request handler from the builder's state.
type MakeRequestHandler = fn(&State) -> Result<Arc<dyn ErasedRequestHandler>, MissingState>;

/// Registered by `#[request_handler]`.
#[doc(hidden)]
pub struct RequestHandlerDescriptor {
    pub(crate) name: &'static str,
    pub(crate) crate_name: &'static str,
    pub(crate) request: &'static str,
    pub(crate) rust_type: fn() -> &'static str,
    pub(crate) request_type: fn() -> &'static str,
    pub(crate) concurrency: u16,
    pub(crate) make: MakeRequestHandler,
}

impl std::fmt::Debug for RequestHandlerDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandlerDescriptor")
            .field("name", &self.name)
            .field("request", &self.request)
            .field("rust_type", &(self.rust_type)())
            .field("request_type", &(self.request_type)())
            .field("crate_name", &self.crate_name)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl RequestHandlerDescriptor {
    /// Describes handler `H` of request `R`, named `name` (the snake case of its type),
    /// from crate `crate_name`; `concurrency` 0 means the builder's default.
    pub const fn new<H: RequestHandler<R> + FromState, R: Request>(
        name: &'static str,
        crate_name: &'static str,
        concurrency: u16,
    ) -> Self {
        Self {
            name,
            crate_name,
            request: R::NAME,
            rust_type: type_name::<H>,
            request_type: type_name::<R>,
            concurrency,
            make: make_handler::<H, R>,
        }
    }
}

impl RequestHandlerDescriptor {
    /// How a request handler shows to [`Builder::listeners`](crate::Builder::listeners)'
    /// filter: `event` is the request name, `pattern` `None`, the mode competing.
    pub(crate) fn info(&self) -> crate::ListenerInfo {
        crate::ListenerInfo {
            name: self.name,
            rust_type: (self.rust_type)(),
            event: self.request,
            pattern: None,
            event_type: (self.request_type)(),
            durable: true,
            mode: crate::ListenerMode::Competing,
            crate_name: self.crate_name,
            concurrency: self.concurrency,
            prefetch: 0,
            retry: crate::RetryOverride::default(),
        }
    }
}

inventory::collect!(RequestHandlerDescriptor);

/// What calling a request handler starts: the handler running to the reply's JSON, or, when
/// the request does not decode as the handler's type, why.
pub(crate) type Call = Result<BoxFuture<'static, Result<Vec<u8>, HandlerError>>, String>;

/// A request handler with its request type erased: decodes, calls, encodes the reply.
pub(crate) trait ErasedRequestHandler: Send + Sync {
    fn call(&self, message: &Message, ctx: Context) -> Call;
}

struct TypedRequestHandler<H, R> {
    handler: Arc<H>,
    request: std::marker::PhantomData<fn() -> R>,
}

impl<H: RequestHandler<R>, R: Request> ErasedRequestHandler for TypedRequestHandler<H, R> {
    fn call(&self, message: &Message, ctx: Context) -> Call {
        let request = serde_json::from_slice::<R>(&message.body)
            .map_err(|error| format!("the request does not decode as `{}`: {error}", type_name::<R>()))?;
        let handler = Arc::clone(&self.handler);
        Ok(Box::pin(async move {
            let reply = handler.on(request, &ctx).await?;
            serde_json::to_vec(&reply).map_err(|error| {
                HandlerError::msg(format_args!("the reply `{}` does not encode: {error}", type_name::<R::Reply>()))
            })
        }))
    }
}

fn make_handler<H: RequestHandler<R> + FromState, R: Request>(
    state: &State,
) -> Result<Arc<dyn ErasedRequestHandler>, MissingState> {
    let handler = Arc::new(H::from_state(state)?);
    Ok(Arc::new(TypedRequestHandler::<H, R> { handler, request: std::marker::PhantomData }))
}

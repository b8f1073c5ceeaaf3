//! [`Interceptor`]: code that runs around every publish and every handled delivery, for
//! concerns that belong to no single listener (tenants, tracing, auditing, metrics).

use std::any::type_name;
use std::future::Future;
use std::sync::Arc;

use crate::transport::BoxFuture;
use crate::{Envelope, FromState, HandlerError, MissingState, State};

/// Runs on every message this bus publishes, requests included ([`send`](Self::send)),
/// and around every delivery it handles, requests included ([`handle`](Self::handle); a
/// reply is not a publish and runs neither). Both methods have defaults that do
/// nothing, so an interceptor implements only the side it needs.
///
/// Register one with [`#[interceptor]`](crate::interceptor) (built at start like a
/// listener, from `Default` or [`FromState`]), or give a value to
/// [`Builder::interceptor`](crate::Builder::interceptor).
///
/// ```
/// use eventing::{interceptor, Envelope, HandlerError, Interceptor, Next};
///
/// tokio::task_local! { static TENANT: String; }
///
/// #[derive(Default)]
/// pub struct TenantPropagation;
///
/// #[interceptor]
/// impl Interceptor for TenantPropagation {
///     fn send(&self, envelope: &mut Envelope) {
///         if let Ok(tenant) = TENANT.try_with(|t| t.clone()) {
///             envelope.set("tenant", tenant);
///         }
///     }
///     async fn handle(&self, envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
///         let tenant = envelope.get("tenant").unwrap_or("none").to_owned();
///         TENANT.scope(tenant, next.run()).await
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an interceptor",
    note = "implement `eventing::Interceptor` for `{Self}` (both methods have defaults)"
)]
pub trait Interceptor: Send + Sync + 'static {
    /// Runs in the publishing task before the message leaves, so the publisher's
    /// task-locals are visible; may [`set`](Envelope::set) headers. Default: nothing.
    fn send(&self, envelope: &mut Envelope) {
        let _ = envelope;
    }

    /// Wraps the handling of one delivery in the consuming task: decoding, the listener's
    /// filter and its handler run inside `next.run()`, so what this method scopes (a
    /// task-local, a span) is visible to the handler and to what it publishes. Returning
    /// an error without calling `next` fails the delivery like a handler error.
    /// Default: `next.run()`.
    fn handle(&self, envelope: &Envelope, next: Next<'_>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = envelope;
        next.run()
    }
}

/// The rest of the handling chain: the interceptors inside this one, then decoding, the
/// filter and the handler. Consumed by [`run`](Self::run), so it runs at most once.
pub struct Next<'a> {
    rest: &'a [Arc<dyn ErasedInterceptor>],
    envelope: &'a Envelope,
    inner: Inner<'a>,
}

/// The innermost step: decode, filter, handle.
pub(crate) type Inner<'a> = Box<dyn FnOnce() -> BoxFuture<'a, Result<(), HandlerError>> + Send + 'a>;

impl<'a> Next<'a> {
    pub(crate) fn new(chain: &'a [Arc<dyn ErasedInterceptor>], envelope: &'a Envelope, inner: Inner<'a>) -> Self {
        Self { rest: chain, envelope, inner }
    }

    /// Runs the rest of the chain and returns its outcome.
    pub fn run(self) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a {
        match self.rest.split_first() {
            Some((first, rest)) => {
                first.handle(self.envelope, Next { rest, envelope: self.envelope, inner: self.inner })
            }
            None => (self.inner)(),
        }
    }
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next").field("interceptors_left", &self.rest.len()).finish_non_exhaustive()
    }
}

/// An [`Interceptor`] behind a pointer.
pub(crate) trait ErasedInterceptor: Send + Sync {
    fn send(&self, envelope: &mut Envelope);
    fn handle<'a>(&'a self, envelope: &'a Envelope, next: Next<'a>) -> BoxFuture<'a, Result<(), HandlerError>>;
}

impl<T: Interceptor> ErasedInterceptor for T {
    fn send(&self, envelope: &mut Envelope) {
        Interceptor::send(self, envelope);
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope, next: Next<'a>) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(Interceptor::handle(self, envelope, next))
    }
}

/// Registered by `#[interceptor]`.
#[doc(hidden)]
pub struct InterceptorDescriptor {
    order: i32,
    rust_type: fn() -> &'static str,
    make: fn(&State) -> Result<Arc<dyn ErasedInterceptor>, MissingState>,
}

impl InterceptorDescriptor {
    /// Describes interceptor `T`, run at position `order` (lower runs outer).
    pub const fn new<T: Interceptor + FromState>(order: i32) -> Self {
        Self { order, rust_type: type_name::<T>, make: make::<T> }
    }
}

impl std::fmt::Debug for InterceptorDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterceptorDescriptor")
            .field("rust_type", &(self.rust_type)())
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

inventory::collect!(InterceptorDescriptor);

fn make<T: Interceptor + FromState>(state: &State) -> Result<Arc<dyn ErasedInterceptor>, MissingState> {
    Ok(Arc::new(T::from_state(state)?))
}

/// One interceptor with its place in the chain.
pub(crate) struct Placed {
    pub(crate) order: i32,
    pub(crate) rust_type: &'static str,
    pub(crate) interceptor: Arc<dyn ErasedInterceptor>,
}

impl Placed {
    /// An interceptor given to the builder.
    pub(crate) fn given<T: Interceptor>(interceptor: T) -> Self {
        Self { order: 0, rust_type: type_name::<T>(), interceptor: Arc::new(interceptor) }
    }
}

/// The bus's interceptors, outermost first: registered ones by `order` (then type name),
/// and among equal orders the registered before those given to the builder, in the order
/// they were given. Every interceptor that cannot be built is named with what it misses.
pub(crate) fn chain(state: &State, given: Vec<Placed>) -> Result<Arc<[Arc<dyn ErasedInterceptor>]>, crate::Error> {
    let mut registered = Vec::new();
    let mut missing: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for descriptor in inventory::iter::<InterceptorDescriptor> {
        let rust_type = (descriptor.rust_type)();
        state.take_misses();
        match (descriptor.make)(state) {
            Ok(interceptor) => registered.push(Placed { order: descriptor.order, rust_type, interceptor }),
            Err(error) => {
                let mut types = state.take_misses();
                if !types.contains(&error.type_name) {
                    types.push(error.type_name);
                }
                missing.push((rust_type, types));
            }
        }
    }
    if !missing.is_empty() {
        return Err(crate::Error::MissingState { missing });
    }
    registered.sort_by(|a, b| (a.order, a.rust_type).cmp(&(b.order, b.rust_type)));
    registered.extend(given);
    // A stable sort keeps the builder's interceptors after registered ones of equal order.
    registered.sort_by_key(|placed| placed.order);
    Ok(registered.into_iter().map(|placed| placed.interceptor).collect())
}

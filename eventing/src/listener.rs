//! The [`Listener`] trait that `#[event_listener]` registers, and how listeners are built.

use std::future::Future;

use crate::raw::Receivable;
use crate::{Context, HandlerError, MissingState, State};

/// Handles one event type (or, with a pattern, a family of [`RawEvent`](crate::RawEvent)s). Write `on` as an `async fn`; the future it returns must be `Send`
/// because handlers run on the multi-threaded runtime.
///
/// Register an implementation with [`#[event_listener]`](crate::event_listener); the
/// listener value is built once at start (see [`FromState`]) and shared by all deliveries.
///
/// ```
/// use eventing::{event, event_listener, Context, HandlerError, Listener};
/// # use serde::{Deserialize, Serialize};
/// # #[event] #[derive(Serialize, Deserialize)] struct OrderPlaced { id: u64 }
///
/// #[derive(Default)]
/// struct ReserveStock;
///
/// #[event_listener(concurrency = 4)]
/// impl Listener<OrderPlaced> for ReserveStock {
///     async fn on(&self, order: OrderPlaced, ctx: &Context) -> Result<(), HandlerError> {
///         tracing::info!(order = order.id, attempt = ctx.attempt(), "reserving");
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not listen to `{E}`",
    note = "implement `eventing::Listener<{E}>` for `{Self}` and register it with `#[eventing::event_listener]`"
)]
pub trait Listener<E: Receivable>: Send + Sync + 'static {
    /// Handles one event. `Ok` acknowledges the delivery; an error sends it through the
    /// failure policy (dead letters, and retries where configured).
    fn on(&self, event: E, ctx: &Context) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Whether this listener wants `event` (default: every one). A declined delivery is
    /// acknowledged without calling [`on`](Self::on): it is not retried, not
    /// dead-lettered, logged at debug level, and counts as settled in
    /// [`TestBus::settle`](crate::testing::TestBus::settle).
    ///
    /// ```
    /// # use eventing::{event, event_listener, Context, HandlerError, Listener};
    /// # use serde::{Deserialize, Serialize};
    /// # #[event] #[derive(Serialize, Deserialize)] struct OrderPlaced { total_cents: u64 }
    /// #[derive(Default)]
    /// struct BigOrderAlert;
    ///
    /// #[event_listener]
    /// impl Listener<OrderPlaced> for BigOrderAlert {
    ///     fn accepts(&self, order: &OrderPlaced, _ctx: &Context) -> bool {
    ///         order.total_cents >= 100_000
    ///     }
    ///     async fn on(&self, order: OrderPlaced, _ctx: &Context) -> Result<(), HandlerError> {
    ///         tracing::warn!(total = order.total_cents, "big order");
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn accepts(&self, event: &E, ctx: &Context) -> bool {
        let _ = (event, ctx);
        true
    }
}

/// How a listener value is built at start: from `Default` (blanket implementation), or from
/// [`State`] given to [`Builder::state`](crate::Builder::state).
///
/// ```
/// use eventing::{FromState, MissingState, State};
///
/// #[derive(Clone)]
/// struct Mailer { from: String }
///
/// struct SendWelcomeMail { mailer: Mailer }
///
/// impl FromState for SendWelcomeMail {
///     fn from_state(state: &State) -> Result<Self, MissingState> {
///         Ok(Self { mailer: state.get::<Mailer>()?.clone() })
///     }
/// }
/// ```
///
/// A listener whose state was not given fails [`Builder::start`](crate::Builder::start)
/// with an error naming the listener and the missing type.
#[diagnostic::on_unimplemented(
    message = "the listener `{Self}` cannot be built at start",
    label = "needs `Default` or `FromState`",
    note = "derive `Default` for `{Self}`, or implement `eventing::FromState` to build it from values given to `eventing::builder().state(...)`"
)]
pub trait FromState: Sized + Send + Sync + 'static {
    /// Builds the listener from the state given to the builder.
    fn from_state(state: &State) -> Result<Self, MissingState>;
}

impl<T: Default + Send + Sync + 'static> FromState for T {
    fn from_state(_: &State) -> Result<Self, MissingState> {
        Ok(T::default())
    }
}

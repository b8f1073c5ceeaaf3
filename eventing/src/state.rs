//! [`State`]: typed values handed to the builder, from which listeners are built.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Values given to [`Builder::state`](crate::Builder::state), one per type, from which
/// listeners that implement [`FromState`](crate::FromState) take their dependencies.
///
/// ```
/// let mut state = eventing::State::default();
/// state.insert(42_u32);
/// assert_eq!(*state.get::<u32>().unwrap(), 42);
/// assert!(state.get::<String>().is_err());
/// assert!(state.try_get::<String>().is_none());
/// ```
///
/// A start error names every type a listener asked [`get`](Self::get) for and was not
/// given, so ask for all of them before the first `?`:
///
/// ```
/// # use eventing::{FromState, MissingState, State};
/// # #[derive(Clone)] struct Pool; #[derive(Clone)] struct Mailer;
/// struct SendInvoice { pool: Pool, mailer: Mailer }
///
/// impl FromState for SendInvoice {
///     fn from_state(state: &State) -> Result<Self, MissingState> {
///         let (pool, mailer) = (state.get::<Pool>(), state.get::<Mailer>());
///         Ok(Self { pool: pool?.clone(), mailer: mailer?.clone() })
///     }
/// }
/// ```
#[derive(Default)]
pub struct State {
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    /// Types asked for with `get` and not given, since the runtime last took them.
    misses: Mutex<Vec<&'static str>>,
}

impl State {
    /// Stores `value`, replacing an earlier value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The value of type `T`, or an error naming `T` when none was given. The miss is
    /// remembered, so that a listener that cannot be built is reported with every type
    /// it asked for and did not get, not only the one its `?` returned.
    pub fn get<T: Send + Sync + 'static>(&self) -> Result<&T, MissingState> {
        self.try_get::<T>().ok_or_else(|| {
            let missing = MissingState { type_name: type_name::<T>() };
            self.misses.lock().unwrap_or_else(PoisonError::into_inner).push(missing.type_name);
            missing
        })
    }

    /// The value of type `T`, if one was given: for optional dependencies, whose absence
    /// is not an error.
    pub fn try_get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>()).and_then(|value| value.downcast_ref::<T>())
    }

    /// The types [`get`](Self::get) did not find since the last call, in the order asked,
    /// without repeats.
    pub(crate) fn take_misses(&self) -> Vec<&'static str> {
        let misses = std::mem::take(&mut *self.misses.lock().unwrap_or_else(PoisonError::into_inner));
        let mut unique = Vec::with_capacity(misses.len());
        for name in misses {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        unique
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("values", &self.values.len()).finish_non_exhaustive()
    }
}

/// A listener asked [`State`] for a type that was not given to the builder.
#[derive(Clone, thiserror::Error)]
#[error("no state of type `{type_name}` was given; pass one with `eventing::builder().state(...)`")]
pub struct MissingState {
    /// The Rust type that was asked for.
    pub type_name: &'static str,
}

impl std::fmt::Debug for MissingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::report::report(self, f)
    }
}

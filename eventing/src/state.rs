//! [`State`]: typed values handed to the builder, from which listeners are built.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;

/// Values given to [`Builder::state`](crate::Builder::state), one per type, from which
/// listeners that implement [`FromState`](crate::FromState) take their dependencies.
///
/// ```
/// let mut state = eventing::State::default();
/// state.insert(42_u32);
/// assert_eq!(*state.get::<u32>().unwrap(), 42);
/// assert!(state.get::<String>().is_err());
/// ```
#[derive(Default)]
pub struct State {
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl State {
    /// Stores `value`, replacing an earlier value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The value of type `T`, or an error naming `T` when none was given.
    pub fn get<T: Send + Sync + 'static>(&self) -> Result<&T, MissingState> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .ok_or(MissingState { type_name: type_name::<T>() })
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("values", &self.values.len()).finish()
    }
}

/// A listener asked [`State`] for a type that was not given to the builder.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no state of type `{type_name}` was given; pass one with `eventing::builder().state(...)`")]
pub struct MissingState {
    /// The Rust type that was asked for.
    pub type_name: &'static str,
}

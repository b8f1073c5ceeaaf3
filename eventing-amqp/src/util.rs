//! Small helpers every module of this crate uses: locking a mutex, wrapping lapin's errors.
//! They live here so that no two modules import each other.

use std::sync::{Mutex, MutexGuard, PoisonError};

use eventing::transport::TransportError;

/// Locks a mutex of this crate; no critical section can panic half-way, so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lapin error as a [`TransportError::Other`] saying what was being done.
pub(crate) fn other(context: &str, error: lapin::Error) -> TransportError {
    TransportError::Other { context: context.to_owned(), source: Box::new(error) }
}

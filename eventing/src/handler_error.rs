//! [`HandlerError`]: what a listener returns when it could not handle an event.

use std::error::Error as StdError;
use std::fmt;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The error a [`Listener`](crate::Listener) returns when it could not handle an event.
///
/// `?` converts any `std::error::Error + Send + Sync + 'static` into a retryable
/// `HandlerError`; [`HandlerError::permanent`] marks a failure that retrying cannot fix,
/// so the message goes straight to the dead-letter queue.
///
/// ```
/// use eventing::HandlerError;
///
/// fn parse(input: &str) -> Result<u64, HandlerError> {
///     let n: u64 = input.parse()?; // ParseIntError -> retryable HandlerError
///     if n == 0 {
///         return Err(HandlerError::permanent_msg("order id 0 does not exist"));
///     }
///     Ok(n)
/// }
/// assert!(parse("x").is_err());
/// assert!(parse("0").unwrap_err().is_permanent());
/// ```
pub struct HandlerError {
    source: BoxError,
    permanent: bool,
}

impl HandlerError {
    /// A failure that may succeed when retried (the default for `?`).
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self { source: error.into(), permanent: false }
    }

    /// A failure retrying cannot fix: the message goes straight to the dead-letter queue.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self { source: error.into(), permanent: true }
    }

    /// A retryable failure described by a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(message.to_string())
    }

    /// A permanent failure described by a message.
    pub fn permanent_msg(message: impl fmt::Display) -> Self {
        Self::permanent(message.to_string())
    }

    /// Whether this failure skips the retries.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The error text followed by its `source()` chain, joined with `: `.
    pub fn chain_text(&self) -> String {
        let mut text = self.source.to_string();
        let mut next = self.source.source();
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
        text
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.permanent {
            f.write_str("permanent: ")?;
        }
        f.write_str(&self.chain_text())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError").field("permanent", &self.permanent).field("source", &self.source).finish()
    }
}

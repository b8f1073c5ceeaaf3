//! What the macros' generated code refers to. Not a public API: it changes without notice.

pub use ::inventory;
pub use ::serde;

pub use crate::interceptor::InterceptorDescriptor;
pub use crate::registry::{EventDescriptor, ListenerAttributes, ListenerDescriptor};

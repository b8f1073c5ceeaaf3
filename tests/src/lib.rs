//! Shared pieces of the integration tests: the transport conformance suite, run by one
//! test binary per transport, and the helpers it needs.

pub mod conformance;
pub mod recorder;

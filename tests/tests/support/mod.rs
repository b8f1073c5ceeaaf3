//! Helpers for test binaries that do not link the conformance suite (whose listeners would
//! otherwise register in them too, as a library's listeners do in every binary using it).

#![allow(dead_code)] // each test binary uses a part

pub mod broker;
pub mod logs;
pub mod raw_publish;
pub mod tls;

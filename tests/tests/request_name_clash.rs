//! A request named like an event: start fails naming both Rust types.

use eventing::{event, request};
use serde::{Deserialize, Serialize};

#[event(name = "billing.quote")]
#[derive(Debug, Serialize, Deserialize)]
pub struct QuoteGiven {
    pub sku: String,
}

#[request(name = "billing.quote")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Quote {
    pub sku: String,
}

#[tokio::test]
async fn a_request_named_like_an_event_fails_at_start_naming_both() {
    let error = eventing::builder().start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::RequestNameClash { .. }), "{text}");
    assert!(text.contains("`billing.quote`"), "{text}");
    assert!(text.contains("request_name_clash::QuoteGiven"), "{text}");
    assert!(text.contains("request_name_clash::Quote`"), "{text}");
}

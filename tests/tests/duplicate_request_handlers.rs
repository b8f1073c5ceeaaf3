//! Two handler types for one request in one program: start fails naming both Rust types.

use eventing::{Context, HandlerError, RequestHandler, request, request_handler};
use serde::{Deserialize, Serialize};

#[request]
#[derive(Debug, Serialize, Deserialize)]
pub struct Quote {
    pub sku: String,
}

#[derive(Debug, Default)]
pub struct Pricing;

#[request_handler]
impl RequestHandler<Quote> for Pricing {
    async fn on(&self, _request: Quote, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Discounts;

#[request_handler]
impl RequestHandler<Quote> for Discounts {
    async fn on(&self, _request: Quote, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn two_handlers_of_one_request_fail_at_start_naming_both_types() {
    let error = eventing::builder().start().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, eventing::Error::DuplicateRequestHandler { .. }), "{text}");
    assert!(text.contains("`quote`"), "{text}");
    assert!(text.contains("duplicate_request_handlers::Pricing"), "{text}");
    assert!(text.contains("duplicate_request_handlers::Discounts"), "{text}");
}

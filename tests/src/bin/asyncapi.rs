//! A service that links one of everything the AsyncAPI document describes — events with
//! and without `schemars::JsonSchema`, a typed, a per-process and a pattern listener, a
//! request with its reply and handler, a recurring item — and prints its document as JSON
//! (for `tests/tests/asyncapi.rs` and the parser check in `.ci/run`). The URL comes from
//! `EVENTING_URL`, as for any service.

use eventing::asyncapi::Info;
use eventing::{
    Context, HandlerError, Listener, RawEvent, Recurring, RequestHandler, event, event_listener, recurring, request,
    request_handler,
};
use eventing_amqp as _;
use serde::{Deserialize, Serialize};

/// An order line: a nested type, so the payload schema has a subschema.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
}

#[event(name = "orders.placed", durable)]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderPlaced {
    pub order_id: u64,
    pub lines: Vec<Line>,
}

/// Without `JsonSchema`: its payload schema says so.
#[event(name = "orders.cancelled")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: u64,
}

#[event(name = "catalog.price_changed")]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PriceChanged {
    pub sku: String,
    pub cents: u64,
}

#[request(name = "shipping.quote", reply = Quote)]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuoteShipping {
    pub order_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quote {
    pub cents: u64,
}

#[derive(Debug, Default)]
pub struct ReserveStock;

#[event_listener]
impl Listener<OrderPlaced> for ReserveStock {
    async fn on(&self, _order: OrderPlaced, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct RefreshPriceCache;

#[event_listener(per_process)]
impl Listener<PriceChanged> for RefreshPriceCache {
    async fn on(&self, _change: PriceChanged, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct OrderAudit;

#[event_listener(pattern = "orders.#")]
impl Listener<RawEvent> for OrderAudit {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct ShippingDesk;

#[request_handler]
impl RequestHandler<QuoteShipping> for ShippingDesk {
    async fn on(&self, _request: QuoteShipping, _ctx: &Context) -> Result<Quote, HandlerError> {
        Ok(Quote { cents: 499 })
    }
}

#[derive(Debug, Default)]
pub struct ExpireCarts;

#[recurring(every = "5m")]
impl Recurring for ExpireCarts {
    async fn run(&self, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() -> Result<(), eventing::Error> {
    let builder = eventing::builder().service("shop").process_id("worker-1");
    let document = builder.asyncapi(&Info::new("1.2.3"))?;
    println!("{}", document.to_json_pretty());
    Ok(())
}

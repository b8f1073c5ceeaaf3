use eventing::{event, event_listener, Context, HandlerError, Listener, RawEvent};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Serialize, Deserialize)]
pub struct InvoicePaid {
    pub invoice: String,
}

#[derive(Default)]
pub struct TypedWithPattern;

#[event_listener(pattern = "billing.#")]
impl Listener<InvoicePaid> for TypedWithPattern {
    async fn on(&self, _event: InvoicePaid, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct RawWithoutPattern;

#[event_listener]
impl Listener<RawEvent> for RawWithoutPattern {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct BadPatterns;

#[event_listener(pattern = "billing.inv*")]
impl Listener<RawEvent> for BadPatterns {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct EmptyWord;

#[event_listener(pattern = "billing..paid")]
impl Listener<RawEvent> for EmptyWord {
    async fn on(&self, _event: RawEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

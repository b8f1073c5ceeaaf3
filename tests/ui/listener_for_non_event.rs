use eventing::{event_listener, Context, HandlerError, Listener};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct NotAnEvent {
    pub id: u64,
}

#[derive(Default)]
pub struct Handler;

#[event_listener]
impl Listener<NotAnEvent> for Handler {
    async fn on(&self, _event: NotAnEvent, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

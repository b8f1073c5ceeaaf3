use eventing::{event, event_listener, Context, HandlerError, Listener};
use serde::{Deserialize, Serialize};

#[event(name = "a", name = "b", durabel, durable = true)]
#[derive(Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[event(name = "billing.*")]
#[derive(Serialize, Deserialize)]
pub struct Wildcard;

#[event(name = 5)]
#[derive(Serialize, Deserialize)]
pub struct NotAString;

#[derive(Default)]
pub struct Handler;

#[event_listener(per_process, per_process, concurrency = 0, queue = "x", name = "send mail")]
impl Listener<UserCreated> for Handler {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

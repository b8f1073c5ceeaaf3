use std::rc::Rc;

use eventing::{event, event_listener, Context, HandlerError, Listener};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[derive(Default)]
pub struct Handler;

#[event_listener]
impl Listener<UserCreated> for Handler {
    async fn on(&self, event: UserCreated, ctx: &Context) -> Result<(), HandlerError> {
        let counter = Rc::new(event.user_id);
        ctx.publish(&UserCreated { user_id: *counter + 1 }).await?;
        drop(counter);
        Ok(())
    }
}

fn main() {}

//! A typo in `#[event]` is the only error: the listeners of the event still compile.
use eventing::{event, event_listener, Context, HandlerError, Listener};
use serde::{Deserialize, Serialize};

#[event(durabel)]
#[derive(Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[derive(Default)]
pub struct SendMail;

#[event_listener]
impl Listener<UserCreated> for SendMail {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct StoreUser;

#[event_listener(per_process)]
impl Listener<UserCreated> for StoreUser {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

use eventing::{event, event_listener, Context, HandlerError, Listener};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[derive(Default)]
pub struct WrongEvent;

#[event_listener]
impl Listener<UserCreated> for WrongEvent {
    async fn on(&self, _event: String, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct WrongReturn;

#[event_listener]
impl Listener<UserCreated> for WrongReturn {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}

use eventing::{event, event_listener, Context, HandlerError, Listener};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Serialize, Deserialize)]
pub struct Envelope<T> {
    pub payload: T,
}

#[event]
#[derive(Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: u64,
}

#[derive(Default)]
pub struct Handler<T>(std::marker::PhantomData<T>);

#[event_listener]
impl<T: Send + Sync + Default + 'static> Listener<UserCreated> for Handler<T> {
    async fn on(&self, _event: UserCreated, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

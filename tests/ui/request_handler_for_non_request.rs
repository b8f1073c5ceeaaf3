use eventing::{request_handler, Context, HandlerError, RequestHandler};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct NotARequest {
    pub id: u64,
}

#[derive(Default)]
pub struct Handler;

#[request_handler]
impl RequestHandler<NotARequest> for Handler {
    async fn on(&self, _request: NotARequest, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

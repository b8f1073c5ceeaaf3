use eventing::{request, request_handler, Context, HandlerError, RequestHandler};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Sum {
    pub answer: i64,
}

#[request(reply = Sum)]
#[derive(Serialize, Deserialize)]
pub struct Add {
    pub x: i64,
    pub y: i64,
}

#[derive(Default)]
pub struct Calculator;

#[request_handler]
impl RequestHandler<Add> for Calculator {
    async fn on(&self, request: Add, _ctx: &Context) -> Result<i64, HandlerError> {
        Ok(request.x + request.y)
    }
}

fn main() {}

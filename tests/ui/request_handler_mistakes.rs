use eventing::{request, request_handler, Context, HandlerError, RequestHandler};
use serde::{Deserialize, Serialize};

#[request]
#[derive(Serialize, Deserialize)]
pub struct Ping {}

#[derive(Default)]
pub struct PerProcess;

#[request_handler(per_process)]
impl RequestHandler<Ping> for PerProcess {
    async fn on(&self, _request: Ping, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct NotAsync;

#[request_handler]
impl RequestHandler<Ping> for NotAsync {
    fn on(&self, _request: Ping, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct WrongArity;

#[request_handler]
impl RequestHandler<Ping> for WrongArity {
    async fn on(&self, _request: Ping) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct NotSend;

#[request_handler]
impl RequestHandler<Ping> for NotSend {
    async fn on(&self, _request: Ping, _ctx: &Context) -> Result<(), HandlerError> {
        let local = std::rc::Rc::new(1);
        tokio::task::yield_now().await;
        drop(local);
        Ok(())
    }
}

#[request_handler]
pub struct WrongItem;

#[request(reply = Ping, timeout = 3)]
#[derive(Serialize, Deserialize)]
pub struct BadKey {}

#[request(name = "no spaces")]
#[derive(Serialize, Deserialize)]
pub struct BadName {}

#[request]
pub fn not_a_type() {}

fn main() {}

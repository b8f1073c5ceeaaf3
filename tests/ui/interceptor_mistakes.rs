use std::rc::Rc;

use eventing::{interceptor, Envelope, HandlerError, Interceptor, Next};

#[derive(Default)]
pub struct NotAsync;

#[interceptor]
impl Interceptor for NotAsync {
    fn handle(&self, envelope: &Envelope, next: Next<'_>) {
        let _ = (envelope, next);
    }
}

#[derive(Default)]
pub struct AsyncSend;

#[interceptor(order = "first")]
impl Interceptor for AsyncSend {
    async fn send(&self, envelope: &mut Envelope) {
        let _ = envelope;
    }
}

#[derive(Default)]
pub struct HoldsRc;

#[interceptor]
impl Interceptor for HoldsRc {
    async fn handle(&self, _envelope: &Envelope, next: Next<'_>) -> Result<(), HandlerError> {
        let held = Rc::new(1);
        let result = next.run().await;
        drop(held);
        result
    }
}

#[interceptor]
pub struct NotAnImpl;

#[derive(Default)]
pub struct Generic<T>(T);

#[interceptor]
impl<T: Default + Send + Sync + 'static> Interceptor for Generic<T> {}

fn main() {}

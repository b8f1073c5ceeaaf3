use eventing::{recurring, Context, HandlerError, Recurring};

#[recurring(every = "5s")]
struct NotAnImpl;

#[derive(Default)]
struct WrongTrait;

trait Other {}

#[recurring(every = "5s")]
impl Other for WrongTrait {}

#[derive(Default)]
struct NotAsync;

#[recurring(every = "5s")]
impl Recurring for NotAsync {
    fn run(&self, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
struct ExtraArgument;

#[recurring(every = "5s")]
impl Recurring for ExtraArgument {
    async fn run(&self, _ctx: &Context, _extra: u32) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

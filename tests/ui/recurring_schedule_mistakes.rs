use eventing::{recurring, Context, HandlerError, Recurring};

#[derive(Default)]
struct BadDuration;

#[recurring(every = "5 parsecs")]
impl Recurring for BadDuration {
    async fn run(&self, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
struct BadCron;

#[recurring(cron = "every five minutes")]
impl Recurring for BadCron {
    async fn run(&self, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
struct Both;

#[recurring(every = "5s", cron = "0 */5 * * * *")]
impl Recurring for Both {
    async fn run(&self, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
struct Neither;

#[recurring]
impl Recurring for Neither {
    async fn run(&self, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[derive(Default)]
struct Typo;

#[recurring(evry = "5s")]
impl Recurring for Typo {
    async fn run(&self, _ctx: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}

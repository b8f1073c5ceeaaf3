//! A service with one recurring item, `beat`, every second, for the two-process test
//! (`tests/tests/amqp_recurring.rs`): prints `ready`, then `ran <process id> <run id>` for
//! each run, and shuts down when standard input closes.

use eventing::{Context, HandlerError, Recurring, recurring};
use eventing_amqp as _;
use tokio::io::AsyncReadExt;

#[derive(Debug, Default)]
pub struct Beat;

#[recurring(every = "1s")]
impl Recurring for Beat {
    async fn run(&self, ctx: &Context) -> Result<(), HandlerError> {
        let process = std::env::var("EVENTING_PROCESS_ID").unwrap_or_default();
        println!("ran {process} {}", ctx.correlation_id());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let bus = eventing::builder().start().await?;
    println!("ready");
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    stdin.read_to_end(&mut sink).await?;
    bus.shutdown().await?;
    println!("stopped");
    Ok(())
}

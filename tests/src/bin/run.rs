//! `eventing::run()` as a service's `main` would call it, for the signal test: runs on the
//! in-memory default until SIGINT or SIGTERM, with a listener busy when the signal comes.

use std::time::Duration;

use eventing::{Context, HandlerError, Listener, event, event_listener};
use serde::{Deserialize, Serialize};

/// Published once at start, before `run` (see `main`).
#[event(durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    /// Its number.
    pub n: u64,
}

/// Takes a moment per tick, so a shutdown has something in flight to wait for.
#[derive(Debug, Default)]
pub struct SlowTick;

#[event_listener]
impl Listener<Tick> for SlowTick {
    async fn on(&self, tick: Tick, _ctx: &Context) -> Result<(), HandlerError> {
        tracing::info!(n = tick.n, "tick started");
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracing::info!(n = tick.n, "tick finished");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), eventing::Error> {
    tracing_subscriber::fmt().with_ansi(false).with_writer(std::io::stderr).init();
    // Declare the durable queue, leave a tick waiting in it, then run: `run` picks it up.
    let declared = eventing::builder().start().await?;
    declared.shutdown().await?;
    let publisher = eventing::builder().listeners(|_| false).start().await?;
    publisher.publish(&Tick { n: 1 }).await?;
    publisher.shutdown().await?;
    eventing::run().await
}

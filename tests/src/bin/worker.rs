//! A service process for the two-process test: runs a competing and a per-process listener
//! on `jobs.run` until its standard input closes, then shuts down gracefully. Prints
//! `ready` once consuming, and `<listener> <n>` for every job it handles.

use eventing::{Context, HandlerError, Listener, event, event_listener};
use eventing_amqp as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// A job.
#[event(name = "jobs.run", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Its number.
    pub n: u64,
}

/// Competing consumer: each job runs once across all processes.
#[derive(Debug, Default)]
pub struct RunJob;

#[event_listener]
impl Listener<Job> for RunJob {
    async fn on(&self, job: Job, _ctx: &Context) -> Result<(), HandlerError> {
        println!("run_job {}", job.n);
        Ok(())
    }
}

/// Per-process listener: every process sees every job.
#[derive(Debug, Default)]
pub struct WatchJobs;

#[event_listener(per_process)]
impl Listener<Job> for WatchJobs {
    async fn on(&self, job: Job, _ctx: &Context) -> Result<(), HandlerError> {
        println!("watch_jobs {}", job.n);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // EVENTING_URL, EVENTING_SERVICE, EVENTING_EXCHANGE and EVENTING_PROCESS_ID come from the test.
    let bus = eventing::builder().start().await?;
    println!("ready");
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    stdin.read_to_end(&mut sink).await?;
    bus.shutdown().await?;
    println!("stopped");
    Ok(())
}

//! A service process for the cluster fault tests (tests/tests/amqp_cluster.rs): consumes
//! `cluster.job` (durable) with a competing listener and publishes its share of the jobs,
//! paced, while the test stops or kills the node it is connected to.
//!
//! Arguments: `<first job> <count> <pause between publishes in µs>`. Prints:
//! - `ready` once consuming;
//! - `job <n>` for every job handled (duplicates show as repeated lines);
//! - `confirmed <n>` when a publish returned (the broker confirmed it), `failed <n> <error>`
//!   when it did not;
//! - `health <connected> <ready> <unix ms>` whenever `Bus::health()` changes;
//! - `published` when all its publishes returned, `stopped` after a graceful shutdown
//!   (asked for by closing standard input).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventing::{Context, HandlerError, Listener, event, event_listener};
use eventing_amqp as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// A job.
#[event(name = "cluster.job", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterJob {
    /// Its number.
    pub n: u64,
}

/// Competing consumer: each job should run once across both processes.
#[derive(Debug, Default)]
pub struct RunClusterJob;

#[event_listener]
impl Listener<ClusterJob> for RunClusterJob {
    async fn on(&self, job: ClusterJob, _ctx: &Context) -> Result<(), HandlerError> {
        println!("job {}", job.n);
        Ok(())
    }
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis()).unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<u64>());
    let (first, count, pause) = match (args.next(), args.next(), args.next()) {
        (Some(Ok(first)), Some(Ok(count)), Some(Ok(pause))) => (first, count, Duration::from_micros(pause)),
        _ => return Err("usage: eventing-test-cluster-worker <first job> <count> <pause µs>".into()),
    };
    // EVENTING_URL (the cluster), EVENTING_SERVICE, EVENTING_EXCHANGE and
    // EVENTING_PROCESS_ID come from the test.
    let bus = eventing::builder().start().await?;
    println!("ready");

    let watcher = bus.clone();
    let health = tokio::spawn(async move {
        let mut last = None;
        loop {
            let health = watcher.health();
            let now = (health.is_connected(), health.is_ready());
            if last != Some(now) {
                println!("health {} {} {}", now.0, now.1, now_ms());
                last = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let publisher = bus.clone();
    let publishing = tokio::spawn(async move {
        for n in first..first + count {
            match publisher.publish(&ClusterJob { n }).await {
                Ok(()) => println!("confirmed {n}"),
                Err(error) => println!("failed {n} {}", error.to_string().replace('\n', " ")),
            }
            tokio::time::sleep(pause).await;
        }
        println!("published");
    });

    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    stdin.read_to_end(&mut sink).await?;
    publishing.abort();
    health.abort();
    bus.shutdown().await?;
    println!("stopped");
    Ok(())
}

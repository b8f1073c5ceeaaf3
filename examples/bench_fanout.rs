//! Fan-out and backlog: what each extra listener of one event costs, and whether memory
//! stays flat.
//!
//! - **Fan-out, in memory**: 1, 10 and 50 listeners of the same event (each its own queue,
//!   default concurrency and prefetch); the publisher sends `--messages` events and the
//!   clock stops when every listener has handled every one. Prints events/s, deliveries/s
//!   and the resident memory after each setting.
//! - **Backlog, on RabbitMQ** (skipped with `--memory-only`): `--backlog` persistent events
//!   wait in a listener's queue before the listener starts; while it drains them the
//!   process's resident memory is sampled every 50 ms. Prefetch bounds what is in the
//!   process at once, so the peak should not grow with the backlog.
//!
//! `cargo run --release --example bench_fanout -- [--messages 100000] [--backlog 100000] [--url amqp://...]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventing::{Context, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use eventing_amqp::{AmqpOptions, AmqpTransport};
use eventing_examples::{Progress, status_kib};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The fanned-out event (about 60 bytes of JSON).
#[event(name = "bench.fanout_tick")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutTick {
    pub sequence: u64,
    pub account: String,
}

/// The backlog's event: persistent, so the backlog survives as RabbitMQ holds it.
#[event(name = "bench.backlog_item", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BacklogItem {
    pub sequence: u64,
    pub account: String,
}

/// Fifty listener types of `FanoutTick`, named `fan01` … `fan50`.
macro_rules! fan_listeners {
    ($($name:ident),* $(,)?) => {$(
        #[derive(Debug)]
        pub struct $name {
            progress: Arc<Progress>,
        }

        impl FromState for $name {
            fn from_state(state: &State) -> Result<Self, MissingState> {
                Ok(Self { progress: Arc::clone(state.get::<Arc<Progress>>()?) })
            }
        }

        #[event_listener]
        impl Listener<FanoutTick> for $name {
            async fn on(&self, tick: FanoutTick, _ctx: &Context) -> Result<(), HandlerError> {
                std::hint::black_box(tick);
                self.progress.handled_one();
                Ok(())
            }
        }
    )*};
}

fan_listeners!(
    Fan01, Fan02, Fan03, Fan04, Fan05, Fan06, Fan07, Fan08, Fan09, Fan10, Fan11, Fan12, Fan13, Fan14, Fan15, Fan16,
    Fan17, Fan18, Fan19, Fan20, Fan21, Fan22, Fan23, Fan24, Fan25, Fan26, Fan27, Fan28, Fan29, Fan30, Fan31, Fan32,
    Fan33, Fan34, Fan35, Fan36, Fan37, Fan38, Fan39, Fan40, Fan41, Fan42, Fan43, Fan44, Fan45, Fan46, Fan47, Fan48,
    Fan49, Fan50,
);

/// Drains the backlog.
#[derive(Debug)]
pub struct DrainBacklog {
    progress: Arc<Progress>,
}

impl FromState for DrainBacklog {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { progress: Arc::clone(state.get::<Arc<Progress>>()?) })
    }
}

#[event_listener]
impl Listener<BacklogItem> for DrainBacklog {
    async fn on(&self, item: BacklogItem, _ctx: &Context) -> Result<(), HandlerError> {
        std::hint::black_box(item);
        self.progress.handled_one();
        Ok(())
    }
}

/// The fan-out listener number of a listener name (`fan07` → 7).
fn fan_number(name: &str) -> Option<usize> {
    name.strip_prefix("fan")?.parse().ok()
}

/// Resident memory now, in KiB (Linux).
fn rss_kib() -> u64 {
    status_kib("VmRSS:").unwrap_or(0)
}

struct FanoutRun {
    listeners: usize,
    events_per_s: f64,
    rss_kib: u64,
}

/// One fan-out setting on a fresh in-memory broker.
async fn fanout(listeners: usize, messages: u64) -> Result<FanoutRun, BoxError> {
    let progress = Arc::new(Progress::default());
    progress.expect(messages * listeners as u64);
    let broker = eventing::memory::MemoryBroker::new();
    let bus = eventing::builder()
        .transport(broker.transport())
        .state(Arc::clone(&progress))
        .listeners(move |info| fan_number(info.name).is_some_and(|number| number <= listeners))
        .start()
        .await?;
    let done = progress.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    let started = Instant::now();
    let publisher = tokio::spawn({
        let bus = bus.clone();
        async move {
            let account = "acct-0001-eu-west".to_owned();
            for sequence in 0..messages {
                bus.publish(&FanoutTick { sequence, account: account.clone() }).await?;
            }
            Ok::<_, eventing::Error>(())
        }
    });
    publisher.await??;
    done.await;
    let elapsed = started.elapsed();
    let rss = rss_kib();
    bus.shutdown().await?;
    Ok(FanoutRun { listeners, events_per_s: messages as f64 / elapsed.as_secs_f64(), rss_kib: rss })
}

struct BacklogRun {
    publish: Duration,
    drain: Duration,
    rss_before_kib: u64,
    rss_peak_kib: u64,
}

/// Fills the listener's queue with `backlog` events, then starts the listener and samples
/// the resident memory while it drains them. Deletes what it declared.
async fn backlog(url: &str, backlog: u64) -> Result<BacklogRun, BoxError> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let (service, exchange) = (format!("bench-backlog-{stamp}"), format!("bench-backlog-{stamp}"));
    let progress = Arc::new(Progress::default());
    let configured = || {
        eventing::builder()
            .url(url.to_owned())
            .service(service.clone())
            .exchange(exchange.clone())
            .state(Arc::clone(&progress))
            .listeners(|info| info.name == "drain_backlog")
    };
    // Declare the queue, then fill it with no consumer running.
    configured().start().await?.shutdown().await?;
    let publisher = configured().listeners(|_| false).start().await?;
    let started = Instant::now();
    futures_util::stream::iter(0..backlog)
        .map(|sequence| {
            let publisher = &publisher;
            async move { publisher.publish(&BacklogItem { sequence, account: "acct-0001-eu-west".into() }).await }
        })
        .buffer_unordered(1000)
        .try_collect::<()>()
        .await?;
    let publish = started.elapsed();
    publisher.shutdown().await?;

    progress.expect(backlog);
    let done = progress.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    let rss_before = rss_kib();
    let started = Instant::now();
    let consumer = configured().start().await?;
    let mut peak = rss_before;
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = &mut done => break,
            _ = ticks.tick() => peak = peak.max(rss_kib()),
        }
    }
    let drain = started.elapsed();
    peak = peak.max(rss_kib());
    let topology = consumer.topology().clone();
    consumer.shutdown().await?;

    let admin = AmqpTransport::connect(url, AmqpOptions::default()).await?;
    for queue in &topology.queues {
        admin.delete_queue(&queue.name).await?;
    }
    for exchange in &topology.exchanges {
        admin.delete_exchange(exchange).await?;
    }
    eventing::transport::Transport::close(&admin).await?;
    Ok(BacklogRun { publish, drain, rss_before_kib: rss_before, rss_peak_kib: peak })
}

fn number_after(flag: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == flag)
        .and_then(|index| args.get(index + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn url_from_args() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--url")
        .and_then(|index| args.get(index + 1).cloned())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

#[allow(clippy::print_stdout)] // the benchmark's report is its output
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let messages = number_after("--messages", 100_000);
    let mut runs = Vec::new();
    for listeners in [1, 10, 50] {
        runs.push(fanout(listeners, messages).await?);
    }
    let single = runs[0].events_per_s;
    for run in &runs {
        let deliveries = run.events_per_s * run.listeners as f64;
        println!(
            "fanout_listeners={} events_per_s={:.0} deliveries_per_s={:.0} delivery_rate_vs_one_listener={:.2} rss_kib={}",
            run.listeners,
            run.events_per_s,
            deliveries,
            deliveries / single,
            run.rss_kib
        );
    }
    if std::env::args().any(|arg| arg == "--memory-only") {
        return Ok(());
    }
    let backlog_size = number_after("--backlog", 100_000);
    let run = backlog(&url_from_args(), backlog_size).await?;
    println!(
        "backlog={backlog_size} publish_s={:.1} drain_s={:.1} drain_msgs_per_s={:.0} rss_before_kib={} rss_peak_while_draining_kib={}",
        run.publish.as_secs_f64(),
        run.drain.as_secs_f64(),
        backlog_size as f64 / run.drain.as_secs_f64(),
        run.rss_before_kib,
        run.rss_peak_kib
    );
    Ok(())
}

//! Publish-to-handler latency at a fixed rate, in one run: eventing against hand-written
//! lapin on the same RabbitMQ (durable exchange and queue, persistent messages, publisher
//! confirms, prefetch 1000, the consumer on a spawned task acknowledging in batches with
//! `multiple`), and eventing's in-memory transport against a bare tokio `mpsc` channel.
//!
//! `cargo run --release --example bench_latency -- [--rate 5000] [--messages 20000] [--url amqp://...]`
//!
//! Every message carries the instant it was published; the handler records how long ago
//! that was. Publishes are paced: every millisecond, `rate / 1000` of them start, each on
//! its own task (so a slow confirm never delays the next publish).

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use eventing::{Context, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use eventing_amqp::{AmqpOptions, AmqpTransport};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const EVENT: &str = "bench.stamped";

/// A small event that says when it was published.
#[event(name = "bench.stamped", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamped {
    /// Nanoseconds since the benchmark's clock started.
    pub sent_ns: u64,
    pub n: u64,
    pub account: String,
}

fn clock() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(clock().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn stamped(n: u64) -> Stamped {
    Stamped { sent_ns: now_ns(), n, account: "acct-0001-eu-west".into() }
}

/// Latencies seen by a handler, in nanoseconds.
#[derive(Debug, Default)]
pub struct Latencies {
    seen: Mutex<Vec<u64>>,
    target: Mutex<usize>,
    done: Notify,
}

impl Latencies {
    fn expect(&self, count: usize) {
        *self.target.lock().expect("target lock") = count;
        self.seen.lock().expect("latencies lock").clear();
    }

    fn record(&self, sent_ns: u64) {
        let latency = now_ns().saturating_sub(sent_ns);
        let mut seen = self.seen.lock().expect("latencies lock");
        seen.push(latency);
        if seen.len() == *self.target.lock().expect("target lock") {
            self.done.notify_one();
        }
    }

    async fn wait(&self) -> Vec<u64> {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.seen.lock().expect("latencies lock").len() >= *self.target.lock().expect("target lock") {
                return std::mem::take(&mut *self.seen.lock().expect("latencies lock"));
            }
            done.await;
        }
    }
}

#[derive(Debug)]
pub struct Probe {
    latencies: Arc<Latencies>,
}

impl FromState for Probe {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { latencies: Arc::clone(state.get::<Arc<Latencies>>()?) })
    }
}

#[event_listener(concurrency = 1000, prefetch = 1000)]
impl Listener<Stamped> for Probe {
    async fn on(&self, event: Stamped, _ctx: &Context) -> Result<(), HandlerError> {
        self.latencies.record(event.sent_ns);
        Ok(())
    }
}

struct Args {
    rate: u64,
    messages: u64,
    url: String,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str| argv.iter().position(|arg| arg == flag).and_then(|i| argv.get(i + 1)).cloned();
    Args {
        rate: value("--rate").and_then(|n| n.parse().ok()).unwrap_or(5_000),
        messages: value("--messages").and_then(|n| n.parse().ok()).unwrap_or(20_000),
        url: value("--url").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    }
}

/// Starts `publish(n)` for every message at `rate` per second, each on its own task, and
/// waits until all returned.
async fn paced<F, Fut>(rate: u64, messages: u64, publish: F) -> Result<(), BoxError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let per_tick = (rate / 1000).max(1);
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(usize::try_from(messages).unwrap_or(0));
    let mut n = 0;
    while n < messages {
        ticks.tick().await;
        for _ in 0..per_tick.min(messages - n) {
            tasks.push(tokio::spawn(publish(n)));
            n += 1;
        }
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// p50, p99 and p99.9 in microseconds.
fn percentiles(mut latencies: Vec<u64>) -> [f64; 3] {
    latencies.sort_unstable();
    let at = |share: f64| {
        let index = ((latencies.len() as f64 * share) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).copied().unwrap_or(0) as f64 / 1000.0
    };
    [at(0.50), at(0.99), at(0.999)]
}

/// eventing on `transport_url` (RabbitMQ) or on a private memory broker (`None`).
async fn with_eventing(url: Option<&str>, args: &Args, stamp: &str) -> Result<[f64; 3], BoxError> {
    let latencies = Arc::new(Latencies::default());
    latencies.expect(usize::try_from(args.messages)?);
    let builder = eventing::builder().state(Arc::clone(&latencies));
    let builder = match url {
        Some(url) => builder
            .url(url.to_owned())
            .service(format!("bench-latency-{stamp}"))
            .exchange(format!("bench-latency-{stamp}")),
        None => builder.transport(eventing::memory::MemoryBroker::new().transport()),
    };
    let bus = builder.start().await?;
    paced(args.rate, args.messages, |n| {
        let bus = bus.clone();
        async move { Ok(bus.publish(&stamped(n)).await?) }
    })
    .await?;
    let seen = latencies.wait().await;
    let topology = bus.topology().clone();
    bus.shutdown().await?;
    if let Some(url) = url {
        let admin = AmqpTransport::connect(url, AmqpOptions::default()).await?;
        for queue in &topology.queues {
            admin.delete_queue(&queue.name).await?;
        }
        for exchange in &topology.exchanges {
            admin.delete_exchange(exchange).await?;
        }
    }
    Ok(percentiles(seen))
}

/// Hand-written lapin with the same properties eventing sends.
async fn raw_lapin(args: &Args, stamp: &str) -> Result<[f64; 3], BoxError> {
    let exchange = format!("bench-latency-raw-{stamp}");
    let queue = format!("bench-latency-raw-{stamp}.stamped");
    let connection = Connection::connect(&args.url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.as_str().into(), durable, FieldTable::default()).await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            EVENT.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let consume_channel = connection.create_channel().await?;
    consume_channel.basic_qos(1000, BasicQosOptions { global: false }).await?;
    let mut consumer = consume_channel
        .basic_consume(
            queue.as_str().into(),
            "bench-latency".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let messages = args.messages;
    let handler = tokio::spawn(async move {
        const ACK_BATCH: u64 = 250;
        let mut latencies = Vec::with_capacity(usize::try_from(messages).unwrap_or(0));
        let mut received = 0;
        while received < messages {
            let Some(delivery) = consumer.next().await else { break };
            let delivery = delivery?;
            let event: Stamped = serde_json::from_slice(&delivery.data)?;
            latencies.push(now_ns().saturating_sub(event.sent_ns));
            received += 1;
            if received % ACK_BATCH == 0 || received == messages {
                delivery.ack(BasicAckOptions { multiple: true }).await?;
            }
        }
        Ok::<_, BoxError>(latencies)
    });

    let channel = Arc::new(channel);
    let exchange = Arc::new(exchange);
    paced(args.rate, args.messages, |n| {
        let (channel, exchange) = (Arc::clone(&channel), Arc::clone(&exchange));
        async move {
            let event = stamped(n);
            let body = serde_json::to_vec(&event)?;
            let message_id = format!("{:08x}-0000-4000-8000-{n:012x}", n.wrapping_mul(2_654_435_761) as u32);
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_type(EVENT.into())
                .with_correlation_id(message_id.as_str().into())
                .with_app_id("bench_latency".into())
                .with_timestamp(1_795_464_000)
                .with_message_id(message_id.into());
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    EVENT.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?
                .await?;
            if confirm.is_ack() { Ok(()) } else { Err(format!("not confirmed: {confirm:?}").into()) }
        }
    })
    .await?;
    let latencies = handler.await??;
    channel.queue_delete(queue.as_str().into(), Default::default()).await?;
    channel.exchange_delete(exchange.as_str().into(), Default::default()).await?;
    connection.close(200, "done".into()).await?;
    Ok(percentiles(latencies))
}

/// A bare `mpsc` channel: serde_json bodies from paced publish tasks to a spawned consumer.
async fn bare_channel(args: &Args) -> Result<[f64; 3], BoxError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let messages = args.messages;
    let consumer = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(usize::try_from(messages).unwrap_or(0));
        while let Some(body) = receiver.recv().await {
            let event: Stamped = serde_json::from_slice(&body)?;
            latencies.push(now_ns().saturating_sub(event.sent_ns));
            if latencies.len() as u64 == messages {
                break;
            }
        }
        Ok::<_, BoxError>(latencies)
    });
    paced(args.rate, args.messages, |n| {
        let sender = sender.clone();
        async move {
            sender.send(serde_json::to_vec(&stamped(n))?).await.map_err(|_| "the consumer stopped")?;
            Ok(())
        }
    })
    .await?;
    Ok(percentiles(consumer.await??))
}

#[allow(clippy::print_stdout)] // the benchmark's report is its output
fn report(name: &str, [p50, p99, p999]: [f64; 3]) {
    println!("{name}_p50_us={p50:.0} {name}_p99_us={p99:.0} {name}_p99_9_us={p999:.0}");
}

#[allow(clippy::print_stdout)] // the benchmark's report is its output
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args = args();
    let stamp = std::process::id().to_string();
    clock();
    println!("rate={} messages={}", args.rate, args.messages);
    let raw = raw_lapin(&args, &stamp).await?;
    let amqp = with_eventing(Some(&args.url), &args, &stamp).await?;
    let bare = bare_channel(&args).await?;
    let memory = with_eventing(None, &args, &stamp).await?;
    report("amqp_eventing", amqp);
    report("amqp_raw_lapin", raw);
    println!("amqp_p50_ratio={:.2} amqp_p99_ratio={:.2}", amqp[0] / raw[0], amqp[1] / raw[1]);
    report("memory_eventing", memory);
    report("memory_bare_channel", bare);
    println!("memory_p50_ratio={:.2} memory_p99_ratio={:.2}", memory[0] / bare[0], memory[1] / bare[1]);
    Ok(())
}

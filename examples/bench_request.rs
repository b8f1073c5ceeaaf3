//! Request/response round trips on RabbitMQ: eventing's `Bus::request` against a
//! hand-written lapin direct-reply-to client and server, same broker, same run.
//!
//! `cargo run --release --example bench_request -- [--requests 5000] [--rounds 5] [--url amqp://...]`
//!
//! Each round runs `--requests` round trips one after another (sequential), eventing then
//! raw, then the same number from 100 callers at once (each waits for its reply before the
//! next call), raw then eventing: the two sides alternate, so a machine whose load changes
//! during the run weighs on both. It prints every run's round trips per second and p50/p99
//! latency, then the medians over the rounds and eventing's ratios to raw.
//!
//! eventing: `Add {x, y}` → `Sum {answer}` through the exchange, mandatory publishes
//! (unconfirmed: the reply proves arrival; returns are polled for `NoHandler`), replies
//! through direct reply-to; the server is a `#[request_handler]` with
//! concurrency 100 that acknowledges each request after its (unconfirmed) reply went out.
//! Raw, two references: the bare minimum (the same JSON published straight to a queue,
//! no confirms), and the same guarantees and wire as eventing's requests (through the
//! exchange to a durable queue, `mandatory` with the broker's returns polled every 5 ms, so
//! that a request nobody serves fails at once; the same properties and deadline header). Both servers reply (no confirm)
//! on the channel they consume on and acknowledge, prefetch 100; both clients consume
//! `amq.rabbitmq.reply-to` with no-ack on their publishing channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventing::{Context, HandlerError, Request, RequestHandler, request, request_handler};
use futures_util::StreamExt;
use lapin::options::QueueBindOptions;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions};

use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONCURRENCY: usize = 100;

#[request(name = "bench.add", reply = Sum)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Add {
    pub x: i64,
    pub y: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    pub answer: i64,
}

#[derive(Debug, Default)]
pub struct Adder;

#[request_handler(concurrency = 100)]
impl RequestHandler<Add> for Adder {
    async fn on(&self, request: Add, _ctx: &Context) -> Result<Sum, HandlerError> {
        Ok(Sum { answer: request.x + request.y })
    }
}

/// Round trips per second and latency percentiles of one run.
struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures { per_second: latencies.len() as f64 / elapsed.as_secs_f64(), p50: at(0.50), p99: at(0.99) }
}

/// Runs `total` calls of `call`, `callers` at a time (each caller waits for its reply).
async fn drive<F, Fut>(total: usize, callers: usize, call: F) -> Result<Figures, BoxError>
where
    F: Fn(i64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let call = call.clone();
        let count = total / callers;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for n in 0..count {
                let began = Instant::now();
                call((caller * count + n) as i64).await?;
                latencies.push(began.elapsed());
            }
            Ok::<_, BoxError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(figures(latencies, started.elapsed()))
}

/// A hand-written direct reply-to client: one channel publishes and consumes the replies.
struct RawClient {
    channel: Channel,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>,
    queue: String,
    next: std::sync::atomic::AtomicU64,
    /// `Some(exchange)`: the same guarantees and wire as eventing's requests (through the
    /// exchange, mandatory, the same properties); `None`: the bare minimum.
    guarantees: Option<String>,
}

impl RawClient {
    async fn call(&self, x: i64) -> Result<(), BoxError> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string();
        let (sender, receiver) = oneshot::channel();
        self.waiting.lock().map_err(|_| "poisoned")?.insert(id.clone(), sender);
        let body = serde_json::to_vec(&Add { x, y: 1 })?;
        let properties = BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id(id.as_str().into())
            .with_content_type("application/json".into())
            .with_expiration("30000".into());
        match &self.guarantees {
            None => {
                self.channel
                    .basic_publish(
                        "".into(),
                        self.queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await?;
            }
            Some(exchange) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
                let mut headers = FieldTable::default();
                headers.insert("x-eventing-deadline".into(), AMQPValue::LongLongInt((now.as_millis() + 30_000) as i64));
                let properties = properties
                    .with_message_id(format!("{id:0>36}").into())
                    .with_type(Add::NAME.into())
                    .with_timestamp(now.as_secs())
                    .with_app_id("bench".into())
                    .with_delivery_mode(1)
                    .with_headers(headers);
                self.channel
                    .basic_publish(
                        exchange.as_str().into(),
                        self.queue.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                        &body,
                        properties,
                    )
                    .await?
                    .await?;
            }
        }
        let reply = tokio::time::timeout(Duration::from_secs(30), receiver).await??;
        let sum: Sum = serde_json::from_slice(&reply)?;
        if sum.answer != x + 1 {
            return Err("wrong answer".into());
        }
        Ok(())
    }
}

/// A raw server and client; with `guarantees` (an exchange), the request queue is durable and
/// bound to it, as eventing's `request.<name>` is, and the client polls for returned requests
/// as eventing does (a returned one fails the run: every request here has a server).
async fn raw_side(
    url: &str,
    queue: &str,
    guarantees: Option<&str>,
) -> Result<(Connection, Connection, Arc<RawClient>), BoxError> {
    // The server: prefetch 100, reply then ack.
    let server = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = server.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: guarantees.is_some(),
                auto_delete: guarantees.is_none(),
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    if let Some(exchange) = guarantees {
        channel
            .queue_bind(queue.into(), exchange.into(), queue.into(), QueueBindOptions::default(), FieldTable::default())
            .await?;
    }
    channel.basic_qos(CONCURRENCY as u16, BasicQosOptions::default()).await?;
    let requests = channel
        .basic_consume(queue.into(), "raw-server".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    // Up to 100 requests at once, each replied to then acknowledged, as eventing's handler
    // with concurrency 100 does: one request waiting for its reply's frame to go out does not
    // hold up the others (a strictly serial loop halved the reference's 100-caller rate).
    tokio::spawn(requests.for_each_concurrent(CONCURRENCY, move |delivery| {
        let channel = channel.clone();
        async move {
            let Ok(delivery) = delivery else { return };
            let Ok(request) = serde_json::from_slice::<Add>(&delivery.data) else { return };
            let body = serde_json::to_vec(&Sum { answer: request.x + request.y }).unwrap_or_default();
            let (Some(reply_to), Some(correlation)) =
                (delivery.properties.reply_to().clone(), delivery.properties.correlation_id().clone())
            else {
                return;
            };
            let _ = channel
                .basic_publish(
                    "".into(),
                    reply_to.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_correlation_id(correlation),
                )
                .await;
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        }
    }));
    // The client.
    let client = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = client.create_channel().await?;
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "raw-client".into(),
            BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await?;
    let waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>> = Arc::default();
    {
        let waiting = Arc::clone(&waiting);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let Some(id) = delivery.properties.correlation_id().as_ref().map(ToString::to_string) else { continue };
                let caller = waiting.lock().ok().and_then(|mut waiting| waiting.remove(&id));
                if let Some(caller) = caller {
                    let _ = caller.send(delivery.data);
                }
            }
        });
    }
    if guarantees.is_some() {
        let channel = channel.clone();
        let waiting = Arc::clone(&waiting);
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(Duration::from_millis(5));
            loop {
                poll.tick().await;
                let Ok(returned) = channel.wait_for_confirms().await else { break };
                for message in returned {
                    let id = message.properties.correlation_id().as_ref().map(ToString::to_string);
                    eprintln!("request {id:?} returned: {}", message.reply_text);
                    // The caller's sender dropped: its call fails instead of waiting 30 s.
                    if let Some(id) = id {
                        waiting.lock().ok().and_then(|mut waiting| waiting.remove(&id));
                    }
                }
            }
        });
    }
    let raw = Arc::new(RawClient {
        channel,
        waiting,
        queue: queue.to_owned(),
        next: Default::default(),
        guarantees: guarantees.map(str::to_owned),
    });
    Ok((server, client, raw))
}

fn row(name: &str, figures: &Figures) {
    println!(
        "{name:<44} {:>10.0} round trips/s   p50 {:>8.3} ms   p99 {:>8.3} ms",
        figures.per_second,
        figures.p50.as_secs_f64() * 1e3,
        figures.p99.as_secs_f64() * 1e3
    );
}

/// The median of each figure over the rounds (each figure on its own).
fn median(runs: &[Figures]) -> Figures {
    let pick = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Figures {
        per_second: pick(runs.iter().map(|run| run.per_second).collect()),
        p50: Duration::from_secs_f64(pick(runs.iter().map(|run| run.p50.as_secs_f64()).collect())),
        p99: Duration::from_secs_f64(pick(runs.iter().map(|run| run.p99.as_secs_f64()).collect())),
    }
}

/// eventing's figures over a reference's: `raw` (the bare minimum) or `same` (the same
/// guarantees), so a script can pick each ratio out by name.
fn ratio(name: &str, reference: &str, ours: &Figures, theirs: &Figures) {
    println!(
        "{name:<16} vs {reference:<5} throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
        ours.per_second / theirs.per_second,
        ours.p50.as_secs_f64() / theirs.p50.as_secs_f64(),
        ours.p99.as_secs_f64() / theirs.p99.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mut requests = 5_000usize;
    let mut rounds = 5usize;
    let mut url = "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--requests" => requests = args.next().ok_or("--requests N")?.parse()?,
            "--rounds" => rounds = args.next().ok_or("--rounds N")?.parse::<usize>()?.max(1),
            "--url" => url = args.next().ok_or("--url URL")?,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let requests = requests.max(CONCURRENCY) / CONCURRENCY * CONCURRENCY;
    let exchange = format!("bench-request-{}", std::process::id());

    // eventing: a serving bus and a calling bus.
    let server = eventing::builder().url(url.clone()).exchange(&exchange).service("bench").start().await?;
    let caller =
        eventing::builder().url(url.clone()).exchange(&exchange).service("bench").listeners(|_| false).start().await?;
    caller.request(&Add { x: 0, y: 1 }).await?; // warm up: opens the reply channel
    let ours = {
        let caller = caller.clone();
        move |x: i64| {
            let caller = caller.clone();
            async move {
                let sum = caller.request(&Add { x, y: 1 }).await?;
                if sum.answer != x + 1 {
                    return Err::<(), BoxError>("wrong answer".into());
                }
                Ok(())
            }
        }
    };

    // Raw lapin: the bare minimum, and the same guarantees as eventing's requests.
    let queue = format!("bench-request-raw-{}", std::process::id());
    let (raw_server, raw_client_connection, raw) = raw_side(&url, &queue, None).await?;
    raw.call(0).await?;
    let same_queue = format!("bench-request-raw-same-{}", std::process::id());
    let (same_server, same_client_connection, same) = raw_side(&url, &same_queue, Some(&exchange)).await?;
    same.call(0).await?;
    let calls = |client: &Arc<RawClient>| {
        let client = Arc::clone(client);
        move |x: i64| {
            let client = Arc::clone(&client);
            async move { client.call(x).await }
        }
    };
    let (raw, same) = (calls(&raw), calls(&same));

    println!("{requests} round trips per run, {rounds} rounds, RabbitMQ at {}", eventing::transport::redact_url(&url));
    // eventing, raw, raw with the same guarantees: sequential, then 100 concurrent.
    let mut sequential: [Vec<Figures>; 3] = Default::default();
    let mut concurrent: [Vec<Figures>; 3] = Default::default();
    const NAMES: [&str; 3] = ["eventing", "raw lapin", "raw lapin, same guarantees"];
    for round in 1..=rounds {
        println!("round {round}");
        sequential[0].push(drive(requests, 1, ours.clone()).await?);
        sequential[1].push(drive(requests, 1, raw.clone()).await?);
        sequential[2].push(drive(requests, 1, same.clone()).await?);
        concurrent[1].push(drive(requests, CONCURRENCY, raw.clone()).await?);
        concurrent[2].push(drive(requests, CONCURRENCY, same.clone()).await?);
        concurrent[0].push(drive(requests, CONCURRENCY, ours.clone()).await?);
        for (side, name) in NAMES.iter().enumerate() {
            row(&format!("  {name}, sequential"), &sequential[side][round - 1]);
        }
        for (side, name) in NAMES.iter().enumerate() {
            row(&format!("  {name}, 100 concurrent"), &concurrent[side][round - 1]);
        }
    }
    let sequential = sequential.each_ref().map(|runs| median(runs));
    let concurrent = concurrent.each_ref().map(|runs| median(runs));
    println!("medians over {rounds} rounds");
    for (side, name) in NAMES.iter().enumerate() {
        row(&format!("{name}, sequential"), &sequential[side]);
    }
    for (side, name) in NAMES.iter().enumerate() {
        row(&format!("{name}, 100 concurrent"), &concurrent[side]);
    }
    ratio("sequential", "raw", &sequential[0], &sequential[1]);
    ratio("sequential", "same", &sequential[0], &sequential[2]);
    ratio("100 concurrent", "raw", &concurrent[0], &concurrent[1]);
    ratio("100 concurrent", "same", &concurrent[0], &concurrent[2]);

    caller.shutdown().await?;
    server.shutdown().await?;
    same_client_connection.close(200, "done".into()).await?;
    same_server.close(200, "done".into()).await?;
    raw_client_connection.close(200, "done".into()).await?;
    raw_server.close(200, "done".into()).await?;
    let admin = eventing_amqp::AmqpTransport::connect(&url, eventing_amqp::AmqpOptions::default()).await?;
    admin.delete_queue(&format!("request.{}", Add::NAME)).await?;
    admin.delete_queue(&same_queue).await?;
    admin.delete_exchange(&exchange).await?;
    eventing::transport::Transport::close(&admin).await?;
    Ok(())
}

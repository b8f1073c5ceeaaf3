//! eventing against hand-written lapin on the same RabbitMQ, same workload, one process,
//! one run: a ~134-byte JSON event, durable exchange and queue, persistent messages,
//! publisher confirms, 1000 publishes in flight, prefetch 1000.
//!
//! `cargo run --release --example bench_amqp -- --messages 100000 [--url amqp://...]`
//!
//! Each side publishes all messages (timed until the last confirm), then consumes them
//! (timed until the last is handled and acknowledged). The hand-written side runs twice:
//! with the same message properties eventing sends (the same bytes on the wire: the ratio
//! that compares like with like) with its consumer loop on `main`'s task and again on a
//! spawned task (the way a service runs it), and with minimal properties.
//!
//! `-- --property-costs [--rounds 3]` measures instead what each property eventing sends
//! costs on the wire: the hand-written side (consumer on a spawned task) with all of them,
//! then with each one left out, alternated over the rounds; it prints every run and each
//! variant's median consume and publish rate against the median with all properties.
//! `-- --eventing-only` runs eventing's side alone (for a profiler).

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventing::{Context, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use eventing_amqp::{AmqpOptions, AmqpTransport};
use eventing_examples::{Progress, status_kib};
use futures_util::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const IN_FLIGHT: usize = 1000;
const PREFETCH: u16 = 1000;

/// The benchmark event: 134 bytes of JSON.
#[event(name = "bench.order_settled", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderSettled {
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: u64,
    pub currency: String,
    pub settled_at: String,
}

fn order(n: u64) -> OrderSettled {
    OrderSettled {
        order_id: format!("ord-{n:012}"),
        customer_id: format!("cus-{:08}", n % 50_000),
        amount_cents: 10_000 + n % 90_000,
        currency: "EUR".into(),
        settled_at: "2026-11-23T20:00:00Z".into(),
    }
}

#[derive(Debug)]
pub struct Settle {
    progress: Arc<Progress>,
}

impl FromState for Settle {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { progress: Arc::clone(state.get::<Arc<Progress>>()?) })
    }
}

#[event_listener(concurrency = 1000, prefetch = 1000)]
impl Listener<OrderSettled> for Settle {
    async fn on(&self, order: OrderSettled, _ctx: &Context) -> Result<(), HandlerError> {
        std::hint::black_box(order);
        self.progress.handled_one();
        Ok(())
    }
}

struct Args {
    messages: u64,
    url: String,
    property_costs: bool,
    eventing_only: bool,
    rounds: usize,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str| argv.iter().position(|arg| arg == flag).and_then(|i| argv.get(i + 1)).cloned();
    Args {
        messages: value("--messages").and_then(|n| n.parse().ok()).unwrap_or(100_000),
        url: value("--url").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        property_costs: argv.iter().any(|arg| arg == "--property-costs"),
        eventing_only: argv.iter().any(|arg| arg == "--eventing-only"),
        rounds: value("--rounds").and_then(|n| n.parse().ok()).unwrap_or(3),
    }
}

fn rate(messages: u64, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64()
}

/// Which properties the hand-written side sends.
#[derive(Clone, Copy, PartialEq)]
enum RawProperties {
    /// The same metadata eventing sends: message id, correlation id, type, timestamp, app
    /// id, content type, delivery mode. The fair comparison: the same bytes on the wire.
    SameAsEventing,
    /// Only content type, delivery mode, message id and type: less for the broker to parse.
    Minimal,
    /// The same as eventing, but for one property (`--property-costs`).
    AllBut(Property),
}

/// A message property eventing sends, for `--property-costs`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Property {
    MessageId,
    CorrelationId,
    Type,
    Timestamp,
    AppId,
    ContentType,
}

impl Property {
    const ALL: [Property; 6] = [
        Property::MessageId,
        Property::CorrelationId,
        Property::Type,
        Property::Timestamp,
        Property::AppId,
        Property::ContentType,
    ];

    fn name(self) -> &'static str {
        match self {
            Property::MessageId => "message_id",
            Property::CorrelationId => "correlation_id",
            Property::Type => "type",
            Property::Timestamp => "timestamp",
            Property::AppId => "app_id",
            Property::ContentType => "content_type",
        }
    }
}

/// The properties of one hand-written publish.
fn raw_properties(sent: RawProperties, message_id: String) -> BasicProperties {
    let dropped = match sent {
        RawProperties::AllBut(property) => Some(property),
        _ => None,
    };
    let keep = |property: Property| dropped != Some(property);
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if keep(Property::ContentType) {
        properties = properties.with_content_type("application/json".into());
    }
    if keep(Property::Type) {
        properties = properties.with_type("bench.order_settled".into());
    }
    if sent != RawProperties::Minimal {
        if keep(Property::CorrelationId) {
            properties = properties.with_correlation_id(message_id.as_str().into());
        }
        if keep(Property::AppId) {
            properties = properties.with_app_id("bench_amqp".into());
        }
        if keep(Property::Timestamp) {
            properties = properties.with_timestamp(1_795_464_000);
        }
    }
    if keep(Property::MessageId) {
        properties = properties.with_message_id(message_id.into());
    }
    properties
}

/// Where the hand-written consumer loop runs.
#[derive(Clone, Copy, PartialEq)]
enum ConsumerTask {
    /// In `main`'s own task (`block_on` on the main thread).
    Main,
    /// On a spawned task on the runtime's workers: the way a service runs its consumers,
    /// and how eventing runs its own.
    Spawned,
}

/// Raw lapin: what a careful hand-written service does.
async fn raw_lapin(
    url: &str,
    messages: u64,
    stamp: &str,
    sent: RawProperties,
    task: ConsumerTask,
) -> Result<(f64, f64), BoxError> {
    let variant = match (sent, task) {
        (RawProperties::Minimal, _) => "minimal",
        (RawProperties::SameAsEventing, ConsumerTask::Main) => "same",
        (RawProperties::SameAsEventing, ConsumerTask::Spawned) => "spawned",
        (RawProperties::AllBut(property), _) => property.name(),
    };
    let exchange = format!("bench-raw-{variant}-{stamp}");
    let queue = format!("bench-raw-{variant}-{stamp}.order_settled");
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "bench.order_settled".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let started = Instant::now();
    futures_util::stream::iter(0..messages)
        .map(|n| {
            let channel = &channel;
            let exchange = &exchange;
            async move {
                let body = serde_json::to_vec(&order(n))?;
                // A 36-character id, as long as the UUIDs eventing sends.
                let message_id = format!("{:08x}-0000-4000-8000-{n:012x}", n.wrapping_mul(2_654_435_761) as u32);
                let properties = raw_properties(sent, message_id);
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        "bench.order_settled".into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await?
                    .await?;
                match confirm {
                    Confirmation::Ack(None) => Ok::<(), BoxError>(()),
                    other => Err(format!("not confirmed: {other:?}").into()),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    let publish = rate(messages, started.elapsed());

    let consume_channel = connection.create_channel().await?;
    consume_channel.basic_qos(PREFETCH, BasicQosOptions { global: false }).await?;
    let consumer = consume_channel
        .basic_consume(queue.as_str().into(), "bench-raw".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let started = Instant::now();
    match task {
        ConsumerTask::Main => consume_raw(consumer, messages).await?,
        ConsumerTask::Spawned => tokio::spawn(consume_raw(consumer, messages)).await??,
    }
    let consume = rate(messages, started.elapsed());
    channel.queue_delete(queue.as_str().into(), Default::default()).await?;
    channel.exchange_delete(exchange.as_str().into(), Default::default()).await?;
    connection.close(200, "done".into()).await?;
    Ok((publish, consume))
}

/// Consumes `messages` deliveries, decoding each, acknowledged in batches with `multiple`:
/// the strongest hand-written consumer (one ack frame per ACK_BATCH deliveries), not a
/// strawman that waits on every ack.
async fn consume_raw(mut consumer: lapin::Consumer, messages: u64) -> Result<(), BoxError> {
    const ACK_BATCH: u64 = 250;
    let mut received = 0;
    while received < messages {
        let Some(delivery) = consumer.next().await else { break };
        let delivery = delivery?;
        let order: OrderSettled = serde_json::from_slice(&delivery.data)?;
        std::hint::black_box(order);
        received += 1;
        if received % ACK_BATCH == 0 || received == messages {
            delivery.ack(BasicAckOptions { multiple: true }).await?;
        }
    }
    Ok(())
}

/// eventing: the same event through `#[event]`, `Bus::publish` and `#[event_listener]`.
async fn with_eventing(url: &str, messages: u64, stamp: &str) -> Result<(f64, f64), BoxError> {
    let service = format!("bench-eventing-{stamp}");
    let exchange = format!("bench-eventing-{stamp}");
    let progress = Arc::new(Progress::default());
    progress.expect(messages);
    let configured = || {
        eventing::builder()
            .url(url.to_owned())
            .service(service.clone())
            .exchange(exchange.clone())
            .state(Arc::clone(&progress))
    };
    // Declare the topology, then publish with no consumer running (as the raw side does).
    configured().start().await?.shutdown().await?;
    let publisher = configured().listeners(|_| false).start().await?;
    let started = Instant::now();
    futures_util::stream::iter(0..messages)
        .map(|n| {
            let publisher = &publisher;
            async move { publisher.publish(&order(n)).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    let publish = rate(messages, started.elapsed());
    publisher.shutdown().await?;

    let done = progress.done.notified();
    tokio::pin!(done);
    done.as_mut().enable();
    let started = Instant::now();
    let consumer = configured().start().await?;
    done.await;
    let consume = rate(messages, started.elapsed());
    let topology = consumer.topology().clone();
    consumer.shutdown().await?;

    // Everything the bus declared: the listener and dead-letter queues, the delay tiers, the
    // exchanges.
    let admin = AmqpTransport::connect(url, AmqpOptions::default()).await?;
    for queue in &topology.queues {
        admin.delete_queue(&queue.name).await?;
    }
    for exchange in &topology.exchanges {
        admin.delete_exchange(exchange).await?;
    }
    Ok((publish, consume))
}

#[allow(clippy::print_stdout)] // the benchmark's report is its output
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let Args { messages, url, property_costs: costs, eventing_only, rounds } = args();
    let stamp = format!("{}", std::process::id());
    if costs {
        return property_costs(&url, messages, &stamp, rounds).await;
    }
    if eventing_only {
        let (publish, consume) = with_eventing(&url, messages, &stamp).await?;
        println!("publish_msgs_per_s={publish:.0}");
        println!("consume_msgs_per_s={consume:.0}");
        return Ok(());
    }
    let body_len = serde_json::to_vec(&order(123_456))?.len();
    let same = RawProperties::SameAsEventing;
    let (raw_publish, raw_consume) = raw_lapin(&url, messages, &stamp, same, ConsumerTask::Main).await?;
    let (publish, consume) = with_eventing(&url, messages, &stamp).await?;
    let (_, spawned_consume) = raw_lapin(&url, messages, &stamp, same, ConsumerTask::Spawned).await?;
    let (minimal_publish, minimal_consume) =
        raw_lapin(&url, messages, &stamp, RawProperties::Minimal, ConsumerTask::Main).await?;
    println!("messages={messages} body_bytes={body_len} in_flight={IN_FLIGHT} prefetch={PREFETCH}");
    println!("publish_msgs_per_s={publish:.0}");
    println!("consume_msgs_per_s={consume:.0}");
    println!("raw_lapin_publish_msgs_per_s={raw_publish:.0}");
    println!("raw_lapin_consume_msgs_per_s={raw_consume:.0}");
    println!("publish_ratio={:.2}", publish / raw_publish);
    println!("consume_ratio={:.2}", consume / raw_consume);
    println!("raw_lapin_spawned_consumer_consume_msgs_per_s={spawned_consume:.0}");
    println!("consume_ratio_vs_spawned_consumer={:.2}", consume / spawned_consume);
    println!("raw_lapin_minimal_properties_publish_msgs_per_s={minimal_publish:.0}");
    println!("raw_lapin_minimal_properties_consume_msgs_per_s={minimal_consume:.0}");
    println!("publish_ratio_vs_minimal={:.2}", publish / minimal_publish);
    println!("consume_ratio_vs_minimal={:.2}", consume / minimal_consume);
    if let Some(peak) = status_kib("VmHWM:") {
        println!("peak_rss_kib={peak}");
    }
    Ok(())
}

/// `--property-costs`: the hand-written side with every property eventing sends, then with
/// each one left out, alternated over `rounds`; medians against all properties.
#[allow(clippy::print_stdout)] // the benchmark's report is its output
async fn property_costs(url: &str, messages: u64, stamp: &str, rounds: usize) -> Result<(), BoxError> {
    let variants: Vec<RawProperties> = std::iter::once(RawProperties::SameAsEventing)
        .chain(Property::ALL.into_iter().map(RawProperties::AllBut))
        .collect();
    let name = |variant: RawProperties| match variant {
        RawProperties::AllBut(property) => format!("without {}", property.name()),
        _ => "all properties".to_owned(),
    };
    let mut figures: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
    for round in 1..=rounds {
        for (index, &variant) in variants.iter().enumerate() {
            let (publish, consume) = raw_lapin(url, messages, stamp, variant, ConsumerTask::Spawned).await?;
            println!(
                "round {round} {:<28} publish {publish:>8.0} msgs/s   consume {consume:>8.0} msgs/s",
                name(variant)
            );
            figures[index].push((publish, consume));
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let medians: Vec<(f64, f64)> = figures
        .iter()
        .map(|runs| {
            let mut publish: Vec<f64> = runs.iter().map(|run| run.0).collect();
            let mut consume: Vec<f64> = runs.iter().map(|run| run.1).collect();
            (median(&mut publish), median(&mut consume))
        })
        .collect();
    println!("medians over {rounds} rounds, {messages} messages each");
    for (variant, (publish, consume)) in variants.iter().zip(&medians) {
        println!(
            "{:<28} publish {publish:>8.0} msgs/s ({:.2}x)   consume {consume:>8.0} msgs/s ({:.2}x)",
            name(*variant),
            publish / medians[0].0,
            consume / medians[0].1
        );
    }
    Ok(())
}

//! The request/response suite on RabbitMQ, and what only RabbitMQ shows: a plain AMQP
//! client (raw lapin) calls and serves requests through direct reply-to, and no queue is
//! declared per request or per caller.

mod request_suite;
mod support;

use std::time::Duration;

use eventing::Request as _;
use eventing_amqp::{AmqpOptions, AmqpTransport};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use request_suite::{Add, Backend, Echo, Sum};
use support::broker::reachable_amqp_url;

/// The local RabbitMQ; each test uses its own exchange and request types.
struct Rabbit {
    url: String,
}

impl Backend for Rabbit {
    fn builder(&self) -> eventing::Builder {
        eventing::builder().url(self.url.clone())
    }

    async fn cleanup(&self, exchange: &str, queues: &[String]) {
        let admin = AmqpTransport::connect(&self.url, AmqpOptions::default().with_connection_name("requests-admin"))
            .await
            .expect("admin connection");
        for queue in queues {
            admin.delete_queue(queue).await.expect("delete queue");
        }
        admin.delete_exchange(exchange).await.expect("delete exchange");
        eventing::transport::Transport::close(&admin).await.expect("close");
    }
}

async fn rabbit() -> Option<Rabbit> {
    reachable_amqp_url().map(|url| Rabbit { url })
}

request_suite!(rabbit);

fn list_queues() -> Vec<String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "--quiet", "--no-table-headers", "name"])
        .output()
        .expect("rabbitmqctl runs");
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(|l| l.trim().to_owned()).collect();
    names.sort();
    names
}

/// A raw lapin client calls `reqsuite.add` the way any AMQP client in another language
/// would: publish to the exchange with `reply_to = amq.rabbitmq.reply-to` and a
/// correlation id, consume the reply pseudo-queue with no-ack on the same channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_amqp_client_calls_a_request() {
    let Some(backend) = rabbit().await else { return };
    let exchange = request_suite::exchange("rawcall");
    let server = request_suite::bus(&backend, &exchange, &[Add::NAME]).await;

    let connection = Connection::connect(&backend.url, ConnectionProperties::default()).await.expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "raw-client".into(),
            BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await
        .expect("consume reply-to");
    channel
        .basic_publish(
            exchange.as_str().into(),
            Add::NAME.into(),
            BasicPublishOptions::default(),
            br#"{"x":20,"y":22}"#,
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id("raw-call-1".into())
                .with_content_type("application/json".into())
                .with_expiration("5000".into()),
        )
        .await
        .expect("publish");
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .expect("a reply in time")
        .expect("a delivery")
        .expect("no error");
    assert_eq!(reply.properties.correlation_id().as_ref().map(|id| id.as_str()), Some("raw-call-1"));
    // What the README promises a reply carries, and nothing the caller would not read.
    assert_eq!(reply.properties.content_type().as_ref().map(|kind| kind.as_str()), Some("application/json"));
    assert_eq!(
        (reply.properties.message_id(), reply.properties.kind(), reply.properties.headers()),
        (&None, &None, &None),
        "a successful reply carries only its correlation id and content type"
    );
    let sum: serde_json::Value = serde_json::from_slice(&reply.data).expect("JSON");
    assert_eq!(sum, serde_json::json!({ "answer": 42 }));
    connection.close(200, "done".into()).await.expect("close");
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &[format!("request.{}", Add::NAME)]).await;
}

/// A raw lapin server serves `reqsuite.echo` for an eventing caller: it consumes the
/// request queue and replies to `reply_to` through the default exchange with the
/// correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_amqp_server_serves_a_request() {
    let Some(backend) = rabbit().await else { return };
    let exchange = request_suite::exchange("rawserve");
    // Only the queue and binding, declared as eventing would (the raw server's choice).
    let queue = format!("request.{}.raw-{}", Echo::NAME, std::process::id());
    let connection = Connection::connect(&backend.url, ConnectionProperties::default()).await.expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            Echo::NAME.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let mut requests = channel
        .basic_consume(
            queue.as_str().into(),
            "raw-server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let serving = tokio::spawn(async move {
        if let Some(Ok(delivery)) = requests.next().await {
            let request: serde_json::Value = serde_json::from_slice(&delivery.data).expect("JSON");
            let n = request["n"].as_u64().expect("n");
            let reply_to = delivery.properties.reply_to().clone().expect("reply_to");
            let correlation = delivery.properties.correlation_id().clone().expect("correlation id");
            assert!(delivery.properties.expiration().is_some(), "the request carries its expiration");
            channel
                .basic_publish(
                    "".into(),
                    reply_to.as_str().into(),
                    BasicPublishOptions::default(),
                    (n * 3).to_string().as_bytes(),
                    BasicProperties::default().with_correlation_id(correlation),
                )
                .await
                .expect("reply");
            delivery.acker.ack(BasicAckOptions::default()).await.expect("ack");
        }
        channel
    });
    let caller = request_suite::bus(&backend, &exchange, &[]).await;
    let reply = caller.request_within(&Echo { n: 14 }, Duration::from_secs(5)).await.expect("reply");
    assert_eq!(reply, 42);
    let channel = serving.await.expect("server");
    channel.queue_delete(queue.as_str().into(), Default::default()).await.expect("delete queue");
    connection.close(200, "done".into()).await.expect("close");
    caller.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &[]).await;
}

/// Many requests from several callers declare nothing but the request queue itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_queue_per_request_or_per_caller() {
    let Some(backend) = rabbit().await else { return };
    let exchange = request_suite::exchange("noqueues");
    let server = request_suite::bus(&backend, &exchange, &[Add::NAME]).await;
    let before = list_queues();
    let callers =
        [request_suite::bus(&backend, &exchange, &[]).await, request_suite::bus(&backend, &exchange, &[]).await];
    for caller in &callers {
        for x in 0..20 {
            assert_eq!(caller.request(&Add { x, y: 1 }).await.expect("reply"), Sum { answer: x + 1 });
        }
    }
    let during = list_queues();
    let added: Vec<&String> = during.iter().filter(|name| !before.contains(name)).collect();
    // Other tests (of this binary and others) declare queues meanwhile: the only ones a
    // request may add are request queues of this suite, never a server-named (`amq.gen-*`)
    // or per-caller queue.
    assert!(
        added.iter().all(|name| name.starts_with("request.reqsuite.") && !name.contains("reqs-")),
        "queues appeared for requests or callers: {added:?}"
    );
    assert!(during.contains(&format!("request.{}", Add::NAME)));
    for caller in &callers {
        caller.shutdown().await.expect("shutdown");
    }
    server.shutdown().await.expect("shutdown");
    backend.cleanup(&exchange, &[format!("request.{}", Add::NAME)]).await;
}

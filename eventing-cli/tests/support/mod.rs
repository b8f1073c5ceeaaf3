//! What the CLI tests share: the broker (or the rule when it is missing), unique names,
//! queues filled with plain AMQP, and running the built `eventing` binary.
#![allow(dead_code)] // each test binary uses a part

use std::process::{Output, Stdio};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// The broker URL when RabbitMQ answers; `None` after a loud message on a laptop without one;
/// a panic in CI (`CI` set), where the RabbitMQ tests must run.
pub fn broker_url() -> Option<String> {
    let url =
        std::env::var("EVENTING_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    if std::net::TcpStream::connect_timeout(&"127.0.0.1:5672".parse().ok()?, Duration::from_secs(2)).is_ok() {
        return Some(url);
    }
    assert!(std::env::var_os("CI").is_none(), "RabbitMQ is not reachable, and CI must run the RabbitMQ tests");
    eprintln!("\n!!! SKIPPED: RabbitMQ is not reachable at 127.0.0.1:5672 !!!\n");
    None
}

/// A name no other test run uses: `<prefix>-<pid>-<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{stamp}", std::process::id())
}

/// A plain AMQP connection with a confirming channel, to set the scene as an outside client.
pub struct Plain {
    /// The connection.
    pub connection: Connection,
    /// A channel in confirm mode.
    pub channel: Channel,
}

impl Plain {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Self {
        let connection = Connection::connect(url, ConnectionProperties::default()).await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        Self { connection, channel }
    }

    /// Declares a durable classic queue without arguments: the shape of a dead-letter queue.
    pub async fn declare(&self, queue: &str) {
        self.declare_with(queue, true, &[]).await;
    }

    /// Declares a queue, durable or not, with `arguments`.
    pub async fn declare_with(&self, queue: &str, durable: bool, arguments: &[(&str, AMQPValue)]) {
        let options = QueueDeclareOptions { durable, ..QueueDeclareOptions::default() };
        let mut table = FieldTable::default();
        for (name, value) in arguments {
            table.insert((*name).into(), value.clone());
        }
        self.channel.queue_declare(queue.into(), options, table).await.expect("declare");
    }

    /// Publishes `body` with `headers` straight to `queue`, confirmed.
    pub async fn put(&self, queue: &str, body: &[u8], headers: &[(&str, &str)]) {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), AMQPValue::LongString((*value).into()));
        }
        let properties = BasicProperties::default()
            .with_message_id(unique("message").as_str().into())
            .with_type("cli.probe".into())
            .with_headers(table);
        self.channel
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, properties)
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// The ready messages of `queue` (passive declare, on a channel of its own).
    pub async fn count(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(queue.into(), options, FieldTable::default()).await.expect("exists");
        let _ = channel.close(200, "counted".into()).await;
        declared.message_count()
    }

    /// Deletes `queue`.
    pub async fn delete(&self, queue: &str) {
        self.channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await.expect("delete");
    }
}

/// Deletes the queues and exchanges it was given when dropped, also when the test panics,
/// so a failing test leaves nothing on the broker.
pub struct Cleanup {
    url: String,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Cleanup {
    /// Nothing to delete yet.
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), queues: Vec::new(), exchanges: Vec::new() }
    }

    /// Deletes `queue` at the end.
    pub fn queue(&mut self, queue: &str) -> String {
        self.queues.push(queue.to_owned());
        queue.to_owned()
    }

    /// Deletes `exchange` at the end.
    pub fn exchange(&mut self, exchange: &str) -> String {
        self.exchanges.push(exchange.to_owned());
        exchange.to_owned()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, queues, exchanges) =
            (self.url.clone(), std::mem::take(&mut self.queues), std::mem::take(&mut self.exchanges));
        // A runtime of its own on a thread of its own: drop may run inside a test's runtime.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let connection = Connection::connect(&url, ConnectionProperties::default()).await.expect("connect");
                let channel = connection.create_channel().await.expect("channel");
                for queue in &queues {
                    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.expect("delete");
                }
                for exchange in &exchanges {
                    channel
                        .exchange_delete(exchange.as_str().into(), lapin::options::ExchangeDeleteOptions::default())
                        .await
                        .expect("delete exchange");
                }
                let _ = connection.close(200, "cleaned up".into()).await;
            });
        })
        .join();
        if deleted.is_err() && !std::thread::panicking() {
            panic!("cleaning up the test's queues failed");
        }
    }
}

/// Runs the built `eventing` binary with `EVENTING_URL=url` and stdin closed (killed when
/// the returned future is dropped, e.g. by a timeout).
pub async fn eventing(args: &[&str], url: &str) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_eventing"))
        .args(args)
        .env("EVENTING_URL", url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("the eventing binary runs")
}

/// What the command printed.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the command printed as errors.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

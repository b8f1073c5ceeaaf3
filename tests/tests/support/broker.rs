//! The RabbitMQ the tests use, and the rule for when it is missing: in CI (`CI` set) a
//! missing broker fails the test; on a laptop the test is skipped with a loud message.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The broker URL: `EVENTING_TEST_AMQP_URL`, else the local default.
pub fn amqp_url() -> String {
    std::env::var("EVENTING_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The URL when a broker answers on it; `None` (after a loud message) on a laptop without
/// one; a panic in CI, where RabbitMQ tests must run.
pub fn reachable_amqp_url() -> Option<String> {
    let url = amqp_url();
    let address = url
        .split_once("://")
        .map(|(_, rest)| rest.rsplit_once('@').map_or(rest, |(_, host)| host))
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
        .unwrap_or_default();
    let address = if address.contains(':') { address } else { format!("{address}:5672") };
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(url);
    }
    if std::env::var_os("CI").is_some() {
        panic!("RabbitMQ is not reachable at {address}, and CI must run the RabbitMQ tests");
    }
    eprintln!(
        "\n!!! SKIPPED: RabbitMQ is not reachable at {address}; start it (rabbitmq-server -detached) to run this test !!!\n"
    );
    None
}

/// Deletes every queue and exchange whose name starts with `prefix` (a test's service
/// name: its delay tiers included), and the exchange: what a test declared.
pub async fn delete_scope(url: &str, prefix: &str, exchange: &str) {
    let names = |what: &str| {
        let output = std::process::Command::new("rabbitmqctl")
            .args([what, "--quiet", "--no-table-headers", "name"])
            .output()
            .expect("rabbitmqctl runs");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|name| name.starts_with(prefix))
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let admin = eventing_amqp::AmqpTransport::connect(url, eventing_amqp::AmqpOptions::default())
        .await
        .expect("admin connection");
    for queue in names("list_queues") {
        admin.delete_queue(&queue).await.expect("delete queue");
    }
    for exchange in names("list_exchanges").iter().map(String::as_str).chain([exchange]) {
        admin.delete_exchange(exchange).await.expect("delete exchange");
    }
    eventing::transport::Transport::close(&admin).await.expect("close admin");
}

/// A name no other test or run uses: `<prefix>-<process id>-<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), stamp())
}

/// A service name and an exchange name no other test or run uses.
pub fn scope(prefix: &str) -> (String, String) {
    let stamp = stamp();
    (format!("{prefix}-{}-{stamp}", std::process::id()), format!("{prefix}-exchange-{stamp}"))
}

fn stamp() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0)
}

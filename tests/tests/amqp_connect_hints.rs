//! Connection errors that point at the cause: `amqps://` against RabbitMQ's plain port
//! failed with rustls' bare `InvalidContentType`; it now says to check TLS.

mod support;

use std::time::Duration;

use eventing_amqp::{AmqpOptions, AmqpTransport};
use support::broker::{amqp_url, reachable_amqp_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_against_a_plain_port_hints_at_tls() {
    let Some(_) = reachable_amqp_url() else { return };
    // The test broker's plain AMQP listener, spoken to with TLS.
    let url = amqp_url().replacen("amqp://", "amqps://", 1);
    let connecting = AmqpTransport::connect(&url, AmqpOptions::default());
    let error = tokio::time::timeout(Duration::from_secs(15), connecting)
        .await
        .expect("fails promptly")
        .expect_err("TLS to a plain port fails");
    let text = error.to_string();
    assert!(text.contains("TLS") && text.contains("amqp://"), "{text}");
    assert!(!text.contains(":guest@"), "the password leaked: {text}");
}

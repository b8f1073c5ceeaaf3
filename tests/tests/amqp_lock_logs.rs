//! Taking, refusing and releasing the recurring-work lock logs no connection error: releasing
//! it closed the lock's connection under its open channel, and lapin logged `ERROR
//! lapin::channels: Connection error error=invalid channel state: Closing (channel.close)`
//! (seen in `amqp_recurring`'s output, 5 runs in 6). Its own test binary, because it
//! installs the global log subscriber: lapin logs from its own threads.
//!
//! Not asserted: each refused try also makes lapin log the broker's `RESOURCE_LOCKED`
//! channel close at ERROR (`lapin::channel: Channel closed`), which a declare that fails
//! cannot avoid; see the README's recurring work section.

mod support;

use std::time::Duration;

use eventing::transport::Transport;
use eventing_amqp::{AmqpOptions, AmqpTransport};
use support::broker::{reachable_amqp_url, unique};
use support::logs::Captured;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_refusing_and_releasing_the_lock_logs_no_connection_error() {
    let Some(url) = reachable_amqp_url() else { return };
    let captured = Captured::default();
    captured.install("info");
    let name = format!("{}.recurring.beat", unique("lock-logs"));

    let holder = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("connect");
    let standby = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("connect");
    let held = holder.try_lock(&name).await.expect("trying the lock").expect("the first try takes it");
    for _ in 0..10 {
        let refused = standby.try_lock(&name).await.expect("trying the lock again");
        assert!(refused.is_none(), "the lock is held elsewhere");
    }
    // Let lapin's I/O threads finish what the refusals started.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refusing = connection_errors(&captured);
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let releasing = connection_errors(&captured) - refusing;
    standby.close().await.expect("closing");
    holder.close().await.expect("closing");
    assert_eq!((refusing, releasing), (0, 0), "connection errors logged (refusing the lock, releasing it)");
}

/// How many `Connection error` lines lapin logged so far.
fn connection_errors(captured: &Captured) -> usize {
    captured.text().lines().filter(|line| line.contains("Connection error")).count()
}

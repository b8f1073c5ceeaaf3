//! `eventing dlq list | requeue | purge` against RabbitMQ dead letters made by a real bus.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventing::{Context, Event, HandlerError, Listener, event, event_listener};
use eventing_amqp::{AmqpOptions, AmqpTransport};
use serde::{Deserialize, Serialize};
use support::{broker_url, eventing, stderr, stdout};

/// Whether the listener refuses its events (permanently, so they are dead-lettered at once).
static REFUSE: AtomicBool = AtomicBool::new(true);

#[event(name = "cli.refund_requested", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundRequested {
    pub n: u64,
}

#[derive(Debug, Default)]
pub struct Refund;

#[event_listener]
impl Listener<RefundRequested> for Refund {
    async fn on(&self, refund: RefundRequested, ctx: &Context) -> Result<(), HandlerError> {
        if REFUSE.load(Ordering::SeqCst) {
            return Err(HandlerError::permanent_msg(format!("refund {} refused: ledger closed", refund.n)));
        }
        assert_eq!(ctx.attempt(), 1, "a requeued dead letter starts over");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_requeued_and_purged() {
    let Some(url) = broker_url() else { return };
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let service = format!("cli-{}-{stamp}", std::process::id());
    let exchange = format!("cli-exchange-{stamp}");
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .start()
        .await
        .expect("start");
    let dead_letters = eventing::naming::dead_letter_queue(&service, RefundRequested::NAME, "refund");
    let queue = eventing::naming::listener_queue(&service, RefundRequested::NAME, "refund");
    for n in 1..=3 {
        bus.publish(&RefundRequested { n }).await.expect("publish");
    }
    let admin = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("admin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while admin.message_count(&dead_letters).await.expect("count") < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the refunds were never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let listed = eventing(&["dlq", "list", &dead_letters], &url).await;
    assert!(listed.status.success(), "{listed:?}");
    let text = stdout(&listed);
    assert!(text.contains(&format!("3 dead letter(s) in `{dead_letters}`")), "{text}");
    assert!(text.contains("reason:   permanent: refund 2 refused: ledger closed"), "{text}");
    assert!(text.contains("listener: refund  attempts: 1"), "{text}");
    assert!(text.contains(&format!("from:     queue {queue}")), "{text}");
    assert!(text.contains("failed:   first 20"), "{text}");

    REFUSE.store(false, Ordering::SeqCst);
    let requeued = eventing(&["dlq", "requeue", &dead_letters, "--limit", "2"], &url).await;
    assert!(requeued.status.success(), "{requeued:?}");
    assert!(stdout(&requeued).contains(&format!("requeued 2 dead letter(s) from `{dead_letters}`")));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while admin.message_count(&queue).await.expect("count") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the requeued refunds were not handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin.message_count(&dead_letters).await.expect("count"), 1);

    let purged = eventing(&["dlq", "purge", &dead_letters, "--yes"], &url).await;
    assert!(stdout(&purged).contains(&format!("purged 1 dead letter(s) from `{dead_letters}`")), "{purged:?}");
    assert_eq!(admin.message_count(&dead_letters).await.expect("count"), 0);

    let missing = eventing(&["dlq", "list", "no.such.queue.dead_letter"], &url).await;
    assert!(!missing.status.success());
    let error = stderr(&missing);
    assert!(error.contains("queue `no.such.queue.dead_letter`") && error.contains("does not exist"), "{error}");

    let unusable = eventing(&["dlq", "requeue"], &url).await;
    assert_eq!(unusable.status.code(), Some(2), "a missing argument is a usage error");

    bus.shutdown().await.expect("shutdown");
    // Everything the test declared: its queues and the delay tiers' exchanges start with the
    // service.
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "--quiet", "--no-table-headers", "name"])
        .output()
        .expect("rabbitmqctl runs");
    for name in String::from_utf8_lossy(&listed.stdout).lines().map(str::trim).filter(|name| name.starts_with(&service))
    {
        admin.delete_queue(name).await.expect("delete");
    }
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["list_exchanges", "--quiet", "--no-table-headers", "name"])
        .output()
        .expect("rabbitmqctl runs");
    for name in String::from_utf8_lossy(&listed.stdout).lines().map(str::trim).filter(|name| name.starts_with(&service))
    {
        admin.delete_exchange(name).await.expect("delete");
    }
    admin.delete_exchange(&exchange).await.expect("delete exchange");
}

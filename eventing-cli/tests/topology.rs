//! `eventing topology` and `eventing topology delete`, run in-process through
//! `eventing_cli::run_in` so the listener of this test binary is linked in.

mod support;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use eventing::transport::{QueueLifetime, QueueRole};
use eventing::{Context, Event, HandlerError, Listener, event, event_listener};
use eventing_cli::Console;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};
use support::{Cleanup, Plain, broker_url, unique};

#[event(name = "cli.parcel_lost", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParcelLost {
    pub parcel: u64,
}

#[derive(Debug, Default)]
pub struct Reimburse;

#[event_listener]
impl Listener<ParcelLost> for Reimburse {
    async fn on(&self, lost: ParcelLost, _: &Context) -> Result<(), HandlerError> {
        Err(HandlerError::permanent_msg(format!("parcel {} is not insured", lost.parcel)))
    }
}

/// A listener whose queue is named like a dead-letter queue: `<service>.cli.parcel_lost.dead_letter`.
#[derive(Debug, Default)]
pub struct Track;

#[event_listener(name = "dead_letter")]
impl Listener<ParcelLost> for Track {
    async fn on(&self, _: ParcelLost, _: &Context) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// What one run printed, and how it ended.
struct Run {
    code: ExitCode,
    out: String,
    err: String,
}

/// Runs `eventing <args>` in this process, with `answer` typed on a terminal when given
/// and no terminal otherwise.
async fn eventing(args: &[&str], answer: Option<&str>) -> Run {
    let args = std::iter::once("eventing").chain(args.iter().copied()).map(OsString::from);
    let mut input = answer.unwrap_or_default().as_bytes();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let console = Console { input: &mut input, interactive: answer.is_some(), out: &mut out, err: &mut err };
    let code = eventing_cli::run_in(args, console).await;
    Run { code, out: String::from_utf8_lossy(&out).into_owned(), err: String::from_utf8_lossy(&err).into_owned() }
}

async fn exists(plain: &Plain, queue: &str) -> bool {
    let channel = plain.connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let declared = channel.queue_declare(queue.into(), options, FieldTable::default()).await.is_ok();
    if declared {
        let _ = channel.close(200, "checked".into()).await;
    }
    declared
}

#[tokio::test]
async fn topology_prints_what_the_linked_listeners_declare() {
    let printed = eventing(&["topology", "--service", "shop", "--exchange", "cli-printed"], None).await;
    assert_eq!(printed.code, ExitCode::SUCCESS, "{}", printed.err);
    assert!(printed.out.contains("exchange cli-printed (durable topic)"), "{}", printed.out);
    assert!(printed.out.contains("queue shop.cli.parcel_lost.reimburse (durable; listener)"), "{}", printed.out);
    assert!(printed.out.contains("queue shop.cli.parcel_lost.reimburse.dead_letter (durable; dead letters)"));
    assert!(printed.out.contains("binding shop.cli.parcel_lost.reimburse <- cli-printed on `cli.parcel_lost`"));
}

/// The registry knows better than the name: a listener named `dead_letter` has a queue that
/// ends in `.dead_letter`, and the `dlq` commands of a binary that links it refuse it (before
/// connecting: the URL leads nowhere).
#[tokio::test]
async fn dlq_commands_refuse_a_queue_the_linked_listeners_declare_as_a_listener_queue() {
    let topology = eventing::builder().topology().expect("plan");
    let live = topology
        .queues
        .iter()
        .find(|spec| spec.role == QueueRole::Listener && spec.name.ends_with(".dead_letter"))
        .expect("the `dead_letter` listener's queue");
    for command in ["list", "requeue", "purge"] {
        let mut args = vec!["--url", "amqp://nobody@127.0.0.1:1/%2f", "dlq", command, &live.name];
        if command == "purge" {
            args.push("--yes");
        }
        let refused = eventing(&args, None).await;
        assert_eq!(refused.code, ExitCode::FAILURE, "{command}: {}", refused.out);
        assert!(
            refused.err.contains("the listeners linked into this binary declare it as a listener queue"),
            "{command}: {}",
            refused.err
        );
    }
}

/// The issue's "new user" item: tests and benchmarks left retry queues behind, and nothing
/// deleted a service's topology. `topology delete` does, carefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_delete_removes_the_declared_queues_and_refuses_dead_letters_without_force() {
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let service = unique("cli-topology");
    let exchange = cleanup.exchange(&unique("cli-topology-exchange"));
    let topology = eventing::builder().service(service.clone()).exchange(exchange.clone()).topology().expect("plan");
    let queues: Vec<String> = topology
        .queues
        .iter()
        .filter(|spec| spec.lifetime != QueueLifetime::Exclusive)
        .map(|spec| cleanup.queue(&spec.name))
        .collect();
    let tiers: Vec<String> = topology
        .queues
        .iter()
        .filter(|spec| matches!(spec.role, QueueRole::Delay { .. }))
        .map(|spec| cleanup.exchange(&spec.name))
        .collect();
    assert!(!tiers.is_empty(), "the service's delay tiers are part of it: {queues:?}");
    let dead_letters = eventing::naming::dead_letter_queue(&service, ParcelLost::NAME, "reimburse");

    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .start()
        .await
        .expect("start");
    bus.publish(&ParcelLost { parcel: 7 }).await.expect("publish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while plain.count(&dead_letters).await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the parcel was never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another service's queue on the same exchange keeps the exchange alive.
    let other = cleanup.queue(&unique("cli-topology-other"));
    plain.declare(&other).await;
    plain
        .channel
        .queue_bind(
            other.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");

    let common = ["--url", &url, "topology", "delete", "--service", &service, "--exchange", &exchange];
    let running = eventing(&[&common[..], &["--yes"]].concat(), None).await;
    assert_eq!(running.code, ExitCode::FAILURE, "{}", running.out);
    assert!(running.err.contains("consumer(s): its service is running"), "{}", running.err);
    assert!(running.err.contains(&format!("`{dead_letters}` holds 1 dead letter(s)")), "{}", running.err);
    assert!(running.err.contains("--force"), "{}", running.err);
    bus.shutdown().await.expect("shutdown");

    let unasked = eventing(&[&common[..], &["--force"]].concat(), None).await;
    assert_eq!(unasked.code, ExitCode::FAILURE);
    assert!(unasked.err.contains("--yes"), "{}", unasked.err);
    let declined = eventing(&[&common[..], &["--force"]].concat(), Some("n\n")).await;
    assert_eq!(declined.code, ExitCode::FAILURE);
    for queue in &queues {
        assert!(exists(&plain, queue).await, "`{queue}` was deleted without a confirmation");
    }

    let deleted = eventing(&[&common[..], &["--force"]].concat(), Some("y\n")).await;
    assert_eq!(deleted.code, ExitCode::SUCCESS, "{}", deleted.err);
    for queue in &queues {
        assert!(deleted.out.contains(&format!("deleted queue {queue}\n")), "{}", deleted.out);
        assert!(!exists(&plain, queue).await, "`{queue}` is still there");
    }
    assert!(deleted.out.contains(&format!("kept exchange {exchange}: other queues are still bound to it")));
    for tier in &tiers {
        assert!(deleted.out.contains(&format!("deleted exchange {tier}\n")), "{}", deleted.out);
    }

    plain.delete(&other).await;
    let again = eventing(&[&common[..], &["--yes"]].concat(), None).await;
    assert_eq!(again.code, ExitCode::SUCCESS, "{}", again.err);
    assert!(!again.out.contains("deleted queue"), "nothing left to delete: {}", again.out);
    assert!(again.out.contains(&format!("deleted exchange {exchange}")), "{}", again.out);
}

/// After an upgrade, the per-listener retry queues of earlier versions are left behind. Their
/// retries still expire into the listener's queue (nothing is lost); `topology prune` deletes
/// each one once it is empty, and keeps one that still holds a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_prune_deletes_the_retry_queues_of_earlier_versions_once_empty() {
    use lapin::types::AMQPValue;
    let Some(url) = broker_url() else { return };
    let plain = Plain::connect(&url).await;
    let mut cleanup = Cleanup::new(&url);
    let service = unique("cli-prune");
    let exchange = cleanup.exchange(&unique("cli-prune-exchange"));
    let topology = eventing::builder().service(service.clone()).exchange(exchange.clone()).topology().expect("plan");
    for spec in &topology.queues {
        cleanup.queue(&spec.name);
        if matches!(spec.role, QueueRole::Delay { .. }) {
            cleanup.exchange(&spec.name);
        }
    }
    let declared =
        eventing(&["--url", &url, "topology", "declare", "--service", &service, "--exchange", &exchange], None).await;
    assert_eq!(declared.code, ExitCode::SUCCESS, "{}", declared.err);

    // What earlier versions declared for a durable event's listener: quorum retry queues that
    // dead-letter into the listener's queue, one per wait of its policy (1, 2, 4 and 8 s).
    let queue = eventing::naming::listener_queue(&service, ParcelLost::NAME, "reimburse");
    let old = |ms: u64| eventing::naming::retry_queue(&queue, Duration::from_millis(ms));
    let (empty, holding) = (cleanup.queue(&old(1000)), cleanup.queue(&old(2000)));
    for (retry_queue, ttl) in [(&empty, 1000), (&holding, 2000)] {
        let arguments = [
            ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
            ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
            ("x-dead-letter-routing-key", AMQPValue::LongString(queue.as_str().into())),
            ("x-dead-letter-strategy", AMQPValue::LongString("at-least-once".into())),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ];
        plain.declare_with(retry_queue, true, &arguments).await;
    }
    plain.put(&holding, br#"{"parcel":1}"#, &[]).await;

    let prune = ["--url", url.as_str(), "topology", "prune", "--service", &service, "--exchange", &exchange];
    let first = eventing(&prune, None).await;
    assert_eq!(first.code, ExitCode::SUCCESS, "{}", first.err);
    assert!(first.out.contains(&format!("deleted queue {empty}\n")), "{}", first.out);
    assert!(first.out.contains(&format!("kept queue {holding}: it holds 1 retry(ies)")), "{}", first.out);
    assert!(first.out.contains("pruned 1 retry queue(s) of earlier versions, kept 1"), "{}", first.out);
    assert!(!exists(&plain, &empty).await);

    // The retry returns to the listener's queue, as it always did.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while plain.count(&queue).await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the old retry never returned to `{queue}`");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = eventing(&prune, None).await;
    assert_eq!(second.code, ExitCode::SUCCESS, "{}", second.err);
    assert!(second.out.contains(&format!("deleted queue {holding}\n")), "{}", second.out);
    assert!(!exists(&plain, &holding).await);
    assert!(exists(&plain, &queue).await, "prune leaves the current topology alone");
}

//! Fault test on the shared broker: `rabbitmqctl stop_app`/`start_app` while durable events
//! are being published and consumed. Every event whose publish returned `Ok` (was
//! confirmed) is handled. The app is restarted afterwards even when the test fails.
//!
//! Tests that stop the broker live in this one binary and take [`BROKER`] so they never
//! overlap; cargo runs test binaries one after another, so no other test sees the outage.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventing::{Context, Event, FromState, HandlerError, Listener, MissingState, State, event, event_listener};
use eventing_amqp::{AmqpOptions, AmqpTransport};
use serde::{Deserialize, Serialize};
use support::broker::{reachable_amqp_url, scope};
use support::logs::init_logs;
use tokio::sync::Notify;

/// Serializes the tests that stop the broker.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[event(name = "faults.payment_captured", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub n: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Handled {
    seen: Arc<Mutex<BTreeSet<u64>>>,
    changed: Arc<Notify>,
}

impl Handled {
    async fn wait_for(&self, expected: &BTreeSet<u64>, timeout: Duration) -> Result<(), BTreeSet<u64>> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if expected.is_subset(&self.seen.lock().expect("lock")) {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            let seen = self.seen.lock().expect("lock");
            expected.difference(&seen).copied().collect()
        })
    }
}

#[derive(Debug)]
pub struct Ledger {
    handled: Handled,
}

impl FromState for Ledger {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { handled: state.get::<Handled>()?.clone() })
    }
}

#[event_listener(concurrency = 8)]
impl Listener<PaymentCaptured> for Ledger {
    async fn on(&self, event: PaymentCaptured, _ctx: &Context) -> Result<(), HandlerError> {
        self.handled.seen.lock().map_err(|_| HandlerError::msg("poisoned"))?.insert(event.n);
        self.handled.changed.notify_waiters();
        Ok(())
    }
}

/// Runs `rabbitmqctl` with `args`; panics with its output when it fails.
fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Starts the RabbitMQ app again when dropped, also when the test panics.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
        let _ = Command::new("rabbitmqctl").args(["await_startup", "--timeout", "60"]).output();
    }
}

/// Polls `bus.health()` until `done` holds; panics with the last health after `timeout`.
async fn wait_for_health(
    bus: &eventing::Bus,
    timeout: Duration,
    done: impl Fn(&eventing::Health) -> bool,
) -> eventing::Health {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let health = bus.health();
        if done(&health) {
            return health;
        }
        assert!(tokio::time::Instant::now() < deadline, "health did not change within {timeout:?}: {health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Also: `Bus::health()` turns not ready while the link is down, and ready again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confirmed_durable_event_is_handled_across_a_broker_restart() {
    let Some(url) = reachable_amqp_url() else { return };
    let _exclusive = BROKER.lock().await;
    init_logs();
    let (service, exchange) = scope("faults");
    let handled = Handled::default();
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .listeners(|info| info.event == PaymentCaptured::NAME)
        .state(handled.clone())
        .start()
        .await
        .expect("start");

    const EVENTS: u64 = 400;
    let publisher = tokio::spawn({
        let bus = bus.clone();
        async move {
            let mut confirmed = BTreeSet::new();
            let mut failed = Vec::new();
            let mut longest = Duration::ZERO;
            for n in 0..EVENTS {
                let started = std::time::Instant::now();
                let result = bus.publish(&PaymentCaptured { n }).await;
                longest = longest.max(started.elapsed());
                match result {
                    Ok(()) => {
                        confirmed.insert(n);
                    }
                    Err(error) => failed.push((n, error.to_string())),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (confirmed, failed, longest)
        }
    });

    // Stop the broker while publishing is under way, keep it down a moment, start it again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(bus.health().is_ready(), "{:?}", bus.health());
    let restart = RestartOnDrop;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"])).await.expect("stop_app");
    let down = wait_for_health(&bus, Duration::from_secs(10), |health| !health.is_ready()).await;
    assert!(!down.is_connected(), "not ready because the link is down: {down:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup", "--timeout", "60"]);
    })
    .await
    .expect("start_app");
    drop(restart);
    wait_for_health(&bus, Duration::from_secs(60), eventing::Health::is_ready).await;

    let (confirmed, failed, longest) = publisher.await.expect("publisher task");
    assert!(longest >= Duration::from_secs(1), "no publish waited through the outage (longest {longest:?})");
    assert!(failed.is_empty(), "publishes that failed instead of waiting for recovery: {failed:?}");
    assert_eq!(confirmed.len() as u64, EVENTS);
    if let Err(missing) = handled.wait_for(&confirmed, Duration::from_secs(90)).await {
        panic!("{} confirmed events never handled: {missing:?}", missing.len());
    }
    bus.shutdown().await.expect("shutdown");
    support::broker::delete_scope(&url, &service, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_the_broker_ends_is_restored() {
    let Some(url) = reachable_amqp_url() else { return };
    let _exclusive = BROKER.lock().await;
    init_logs();
    let (service, exchange) = scope("cancelled");
    let handled = Handled::default();
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .listeners(|info| info.event == PaymentCaptured::NAME)
        .state(handled.clone())
        .start()
        .await
        .expect("start");
    let queue = eventing::naming::listener_queue(&service, PaymentCaptured::NAME, "ledger");
    // An operator deletes the listener's queue: the broker cancels its consumer.
    let admin = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("admin");
    admin.delete_queue(&queue).await.expect("delete the queue under the consumer");

    // Until the queue is declared again, events are unroutable; keep publishing until one
    // is handled, which proves the consumer (and its queue and binding) came back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 1_000;
    loop {
        bus.publish(&PaymentCaptured { n }).await.expect("publish");
        let expected: BTreeSet<u64> = [n].into();
        if handled.wait_for(&expected, Duration::from_millis(200)).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the consumer never came back");
        n += 1;
    }
    bus.shutdown().await.expect("shutdown");
    eventing::transport::Transport::close(&admin).await.expect("close admin");
    support::broker::delete_scope(&url, &service, &exchange).await;
}

#[event(name = "soak.ledger_entry", durable)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub n: u64,
}

/// Records every entry; chaos makes a fifth of the calls fail before it gets here.
#[derive(Debug)]
pub struct Bookkeeper {
    handled: Handled,
}

impl FromState for Bookkeeper {
    fn from_state(state: &State) -> Result<Self, MissingState> {
        Ok(Self { handled: state.get::<Handled>()?.clone() })
    }
}

#[event_listener(concurrency = 32, prefetch = 200)]
impl Listener<LedgerEntry> for Bookkeeper {
    async fn on(&self, entry: LedgerEntry, _ctx: &Context) -> Result<(), HandlerError> {
        self.handled.seen.lock().map_err(|_| HandlerError::msg("poisoned"))?.insert(entry.n);
        self.handled.changed.notify_waiters();
        Ok(())
    }
}

/// The soak test: 10 000 durable events, a fifth of the handler calls failing by injected
/// chaos (retried), and a broker restart in the middle. Every event is handled at least once,
/// nothing is dead-lettered, and no queue is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_ten_thousand_events_with_failures_and_a_broker_restart() {
    use futures_util::{StreamExt, TryStreamExt};

    let Some(url) = reachable_amqp_url() else { return };
    let _exclusive = BROKER.lock().await;
    init_logs();
    let (service, exchange) = scope("soak");
    let handled = Handled::default();
    let chaos = eventing::Chaos::default().with_fail_share(0.2);
    let bus = eventing::builder()
        .url(url.clone())
        .service(service.clone())
        .exchange(exchange.clone())
        .listeners(|info| info.event == LedgerEntry::NAME)
        // 20 % failures: ten attempts make dead-lettering a chance of 0.2^10 per event.
        .retry_policy(eventing::RetryPolicy::fixed(10, Duration::from_millis(50)))
        .chaos(chaos)
        .state(handled.clone())
        .start()
        .await
        .expect("start");

    const EVENTS: u64 = 10_000;
    let confirmed_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let publisher = tokio::spawn({
        let bus = bus.clone();
        let confirmed_count = Arc::clone(&confirmed_count);
        async move {
            futures_util::stream::iter(0..EVENTS)
                .map(|n| {
                    let bus = bus.clone();
                    let confirmed_count = Arc::clone(&confirmed_count);
                    async move {
                        bus.publish(&LedgerEntry { n }).await?;
                        confirmed_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<u64, eventing::Error>(n)
                    }
                })
                .buffer_unordered(100)
                .try_collect::<BTreeSet<u64>>()
                .await
        }
    });

    // Restart the broker once a fifth of the events are confirmed.
    while confirmed_count.load(std::sync::atomic::Ordering::SeqCst) < EVENTS / 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restart = RestartOnDrop;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"])).await.expect("stop_app");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup", "--timeout", "60"]);
    })
    .await
    .expect("start_app");
    drop(restart);

    let confirmed = publisher.await.expect("publisher task").expect("every publish confirmed");
    assert_eq!(confirmed.len() as u64, EVENTS);
    if let Err(missing) = handled.wait_for(&confirmed, Duration::from_secs(240)).await {
        panic!("{} confirmed events never handled: {:?}", missing.len(), missing.iter().take(20).collect::<Vec<_>>());
    }
    bus.shutdown().await.expect("shutdown");

    let admin = AmqpTransport::connect(&url, AmqpOptions::default()).await.expect("admin");
    let dead_letters = eventing::naming::dead_letter_queue(&service, LedgerEntry::NAME, "bookkeeper");
    assert_eq!(admin.message_count(&dead_letters).await.expect("count"), 0, "nothing was dead-lettered");
    eventing::transport::Transport::close(&admin).await.expect("close admin");
    support::broker::delete_scope(&url, &service, &exchange).await;
    let left = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "--quiet", "--no-table-headers", "name"])
        .output()
        .expect("rabbitmqctl runs");
    let left = String::from_utf8_lossy(&left.stdout).lines().filter(|name| name.starts_with(&service)).count();
    assert_eq!(left, 0, "no queue left behind");
}
